/*
 * Verification of the ledger's hash chain (invariant 3, DESIGN.md). A run
 * covers the seq range [from_seq, max(seq) at its start], split into
 * sub-ranges that a pool of worker threads takes in turn. Each worker
 * streams its range's events and postings with two binary COPYs on two
 * connections of its own (events first, so every event it sees has its
 * postings committed), rebuilds each posting set and checks the event; the
 * calling thread then stitches the ranges: chain links and gaps across
 * range boundaries, the head of the gap-free chain. Findings go to the feed
 * as they are found, from any worker thread (feed_emit is thread-safe).
 * Threads: workers live for one run only; verify_run returns after joining
 * them, and the options and checkpoints are only read while they run.
 */
#ifndef USER_VERIFY_H
#define USER_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger_hash.h"

struct policy;
struct feed;
struct checkpoint_set;

/* A verified event the run continues from. */
struct verify_anchor {
	int64_t seq;
	uint8_t hash[LEDGER_HASH_LEN];
	uint8_t event_id[LEDGER_EVENT_ID_LEN];
};

struct verify_options {
	const struct policy *policy;
	struct feed *feed;			/* where findings go */
	int threads;				/* workers, at least 1 */
	int64_t range_size;			/* events per range; 0: chosen */
	int64_t from_seq;			/* 1 for the whole ledger */
	const struct verify_anchor *anchor;	/* event from_seq - 1, or NULL */
	/*
	 * Report missing seqs. Incremental runs do not: a gap at the head may
	 * be a transaction that has not committed yet; sweeps report it.
	 */
	bool report_gaps;
	const struct checkpoint_set *checkpoints;	/* or NULL */
	/* called on the calling thread about five times a second */
	void (*progress)(void *arg, uint64_t events, int64_t span);
	void *progress_arg;
};

struct verify_result {
	uint64_t events;
	uint64_t postings;
	uint64_t findings;
	int64_t max_seq;		/* at the start of the run; 0: empty */
	/* last event of the gap-free run from from_seq (has_head false: none) */
	bool has_head;
	struct verify_anchor head;
	/* last event the run saw, gaps or not */
	bool has_last;
	struct verify_anchor last;
};

/*
 * Verify per 'opts'. Returns 0 (findings, if any, are counted in 'result'
 * and emitted to the feed) or a negative errno with a message in 'err':
 * -ECONNREFUSED for an unreachable database, -ENOENT for a table or column
 * that does not exist, -EIO for other server errors, -ENOMEM.
 */
int verify_run(const struct verify_options *opts, struct verify_result *result,
	       char *err, size_t err_len);

#endif /* USER_VERIFY_H */
