/*
 * What 'pgvigil run' shows of itself: the glue between the daemon and the
 * metrics registry and HTTP server. The daemon reports its state here
 * (totals kept by the monitor, the catalog and the BPF drop counters, the
 * postmasters attached, the last time the ring buffer was drained); this
 * module mirrors it into metrics and answers /readyz from it.
 *
 * Threads: observe_start, observe_stop, observe_tick and observe_attached
 * run on the daemon's main thread; observe_drained too (it only stores an
 * atomic); the ready callback runs on HTTP threads and only reads atomics.
 * Shutdown order: observe_stop (HTTP streams end, threads joined) before
 * feed_close, then nothing else touches the metrics.
 */
#ifndef USER_OBSERVE_H
#define USER_OBSERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct feed;
struct policy;
struct monitor_stats;
struct catalog_stats;

/* the ring buffer must have been drained this recently for /readyz */
#define OBSERVE_READY_DRAIN_NS 2000000000ULL

/*
 * Set up the registry and serve HTTP on 'listen' (NULL: the loopback
 * default) with the policy's TLS and auth, the feed as /feed source.
 * Returns 0 or a negative errno with a message in err.
 */
int observe_start(const char *listen, const struct policy *policy,
		  struct feed *feed, char *err, size_t err_len);

/* Stop the HTTP server and free the registry. Safe when never started. */
void observe_stop(void);

/*
 * Postmaster 'pid' is covered by 'probes' attached probes (0: it exited or
 * lost them). Readiness needs at least one postmaster with probes.
 */
void observe_attached(uint32_t pid, size_t probes);

/* The ring buffer was just drained (after each poll), CLOCK_MONOTONIC. */
void observe_drained(uint64_t now_ns);

/*
 * Mirror the totals into metrics, once a second. 'drops' has n_drops
 * causes in enum pgv_drop_cause order, or is NULL.
 */
void observe_tick(const struct monitor_stats *monitor,
		  const struct catalog_stats *catalog, const uint64_t *drops,
		  size_t n_drops);

/* 'lost' events are missing from backend 'pid''s sequence. */
void observe_sequence_gap(uint32_t pid, uint64_t lost);

/* Time one event's classification, in seconds. */
void observe_classified(double seconds);

#endif /* USER_OBSERVE_H */
