/*
 * The violation feed: numbers each record, prints it on stdout as one JSON
 * line and appends it to the journal when there is one. Ids increase by one
 * per record and continue across restarts from the journal's last record.
 * A record is written to the journal (and synced, by the policy's fsync
 * setting) before it is printed, so nothing printed is lost to a crash.
 *
 * Rotation: when a journal file passes max_bytes it is renamed FILE.1 (the
 * older ones shift to FILE.2 ... FILE.keep, the oldest beyond 'keep' is
 * deleted) and a fresh FILE is started; ids carry on.
 *
 * Subscribers (the HTTP /feed streams) read with a feed_reader: a cursor
 * on ids, served from an in-memory ring of recent lines, or from the
 * journal files when the cursor is older than the ring. Since every line
 * is numbered, journaled and only then put in the ring under one lock, a
 * reader sees each id once, in order, with no gap (unless retention has
 * already deleted it, or there is no journal and it left the ring).
 *
 * Threads: the classifier thread calls feed_emit; any number of HTTP
 * threads own one reader each. One mutex guards ids, the journal fd and
 * the ring; a condition variable wakes readers. Journal reads by readers
 * happen outside the lock on their own FILE. Shutdown order: feed_shutdown
 * (readers return -ESHUTDOWN), stop the threads that hold readers, close
 * the readers, then feed_close.
 */
#ifndef USER_FEED_H
#define USER_FEED_H

#include <stdbool.h>
#include <stdint.h>

struct iovec;
struct json_object;
struct feed;

enum feed_sync { FEED_SYNC_ALWAYS, FEED_SYNC_INTERVAL, FEED_SYNC_NEVER };

/*
 * Open the feed. 'journal' may be NULL (stdout only). The journal is made
 * with mode 0600 if absent; its last complete record gives the next id.
 * Returns 0 or a negative errno with a message in err.
 */
int feed_open(const char *journal, enum feed_sync sync, bool to_stdout,
	      struct feed **out, char *err, size_t err_len);

/*
 * Number the record and write it out. Takes a reference of 'record' only for
 * the call. Returns the id given (from 1), or a negative errno.
 */
int64_t feed_emit(struct feed *feed, struct json_object *record);

/*
 * The same for a record already serialised: 'members' are pieces of the
 * text between its braces, written one after another (the first without a
 * leading comma), and the line is {"id":N,<members>}. 'invariant' and
 * 'rule' label the violation count. Returns as feed_emit.
 */
int64_t feed_emit_members(struct feed *feed, const struct iovec *members,
			  int n, const char *invariant, const char *rule);

/*
 * Group commit. Between feed_batch_begin and feed_batch_end, the records
 * this thread emits are numbered at once but journaled (with one sync) and
 * sent only at feed_batch_end; elsewhere each feed_emit writes through.
 * feed_batch_end returns 0 or the journal's error: the records then stay
 * pending, with their ids, and go out with a later flush. Per thread.
 */
void feed_batch_begin(struct feed *feed);
int feed_batch_end(struct feed *feed);

/* Retry what is pending; returns 0 or the journal's error. */
int feed_flush(struct feed *feed);

/* Records numbered but not yet journaled and sent. */
size_t feed_pending(struct feed *feed);

/* Records emitted since open. */
uint64_t feed_count(const struct feed *feed);

/* Bytes appended to the journal since open. */
uint64_t feed_journal_bytes(const struct feed *feed);

/*
 * Rotate the journal when it passes max_bytes (0: never), keeping 'keep'
 * rotated files. Call once after feed_open, before threads use the feed.
 */
void feed_set_rotation(struct feed *feed, long long max_bytes, int keep);

/* Journal files rotated since open. */
uint64_t feed_rotations(const struct feed *feed);

/* The id the next record will get (last id + 1). */
int64_t feed_next_id(struct feed *feed);

/* Wake every reader; from now on feed_reader_next returns -ESHUTDOWN. */
void feed_shutdown(struct feed *feed);

/* Close the journal and free the feed. Readers must be closed first. */
void feed_close(struct feed *feed);

struct feed_reader;

/*
 * A cursor that will return the records with id > 'after' (0: from the
 * first record the journal still holds). Returns 0 or -ENOMEM.
 */
int feed_reader_open(struct feed *feed, int64_t after,
		     struct feed_reader **out);

/*
 * The next record: waits up to timeout_ms for one to be emitted. Returns
 * its id (> 0) with a malloc'd line (newline included, caller frees) in
 * *line, 0 on timeout, -ESHUTDOWN after feed_shutdown, or a negative errno.
 */
int64_t feed_reader_next(struct feed_reader *reader, int timeout_ms,
			 char **line, size_t *len);

void feed_reader_close(struct feed_reader *reader);

/* Parse "always", "interval" or "never". */
int feed_parse_sync(const char *name, enum feed_sync *sync);

#endif /* USER_FEED_H */
