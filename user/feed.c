/*
 * The feed and its journal. See feed.h for the ordering guarantee.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "feed.h"

struct feed {
	pthread_mutex_t lock;
	int fd;			/* journal, or -1 */
	enum feed_sync sync;
	bool to_stdout;
	int64_t next_id;
	uint64_t count;
	uint64_t journal_bytes;
	time_t last_sync;
};

int feed_parse_sync(const char *name, enum feed_sync *sync)
{
	if (!strcmp(name, "always"))
		*sync = FEED_SYNC_ALWAYS;
	else if (!strcmp(name, "interval"))
		*sync = FEED_SYNC_INTERVAL;
	else if (!strcmp(name, "never"))
		*sync = FEED_SYNC_NEVER;
	else
		return -EINVAL;
	return 0;
}

/*
 * The id of the journal's last complete line. A line cut by a crash (no
 * newline) is ignored; the next record starts on a fresh line.
 */
static int64_t last_id(int fd, bool *needs_newline)
{
	char buf[65536];
	off_t size = lseek(fd, 0, SEEK_END), start;
	struct json_object *obj, *id;
	int64_t result = 0;
	ssize_t n;
	char *end, *line;

	*needs_newline = false;
	if (size <= 0)
		return 0;
	start = size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0;
	n = pread(fd, buf, size - start, start);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	end = buf + n;
	if (end[-1] != '\n') {
		*needs_newline = true;
		while (end > buf && end[-1] != '\n')
			end--;
	}
	while (end > buf && end[-1] == '\n')
		*--end = 0;
	line = end;
	while (line > buf && line[-1] != '\n')
		line--;
	obj = json_tokener_parse(line);
	if (obj && json_object_object_get_ex(obj, "id", &id))
		result = json_object_get_int64(id);
	json_object_put(obj);
	return result;
}

int feed_open(const char *journal, enum feed_sync sync, bool to_stdout,
	      struct feed **out, char *err, size_t err_len)
{
	struct feed *feed = calloc(1, sizeof(*feed));
	bool needs_newline = false;
	int ret;

	if (!feed)
		return -ENOMEM;
	pthread_mutex_init(&feed->lock, NULL);
	feed->fd = -1;
	feed->sync = sync;
	feed->to_stdout = to_stdout;
	if (journal) {
		feed->fd = open(journal, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC,
				0600);
		if (feed->fd < 0) {
			ret = -errno;
			snprintf(err, err_len, "cannot open journal '%s': %s",
				 journal, strerror(-ret));
			free(feed);
			return ret;
		}
		feed->next_id = last_id(feed->fd, &needs_newline);
		if (needs_newline && write(feed->fd, "\n", 1) != 1) {
			ret = -errno;
			snprintf(err, err_len, "cannot write journal '%s': %s",
				 journal, strerror(-ret));
			close(feed->fd);
			free(feed);
			return ret;
		}
	}
	feed->next_id += 1;
	*out = feed;
	return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= n;
	}
	return 0;
}

static int journal_append(struct feed *feed, const char *line, size_t len)
{
	time_t now;
	int ret;

	ret = write_all(feed->fd, line, len);
	if (ret)
		return ret;
	feed->journal_bytes += len;
	if (feed->sync == FEED_SYNC_ALWAYS)
		return fdatasync(feed->fd) ? -errno : 0;
	now = time(NULL);
	if (feed->sync == FEED_SYNC_INTERVAL && now != feed->last_sync) {
		feed->last_sync = now;
		return fdatasync(feed->fd) ? -errno : 0;
	}
	return 0;
}

int64_t feed_emit(struct feed *feed, struct json_object *record)
{
	struct json_object *numbered = json_object_new_object();
	const char *text;
	char *line;
	size_t len;
	int64_t id;
	int ret = 0;

	if (!numbered)
		return -ENOMEM;
	pthread_mutex_lock(&feed->lock);
	id = feed->next_id;
	json_object_object_add(numbered, "id", json_object_new_int64(id));
	json_object_object_foreach(record, key, value)
		json_object_object_add(numbered, key, json_object_get(value));
	text = json_object_to_json_string_ext(numbered, JSON_C_TO_STRING_PLAIN);
	len = strlen(text);
	line = malloc(len + 2);
	if (!line) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(line, text, len);
	line[len++] = '\n';
	if (feed->fd >= 0)
		ret = journal_append(feed, line, len);
	if (!ret) {
		/* in the journal: the id is spent whatever stdout does */
		feed->next_id++;
		feed->count++;
		if (feed->to_stdout)
			ret = write_all(STDOUT_FILENO, line, len);
	}
	free(line);
out:
	pthread_mutex_unlock(&feed->lock);
	json_object_put(numbered);
	return ret ? ret : id;
}

uint64_t feed_count(const struct feed *feed)
{
	return feed->count;
}

uint64_t feed_journal_bytes(const struct feed *feed)
{
	return feed->journal_bytes;
}

void feed_close(struct feed *feed)
{
	if (!feed)
		return;
	if (feed->fd >= 0) {
		fdatasync(feed->fd);
		close(feed->fd);
	}
	pthread_mutex_destroy(&feed->lock);
	free(feed);
}
