/*
 * The feed, its journal and its readers. See feed.h for the ordering
 * guarantee, the rotation scheme and the threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "feed.h"
#include "metrics.h"

/* recent lines kept for live readers; older ones are read from the journal */
#define FEED_RING 4096
/* rotated files looked at when a reader searches the journal */
#define FEED_MAX_KEEP 64

struct feed_line {
	int64_t id;
	char *text;
	size_t len;
};

struct feed {
	pthread_mutex_t lock;
	pthread_cond_t emitted;
	int fd;			/* journal, or -1 */
	char *path;
	enum feed_sync sync;
	bool to_stdout;
	bool shutting_down;
	int64_t next_id;
	uint64_t count;
	uint64_t journal_bytes;
	uint64_t rotations;
	off_t segment_bytes;	/* size of the active journal file */
	long long max_bytes;
	int keep;
	time_t last_sync;
	struct feed_line ring[FEED_RING];
	size_t ring_start;	/* index of the oldest line */
	size_t ring_count;
	/* numbered, not yet in the journal: written as one batch */
	struct feed_line *pending;
	size_t n_pending;
	size_t pending_cap;
	int last_error;		/* of the last journal write, 0 if it worked */
	uint64_t unjournaled;	/* sent without the journal (backlog full) */
};

/* the records one thread numbers between feed_batch_begin and _end */
static __thread int batch_depth;

struct feed_reader {
	struct feed *feed;
	int64_t next;		/* id wanted next */
	FILE *file;		/* journal file being replayed, or NULL */
	int64_t file_first;	/* first id in 'file' */
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

/* The id of a journal line, or 0 for a line that is not a record. */
static int64_t line_id(const char *line)
{
	struct json_object *obj = json_tokener_parse(line), *id;
	int64_t result = 0;

	if (obj && json_object_object_get_ex(obj, "id", &id))
		result = json_object_get_int64(id);
	json_object_put(obj);
	return result;
}

/*
 * The highest id among the journal's last complete lines. A line cut by a
 * crash (no newline) was never sent: it is cut off, and *cut_at says
 * where. A line that does not parse is passed over, so one damaged line
 * cannot make ids start again from 1.
 */
static int64_t last_id(int fd, off_t *cut_at)
{
	static char buf[65536];
	off_t size = lseek(fd, 0, SEEK_END), start;
	int64_t id, best = 0;
	ssize_t n;
	char *end, *line;

	*cut_at = -1;
	if (size <= 0)
		return 0;
	start = size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0;
	n = pread(fd, buf, size - start, start);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	end = buf + n;
	if (end[-1] != '\n') {
		while (end > buf && end[-1] != '\n')
			end--;
		*cut_at = start + (end - buf);
	}
	while (end > buf) {
		while (end > buf && end[-1] == '\n')
			*--end = 0;
		line = end;
		while (line > buf && line[-1] != '\n')
			line--;
		if (line == buf && start > 0)
			break;		/* may be the tail of a line */
		id = line_id(line);
		if (id > best)
			best = id;
		if (best)
			break;
		end = line;
	}
	return best;
}

/* "FILE" for k == 0, "FILE.k" otherwise */
static void segment_path(const struct feed *feed, int k, char *buf,
			 size_t len)
{
	if (k == 0)
		snprintf(buf, len, "%s", feed->path);
	else
		snprintf(buf, len, "%s.%d", feed->path, k);
}

/*
 * After a rotation and a restart the active file may be empty: the last id
 * is then in FILE.1.
 */
static int64_t rotated_last_id(struct feed *feed)
{
	char path[PATH_MAX];
	off_t unused;
	int64_t id;
	int fd;

	segment_path(feed, 1, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	id = last_id(fd, &unused);
	close(fd);
	return id;
}

static int journal_open(struct feed *feed, char *err, size_t err_len)
{
	struct stat st;
	off_t cut_at;
	int ret;

	feed->fd = open(feed->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC,
			0600);
	if (feed->fd < 0) {
		ret = -errno;
		snprintf(err, err_len, "cannot open journal '%s': %s",
			 feed->path, strerror(-ret));
		return ret;
	}
	/*
	 * A journal is a regular file: '--feed /dev/null' must not chmod a
	 * device (it did, and broke /dev/null for everyone on the host).
	 */
	if (fstat(feed->fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(err, err_len, "journal '%s' is not a regular file",
			 feed->path);
		return -EINVAL;
	}
	/* an existing journal keeps its mode otherwise; records are private */
	if (fchmod(feed->fd, 0600)) {
		ret = -errno;
		snprintf(err, err_len, "cannot chmod journal '%s': %s",
			 feed->path, strerror(-ret));
		return ret;
	}
	/* one writer per journal: two daemons would hand out the same ids */
	if (flock(feed->fd, LOCK_EX | LOCK_NB)) {
		ret = -errno;
		snprintf(err, err_len, "journal '%s' is in use by another "
			 "process: %s", feed->path, strerror(-ret));
		return ret;
	}
	feed->next_id = last_id(feed->fd, &cut_at);
	if (cut_at >= 0 && ftruncate(feed->fd, cut_at)) {
		ret = -errno;
		snprintf(err, err_len, "cannot cut the torn last line of "
			 "journal '%s': %s", feed->path, strerror(-ret));
		return ret;
	}
	feed->segment_bytes = lseek(feed->fd, 0, SEEK_END);
	if (!feed->next_id && !feed->segment_bytes)
		feed->next_id = rotated_last_id(feed);
	return 0;
}

int feed_open(const char *journal, enum feed_sync sync, bool to_stdout,
	      struct feed **out, char *err, size_t err_len)
{
	struct feed *feed = calloc(1, sizeof(*feed));
	int ret = 0;

	if (!feed)
		return -ENOMEM;
	pthread_mutex_init(&feed->lock, NULL);
	pthread_cond_init(&feed->emitted, NULL);
	feed->fd = -1;
	feed->sync = sync;
	feed->to_stdout = to_stdout;
	if (journal) {
		feed->path = strdup(journal);
		ret = feed->path ? journal_open(feed, err, err_len) : -ENOMEM;
	}
	if (ret) {
		feed_close(feed);
		return ret;
	}
	feed->next_id += 1;
	*out = feed;
	return 0;
}

void feed_set_rotation(struct feed *feed, long long max_bytes, int keep)
{
	feed->max_bytes = max_bytes > 0 ? max_bytes : 0;
	if (keep < 1)
		keep = 1;
	feed->keep = keep < FEED_MAX_KEEP ? keep : FEED_MAX_KEEP;
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

/* A rename or a new file is durable only once its directory is synced */
static void sync_directory(const char *path)
{
	char copy[PATH_MAX];
	int fd;

	snprintf(copy, sizeof(copy), "%s", path);
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	fsync(fd);
	close(fd);
}

/* Called with the lock held, after the record that crossed max_bytes */
static int journal_rotate(struct feed *feed)
{
	char from[PATH_MAX], to[PATH_MAX];
	int k, fd;

	if (fdatasync(feed->fd))
		return -errno;
	segment_path(feed, feed->keep, to, sizeof(to));
	unlink(to);
	for (k = feed->keep - 1; k >= 0; k--) {
		segment_path(feed, k, from, sizeof(from));
		segment_path(feed, k + 1, to, sizeof(to));
		if (rename(from, to) && errno != ENOENT)
			return -errno;
	}
	fd = open(feed->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	flock(fd, LOCK_EX | LOCK_NB);
	close(feed->fd);
	feed->fd = fd;
	feed->segment_bytes = 0;
	feed->rotations++;
	sync_directory(feed->path);
	return 0;
}

/*
 * Write the pending lines to the journal as one batch and sync it (by the
 * fsync policy). A failed write (a full disk) is cut back off the file so
 * no torn line stays, and the lines stay pending, ids and all, for the
 * next try. Called with the lock held.
 */
static int journal_write_pending(struct feed *feed)
{
	off_t before = feed->segment_bytes;
	size_t i, total = 0;
	char *buf, *p;
	time_t now;
	int ret;

	for (i = 0; i < feed->n_pending; i++)
		total += feed->pending[i].len;
	buf = malloc(total ? total : 1);
	if (!buf)
		return -ENOMEM;
	for (p = buf, i = 0; i < feed->n_pending; i++) {
		memcpy(p, feed->pending[i].text, feed->pending[i].len);
		p += feed->pending[i].len;
	}
	ret = write_all(feed->fd, buf, total);
	free(buf);
	if (!ret && feed->sync == FEED_SYNC_ALWAYS && fdatasync(feed->fd))
		ret = -errno;
	if (ret) {
		if (ftruncate(feed->fd, before) == 0)
			feed->segment_bytes = before;
		return ret;
	}
	feed->journal_bytes += total;
	feed->segment_bytes += total;
	now = time(NULL);
	if (feed->sync == FEED_SYNC_INTERVAL && now != feed->last_sync) {
		feed->last_sync = now;
		fdatasync(feed->fd);
	}
	/* the records are in; a failed rotation is retried on the next one */
	if (feed->max_bytes && feed->segment_bytes >= feed->max_bytes)
		journal_rotate(feed);
	return 0;
}

/* Called with the lock held; the ring takes ownership of 'text' */
static void ring_push(struct feed *feed, int64_t id, char *text, size_t len)
{
	struct feed_line *slot;

	if (feed->ring_count == FEED_RING) {
		free(feed->ring[feed->ring_start].text);
		feed->ring_start = (feed->ring_start + 1) % FEED_RING;
		feed->ring_count--;
	}
	slot = &feed->ring[(feed->ring_start + feed->ring_count) % FEED_RING];
	slot->id = id;
	slot->text = text;
	slot->len = len;
	feed->ring_count++;
}

/* 'value' in decimal at 'out' (room for 20 bytes); returns its length. */
static size_t put_decimal(char *out, int64_t value)
{
	uint64_t magnitude = value < 0 ? -(uint64_t)value : (uint64_t)value;
	char digits[20], *p = digits + sizeof(digits);
	size_t len;

	do {
		*--p = (char)('0' + magnitude % 10);
		magnitude /= 10;
	} while (magnitude);
	if (value < 0)
		*--p = '-';
	len = (size_t)(digits + sizeof(digits) - p);
	memcpy(out, p, len);
	return len;
}

/*
 * The line {"id":N,<members>}\n in one allocation: the members were
 * serialised once by the caller and are copied once, behind the id.
 */
static char *numbered_line(int64_t id, const struct iovec *members, int n,
			   size_t *len)
{
	size_t total = 0, at;
	char *line;
	int i;

	for (i = 0; i < n; i++)
		total += members[i].iov_len;
	line = malloc(total + 32);
	if (!line)
		return NULL;
	memcpy(line, "{\"id\":", 6);
	at = 6 + put_decimal(line + 6, id);
	if (total)
		line[at++] = ',';
	for (i = 0; i < n; i++) {
		memcpy(line + at, members[i].iov_base, members[i].iov_len);
		at += members[i].iov_len;
	}
	memcpy(line + at, "}\n", 3);
	*len = at + 2;
	return line;
}

/*
 * A record's members as text: the record serialised without its braces.
 * An "id" of its own is left out, as the feed numbers records. Returns a
 * json-c string (valid until 'record' changes) or a copy to free in *copy.
 */
static const char *record_members(struct json_object *record, size_t *len,
				  struct json_object **copy)
{
	struct json_object *source = record;
	const char *text;

	*copy = NULL;
	if (json_object_object_get_ex(record, "id", NULL)) {
		*copy = json_object_new_object();
		if (!*copy)
			return NULL;
		json_object_object_foreach(record, key, value)
			if (strcmp(key, "id"))
				json_object_object_add(*copy, key,
						       json_object_get(value));
		source = *copy;
	}
	text = json_object_to_json_string_ext(source, JSON_C_TO_STRING_PLAIN);
	if (!text)
		return NULL;
	*len = strlen(text) - 2;
	return text + 1;
}

#define FEED_PENDING_MAX 1000000	/* lines held while the journal fails */

/* Send the journaled (or journal-less) pending lines on. Lock held. */
static int release_pending(struct feed *feed)
{
	int ret = 0;
	size_t i;

	for (i = 0; i < feed->n_pending; i++) {
		struct feed_line *line = &feed->pending[i];

		if (feed->to_stdout && !ret)
			ret = write_all(STDOUT_FILENO, line->text, line->len);
		ring_push(feed, line->id, line->text, line->len);
	}
	feed->count += feed->n_pending;
	feed->n_pending = 0;
	pthread_cond_broadcast(&feed->emitted);
	return ret;
}

/*
 * Journal and send what is pending. While the journal fails, lines wait
 * (a record reaches nobody before it is on disk); past FEED_PENDING_MAX
 * they are sent without it, and counted, rather than held without bound.
 */
static int flush_locked(struct feed *feed)
{
	int ret = 0;

	if (!feed->n_pending)
		return feed->last_error;
	if (feed->fd >= 0)
		ret = journal_write_pending(feed);
	feed->last_error = ret;
	if (ret && feed->n_pending < FEED_PENDING_MAX)
		return ret;
	if (ret)
		feed->unjournaled += feed->n_pending;
	return release_pending(feed) ? -EPIPE : ret;
}

static int queue_line(struct feed *feed, int64_t id, char *text, size_t len)
{
	struct feed_line *grown;

	if (feed->n_pending == feed->pending_cap) {
		size_t cap = feed->pending_cap ? feed->pending_cap * 2 : 64;

		grown = realloc(feed->pending, cap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		feed->pending = grown;
		feed->pending_cap = cap;
	}
	feed->pending[feed->n_pending].id = id;
	feed->pending[feed->n_pending].text = text;
	feed->pending[feed->n_pending].len = len;
	feed->n_pending++;
	return 0;
}

int64_t feed_emit_members(struct feed *feed, const struct iovec *members,
			  int n, const char *invariant, const char *rule)
{
	char *line;
	size_t len;
	int64_t id;
	int ret;

	pthread_mutex_lock(&feed->lock);
	id = feed->next_id;
	line = numbered_line(id, members, n, &len);
	if (!line || queue_line(feed, id, line, len)) {
		pthread_mutex_unlock(&feed->lock);
		free(line);
		return -ENOMEM;
	}
	/* numbered: the id is spent, written now or with the batch */
	feed->next_id++;
	metrics_inc(METRIC_VIOLATIONS, invariant, rule);
	ret = batch_depth ? 0 : flush_locked(feed);
	pthread_mutex_unlock(&feed->lock);
	return ret ? ret : id;
}

int64_t feed_emit(struct feed *feed, struct json_object *record)
{
	struct json_object *invariant = NULL, *rule = NULL, *copy;
	struct iovec members;
	int64_t id;

	members.iov_base = (void *)record_members(record, &members.iov_len,
						  &copy);
	if (!members.iov_base) {
		json_object_put(copy);
		return -ENOMEM;
	}
	json_object_object_get_ex(record, "invariant", &invariant);
	json_object_object_get_ex(record, "rule", &rule);
	id = feed_emit_members(feed, &members, 1,
			       json_object_get_string(invariant),
			       json_object_get_string(rule));
	json_object_put(copy);
	return id;
}

void feed_batch_begin(struct feed *feed)
{
	(void)feed;
	batch_depth++;
}

int feed_flush(struct feed *feed)
{
	int ret;

	pthread_mutex_lock(&feed->lock);
	ret = flush_locked(feed);
	pthread_mutex_unlock(&feed->lock);
	return ret;
}

int feed_batch_end(struct feed *feed)
{
	if (--batch_depth > 0)
		return 0;
	return feed_flush(feed);
}

size_t feed_pending(struct feed *feed)
{
	size_t n;

	pthread_mutex_lock(&feed->lock);
	n = feed->n_pending;
	pthread_mutex_unlock(&feed->lock);
	return n;
}

uint64_t feed_count(const struct feed *feed)
{
	return feed->count;
}

uint64_t feed_journal_bytes(const struct feed *feed)
{
	return feed->journal_bytes;
}

uint64_t feed_rotations(const struct feed *feed)
{
	return feed->rotations;
}

int64_t feed_next_id(struct feed *feed)
{
	int64_t id;

	pthread_mutex_lock(&feed->lock);
	id = feed->next_id;
	pthread_mutex_unlock(&feed->lock);
	return id;
}

void feed_shutdown(struct feed *feed)
{
	pthread_mutex_lock(&feed->lock);
	feed->shutting_down = true;
	pthread_cond_broadcast(&feed->emitted);
	pthread_mutex_unlock(&feed->lock);
}

void feed_close(struct feed *feed)
{
	size_t i;

	if (!feed)
		return;
	flush_locked(feed);
	for (i = 0; i < feed->n_pending; i++)
		free(feed->pending[i].text);
	free(feed->pending);
	if (feed->fd >= 0) {
		fdatasync(feed->fd);
		close(feed->fd);
	}
	for (i = 0; i < feed->ring_count; i++)
		free(feed->ring[(feed->ring_start + i) % FEED_RING].text);
	pthread_cond_destroy(&feed->emitted);
	pthread_mutex_destroy(&feed->lock);
	free(feed->path);
	free(feed);
}

int feed_reader_open(struct feed *feed, int64_t after,
		     struct feed_reader **out)
{
	struct feed_reader *reader = calloc(1, sizeof(*reader));

	if (!reader)
		return -ENOMEM;
	reader->feed = feed;
	reader->next = after >= 0 ? after + 1 : 1;
	*out = reader;
	return 0;
}

void feed_reader_close(struct feed_reader *reader)
{
	if (!reader)
		return;
	if (reader->file)
		fclose(reader->file);
	free(reader);
}

/* The id of a journal file's first record; 0 if absent or empty. */
static int64_t segment_first_id(const char *path)
{
	FILE *file = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	int64_t id = 0;

	if (!file)
		return 0;
	while (!id && getline(&line, &cap, file) > 0)
		id = line_id(line);
	free(line);
	fclose(file);
	return id;
}

/*
 * Open the journal file holding the reader's next id: the newest file
 * whose first id is not past it; failing that the oldest file after a
 * hole retention left, moving the cursor to it. Called with the feed lock
 * held so no rotation renames files under the search. Returns 0 or -ENOENT.
 */
static int reader_find_segment(struct feed_reader *reader, int64_t skip)
{
	struct feed *feed = reader->feed;
	int64_t first, best_first = 0, after_first = 0;
	int k, best = -1, after = -1;
	char path[PATH_MAX];

	for (k = feed->keep; k >= 0; k--) {
		segment_path(feed, k, path, sizeof(path));
		first = segment_first_id(path);
		if (!first || first == skip)
			continue;
		if (first <= reader->next && first > best_first) {
			best = k;
			best_first = first;
		} else if (first > reader->next &&
			   (!after_first || first < after_first)) {
			after = k;
			after_first = first;
		}
	}
	if (best < 0 && after < 0)
		return -ENOENT;
	if (best < 0) {
		best = after;
		best_first = after_first;
		reader->next = after_first;
	}
	segment_path(feed, best, path, sizeof(path));
	reader->file = fopen(path, "re");
	reader->file_first = best_first;
	return reader->file ? 0 : -ENOENT;
}

/*
 * Replay the next record from the journal files, outside the feed lock.
 * Returns its id with the line, or 0 when the journal has nothing at or
 * after the cursor that is older than the live ring.
 */
static int64_t reader_replay(struct feed_reader *reader, char **line,
			     size_t *len)
{
	int64_t id, exhausted = 0;
	size_t cap;
	ssize_t n;

	for (;;) {
		if (!reader->file) {
			pthread_mutex_lock(&reader->feed->lock);
			n = reader->feed->path ?
				reader_find_segment(reader, exhausted) : -ENOENT;
			pthread_mutex_unlock(&reader->feed->lock);
			if (n)
				return 0;
		}
		*line = NULL;
		cap = 0;
		while ((n = getline(line, &cap, reader->file)) > 0) {
			/* a line cut by a crash has no newline: not a record */
			if ((*line)[n - 1] != '\n')
				break;
			id = line_id(*line);
			if (id >= reader->next) {
				*len = n;
				reader->next = id + 1;
				return id;
			}
		}
		free(*line);
		*line = NULL;
		fclose(reader->file);
		reader->file = NULL;
		if (exhausted == reader->file_first)
			return 0;
		exhausted = reader->file_first;
	}
}

/* Called with the lock held: the ring line for the cursor, if it holds it */
static struct feed_line *ring_find(struct feed *feed, int64_t id)
{
	struct feed_line *oldest;

	if (!feed->ring_count)
		return NULL;
	oldest = &feed->ring[feed->ring_start];
	if (id < oldest->id || id >= feed->next_id)
		return NULL;
	return &feed->ring[(feed->ring_start + (id - oldest->id)) % FEED_RING];
}

static int wait_emitted(struct feed *feed, int timeout_ms)
{
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	return pthread_cond_timedwait(&feed->emitted, &feed->lock, &deadline);
}

/* Called with the lock held: copy the ring's line for the cursor */
static int64_t ring_take(struct feed_reader *reader, struct feed_line *slot,
			 char **line, size_t *len)
{
	*line = malloc(slot->len + 1);
	if (!*line)
		return -ENOMEM;
	memcpy(*line, slot->text, slot->len + 1);
	*len = slot->len;
	reader->next = slot->id + 1;
	return slot->id;
}

int64_t feed_reader_next(struct feed_reader *reader, int timeout_ms,
			 char **line, size_t *len)
{
	struct feed *feed = reader->feed;
	struct feed_line *slot;
	int64_t id = 0;

	pthread_mutex_lock(&feed->lock);
	for (;;) {
		if (feed->shutting_down) {
			id = -ESHUTDOWN;
			break;
		}
		if (reader->next >= feed->next_id) {
			if (wait_emitted(feed, timeout_ms) == ETIMEDOUT)
				break;
			continue;
		}
		slot = ring_find(feed, reader->next);
		if (slot) {
			id = ring_take(reader, slot, line, len);
			break;
		}
		pthread_mutex_unlock(&feed->lock);
		id = reader_replay(reader, line, len);
		pthread_mutex_lock(&feed->lock);
		if (id > 0 && id < feed->next_id)
			break;
		if (id > 0) {
			/* written but not yet synced: wait for it in the ring */
			free(*line);
			reader->next = id;
		} else if (feed->ring_count &&
			   reader->next < feed->ring[feed->ring_start].id) {
			/* nothing older left on disk: carry on from the ring */
			reader->next = feed->ring[feed->ring_start].id;
		} else if (!feed->ring_count) {
			reader->next = feed->next_id;
		}
		id = 0;
	}
	pthread_mutex_unlock(&feed->lock);
	return id;
}
