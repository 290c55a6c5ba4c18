/*
 * Continuous hash verification for 'pgvigil run'. One control thread owns
 * the verified head (seq and hash of the last event checked) and runs, one
 * at a time:
 *   - a full sweep at start and every hash_integrity.sweep_interval
 *     seconds (never again if 0), with the pool of verify_run and the
 *     checkpoints, reporting gaps;
 *   - an incremental run from head + 1 to the current last seq whenever
 *     verifier_kick was called since the previous run. Kicks coalesce; a
 *     kick during a run is served right after it, so new events are
 *     verified within a second unless a sweep is in progress.
 * After a run without findings the new head is appended to the checkpoint
 * file (at most once a second), when the policy names one.
 * Other threads only kick and read the counters, under the verifier's
 * mutex. verifier_stop wakes the control thread, which finishes its current
 * run (a sweep of a large ledger can take seconds) and exits; then it is
 * joined and everything freed.
 */
#ifndef USER_VERIFIER_H
#define USER_VERIFIER_H

#include <stddef.h>
#include <stdint.h>

struct policy;
struct feed;
struct verifier;

struct verifier_stats {
	uint64_t events_verified;	/* over all runs */
	uint64_t postings_verified;
	uint64_t findings;
	uint64_t incremental_runs;
	uint64_t sweeps;
	uint64_t errors;		/* runs that failed (database down, ...) */
	uint64_t checkpoints;		/* lines appended */
	int64_t head_seq;		/* 0 until something was verified */
};

/*
 * Start the control thread; the first sweep starts at once. 'policy' and
 * 'feed' must outlive the verifier; findings go to 'feed'. 'threads' is
 * the pool size of sweeps (at least 1). Returns 0 or a negative errno with
 * a message (a bad checkpoint key, no thread).
 */
int verifier_start(const struct policy *policy, struct feed *feed, int threads,
		   struct verifier **out, char *err, size_t err_len);

/*
 * New events were committed to the events table (the probes saw it).
 * Cheap, never blocks on a run; callable from any thread.
 */
void verifier_kick(struct verifier *verifier);

/* A copy of the counters; any thread. */
void verifier_get_stats(struct verifier *verifier, struct verifier_stats *out);

/*
 * The message of the last failed run, "" if none, into 'buf'; any thread.
 * The control thread keeps retrying at the next kick or sweep.
 */
void verifier_last_error(struct verifier *verifier, char *buf, size_t len);

/* Stop after the current run, join the thread, free. NULL is a no-op. */
void verifier_stop(struct verifier *verifier);

#endif /* USER_VERIFIER_H */
