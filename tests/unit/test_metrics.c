/*
 * Unit tests of the metrics registry: rendering, escaping, type rules,
 * cardinality bound, and the output accepted by 'promtool check metrics'.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "metrics.h"

static char *render(void)
{
	size_t len;
	char *text;

	assert_int_equal(metrics_render(&text, &len), 0);
	assert_int_equal(strlen(text), len);
	return text;
}

static void metrics_render__fresh__has_build_info_and_zero_counters(void **state)
{
	char *text;

	(void)state;
	assert_int_equal(metrics_init(), 0);
	text = render();
	assert_non_null(strstr(text, "# TYPE pgvigil_build_info gauge\n"));
	assert_non_null(strstr(text, "pgvigil_build_info{version=\""));
	assert_non_null(strstr(text, "\npgvigil_catalog_cache_hits_total 0\n"));
	assert_non_null(strstr(text,
		"pgvigil_classification_seconds_bucket{le=\"+Inf\"} 0\n"));
	free(text);
}

static void metrics_inc__labels__one_series_per_tuple(void **state)
{
	char *text;

	(void)state;
	metrics_init();
	metrics_inc(METRIC_VIOLATIONS, "monetary", "balance_write");
	metrics_inc(METRIC_VIOLATIONS, "monetary", "balance_write");
	metrics_add(METRIC_VIOLATIONS, 3, "event_immutability", "update");
	text = render();
	assert_non_null(strstr(text, "pgvigil_violations_total{invariant="
				     "\"monetary\",rule=\"balance_write\"} 2\n"));
	assert_non_null(strstr(text, "{invariant=\"event_immutability\","
				     "rule=\"update\"} 3\n"));
	free(text);
}

static void metrics_set__label_with_quote__escaped(void **state)
{
	char *text;

	(void)state;
	metrics_init();
	metrics_set(METRIC_PROBES_ATTACHED, 1, "81\"2", "a\\b\nc");
	text = render();
	assert_non_null(strstr(text, "pgvigil_probes_attached{postmaster="
				     "\"81\\\"2\",probe=\"a\\\\b\\nc\"} 1\n"));
	free(text);
}

static void metrics_add__negative_on_counter__ignored(void **state)
{
	char *text;

	(void)state;
	metrics_init();
	metrics_add(METRIC_VERIFY_ROWS, 10);
	metrics_add(METRIC_VERIFY_ROWS, -4);
	metrics_set(METRIC_VERIFY_ROWS, 1);
	metrics_observe(METRIC_VERIFY_ROWS, 1);
	text = render();
	assert_non_null(strstr(text, "\npgvigil_verify_rows_total 10\n"));
	free(text);
}

static void metrics_observe__histogram__cumulative_buckets(void **state)
{
	char *text;

	(void)state;
	metrics_init();
	metrics_observe(METRIC_CLASSIFY_SECONDS, 0.000002);
	metrics_observe(METRIC_CLASSIFY_SECONDS, 0.002);
	metrics_observe(METRIC_CLASSIFY_SECONDS, 5);
	text = render();
	assert_non_null(strstr(text, "_bucket{le=\"1e-06\"} 0\n"));
	assert_non_null(strstr(text, "_bucket{le=\"5e-06\"} 1\n"));
	assert_non_null(strstr(text, "_bucket{le=\"0.005\"} 2\n"));
	assert_non_null(strstr(text, "_bucket{le=\"1\"} 2\n"));
	assert_non_null(strstr(text, "_bucket{le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(text, "pgvigil_classification_seconds_count 3\n"));
	free(text);
}

static void metrics_inc__past_series_bound__counted_as_dropped(void **state)
{
	char pid[16], *text;
	int i;

	(void)state;
	metrics_init();
	for (i = 0; i < METRICS_MAX_SERIES + 5; i++) {
		snprintf(pid, sizeof(pid), "%d", i);
		metrics_inc(METRIC_SEQUENCE_GAPS, pid);
	}
	metrics_remove(METRIC_SEQUENCE_GAPS, "0");
	metrics_inc(METRIC_SEQUENCE_GAPS, "new");
	text = render();
	assert_non_null(strstr(text, "pgvigil_metrics_series_dropped_total{"
		"family=\"pgvigil_backend_sequence_gaps_total\"} 5\n"));
	assert_null(strstr(text, "{pid=\"0\"}"));
	assert_non_null(strstr(text, "{pid=\"new\"} 1\n"));
	free(text);
}

/* promtool is the reference parser; the test fails if it is missing */
static void metrics_render__populated__passes_promtool(void **state)
{
	char *text, cmd[128];
	FILE *pipe;
	int status;

	(void)state;
	metrics_init();
	metrics_inc(METRIC_STATEMENTS, "UPDATE");
	metrics_inc(METRIC_VIOLATIONS, "monetary", "x");
	metrics_set(METRIC_PROBES_ATTACHED, 1, "812", "ExecutorStart");
	metrics_observe(METRIC_CLASSIFY_SECONDS, 0.0001);
	metrics_inc(METRIC_HTTP_REQUESTS, "/metrics", "200");
	text = render();
	assert_int_equal(access("/usr/bin/promtool", X_OK), 0);
	snprintf(cmd, sizeof(cmd),
		 "/usr/bin/promtool check metrics >/dev/null 2>&1");
	pipe = popen(cmd, "w");
	assert_non_null(pipe);
	fputs(text, pipe);
	status = pclose(pipe);
	assert_int_equal(status, 0);
	free(text);
	metrics_free();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(metrics_render__fresh__has_build_info_and_zero_counters),
		cmocka_unit_test(metrics_inc__labels__one_series_per_tuple),
		cmocka_unit_test(metrics_set__label_with_quote__escaped),
		cmocka_unit_test(metrics_add__negative_on_counter__ignored),
		cmocka_unit_test(metrics_observe__histogram__cumulative_buckets),
		cmocka_unit_test(metrics_inc__past_series_bound__counted_as_dropped),
		cmocka_unit_test(metrics_render__populated__passes_promtool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
