/*
 * The daemon's metrics and HTTP glue. See observe.h for the threads. State
 * read by HTTP threads (/readyz) is kept in atomics; the rest belongs to
 * the main thread.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "catalog.h"
#include "http.h"
#include "metrics.h"
#include "monitor.h"
#include "observe.h"
#include "policy.h"
#include "pgvigil/events.h"

#define OBSERVE_MAX_POSTMASTERS 64

static struct http_server *server;
static struct http_config config;
static uint32_t postmasters[OBSERVE_MAX_POSTMASTERS];
static size_t probe_counts[OBSERVE_MAX_POSTMASTERS];
static size_t n_postmasters;
static atomic_uint_fast64_t last_drain_ns;
static atomic_size_t covered;	/* postmasters with probes */

static const char *const drop_causes[PGV_DROP_CAUSES] = {
	[PGV_DROP_RINGBUF_FULL] = "ringbuf_full",
	[PGV_DROP_NO_BACKEND] = "backend_table_full",
	[PGV_DROP_READ_FAILED] = "read_failed",
	[PGV_DROP_NO_LAYOUT] = "no_layout",
	[PGV_DROP_STACK_OVERFLOW] = "stack_overflow",
	[PGV_DROP_WIRE_TRUNCATED] = "wire_read_truncated",
};

/* CmdType order, as the monitor counts statements */
static const char *const commands[8] = {
	"UNKNOWN", "SELECT", "UPDATE", "INSERT", "DELETE", "MERGE", "UTILITY",
	"NOTHING",
};

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool ready(void *arg)
{
	uint64_t drained = atomic_load(&last_drain_ns);

	(void)arg;
	return atomic_load(&covered) > 0 && drained &&
	       monotonic_ns() - drained < OBSERVE_READY_DRAIN_NS;
}

static void export_probes(size_t i)
{
	char label[16];

	snprintf(label, sizeof(label), "%u", postmasters[i]);
	/* the loader counts links, not names: one series per postmaster */
	metrics_set(METRIC_PROBES_ATTACHED, probe_counts[i], label, "all");
}

int observe_start(const char *listen, const struct policy *policy,
		  struct feed *feed, char *err, size_t err_len)
{
	size_t i;
	int ret;

	ret = metrics_init();
	if (ret) {
		snprintf(err, err_len, "cannot set up metrics: out of memory");
		return ret;
	}
	/* postmasters attached before the registry existed */
	for (i = 0; i < n_postmasters; i++)
		export_probes(i);
	config.listen = listen;
	config.policy = policy ? &policy->http : NULL;
	config.feed = feed;
	config.ready = ready;
	return http_start(&config, &server, err, err_len);
}

void observe_stop(void)
{
	http_stop(server);
	server = NULL;
	metrics_free();
}

static void count_covered(void)
{
	size_t i, n = 0;

	for (i = 0; i < n_postmasters; i++)
		n += postmasters[i] != 0;
	atomic_store(&covered, n);
}

void observe_attached(uint32_t pid, size_t probes)
{
	char label[16];
	size_t i;

	for (i = 0; i < n_postmasters && postmasters[i] != pid; i++)
		;
	if (probes && i == n_postmasters &&
	    n_postmasters < OBSERVE_MAX_POSTMASTERS)
		postmasters[n_postmasters++] = pid;
	if (probes && i < n_postmasters) {
		probe_counts[i] = probes;
		export_probes(i);
	} else if (!probes && i < n_postmasters) {
		postmasters[i] = postmasters[--n_postmasters];
		probe_counts[i] = probe_counts[n_postmasters];
		snprintf(label, sizeof(label), "%u", pid);
		metrics_remove(METRIC_PROBES_ATTACHED, label, "all");
	}
	count_covered();
}

void observe_drained(uint64_t now_ns)
{
	atomic_store(&last_drain_ns, now_ns);
}

void observe_tick(const struct monitor_stats *monitor,
		  const struct catalog_stats *catalog, const uint64_t *drops,
		  size_t n_drops)
{
	size_t i;

	for (i = 1; monitor && i < 7; i++)
		if (monitor->statements[i])
			metrics_set(METRIC_STATEMENTS, monitor->statements[i],
				    commands[i]);
	if (catalog) {
		metrics_set(METRIC_CATALOG_HITS, catalog->hits);
		metrics_set(METRIC_CATALOG_MISSES, catalog->misses);
	}
	for (i = 0; drops && i < n_drops && i < PGV_DROP_CAUSES; i++)
		metrics_set(METRIC_RINGBUF_DROPS, drops[i], drop_causes[i]);
}

void observe_classified(double seconds)
{
	metrics_observe(METRIC_CLASSIFY_SECONDS, seconds);
}

void observe_sequence_gap(uint32_t pid, uint64_t lost)
{
	char label[16];

	snprintf(label, sizeof(label), "%u", pid);
	metrics_add(METRIC_SEQUENCE_GAPS, lost, label);
}
