/*
 * The flight recorder: per backend (pid and backend start), the records of
 * the current transaction and the last N statements before it, in bounded
 * memory, and the forensic dumps written from them.
 *
 * A record is whatever JSON object the daemon builds for a statement (the
 * violation record's fields: time, command, statement with its full text,
 * relations with OIDs and names, function_stack, depth, params); the
 * recorder keeps it as serialized text, cut to a size bound.
 *
 * On a violation the backend's records are copied into a pending dump,
 * which goes on collecting what that backend does until its transaction
 * ends, a statement or time bound is hit, or the backend exits; then the
 * dump is written. SIGUSR1 and 'pgvigil dump' ask for dumps of live
 * backends, written at the next recorder_tick.
 *
 * Threads: every function but recorder_request is called from one thread
 * (the daemon's classifier), which therefore also writes the dump files.
 * recorder_request is async-signal-safe and may run anywhere. Shutdown:
 * stop feeding records, recorder_flush, then recorder_free.
 */
#ifndef USER_RECORDER_H
#define USER_RECORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dumpfile.h"

struct json_object;
struct recorder;

/*
 * Mask the literals of 'sql' into 'buf' of 'len' bytes; returns the
 * masked text (in buf or static), or NULL when it cannot, in which case
 * the recorder writes a placeholder, never the text.
 */
typedef const char *(*recorder_mask_fn)(const char *sql, char *buf,
					size_t len);

/* What one dump came to, handed to on_dump. */
struct recorder_dump_result {
	const char *path;	/* NULL when no file was made */
	const char *reason;	/* violation, signal, request, exit */
	uint32_t pid;		/* 0: every backend */
	int error;		/* 0 or a negative errno */
	uint64_t records;
	uint8_t seal_hash[DUMPFILE_HASH_LEN];	/* record it elsewhere */
};

/* Zero fields take the default given. */
struct recorder_config {
	int statements;		/* history per backend (policy: 64) */
	int xact_records;	/* current transaction: 4 * statements */
	int follow_statements;	/* after a violation: statements */
	int follow_ms;		/* after a violation: 10000 */
	int min_interval_ms;	/* between violation dumps (policy: 1000) */
	int backends;		/* tracked at once: 4096 */
	size_t record_bytes;	/* one record's text: 16 KiB */
	size_t backend_bytes;	/* one backend's records: 1 MiB */
	size_t total_bytes;	/* everything kept: 64 MiB */
	const char *directory;	/* where dumps go; made 0700 if absent */
	/* NULL: dumps are not encrypted and mask_fn is required */
	const struct dumpfile_key *key;
	recorder_mask_fn mask_fn;
	const char *policy_path;
	const char *policy_digest;
	/* the monitor's counters as a new JSON object, or NULL */
	struct json_object *(*counters_fn)(void *arg);
	/* told of every dump written or failed; may log and count */
	void (*on_dump)(void *arg, const struct recorder_dump_result *result);
	void *arg;
	uint64_t (*clock_ms)(void);	/* NULL: CLOCK_MONOTONIC */
};

struct recorder_stats {
	uint64_t backends;
	uint64_t records;	/* held now */
	uint64_t bytes;		/* held now, pending dumps included */
	uint64_t records_dropped;	/* transaction records lost to bounds */
	uint64_t pending;
	uint64_t dumps_written;
	uint64_t dumps_failed;
	uint64_t dumps_suppressed;	/* rate limit or too many pending */
};

/*
 * Make a recorder. Strings and the key in 'config' are borrowed and must
 * outlive it. Returns 0 or -EINVAL (no directory, or neither key nor
 * mask_fn), -ENOMEM.
 */
int recorder_create(const struct recorder_config *config,
		    struct recorder **out);

/*
 * The session context of a backend (user, database, application, client,
 * …), borrowed, kept until the backend exits. A pid seen with another
 * start is a new backend: the old one is ended as by backend_exit.
 * Returns 0 or a negative errno (-ENOSPC: too many backends).
 */
int recorder_session(struct recorder *rec, uint32_t pid, uint64_t start,
		     struct json_object *session);

/* A statement's record, borrowed. Same returns as recorder_session. */
int recorder_add(struct recorder *rec, uint32_t pid, uint64_t start,
		 struct json_object *record);

/*
 * The backend's transaction ended ("committed", "aborted"): its records
 * become history, and a pending dump of it is written now.
 */
int recorder_xact_end(struct recorder *rec, uint32_t pid, uint64_t start,
		      const char *outcome);

/*
 * A violation by this backend, after recorder_add of the statement that
 * caused it; 'violation' (borrowed) is the feed's record as one JSON
 * object, before its id and outcome are known. Starts a pending
 * dump, or joins the one in progress. Returns 0, or -EBUSY when the rate
 * limit or the bound on pending dumps suppressed it (counted).
 */
int recorder_violation(struct recorder *rec, uint32_t pid, uint64_t start,
		       const char *violation);

/* The backend exited: its pending dump is written, its records freed. */
void recorder_backend_exit(struct recorder *rec, uint32_t pid,
			   uint64_t start);

/*
 * What is kept for 'pid' as a new JSON object ({"pid", "session",
 * "records": [...]}), unmasked, or NULL when it is unknown.
 */
struct json_object *recorder_snapshot(struct recorder *rec, uint32_t pid);

/*
 * Dump 'pid' (0: every backend) now, for 'reason'. The path written goes
 * to 'path' (may be NULL). Returns 0, -ENOENT for an unknown pid, or the
 * error of the write (also reported to on_dump).
 */
int recorder_dump(struct recorder *rec, uint32_t pid, const char *reason,
		  char *path, size_t path_len);

/*
 * Ask for a dump of 'pid' (0: every backend) at the next recorder_tick.
 * Async-signal-safe and thread-safe; requests beyond a few at once
 * become one dump of every backend.
 */
void recorder_request(struct recorder *rec, int32_t pid);

/*
 * Install a SIGUSR1 handler that calls recorder_request for 'rec': a
 * value sent with sigqueue(3) names a pid, a plain kill means every
 * backend. Returns 0 or a negative errno.
 */
int recorder_install_sigusr1(struct recorder *rec);

/*
 * Do what is due: requested dumps, pending dumps past their time bound.
 * Call at least every few hundred milliseconds, also when idle.
 */
void recorder_tick(struct recorder *rec);

/* Write every pending dump now (shutdown). */
void recorder_flush(struct recorder *rec);

void recorder_stats(const struct recorder *rec, struct recorder_stats *st);

/* Free everything; pending dumps not flushed are lost. NULL is fine. */
void recorder_free(struct recorder *rec);

#endif /* USER_RECORDER_H */
