/*
 * Unit tests of 'pgvigil dump': exit statuses of verify, and a request
 * travelling from the client through the signal to a recorder's dump, with
 * this test process playing the daemon.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "cli.h"
#include "recorder.h"
#include "dumptest.h"

static char dumped[4096];

static const char *mask_all(const char *sql, char *buf, size_t len)
{
	(void)sql;
	snprintf(buf, len, "?");
	return buf;
}

static void on_dump(void *arg, const struct recorder_dump_result *result)
{
	(void)arg;
	if (result->path)
		snprintf(dumped, sizeof(dumped), "%s", result->path);
}

static struct recorder *make(void)
{
	struct recorder_config cfg = { .directory = dir, .mask_fn = mask_all,
				       .on_dump = on_dump };
	struct json_object *obj = json_object_new_object();
	struct recorder *rec;

	strcpy(dir, "/tmp/pgvigil-cmd-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(recorder_create(&cfg, &rec), 0);
	json_object_object_add(obj, "statement", json_object_new_string("x"));
	assert_int_equal(recorder_add(rec, 77, 1, obj), 0);
	json_object_put(obj);
	return rec;
}

static int run(int argc, const char **argv)
{
	optind = 0;	/* getopt_long state from the previous call */
	return cmd_dump(argc, (char **)argv);
}

static void cmd_dump__request__daemon_writes_dump(void **state)
{
	struct recorder *rec = make();
	char pid_file[128];
	const char *argv[] = { "dump", "--pid", "77", "--pid-file", pid_file };
	FILE *f;

	(void)state;
	snprintf(pid_file, sizeof(pid_file), "%s/pid", dir);
	f = fopen(pid_file, "w");
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
	assert_int_equal(recorder_install_sigusr1(rec), 0);
	/* the client refuses a process that is not pgvigil */
	assert_int_equal(run(5, argv), EXIT_ERROR);
	prctl(PR_SET_NAME, "pgvigil");
	assert_int_equal(run(5, argv), EXIT_OK);
	recorder_tick(rec);
	assert_non_null(strstr(dumped, "-request-77-"));
	recorder_free(rec);
	signal(SIGUSR1, SIG_DFL);
}

static void cmd_dump__verify__exit_status_says_intact_or_damaged(void **state)
{
	struct recorder *rec = make();
	const char *argv[] = { "dump", "verify", dumped };
	const char *missing[] = { "dump", "verify", "/nonexistent/x.pgvd" };
	FILE *f;
	int c;

	(void)state;
	assert_int_equal(recorder_dump(rec, 77, "request", dumped,
				       sizeof(dumped)), 0);
	assert_int_equal(run(3, argv), EXIT_OK);
	f = fopen(dumped, "r+");
	fseek(f, 100, SEEK_SET);
	c = fgetc(f);
	fseek(f, 100, SEEK_SET);	/* stdio needs it between read and write */
	fputc(c ^ 0xff, f);
	fclose(f);
	assert_int_equal(run(3, argv), EXIT_FINDINGS);
	assert_int_equal(run(3, missing), EXIT_ERROR);
	recorder_free(rec);
}

/* every test removes its dump directory */
#define T(test) cmocka_unit_test_teardown(test, remove_dir)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(cmd_dump__request__daemon_writes_dump),
		T(cmd_dump__verify__exit_status_says_intact_or_damaged),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
