/*
 * 'pgvigil feed --follow' across a restart of the server: the real client
 * binary against an in-process server on 127.0.0.1, the server stopped,
 * records emitted while it is down, the server started again from the
 * same journal. The client must print every id once, in order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "feed.h"
#include "http.h"
#include "metrics.h"

static struct feed *open_feed(const char *journal)
{
	struct feed *feed;
	char err[256];

	assert_int_equal(feed_open(journal, FEED_SYNC_ALWAYS, false, &feed,
				   err, sizeof(err)), 0);
	return feed;
}

static void emit(struct feed *feed, int n)
{
	struct json_object *record;

	while (n-- > 0) {
		record = json_object_new_object();
		json_object_object_add(record, "invariant",
				       json_object_new_string("monetary"));
		assert_true(feed_emit(feed, record) > 0);
		json_object_put(record);
	}
}

static struct http_server *serve(struct http_config *config, char *listen)
{
	struct http_server *server;
	char err[256] = "";

	config->listen = listen;
	if (http_start(config, &server, err, sizeof(err)))
		fail_msg("http_start: %s", err);
	return server;
}

static pid_t spawn_client(uint16_t port, const char *out)
{
	char listen[32];
	pid_t pid;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	pid = fork();
	if (pid == 0) {
		if (!freopen(out, "w", stdout))
			_exit(3);
		execl(PGV_SOURCE_DIR "/pgvigil", "pgvigil", "feed", "--listen",
		      listen, "--since", "0", "--follow", "--retries", "20",
		      (char *)NULL);
		_exit(4);
	}
	return pid;
}

static int count_lines(const char *path)
{
	FILE *file = fopen(path, "r");
	char line[4096];
	int n = 0;

	while (file && fgets(line, sizeof(line), file))
		n++;
	if (file)
		fclose(file);
	return n;
}

/* bounded: 20 s at most */
static void wait_lines(const char *path, int want)
{
	int i;

	for (i = 0; i < 200 && count_lines(path) < want; i++)
		usleep(100000);
	assert_int_equal(count_lines(path), want);
}

static void feed_client__server_restart__no_gap_no_duplicate(void **state)
{
	char dir[] = "/tmp/pgvigil-client-XXXXXX", journal[64], out[64];
	struct http_config config = { .keepalive_ms = 500 };
	struct http_server *server;
	char listen[32], line[4096], cmd[96];
	int status, want = 1;
	struct feed *feed;
	FILE *file;
	pid_t client;

	(void)state;
	assert_int_equal(access(PGV_SOURCE_DIR "/pgvigil", X_OK), 0);
	assert_non_null(mkdtemp(dir));
	snprintf(journal, sizeof(journal), "%s/journal", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	metrics_init();
	config.feed = feed = open_feed(journal);
	emit(feed, 3);
	server = serve(&config, "127.0.0.1:0");
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", http_port(server));
	client = spawn_client(http_port(server), out);
	wait_lines(out, 3);

	/* the daemon goes down; records arrive before it serves again */
	http_stop(server);
	feed_close(feed);
	config.feed = feed = open_feed(journal);
	emit(feed, 2);
	server = serve(&config, listen);
	emit(feed, 2);
	wait_lines(out, 7);

	kill(client, SIGTERM);
	waitpid(client, &status, 0);
	file = fopen(out, "r");
	while (fgets(line, sizeof(line), file)) {
		snprintf(cmd, sizeof(cmd), "{\"id\":%d,", want++);
		assert_int_equal(strncmp(line, cmd, strlen(cmd)), 0);
	}
	fclose(file);
	assert_int_equal(want, 8);
	http_stop(server);
	feed_close(feed);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(feed_client__server_restart__no_gap_no_duplicate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
