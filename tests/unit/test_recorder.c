/* Unit tests of the flight recorder and the dumps it writes. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "recorder.h"
#include "dumptest.h"

static uint64_t fake_now;
static char last_path[4096];
static int dumps;

static uint64_t fake_clock(void)
{
	return fake_now;
}

static void on_dump(void *arg, const struct recorder_dump_result *result)
{
	(void)arg;
	assert_int_equal(result->error, 0);
	snprintf(last_path, sizeof(last_path), "%s", result->path);
	dumps++;
}

static struct recorder *make(const struct dumpfile_key *key, int statements)
{
	struct recorder_config cfg = {
		.statements = statements, .min_interval_ms = 1000,
		.directory = dir, .key = key, .mask_fn = mask_digits,
		.policy_digest = "abc", .on_dump = on_dump,
		.clock_ms = fake_clock,
	};
	struct recorder *rec;

	strcpy(dir, "/tmp/pgvigil-rec-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(recorder_create(&cfg, &rec), 0);
	fake_now = 100000;
	dumps = 0;
	return rec;
}

static struct json_object *statement(const char *sql)
{
	struct json_object *obj = json_object_new_object();

	json_object_object_add(obj, "command", json_object_new_string("UPDATE"));
	json_object_object_add(obj, "statement", json_object_new_string(sql));
	json_object_object_add(obj, "params", json_object_new_string("4242"));
	return obj;
}

static void add(struct recorder *rec, uint32_t pid, const char *sql)
{
	struct json_object *obj = statement(sql);

	assert_int_equal(recorder_add(rec, pid, 1, obj), 0);
	json_object_put(obj);
}

static int violate(struct recorder *rec, uint32_t pid)
{
	struct json_object *obj = statement("UPDATE accounts SET balance = 7");
	int err = recorder_violation(rec, pid, 1,
				     json_object_to_json_string(obj));

	json_object_put(obj);
	return err;
}

/* Concatenated JSON of every frame, for substring checks. */
static int collect(void *arg, uint32_t index, struct json_object *frame)
{
	char **text = arg;
	const char *s = json_object_to_json_string(frame);
	size_t old = *text ? strlen(*text) : 0;

	(void)index;
	*text = realloc(*text, old + strlen(s) + 2);
	strcpy(*text + old, s);
	strcat(*text, "\n");
	return 0;
}

static char *read_dump(const char *path, const struct dumpfile_key *key)
{
	struct dumpfile_info info;
	char *text = NULL;

	assert_int_equal(dumpfile_read_file(path, key, collect, &text, &info),
			 0);
	return text;
}

static void recorder_violation__xact_end__dump_holds_before_and_after(
	void **state)
{
	struct recorder *rec = make(NULL, 4);
	struct json_object *session = json_object_new_object();
	char *text;

	(void)state;
	json_object_object_add(session, "user", json_object_new_string("alice"));
	assert_int_equal(recorder_session(rec, 42, 1, session), 0);
	json_object_put(session);
	add(rec, 42, "SELECT 1");
	add(rec, 42, "UPDATE accounts SET balance = 7");
	assert_int_equal(violate(rec, 42), 0);
	assert_int_equal(dumps, 0);
	add(rec, 42, "SELECT 3");
	assert_int_equal(recorder_xact_end(rec, 42, 1, "committed"), 0);
	assert_int_equal(dumps, 1);
	text = read_dump(last_path, NULL);
	assert_non_null(strstr(text, "alice"));
	assert_non_null(strstr(text, "SELECT ?"));
	assert_non_null(strstr(text, "SELECT ?\"")); /* the one after */
	assert_non_null(strstr(text, "\"complete\": \"xact_end\""));
	assert_non_null(strstr(text, "\"committed\""));
	assert_null(strstr(text, "balance = 7"));	/* masked */
	assert_null(strstr(text, "4242"));		/* params dropped */
	assert_non_null(strstr(text, "\"statements\": \"masked\""));
	free(text);
	recorder_free(rec);
}

static void recorder_dump__encrypted__keeps_full_text(void **state)
{
	struct dumpfile_key key;
	uint8_t master[32] = { 7 };
	struct recorder *rec;
	char path[4096], *text;

	(void)state;
	dumpfile_key_init(&key, master);
	rec = make(&key, 4);
	add(rec, 42, "UPDATE accounts SET balance = 7");
	assert_int_equal(recorder_dump(rec, 42, "request", path, sizeof(path)),
			 0);
	text = read_dump(path, &key);
	assert_non_null(strstr(text, "balance = 7"));
	assert_non_null(strstr(text, "4242"));
	assert_non_null(strstr(text, "\"statements\": \"unmasked\""));
	free(text);
	assert_int_equal(recorder_dump(rec, 43, "request", NULL, 0), -ENOENT);
	recorder_free(rec);
}

static void recorder_add__storm__memory_and_dump_bounded(void **state)
{
	struct recorder *rec = make(NULL, 8);
	struct recorder_stats st;
	char sql[200];
	struct stat sb;
	int i;

	(void)state;
	for (i = 0; i < 50000; i++) {
		snprintf(sql, sizeof(sql), "INSERT INTO t VALUES (%d, '%0120d')",
			 i, i);
		add(rec, 7, sql);
		if (i == 25000)
			assert_int_equal(violate(rec, 7), 0);
	}
	recorder_stats(rec, &st);
	/* ring: 8 + 32 records; the pending copy: that plus 8 followers */
	assert_true(st.records <= 40);
	assert_true(st.bytes < 100 * 1024);
	assert_int_equal(dumps, 1);	/* the statement bound closed it */
	assert_int_equal(stat(last_path, &sb), 0);
	assert_true(sb.st_size < 16 * 1024);
	assert_true(st.records_dropped > 0);
	recorder_free(rec);
}

static void recorder_violation__within_interval__suppressed(void **state)
{
	struct recorder *rec = make(NULL, 4);
	struct recorder_stats st;

	(void)state;
	add(rec, 1, "UPDATE a SET b = 1");
	add(rec, 2, "UPDATE a SET b = 2");
	assert_int_equal(violate(rec, 1), 0);
	assert_int_equal(violate(rec, 1), 0);	/* joins the pending dump */
	assert_int_equal(violate(rec, 2), -EBUSY);
	fake_now += 20000;
	recorder_tick(rec);		/* time bound writes pid 1's dump */
	assert_int_equal(dumps, 1);
	assert_int_equal(violate(rec, 2), 0);
	recorder_backend_exit(rec, 2, 1);
	assert_int_equal(dumps, 2);
	recorder_stats(rec, &st);
	assert_int_equal(st.dumps_suppressed, 1);
	assert_int_equal(st.backends, 1);
	recorder_free(rec);
}

static void recorder_request__sigusr1__dumps_at_tick(void **state)
{
	struct recorder *rec = make(NULL, 4);
	union sigval value = { .sival_int = 5 };
	char *text;

	(void)state;
	add(rec, 5, "SELECT 5");
	add(rec, 6, "SELECT 6");
	assert_int_equal(recorder_install_sigusr1(rec), 0);
	assert_int_equal(sigqueue(getpid(), SIGUSR1, value), 0);
	assert_int_equal(dumps, 0);
	recorder_tick(rec);
	assert_int_equal(dumps, 1);
	assert_non_null(strstr(last_path, "-request-5-"));
	raise(SIGUSR1);
	recorder_tick(rec);
	assert_int_equal(dumps, 2);
	assert_non_null(strstr(last_path, "-signal-all-"));
	text = read_dump(last_path, NULL);
	assert_non_null(strstr(text, "\"pid\": 6"));
	free(text);
	recorder_free(rec);
	signal(SIGUSR1, SIG_DFL);
}

static void recorder_add__pid_reused__starts_afresh(void **state)
{
	struct recorder *rec = make(NULL, 4);
	struct json_object *obj = statement("SELECT 2"), *snap, *records;

	(void)state;
	add(rec, 9, "SELECT 1");
	assert_int_equal(recorder_add(rec, 9, 2, obj), 0);
	snap = recorder_snapshot(rec, 9);
	assert_true(json_object_object_get_ex(snap, "records", &records));
	assert_int_equal(json_object_array_length(records), 1);
	json_object_put(snap);
	json_object_put(obj);
	recorder_free(rec);
}

static void recorder_create__no_key_no_masker__refused(void **state)
{
	struct recorder_config cfg = { .directory = "/tmp" };
	struct recorder *rec;

	(void)state;
	assert_int_equal(recorder_create(&cfg, &rec), -EINVAL);
}

/* every test removes its dump directory */
#define T(test) cmocka_unit_test_teardown(test, remove_dir)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(recorder_violation__xact_end__dump_holds_before_and_after),
		T(recorder_dump__encrypted__keeps_full_text),
		T(recorder_add__storm__memory_and_dump_bounded),
		T(recorder_violation__within_interval__suppressed),
		T(recorder_request__sigusr1__dumps_at_tick),
		T(recorder_add__pid_reused__starts_afresh),
		T(recorder_create__no_key_no_masker__refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
