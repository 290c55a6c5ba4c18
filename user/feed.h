/*
 * The violation feed: numbers each record, prints it on stdout as one JSON
 * line and appends it to the journal when there is one. Ids increase by one
 * per record and continue across restarts from the journal's last record.
 * A record is written to the journal (and synced, by the policy's fsync
 * setting) before it is printed, so nothing printed is lost to a crash.
 * Thread-safe: one mutex orders ids and lines.
 */
#ifndef USER_FEED_H
#define USER_FEED_H

#include <stdbool.h>
#include <stdint.h>

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

/* Records emitted since open. */
uint64_t feed_count(const struct feed *feed);

/* Bytes appended to the journal since open. */
uint64_t feed_journal_bytes(const struct feed *feed);

void feed_close(struct feed *feed);

/* Parse "always", "interval" or "never". */
int feed_parse_sync(const char *name, enum feed_sync *sync);

#endif /* USER_FEED_H */
