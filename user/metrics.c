/*
 * The metrics registry and its Prometheus text rendering. See metrics.h for
 * the threading model: one mutex, held for a list walk per update and for
 * the whole of a render (a scrape sees one consistent snapshot).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "version.h"

#define METRICS_MAX_LABELS 2
#define METRICS_BUCKETS 12

enum metric_type { TYPE_COUNTER, TYPE_GAUGE, TYPE_HISTOGRAM };

struct metric_family {
	const char *name;
	enum metric_type type;
	const char *help;
	int label_count;
	const char *labels[METRICS_MAX_LABELS];
};

static const struct metric_family families[METRIC_COUNT] = {
	[METRIC_BUILD_INFO] = { "pgvigil_build_info", TYPE_GAUGE,
		"Version of the running pgvigil; always 1", 1, { "version" } },
	[METRIC_STATEMENTS] = { "pgvigil_statements_captured_total",
		TYPE_COUNTER, "Statements seen at the executor, by command",
		1, { "command" } },
	[METRIC_VIOLATIONS] = { "pgvigil_violations_total", TYPE_COUNTER,
		"Violation records, by invariant and rule",
		2, { "invariant", "rule" } },
	[METRIC_RINGBUF_DROPS] = { "pgvigil_ringbuf_drops_total",
		TYPE_COUNTER, "Events the BPF side could not queue, by cause",
		1, { "cause" } },
	[METRIC_SEQUENCE_GAPS] = { "pgvigil_backend_sequence_gaps_total",
		TYPE_COUNTER, "Events missing from a backend's sequence",
		1, { "pid" } },
	[METRIC_PROBES_ATTACHED] = { "pgvigil_probes_attached", TYPE_GAUGE,
		"1 while the probe is attached to the postmaster",
		2, { "postmaster", "probe" } },
	[METRIC_CATALOG_HITS] = { "pgvigil_catalog_cache_hits_total",
		TYPE_COUNTER, "Relation lookups answered by the catalog cache" },
	[METRIC_CATALOG_MISSES] = { "pgvigil_catalog_cache_misses_total",
		TYPE_COUNTER, "Relation lookups that queried the server" },
	[METRIC_CLASSIFY_SECONDS] = { "pgvigil_classification_seconds",
		TYPE_HISTOGRAM, "Time to classify one event against the policy" },
	[METRIC_VERIFY_ROWS] = { "pgvigil_verify_rows_total", TYPE_COUNTER,
		"Ledger events whose hash was verified" },
	[METRIC_VERIFY_FINDINGS] = { "pgvigil_verify_findings_total",
		TYPE_COUNTER, "Hash verification findings, by kind",
		1, { "kind" } },
	[METRIC_JOURNAL_BYTES] = { "pgvigil_journal_written_bytes_total",
		TYPE_COUNTER, "Bytes appended to the journal since start" },
	[METRIC_JOURNAL_ROTATIONS] = { "pgvigil_journal_rotations_total",
		TYPE_COUNTER, "Journal files rotated since start" },
	[METRIC_FEED_RECORDS] = { "pgvigil_feed_records_total", TYPE_COUNTER,
		"Records numbered and emitted by the feed since start" },
	[METRIC_FEED_CLIENTS] = { "pgvigil_feed_clients", TYPE_GAUGE,
		"Open /feed streams" },
	[METRIC_HTTP_REQUESTS] = { "pgvigil_http_requests_total",
		TYPE_COUNTER, "HTTP requests answered, by path and status",
		2, { "path", "code" } },
	[METRIC_HTTP_AUTH_FAILURES] = { "pgvigil_http_auth_failures_total",
		TYPE_COUNTER, "HTTP requests refused for credentials, by reason",
		1, { "reason" } },
	[METRIC_SERIES_DROPPED] = { "pgvigil_metrics_series_dropped_total",
		TYPE_COUNTER, "Updates refused because a family was full",
		1, { "family" } },
};

/* seconds: classification is microseconds when the catalog is cached */
static const double bucket_bounds[METRICS_BUCKETS] = {
	1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 1,
};

struct series {
	struct series *next;
	char *labels[METRICS_MAX_LABELS];
	double value;			/* counter, gauge; histogram sum */
	uint64_t count;			/* histogram */
	uint64_t buckets[METRICS_BUCKETS];
};

struct family_state {
	struct series *head;
	size_t count;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct family_state registry[METRIC_COUNT];
static bool registry_live;

static void series_free(struct series *s)
{
	int i;

	for (i = 0; i < METRICS_MAX_LABELS; i++)
		free(s->labels[i]);
	free(s);
}

static void registry_clear(void)
{
	struct series *s, *next;
	int id;

	for (id = 0; id < METRIC_COUNT; id++) {
		for (s = registry[id].head; s; s = next) {
			next = s->next;
			series_free(s);
		}
		registry[id].head = NULL;
		registry[id].count = 0;
	}
}

static bool labels_equal(const struct series *s, int n, const char **values)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(s->labels[i], values[i] ? values[i] : ""))
			return false;
	return true;
}

static struct series *series_new(int n, const char **values)
{
	struct series *s = calloc(1, sizeof(*s));
	int i;

	if (!s)
		return NULL;
	for (i = 0; i < n; i++) {
		s->labels[i] = strdup(values[i] ? values[i] : "");
		if (!s->labels[i]) {
			series_free(s);
			return NULL;
		}
	}
	return s;
}

static void count_dropped(enum metric_id id);

/* Called with the lock held; NULL when out of memory or the family is full */
static struct series *series_get(enum metric_id id, const char **values)
{
	const struct metric_family *f = &families[id];
	struct family_state *st = &registry[id];
	struct series *s, **tail = &st->head;

	for (s = st->head; s; s = s->next) {
		if (labels_equal(s, f->label_count, values))
			return s;
		tail = &s->next;
	}
	if (st->count >= METRICS_MAX_SERIES) {
		if (id != METRIC_SERIES_DROPPED)
			count_dropped(id);
		return NULL;
	}
	s = series_new(f->label_count, values);
	if (!s)
		return NULL;
	/* appended, so a render lists series in their order of birth */
	*tail = s;
	st->count++;
	return s;
}

static void count_dropped(enum metric_id id)
{
	const char *values[1] = { families[id].name };
	struct series *s = series_get(METRIC_SERIES_DROPPED, values);

	if (s)
		s->value += 1;
}

enum update_op { OP_ADD, OP_SET, OP_OBSERVE };

static void observe(struct series *s, double value)
{
	int i;

	s->value += value;
	s->count++;
	for (i = 0; i < METRICS_BUCKETS; i++)
		if (value <= bucket_bounds[i])
			s->buckets[i]++;
}

static bool op_fits(enum metric_type type, enum update_op op, double value)
{
	if (isnan(value))
		return false;
	switch (type) {
	case TYPE_COUNTER:
		/* set mirrors a total kept elsewhere (the feed's bytes) */
		return op != OP_OBSERVE && value >= 0;
	case TYPE_GAUGE:
		return op != OP_OBSERVE;
	case TYPE_HISTOGRAM:
		return op == OP_OBSERVE;
	}
	return false;
}

static void update(enum metric_id id, enum update_op op, double value,
		   va_list args)
{
	const char *values[METRICS_MAX_LABELS] = { NULL };
	struct series *s;
	int i;

	if (id < 0 || id >= METRIC_COUNT ||
	    !op_fits(families[id].type, op, value))
		return;
	for (i = 0; i < families[id].label_count; i++)
		values[i] = va_arg(args, const char *);
	pthread_mutex_lock(&registry_lock);
	s = registry_live ? series_get(id, values) : NULL;
	if (s && op == OP_SET && families[id].type == TYPE_COUNTER &&
	    value < s->value)
		s = NULL;
	if (s && op == OP_ADD)
		s->value += value;
	else if (s && op == OP_SET)
		s->value = value;
	else if (s)
		observe(s, value);
	pthread_mutex_unlock(&registry_lock);
}

void metrics_inc(enum metric_id id, ...)
{
	va_list args;

	va_start(args, id);
	update(id, OP_ADD, 1, args);
	va_end(args);
}

void metrics_add(enum metric_id id, double value, ...)
{
	va_list args;

	va_start(args, value);
	update(id, OP_ADD, value, args);
	va_end(args);
}

void metrics_set(enum metric_id id, double value, ...)
{
	va_list args;

	va_start(args, value);
	update(id, OP_SET, value, args);
	va_end(args);
}

void metrics_observe(enum metric_id id, double value, ...)
{
	va_list args;

	va_start(args, value);
	update(id, OP_OBSERVE, value, args);
	va_end(args);
}

void metrics_remove(enum metric_id id, ...)
{
	const char *values[METRICS_MAX_LABELS] = { NULL };
	struct series **link, *s;
	va_list args;
	int i;

	if (id < 0 || id >= METRIC_COUNT)
		return;
	va_start(args, id);
	for (i = 0; i < families[id].label_count; i++)
		values[i] = va_arg(args, const char *);
	va_end(args);
	pthread_mutex_lock(&registry_lock);
	for (link = &registry[id].head; (s = *link); link = &s->next) {
		if (labels_equal(s, families[id].label_count, values)) {
			*link = s->next;
			registry[id].count--;
			series_free(s);
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

int metrics_init(void)
{
	const char *version[1] = { PGV_VERSION };
	struct series *s;
	int ret = 0;

	pthread_mutex_lock(&registry_lock);
	registry_clear();
	registry_live = true;
	s = series_get(METRIC_BUILD_INFO, version);
	if (s)
		s->value = 1;
	else
		ret = -ENOMEM;
	pthread_mutex_unlock(&registry_lock);
	return ret;
}

void metrics_free(void)
{
	pthread_mutex_lock(&registry_lock);
	registry_clear();
	registry_live = false;
	pthread_mutex_unlock(&registry_lock);
}

const char *metrics_name(enum metric_id id)
{
	if (id < 0 || id >= METRIC_COUNT)
		return NULL;
	return families[id].name;
}

/* Label values escape backslash, double quote and newline (format 0.0.4) */
static void put_label_value(FILE *out, const char *value)
{
	for (; *value; value++) {
		if (*value == '\\')
			fputs("\\\\", out);
		else if (*value == '"')
			fputs("\\\"", out);
		else if (*value == '\n')
			fputs("\\n", out);
		else
			fputc(*value, out);
	}
}

static void put_labels(FILE *out, const struct metric_family *f,
		       const struct series *s, const char *le)
{
	int i;

	if (!f->label_count && !le)
		return;
	fputc('{', out);
	for (i = 0; i < f->label_count; i++) {
		fprintf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
		put_label_value(out, s->labels[i]);
		fputc('"', out);
	}
	if (le)
		fprintf(out, "%sle=\"%s\"", f->label_count ? "," : "", le);
	fputc('}', out);
}

static void put_histogram(FILE *out, const struct metric_family *f,
			  const struct series *s)
{
	char le[32];
	int i;

	for (i = 0; i < METRICS_BUCKETS; i++) {
		snprintf(le, sizeof(le), "%g", bucket_bounds[i]);
		fprintf(out, "%s_bucket", f->name);
		put_labels(out, f, s, le);
		fprintf(out, " %llu\n", (unsigned long long)s->buckets[i]);
	}
	fprintf(out, "%s_bucket", f->name);
	put_labels(out, f, s, "+Inf");
	fprintf(out, " %llu\n%s_sum", (unsigned long long)s->count, f->name);
	put_labels(out, f, s, NULL);
	fprintf(out, " %.17g\n%s_count", s->value, f->name);
	put_labels(out, f, s, NULL);
	fprintf(out, " %llu\n", (unsigned long long)s->count);
}

static const char *const type_names[] = {
	[TYPE_COUNTER] = "counter",
	[TYPE_GAUGE] = "gauge",
	[TYPE_HISTOGRAM] = "histogram",
};

static void put_family(FILE *out, enum metric_id id)
{
	const struct metric_family *f = &families[id];
	struct series zero = { 0 }, *s = registry[id].head;

	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help,
		f->name, type_names[f->type]);
	/* a family without labels exists from the start, at zero */
	if (!s && !f->label_count)
		s = &zero;
	for (; s; s = s->next) {
		if (f->type == TYPE_HISTOGRAM) {
			put_histogram(out, f, s);
			continue;
		}
		fputs(f->name, out);
		put_labels(out, f, s, NULL);
		fprintf(out, " %.17g\n", s->value);
	}
}

int metrics_render(char **text, size_t *len)
{
	FILE *out = open_memstream(text, len);
	int id;

	if (!out)
		return -errno;
	pthread_mutex_lock(&registry_lock);
	for (id = 0; id < METRIC_COUNT; id++)
		put_family(out, id);
	pthread_mutex_unlock(&registry_lock);
	if (fclose(out))
		return -ENOMEM;
	return 0;
}
