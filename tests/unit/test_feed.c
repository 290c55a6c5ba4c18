/*
 * Unit tests of the feed: journal ids across restarts and rotations,
 * retention, mode, a line cut by a crash, and readers that replay from the
 * journal then follow live records with no gap and no duplicate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "feed.h"

struct fixture {
	char dir[64];
	char journal[128];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	strcpy(fx->dir, "/tmp/pgvigil-feed-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->journal, sizeof(fx->journal), "%s/journal", fx->dir);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
	assert_int_equal(system(cmd), 0);
	free(fx);
	return 0;
}

static struct feed *open_feed(const char *journal, long long max_bytes,
			      int keep)
{
	struct feed *feed;
	char err[256];

	assert_int_equal(feed_open(journal, FEED_SYNC_ALWAYS, false, &feed,
				   err, sizeof(err)), 0);
	feed_set_rotation(feed, max_bytes, keep);
	return feed;
}

static int64_t emit(struct feed *feed, const char *invariant)
{
	struct json_object *record = json_object_new_object();
	int64_t id;

	json_object_object_add(record, "invariant",
			       json_object_new_string(invariant));
	id = feed_emit(feed, record);
	json_object_put(record);
	return id;
}

static void feed_emit__reopen__ids_continue_and_mode_0600(void **state)
{
	struct fixture *fx = *state;
	struct feed *feed = open_feed(fx->journal, 0, 1);
	struct stat st;

	assert_int_equal(emit(feed, "monetary"), 1);
	assert_int_equal(emit(feed, "monetary"), 2);
	feed_close(feed);
	feed = open_feed(fx->journal, 0, 1);
	assert_int_equal(emit(feed, "monetary"), 3);
	feed_close(feed);
	assert_int_equal(stat(fx->journal, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void feed_open__truncated_last_line__ignored(void **state)
{
	struct fixture *fx = *state;
	struct feed *feed = open_feed(fx->journal, 0, 1);
	const char cut[] = "{\"id\":3,\"invar";
	struct feed_reader *reader;
	char *line;
	size_t len;
	int fd;

	emit(feed, "monetary");
	emit(feed, "monetary");
	feed_close(feed);
	fd = open(fx->journal, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, cut, sizeof(cut) - 1), sizeof(cut) - 1);
	close(fd);
	feed = open_feed(fx->journal, 0, 1);
	assert_int_equal(emit(feed, "monetary"), 3);
	feed_close(feed);

	/* a fresh feed has an empty ring: the replay reads the file */
	feed = open_feed(fx->journal, 0, 1);
	assert_int_equal(feed_reader_open(feed, 0, &reader), 0);
	assert_int_equal(feed_reader_next(reader, 10, &line, &len), 1);
	free(line);
	assert_int_equal(feed_reader_next(reader, 10, &line, &len), 2);
	free(line);
	assert_int_equal(feed_reader_next(reader, 10, &line, &len), 3);
	assert_non_null(strstr(line, "\"id\":3,\"invariant\""));
	free(line);
	assert_int_equal(feed_reader_next(reader, 10, &line, &len), 0);
	feed_reader_close(reader);
	feed_close(feed);
}

/* The line a fresh reader gets for record 'id', compared whole. */
static void assert_line(struct feed *feed, int64_t id, const char *expected)
{
	struct feed_reader *reader;
	char *line;
	size_t len;

	assert_int_equal(feed_reader_open(feed, id - 1, &reader), 0);
	assert_int_equal(feed_reader_next(reader, 10, &line, &len), id);
	assert_string_equal(line, expected);
	assert_int_equal(len, strlen(expected));
	free(line);
	feed_reader_close(reader);
}

static void feed_emit__any_form__id_first_then_members(void **state)
{
	struct fixture *fx = *state;
	struct feed *feed = open_feed(fx->journal, 0, 1);
	struct json_object *record = json_object_new_object();
	struct iovec parts[2] = {
		{ "\"invariant\":\"monetary\",\"rule\":\"r\"", 33 },
		{ ",\"transaction\":{\"outcome\":\"committed\"}", 38 },
	};

	json_object_object_add(record, "time", json_object_new_string("t/1"));
	json_object_object_add(record, "id", json_object_new_int64(99));
	json_object_object_add(record, "n", json_object_new_int64(-2));
	assert_int_equal(feed_emit(feed, record), 1);
	json_object_put(record);
	record = json_object_new_object();
	assert_int_equal(feed_emit(feed, record), 2);
	json_object_put(record);
	assert_int_equal(feed_emit_members(feed, parts, 2, "monetary", "r"), 3);
	assert_int_equal(feed_emit_members(feed, parts, 0, "monetary", "r"), 4);
	assert_line(feed, 1, "{\"id\":1,\"time\":\"t\\/1\",\"n\":-2}\n");
	assert_line(feed, 2, "{\"id\":2}\n");
	assert_line(feed, 3, "{\"id\":3,\"invariant\":\"monetary\",\"rule\":\"r\","
		    "\"transaction\":{\"outcome\":\"committed\"}}\n");
	assert_line(feed, 4, "{\"id\":4}\n");
	feed_close(feed);
}

static int count_files(const char *dir)
{
	char cmd[128];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "ls '%s' | wc -l", dir);
	p = popen(cmd, "r");
	assert_int_equal(fscanf(p, "%d", &n), 1);
	pclose(p);
	return n;
}

static void feed_emit__past_max_bytes__rotates_and_keeps(void **state)
{
	struct fixture *fx = *state;
	struct feed *feed = open_feed(fx->journal, 100, 2);
	struct feed_reader *reader;
	char *line;
	size_t len;
	int64_t id, i;

	/* each line is about 33 bytes: a rotation every fourth record */
	for (i = 1; i <= 30; i++)
		assert_int_equal(emit(feed, "monetary"), i);
	assert_true(feed_rotations(feed) >= 7);
	assert_int_equal(count_files(fx->dir), 3);
	feed_close(feed);

	/* the restart finds the last id even when the active file is empty */
	feed = open_feed(fx->journal, 100, 2);
	assert_int_equal(emit(feed, "monetary"), 31);
	feed_close(feed);

	/* retention deleted the oldest: replay starts at the oldest kept */
	feed = open_feed(fx->journal, 100, 2);
	assert_int_equal(feed_reader_open(feed, 0, &reader), 0);
	id = feed_reader_next(reader, 10, &line, &len);
	assert_true(id > 20);
	free(line);
	for (i = id + 1; i <= 31; i++) {
		assert_int_equal(feed_reader_next(reader, 10, &line, &len), i);
		free(line);
	}
	assert_int_equal(feed_reader_next(reader, 10, &line, &len), 0);
	feed_reader_close(reader);
	feed_close(feed);
}

struct emitter {
	struct feed *feed;
	int count;
};

static void *emit_many(void *arg)
{
	struct emitter *e = arg;
	int i;

	for (i = 0; i < e->count; i++)
		emit(e->feed, i % 2 ? "monetary" : "event_immutability");
	return NULL;
}

/* replay old records from rotated files while new ones arrive live */
static void feed_reader_next__replay_then_live__no_gap_no_duplicate(void **state)
{
	struct fixture *fx = *state;
	struct feed *feed = open_feed(fx->journal, 4000, 50);
	struct emitter e = { .count = 600 };
	struct feed_reader *reader;
	pthread_t thread;
	int64_t id, want;
	char *line;
	size_t len;
	int i;

	for (i = 0; i < 300; i++)
		emit(feed, "monetary");
	feed_close(feed);
	feed = open_feed(fx->journal, 4000, 50);
	e.feed = feed;
	assert_int_equal(feed_reader_open(feed, 10, &reader), 0);
	assert_int_equal(pthread_create(&thread, NULL, emit_many, &e), 0);
	for (want = 11; want <= 900; want++) {
		id = feed_reader_next(reader, 2000, &line, &len);
		assert_int_equal(id, want);
		assert_true(len > 0 && line[len - 1] == '\n');
		free(line);
	}
	pthread_join(thread, NULL);
	feed_shutdown(feed);
	assert_int_equal(feed_reader_next(reader, 10, &line, &len),
			 -ESHUTDOWN);
	feed_reader_close(reader);
	feed_close(feed);
}

static void feed_reader_next__no_journal__follows_ring(void **state)
{
	struct feed *feed = open_feed(NULL, 0, 1);
	struct feed_reader *reader;
	char *line;
	size_t len;

	(void)state;
	emit(feed, "monetary");
	assert_int_equal(feed_reader_open(feed, 0, &reader), 0);
	assert_int_equal(feed_reader_next(reader, 10, &line, &len), 1);
	free(line);
	assert_int_equal(feed_reader_next(reader, 10, &line, &len), 0);
	emit(feed, "monetary");
	assert_int_equal(feed_reader_next(reader, 10, &line, &len), 2);
	free(line);
	feed_reader_close(reader);
	feed_close(feed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			feed_emit__reopen__ids_continue_and_mode_0600,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			feed_open__truncated_last_line__ignored, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			feed_emit__past_max_bytes__rotates_and_keeps, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			feed_reader_next__replay_then_live__no_gap_no_duplicate,
			setup, teardown),
		cmocka_unit_test(feed_reader_next__no_journal__follows_ring),
		cmocka_unit_test_setup_teardown(
			feed_emit__any_form__id_first_then_members, setup,
			teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
