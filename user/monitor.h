/*
 * The monitor: turns captured events into violation records. Keeps a table
 * of backends (session context, sequence numbers, the violations of the
 * open transaction), classifies statements and utility targets against the
 * policy bindings of the backend's database, masks statement text, and
 * hands finished records to the feed once the transaction's outcome is
 * known. Runs on the daemon's reader thread only.
 */
#ifndef USER_MONITOR_H
#define USER_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "feed.h"
#include "pglayout.h"
#include "policy.h"

struct monitor;

struct monitor_options {
	const struct policy *policy;
	struct feed *feed;
	struct catalog *catalog;
	const struct pglayout_version *version;
	bool unmasked;			/* statements as captured */
	uint64_t hold_ns;		/* longest wait for an outcome */
	struct recorder *recorder;	/* flight recorder, or NULL */
	/* a transaction that inserted into the events table committed */
	void (*events_committed)(void *arg);
	/*
	 * An event came from a child of 'ppid', which is not watched: should
	 * it be (a watched server restarted under a new pid)? The callback
	 * calls monitor_watch itself when it says yes. NULL: never.
	 */
	bool (*adopt)(void *arg, uint32_t ppid);
	void *arg;
};

struct monitor_stats {
	uint64_t events;
	uint64_t statements[8];		/* by CmdType; [6] utility */
	uint64_t violations;
	uint64_t events_lost;		/* sequence gaps */
	uint64_t backends;
	uint64_t ignored;		/* events of unwatched servers */
	uint64_t own;			/* events of the catalog's backend */
	uint64_t wire_bytes;		/* client bytes captured */
	uint64_t wire_errors;		/* client protocol errors */
};

int monitor_new(const struct monitor_options *options, struct monitor **out);

/*
 * Watch only backends whose parent is one of 'pids' (NULL, 0: every
 * backend). The array is copied.
 */
void monitor_watch(struct monitor *monitor, const uint32_t *pids, size_t n);

/* Handle one record from the ring buffer. Returns 0 (bad input is counted). */
int monitor_handle(struct monitor *monitor, const void *data, size_t size);

/*
 * Periodic work, 'now_ns' on CLOCK_MONOTONIC: emit violations held longer
 * than hold_ns with outcome "in_progress", and report new probe drops.
 */
void monitor_tick(struct monitor *monitor, uint64_t now_ns,
		  const uint64_t drops[], size_t n_drops);

/*
 * Emit a record of the monitor's own (invariant "monitor") with 'rule' and
 * a detail object (taken over; may be NULL).
 */
void monitor_report(struct monitor *monitor, const char *rule,
		    struct json_object *detail);

/* Emit everything still held (at shutdown), outcome "in_progress". */
void monitor_flush(struct monitor *monitor);

void monitor_stats(const struct monitor *monitor, struct monitor_stats *out);

void monitor_free(struct monitor *monitor);

#endif /* USER_MONITOR_H */
