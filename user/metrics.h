/*
 * The metrics registry: every number pgvigil exports to Prometheus. The set
 * of families is fixed at compile time (enum metric_id, one row each in
 * metrics.c) so names, types, help and label names live in one place and a
 * caller cannot invent a name by accident. A family holds one series per
 * distinct tuple of label values, created on first use.
 *
 * Threads: any thread may update any family; one mutex guards the registry.
 * An update is a lookup in a short list under that mutex, which is cheap
 * next to the work that produces it (a statement, a verification batch).
 * The registry is process-wide: metrics_init before threads start,
 * metrics_free after they stop.
 *
 * Label cardinality is bounded: a family holds at most METRICS_MAX_SERIES
 * series; updates for new tuples past that are counted in
 * pgvigil_metrics_series_dropped_total instead of growing the registry.
 */
#ifndef USER_METRICS_H
#define USER_METRICS_H

#include <stddef.h>

#define METRICS_MAX_SERIES 1024

/*
 * The families and their label values, in the order the label names are
 * listed here. Counters end in _total; the daemon calls, for example:
 *   metrics_inc(METRIC_STATEMENTS, "UPDATE");
 *   metrics_inc(METRIC_VIOLATIONS, "monetary", "balance_write_outside_...");
 *   metrics_set(METRIC_PROBES_ATTACHED, 1, "812", "ExecutorStart");
 *   metrics_observe(METRIC_CLASSIFY_SECONDS, 0.000012);
 */
enum metric_id {
	METRIC_BUILD_INFO,		/* gauge = 1 {version} (set by init) */
	METRIC_STATEMENTS,		/* counter {command} */
	METRIC_VIOLATIONS,		/* counter {invariant, rule} */
	METRIC_RINGBUF_DROPS,		/* counter {cause} */
	METRIC_SEQUENCE_GAPS,		/* counter {pid}: backend's lost events */
	METRIC_PROBES_ATTACHED,		/* gauge {postmaster, probe}: 0 or 1 */
	METRIC_CATALOG_HITS,		/* counter */
	METRIC_CATALOG_MISSES,		/* counter */
	METRIC_CLASSIFY_SECONDS,	/* histogram, seconds per event */
	METRIC_VERIFY_ROWS,		/* counter: ledger events verified */
	METRIC_VERIFY_FINDINGS,		/* counter {kind} */
	METRIC_JOURNAL_BYTES,		/* counter: appended since start */
	METRIC_JOURNAL_ROTATIONS,	/* counter */
	METRIC_FEED_RECORDS,		/* counter: records emitted */
	METRIC_FEED_CLIENTS,		/* gauge: open /feed streams */
	METRIC_HTTP_REQUESTS,		/* counter {path, code} */
	METRIC_HTTP_AUTH_FAILURES,	/* counter {reason} */
	METRIC_SERIES_DROPPED,		/* counter {family} */
	METRIC_COUNT
};

/*
 * Set up the registry and the build_info series. Returns 0 or -ENOMEM.
 * Calling it again resets every value (tests rely on that).
 */
int metrics_init(void);

/* Release the registry; later updates are ignored. */
void metrics_free(void);

/*
 * Updates. The variadic arguments are the family's label values, as
 * 'const char *', exactly as many as the family has label names (see the
 * enum). NULL label values are rendered empty. Updates of the wrong type
 * for the family (observe on a counter, add of a negative to a counter, a
 * set that would make a counter go down) are ignored: a metric must never
 * take the daemon down. metrics_set on a counter mirrors a total that
 * another module keeps (the feed's journal bytes).
 */
void metrics_inc(enum metric_id id, ...);
void metrics_add(enum metric_id id, double value, ...);
void metrics_set(enum metric_id id, double value, ...);
void metrics_observe(enum metric_id id, double value, ...);

/*
 * Forget one series (a backend that exited, a postmaster that went away),
 * so pid-labelled families do not grow without bound.
 */
void metrics_remove(enum metric_id id, ...);

/*
 * Render every family in the Prometheus text exposition format 0.0.4.
 * Returns 0 and a malloc'd NUL-terminated text (caller frees) with its
 * length, or -ENOMEM.
 */
int metrics_render(char **text, size_t *len);

/* The family's exported name ("pgvigil_..."), for tests and docs. */
const char *metrics_name(enum metric_id id);

#endif /* USER_METRICS_H */
