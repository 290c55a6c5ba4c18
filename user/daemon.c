/*
 * 'pgvigil run': the daemon. The main thread attaches the probes, then
 * reads the ring buffer and runs the monitor (monitor.c) on each record;
 * every second it reports probe drops and releases violations held too
 * long, and every two seconds it looks for new or restarted postmasters.
 *
 * Shutdown (SIGINT, SIGTERM): stop polling, drain what the ring buffer
 * still holds, emit held violations as "in_progress", close the feed, then
 * detach the probes.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include <sys/stat.h>

#include "catalog.h"
#include "cli.h"
#include "dumpfile.h"
#include "discover.h"
#include "feed.h"
#include "loader.h"
#include "log.h"
#include "mask.h"
#include "monitor.h"
#include "observe.h"
#include "pglayout.h"
#include "policy.h"
#include "recorder.h"
#include "verifier.h"
#include "privdrop.h"

#define MAX_SERVERS 64

struct daemon {
	const char *policy_path;
	const char *feed_path;
	const char *listen;
	pid_t pg_pid;
	bool unmasked;
	bool skip_reads;
	bool drop_privileges;		/* after the first attach */
	bool dropped;
	long hold_ms;
	struct policy *policy;
	struct feed *feed;
	struct loader *loader;
	struct catalog *catalog;
	struct monitor *monitor;
	struct ring_buffer *ring;
	struct recorder *recorder;
	struct dumpfile_key dump_key;
	bool have_dump_key;
	struct verifier *verifier;
	const char *pid_file;
	bool wrote_pid_file;
	const struct pglayout_version *version;
	char datadir[PATH_MAX];		/* with --pg-pid: the server's */
	uint32_t servers[MAX_SERVERS];	/* postmasters attached */
	size_t n_servers;
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: pgvigil run --policy FILE [OPTIONS]\n\n"
		"Attach to every running PostgreSQL postmaster (or the one given\n"
		"by --pg-pid), print one violation record per line on stdout and\n"
		"append it to the feed journal. Prints {\"event\":\"ready\",...} on\n"
		"stderr once the probes are attached; exits 0 on SIGINT/SIGTERM\n"
		"after draining.\n\n"
		"options:\n"
		"  --policy FILE      the policy (YAML), required\n"
		"  --feed FILE        append records to this journal (mode 0600);\n"
		"                     record ids continue from its last record\n"
		"  --pg-pid PID       watch only this postmaster (and the server\n"
		"                     that replaces it on the same data directory)\n"
		"  --listen ADDR:PORT serve HTTP (/metrics, /feed, /healthz,\n"
		"                     /readyz); PORT alone means 127.0.0.1:PORT;\n"
		"                     off loopback, the policy must give TLS and\n"
		"                     client authentication\n"
		"  --drop-privileges  drop every capability once attached (a\n"
		"                     postmaster started later is not attached)\n"
		"  --unmasked         print statements with their literal values\n"
		"  --skip-reads       do not capture read-only statements, nor the\n"
		"                     boundaries of transactions with nothing\n"
		"                     else: cheaper under read-heavy load, but\n"
		"                     statement counts then leave them out\n"
		"  --pid-file FILE    where 'pgvigil dump' finds the daemon\n"
		"                     (default /run/pgvigil/pgvigil.pid)\n"
		"  --hold-ms N        longest wait for a transaction's outcome\n"
		"                     before a record is sent as in_progress\n"
		"                     (default 5000)\n"
		"  --log-format FMT   text, json or auto (default: json unless\n"
		"                     stderr is a terminal)\n"
		"  -v, --verbose      debug logging, libbpf's included\n"
		"  -h, --help         this text\n");
}

static int parse_args(struct daemon *d, int argc, char **argv)
{
	static const struct option options[] = {
		{ "policy", required_argument, NULL, 'p' },
		{ "feed", required_argument, NULL, 'f' },
		{ "pg-pid", required_argument, NULL, 'P' },
		{ "listen", required_argument, NULL, 'l' },
		{ "unmasked", no_argument, NULL, 'u' },
		{ "skip-reads", no_argument, NULL, 'R' },
		{ "drop-privileges", no_argument, NULL, 'D' },
		{ "hold-ms", required_argument, NULL, 'H' },
		{ "pid-file", required_argument, NULL, 'F' },
		{ "log-format", required_argument, NULL, 'L' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	enum log_format format = LOG_FORMAT_AUTO;
	enum log_level level = LOG_INFO;
	char *end;
	int opt;

	d->hold_ms = 5000;
	d->pid_file = "/run/pgvigil/pgvigil.pid";
	while ((opt = getopt_long(argc, argv, "vh", options, NULL)) != -1) {
		switch (opt) {
		case 'p':
			d->policy_path = optarg;
			break;
		case 'f':
			d->feed_path = optarg;
			break;
		case 'P':
			d->pg_pid = strtol(optarg, &end, 10);
			if (*end || d->pg_pid <= 0) {
				fprintf(stderr, "pgvigil: bad --pg-pid '%s'\n",
					optarg);
				return -EINVAL;
			}
			break;
		case 'l':
			d->listen = optarg;
			break;
		case 'u':
			d->unmasked = true;
			break;
		case 'R':
			d->skip_reads = true;
			break;
		case 'F':
			d->pid_file = optarg;
			break;
		case 'D':
			d->drop_privileges = true;
			break;
		case 'H':
			d->hold_ms = strtol(optarg, &end, 10);
			if (*end || d->hold_ms < 0) {
				fprintf(stderr, "pgvigil: bad --hold-ms '%s'\n",
					optarg);
				return -EINVAL;
			}
			break;
		case 'L':
			if (log_parse_format(optarg, &format)) {
				fprintf(stderr, "pgvigil: bad --log-format '%s' "
					"(text, json or auto)\n", optarg);
				return -EINVAL;
			}
			break;
		case 'v':
			level = LOG_DEBUG;
			break;
		case 'h':
			usage(stdout);
			exit(EXIT_OK);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pgvigil: unexpected argument '%s'\n",
			argv[optind]);
		return -EINVAL;
	}
	if (!d->policy_path) {
		fprintf(stderr, "pgvigil: run needs --policy FILE\n");
		usage(stderr);
		return -EINVAL;
	}
	log_setup(level, format);
	return 0;
}

static bool attached_to(const struct daemon *d, pid_t pid)
{
	size_t i;

	for (i = 0; i < d->n_servers; i++)
		if (d->servers[i] == (uint32_t)pid)
			return true;
	return false;
}

/* Attach to one postmaster. Returns 0, or a negative errno (logged). */
static int attach_server(struct daemon *d, const struct pg_server *server)
{
	const struct pglayout_version *version = pglayout_find(server->major);
	char err[512];
	int ret;

	if (!version) {
		log_error("PostgreSQL %u at pid %d ('%s') is not supported "
			  "(supported: %s); not attaching", server->major,
			  server->pid, server->datadir, pglayout_supported());
		return -ENOTSUP;
	}
	ret = loader_attach(d->loader, server, version, err, sizeof(err));
	if (ret < 0) {
		log_error("%s", err);
		return ret;
	}
	observe_attached(server->pid, loader_probe_count(d->loader));
	/* a new server may reuse the pid of one passed over before */
	loader_ignore_parent(d->loader, server->pid, false);
	if (!d->version)
		d->version = version;
	if (d->n_servers < MAX_SERVERS)
		d->servers[d->n_servers++] = server->pid;
	log_info("watching postmaster %d (PostgreSQL %u, data directory '%s', "
		 "binary '%s')", server->pid, server->major, server->datadir,
		 server->exe_target);
	return 0;
}

/* Forget postmasters that have exited. */
static void prune_servers(struct daemon *d)
{
	size_t i, kept = 0;

	for (i = 0; i < d->n_servers; i++) {
		if (kill(d->servers[i], 0) && errno == ESRCH) {
			log_warn("postmaster %u exited", d->servers[i]);
			observe_attached(d->servers[i], 0);
			continue;
		}
		d->servers[kept++] = d->servers[i];
	}
	d->n_servers = kept;
}

/* Look for postmasters not attached yet (new, or restarted). */
static void rescan(struct daemon *d)
{
	struct pg_server *servers;
	int n, i;
	size_t before;

	prune_servers(d);
	/* without CAP_BPF and CAP_PERFMON nothing new can be attached */
	if (d->dropped)
		return;
	before = d->n_servers;
	n = discover_all(&servers);
	for (i = 0; i < n; i++) {
		if (attached_to(d, servers[i].pid))
			continue;
		if (d->pg_pid && strcmp(servers[i].datadir, d->datadir))
			continue;
		attach_server(d, &servers[i]);
	}
	free(servers);
	if (d->pg_pid && d->n_servers != before)
		monitor_watch(d->monitor, d->servers, d->n_servers);
}

static int attach_initial(struct daemon *d)
{
	struct pg_server server;
	char why[512];
	int ret;

	if (!d->pg_pid) {
		rescan(d);
		if (!d->n_servers)
			log_warn("no running PostgreSQL server found yet; "
				 "watching for one");
		return 0;
	}
	ret = discover_one(d->pg_pid, &server, why, sizeof(why));
	if (ret) {
		log_error("%s", why);
		return ret;
	}
	snprintf(d->datadir, sizeof(d->datadir), "%s", server.datadir);
	ret = attach_server(d, &server);
	if (!ret)
		monitor_watch(d->monitor, d->servers, d->n_servers);
	return ret;
}

static uint64_t now_ns(void);

/*
 * A child of an unwatched parent sent an event. With --pg-pid, a server
 * restarted on the watched data directory is adopted at once, rather than
 * at the next scan: its first statements are not missed.
 */
static bool adopt_parent(void *arg, uint32_t ppid)
{
	struct daemon *d = arg;
	struct pg_server server;
	char why[256];
	int ret;

	if (!d->pg_pid || discover_one(ppid, &server, why, sizeof(why)) ||
	    strcmp(server.datadir, d->datadir) || attach_server(d, &server)) {
		/* its backends cost a full probe each otherwise */
		ret = loader_ignore_parent(d->loader, ppid, true);
		if (ret)
			log_warn("cannot have the probes pass over the "
				 "backends of postmaster %u: %s", ppid,
				 strerror(-ret));
		return false;
	}
	monitor_watch(d->monitor, d->servers, d->n_servers);
	return true;
}

static int on_record(void *ctx, void *data, size_t size)
{
	uint64_t start = now_ns();
	int ret;

	ret = monitor_handle(ctx, data, size);
	observe_classified((now_ns() - start) / 1e9);
	return ret;
}

static void announce_ready(const struct daemon *d)
{
	char fields[1024];
	size_t i, n;

	n = snprintf(fields, sizeof(fields), "\"probes\":%zu,\"postmasters\":[",
		     loader_probe_count(d->loader));
	for (i = 0; i < d->n_servers && n < sizeof(fields) - 16; i++)
		n += snprintf(fields + n, sizeof(fields) - n, "%s%u",
			      i ? "," : "", d->servers[i]);
	snprintf(fields + n, sizeof(fields) - n, "]");
	log_event("ready", fields);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void periodic(struct daemon *d, uint64_t *last_tick,
		     uint64_t *last_scan)
{
	uint64_t drops[PGV_DROP_CAUSES], now = now_ns();
	struct monitor_stats stats;
	struct catalog_stats cache;
	bool have_drops;

	observe_drained(now);
	if (now - *last_tick >= 1000000000ULL) {
		*last_tick = now;
		have_drops = !loader_read_drops(d->loader, drops);
		monitor_tick(d->monitor, now, have_drops ? drops : NULL,
			     have_drops ? PGV_DROP_CAUSES : 0);
		monitor_stats(d->monitor, &stats);
		catalog_stats(d->catalog, &cache);
		observe_tick(&stats, &cache, have_drops ? drops : NULL,
			     PGV_DROP_CAUSES);
	}
	if (now - *last_scan >= 2000000000ULL) {
		*last_scan = now;
		rescan(d);
	}
}

/*
 * Journal and send what this round of records produced, with one sync for
 * the lot (group commit). A journal that stops taking writes (a full disk)
 * is said once; its records wait, numbered, and go out when it recovers.
 */
static void commit_round(struct daemon *d, int *journal_error)
{
	int ret = feed_batch_end(d->feed);

	if (ret && ret != *journal_error)
		log_error("cannot write the journal: %s; %zu records held "
			  "until it can be written", strerror(-ret),
			  feed_pending(d->feed));
	else if (!ret && *journal_error)
		log_info("the journal takes writes again; held records sent");
	*journal_error = ret;
}

static int run_loop(struct daemon *d)
{
	uint64_t last_tick = now_ns(), last_scan = last_tick;
	int ret, journal_error = 0;

	while (!stopping) {
		feed_batch_begin(d->feed);
		ret = ring_buffer__poll(d->ring, LOADER_CONSUME_MS);
		/* records below the wake-up threshold wake nobody */
		if (ret >= 0)
			ret = ring_buffer__consume(d->ring);
		if (ret < 0 && ret != -EINTR) {
			commit_round(d, &journal_error);
			log_error("reading the ring buffer failed: %s",
				  strerror(-ret));
			return ret;
		}
		periodic(d, &last_tick, &last_scan);
		if (d->recorder)
			recorder_tick(d->recorder);
		commit_round(d, &journal_error);
	}
	/* drain: what the probes sent before the signal is still reported */
	feed_batch_begin(d->feed);
	ring_buffer__consume(d->ring);
	monitor_flush(d->monitor);
	commit_round(d, &journal_error);
	return 0;
}

/* sql masker for unencrypted dumps */
static const char *mask_for_dump(const char *sql, char *buf, size_t len)
{
	enum mask_method method;
	char *masked = mask_statement(sql, &method);

	if (!masked)
		return NULL;
	snprintf(buf, len, "%s", masked);
	free(masked);
	return buf;
}

static void on_dump(void *arg, const struct recorder_dump_result *result)
{
	char seal[2 * DUMPFILE_HASH_LEN + 1];
	int i;

	(void)arg;
	if (result->error) {
		log_error("cannot write a %s dump: %s", result->reason,
			  strerror(-result->error));
		return;
	}
	for (i = 0; i < DUMPFILE_HASH_LEN; i++)
		sprintf(seal + 2 * i, "%02x", result->seal_hash[i]);
	log_info("dump '%s' (%s, %llu records) sealed with %s", result->path,
		 result->reason, (unsigned long long)result->records, seal);
}

/* The flight recorder, when the policy names a dump directory. */
static int start_recorder(struct daemon *d)
{
	struct recorder_config config = { 0 };
	const struct policy_dump *dump = &d->policy->dump;
	int ret;

	if (!dump->directory) {
		log_info("no dump.directory in the policy: no forensic dumps");
		return 0;
	}
	if (dump->key_file) {
		ret = dumpfile_key_load(dump->key_file, &d->dump_key);
		if (ret) {
			log_error("cannot load the dump key '%s': %s",
				  dump->key_file, strerror(-ret));
			return ret;
		}
		d->have_dump_key = true;
	}
	config.statements = dump->statements;
	config.min_interval_ms = dump->min_interval_ms;
	config.directory = dump->directory;
	config.key = d->have_dump_key ? &d->dump_key : NULL;
	config.mask_fn = mask_for_dump;
	config.policy_path = d->policy->path;
	config.policy_digest = d->policy->digest;
	config.on_dump = on_dump;
	ret = recorder_create(&config, &d->recorder);
	if (ret) {
		log_error("cannot start the flight recorder: %s", strerror(-ret));
		return ret;
	}
	return recorder_install_sigusr1(d->recorder);
}

static void write_pid_file(struct daemon *d)
{
	char dir[PATH_MAX], *slash;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s", d->pid_file);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		mkdir(dir, 0755);
	}
	f = fopen(d->pid_file, "w");
	if (!f) {
		log_warn("cannot write pid file '%s': %s ('pgvigil dump' will "
			 "not find this daemon)", d->pid_file, strerror(errno));
		return;
	}
	fprintf(f, "%d\n", getpid());
	fclose(f);
	d->wrote_pid_file = true;
}

static void kick_verifier(void *arg)
{
	struct daemon *d = arg;

	if (d->verifier)
		verifier_kick(d->verifier);
}

/* Continuous hash verification, when the policy has hash_integrity. */
static int start_verifier(struct daemon *d)
{
	char err[512];
	int ret;

	if (!d->policy->hash.enabled)
		return 0;
	ret = verifier_start(d->policy, d->feed, 0, &d->verifier, err,
			     sizeof(err));
	if (ret)
		log_error("cannot start hash verification: %s", err);
	return ret;
}

/*
 * After the probes are attached: drop privileges, then start the HTTP
 * threads, so that they never hold a capability.
 */
static int serve(struct daemon *d)
{
	char err[512];
	int ret;

	if (d->drop_privileges) {
		ret = privdrop_after_attach(NULL, err, sizeof(err));
		if (ret) {
			log_error("%s", err);
			return ret;
		}
		d->dropped = true;
		log_info("dropped every capability; postmasters started from "
			 "now on are not attached until pgvigil restarts");
	}
	if (!d->listen)
		return 0;
	ret = observe_start(d->listen, d->policy, d->feed, err, sizeof(err));
	if (ret)
		log_error("%s", err);
	else
		log_info("serving HTTP on '%s'", d->listen);
	return ret;
}

static int setup(struct daemon *d)
{
	struct monitor_options options = { 0 };
	struct loader_options loader_options = { .skip_reads = d->skip_reads };
	enum feed_sync sync = FEED_SYNC_ALWAYS;
	char err[1024];
	int ret;

	ret = policy_load(d->policy_path, &d->policy, err, sizeof(err));
	if (ret) {
		log_error("%s", err);
		return ret;
	}
	feed_parse_sync(d->policy->journal.fsync, &sync);
	ret = feed_open(d->feed_path, sync, true, &d->feed, err, sizeof(err));
	if (ret) {
		log_error("%s", err);
		return ret;
	}
	feed_set_rotation(d->feed, d->policy->journal.max_bytes,
			  d->policy->journal.keep);
	libbpf_set_print(log_libbpf);
	ret = loader_open_with(&d->loader, &loader_options, err, sizeof(err));
	if (ret) {
		log_error("%s", err);
		return ret;
	}
	loader_set_wire(d->loader, d->policy->capture_wire);
	ret = catalog_open(d->policy, &d->catalog);
	if (ret)
		return ret;
	options.policy = d->policy;
	options.feed = d->feed;
	options.catalog = d->catalog;
	options.version = pglayout_find(15);
	options.unmasked = d->unmasked;
	options.hold_ns = (uint64_t)d->hold_ms * 1000000;
	ret = start_recorder(d);
	if (ret)
		return ret;
	options.recorder = d->recorder;
	options.events_committed = kick_verifier;
	options.adopt = adopt_parent;
	options.arg = d;
	ret = monitor_new(&options, &d->monitor);
	if (ret)
		return ret;
	ret = attach_initial(d);
	if (ret)
		return ret;
	d->ring = ring_buffer__new(loader_ringbuf_fd(d->loader), on_record,
				   d->monitor, NULL);
	if (!d->ring) {
		log_error("cannot open the ring buffer: %s", strerror(errno));
		return -errno;
	}
	write_pid_file(d);
	ret = start_verifier(d);
	if (ret)
		return ret;
	return serve(d);
}

/*
 * One {"event":"stats",...} line at shutdown, so that a benchmark can relate
 * the daemon's CPU time to the statements it saw and count what was lost.
 */
static void announce_stats(const struct daemon *d)
{
	uint64_t drops[PGV_DROP_CAUSES] = { 0 }, statements = 0, dropped = 0;
	struct monitor_stats stats;
	char fields[512];
	size_t i;

	monitor_stats(d->monitor, &stats);
	for (i = 0; i < 8; i++)
		statements += stats.statements[i];
	if (!loader_read_drops(d->loader, drops))
		for (i = 0; i < PGV_DROP_CAUSES; i++)
			dropped += drops[i];
	snprintf(fields, sizeof(fields),
		 "\"events\":%" PRIu64 ",\"statements\":%" PRIu64
		 ",\"violations\":%" PRIu64 ",\"events_lost\":%" PRIu64
		 ",\"ring_buffer_full\":%" PRIu64 ",\"drops\":%" PRIu64
		 ",\"backends\":%" PRIu64 ",\"ignored\":%" PRIu64
		 ",\"own\":%" PRIu64,
		 stats.events, statements, stats.violations, stats.events_lost,
		 drops[PGV_DROP_RINGBUF_FULL], dropped, stats.backends,
		 stats.ignored, stats.own);
	log_event("stats", fields);
}

static void teardown(struct daemon *d)
{
	/* HTTP streams hold feed readers: they end before the feed closes */
	observe_stop();
	verifier_stop(d->verifier);
	if (d->recorder) {
		recorder_flush(d->recorder);
		recorder_free(d->recorder);
	}
	if (d->wrote_pid_file)
		unlink(d->pid_file);
	ring_buffer__free(d->ring);
	monitor_free(d->monitor);
	catalog_close(d->catalog);
	feed_close(d->feed);
	loader_close(d->loader);
	policy_free(d->policy);
}

int cmd_run(int argc, char **argv)
{
	struct daemon d = { 0 };
	struct sigaction sa = { .sa_handler = on_signal };
	int ret;

	if (parse_args(&d, argc, argv))
		return EXIT_ERROR;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	ret = setup(&d);
	if (!ret) {
		announce_ready(&d);
		ret = run_loop(&d);
		announce_stats(&d);
	}
	teardown(&d);
	return ret ? EXIT_ERROR : EXIT_OK;
}
