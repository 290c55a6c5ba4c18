/*
 * pgv-microbench: the daemon's user-space path with no server and no
 * kernel. Builds the records the probes send for pgbench's TPC-B and
 * select-only transactions (simple protocol: literals differ from one
 * statement to the next, so masking cannot lean on repetition), then feeds
 * them through monitor_handle with a fixed catalog (catalog_fixed.c) and a
 * feed that writes to /dev/null: classification, catalog lookups, masking
 * with libpg_query, record building and output to a journal in a temporary
 * directory (never a device: the feed sets its journal's mode), committed
 * in batches of BATCH records as the daemon commits one poll's worth.
 *
 * Paths: "capture" binds no balance column (every record is classified and
 * found clean), "violations" binds pgbench's three (three records a TPC-B
 * transaction). Rounds interleave the paths; figures are medians of the
 * rounds, per CPU second of this single thread (records per second per
 * core). Every run starts a monitor of its own on a stream numbered from
 * 1, and must emit exactly the violations its path expects and no monitor
 * record: anything else means the benchmark measured the wrong thing, and
 * it fails. With -k DIR, the journal of each path's last run is kept in
 * DIR as WORKLOAD-PATH.jsonl, to compare the output of two builds.
 *
 * Usage: pgv-microbench [-k DIR] [ROUNDS [TRANSACTIONS]]
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog_fixed.h"
#include "classify.h"
#include "feed.h"
#include "log.h"
#include "monitor.h"
#include "pglayout.h"

#define BACKENDS	4
#define BATCH		256	/* records per journal commit */
#define CMD_SELECT	1
#define CMD_UPDATE	2
#define CMD_INSERT	3

/* BEGIN and END: not DDL, so the monitor does not re-read the catalog */
static int transaction_stmt;

struct record {
	void *data;
	size_t size;
};

struct stream {
	struct record *records;
	size_t n, cap;
	size_t statements;
};

static int stream_add(struct stream *s, void *data, size_t size)
{
	struct record *grown;

	if (!data)
		return -ENOMEM;
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 1024;
		grown = realloc(s->records, s->cap * sizeof(*grown));
		if (!grown) {
			free(data);
			return -ENOMEM;
		}
		s->records = grown;
	}
	s->records[s->n].data = data;
	s->records[s->n++].size = size;
	return 0;
}

static void header(struct pgv_header *hdr, uint16_t type, int backend)
{
	hdr->type = type;
	hdr->pid = 5000 + backend;
	hdr->ppid = 4999;
	hdr->time_ns = 1000000000;
	memcpy(hdr->comm, "postgres", 9);
}

static int add_session(struct stream *s, int backend)
{
	struct pgv_session_event *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	header(&e->hdr, PGV_EV_SESSION, backend);
	strcpy(e->user, "postgres");
	strcpy(e->database, "bench");
	strcpy(e->application, "pgbench");
	e->client_addr[0] = 1;	/* AF_UNIX, little-endian sa_family */
	return stream_add(s, e, sizeof(*e));
}

static int add_xact(struct stream *s, int backend, uint32_t kind)
{
	struct pgv_xact_event *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	header(&e->hdr, PGV_EV_XACT, backend);
	e->kind = kind;
	return stream_add(s, e, sizeof(*e));
}

static int add_utility(struct stream *s, int backend, const char *text)
{
	size_t len = strlen(text);
	struct pgv_utility_event *e = calloc(1, PGV_UTIL_FIXED + len + 1);

	if (!e)
		return -ENOMEM;
	header(&e->hdr, PGV_EV_UTILITY, backend);
	e->node_tag = transaction_stmt;
	e->text_len = e->text_captured = len;
	memcpy(e->text, text, len + 1);
	s->statements++;
	return stream_add(s, e, PGV_UTIL_FIXED + len + 1);
}

/* A statement writing 'attnum' of 'relid' (0: a read, no result relation). */
static int add_exec(struct stream *s, int backend, uint32_t operation,
		    uint32_t relid, int attnum, const char *text)
{
	unsigned int member = attnum + pglayout_find(15)->layout->attr_offset;
	size_t len = strlen(text);
	struct pgv_exec_event *e = calloc(1, PGV_EXEC_FIXED + len + 1);

	if (!e)
		return -ENOMEM;
	header(&e->hdr, PGV_EV_EXEC, backend);
	e->operation = operation;
	if (relid) {
		e->n_result_rels = 1;
		e->rels[0].relid = relid;
		e->rels[0].relkind = 'r';
		e->rels[0].required_perms = operation == CMD_UPDATE
			? ACL_UPDATE_BIT : ACL_INSERT_BIT;
		if (operation == CMD_UPDATE)
			e->rels[0].updated_cols[member / 64] |= 1ULL << (member % 64);
		else
			e->rels[0].inserted_cols[0] = 0x1f << 8;
	}
	e->text_len = e->text_captured = len;
	/* packed, as the probe sends it: the text after the relations kept */
	memcpy((char *)&e->rels[e->n_result_rels], text, len + 1);
	s->statements++;
	return stream_add(s, e, PGV_EXEC_PACKED(e->n_result_rels, len));
}

/* pgbench's TPC-B transaction, as the probes report it */
static int add_tpcb(struct stream *s, int b, unsigned int i)
{
	unsigned int aid = i * 7919 % 1000000 + 1, tid = i % 100 + 1;
	unsigned int bid = i % 10 + 1;
	int delta = (int)(i * 31 % 10001) - 5000;
	char sql[256];
	int ret = add_xact(s, b, PGV_XACT_START);

	ret = ret ?: add_utility(s, b, "BEGIN;");
	snprintf(sql, sizeof(sql), "UPDATE pgbench_accounts SET abalance = "
		 "abalance + %d WHERE aid = %u;", delta, aid);
	ret = ret ?: add_exec(s, b, CMD_UPDATE, MICROBENCH_ACCOUNTS, 3, sql);
	snprintf(sql, sizeof(sql), "SELECT abalance FROM pgbench_accounts "
		 "WHERE aid = %u;", aid);
	ret = ret ?: add_exec(s, b, CMD_SELECT, 0, 0, sql);
	snprintf(sql, sizeof(sql), "UPDATE pgbench_tellers SET tbalance = "
		 "tbalance + %d WHERE tid = %u;", delta, tid);
	ret = ret ?: add_exec(s, b, CMD_UPDATE, MICROBENCH_TELLERS, 3, sql);
	snprintf(sql, sizeof(sql), "UPDATE pgbench_branches SET bbalance = "
		 "bbalance + %d WHERE bid = %u;", delta, bid);
	ret = ret ?: add_exec(s, b, CMD_UPDATE, MICROBENCH_BRANCHES, 2, sql);
	snprintf(sql, sizeof(sql), "INSERT INTO pgbench_history (tid, bid, aid, "
		 "delta, mtime) VALUES (%u, %u, %u, %d, CURRENT_TIMESTAMP);",
		 tid, bid, aid, delta);
	ret = ret ?: add_exec(s, b, CMD_INSERT, MICROBENCH_HISTORY, 0, sql);
	ret = ret ?: add_utility(s, b, "END;");
	return ret ?: add_xact(s, b, PGV_XACT_COMMIT);
}

static int add_select(struct stream *s, int b, unsigned int i)
{
	char sql[128];
	int ret = add_xact(s, b, PGV_XACT_START);

	snprintf(sql, sizeof(sql), "SELECT abalance FROM pgbench_accounts "
		 "WHERE aid = %u;", i * 7919 % 1000000 + 1);
	ret = ret ?: add_exec(s, b, CMD_SELECT, 0, 0, sql);
	return ret ?: add_xact(s, b, PGV_XACT_COMMIT);
}

/*
 * Per-backend sequence numbers from 1, with no gap, as a new monitor
 * expects of backends it has not seen: every run replays the same stream
 * into a new monitor.
 */
static void stream_number(struct stream *s)
{
	uint64_t seq[BACKENDS] = { 0 };
	size_t i;

	for (i = 0; i < s->n; i++) {
		struct pgv_header *hdr = s->records[i].data;

		hdr->seq = ++seq[hdr->pid - 5000];
	}
}

static int stream_build(struct stream *s, bool tpcb, unsigned int n)
{
	unsigned int i;
	int b, ret = 0;

	for (b = 0; b < BACKENDS && !ret; b++)
		ret = add_session(s, b);
	for (i = 0; i < n && !ret; i++)
		ret = tpcb ? add_tpcb(s, i % BACKENDS, i)
			   : add_select(s, i % BACKENDS, i);
	if (!ret)
		stream_number(s);
	return ret;
}

static double cpu_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct result {
	double records_per_s, statements_per_s, us_per_statement;
	uint64_t violations;
};

/*
 * Did the run write exactly 'expected' records, none of them the
 * monitor's own (a sequence gap, a statement not classified)? Says what
 * was wrong on stderr when not.
 */
static bool journal_as_expected(const char *journal, uint64_t expected)
{
	uint64_t lines = 0, monitor = 0;
	FILE *file = fopen(journal, "r");
	char *line = NULL;
	size_t cap = 0;

	if (!file) {
		fprintf(stderr, "pgv-microbench: cannot read '%s': %s\n",
			journal, strerror(errno));
		return false;
	}
	while (getline(&line, &cap, file) > 0) {
		lines++;
		if (strstr(line, "\"invariant\":\"monitor\"") && !monitor++)
			fprintf(stderr, "pgv-microbench: unexpected monitor "
				"record: %s", line);
	}
	free(line);
	fclose(file);
	if (lines != expected)
		fprintf(stderr, "pgv-microbench: %llu records in the journal, "
			"%llu expected\n", (unsigned long long)lines,
			(unsigned long long)expected);
	return lines == expected && !monitor;
}

static void replay(struct stream *s, struct monitor *monitor,
		   struct feed *feed)
{
	size_t i;

	feed_batch_begin(feed);
	for (i = 0; i < s->n; i++) {
		monitor_handle(monitor, s->records[i].data, s->records[i].size);
		if (i % BATCH == BATCH - 1) {
			feed_batch_end(feed);
			feed_batch_begin(feed);
		}
	}
	monitor_flush(monitor);
	feed_batch_end(feed);
}

/*
 * One run of a path on a new monitor and journal. 0, -EPROTO when its
 * output was not what the path expects ('expected' violation records and
 * no other), or a negative errno from the setup.
 */
static int run_once(struct stream *s, struct catalog *catalog, bool bind,
		    uint64_t expected, const char *journal, struct result *out)
{
	struct monitor_options options = { 0 };
	struct monitor_stats stats;
	struct monitor *monitor;
	double start, cpu;
	char err[256];
	int ret;

	unlink(journal);
	ret = microbench_catalog_bind(catalog, bind);
	ret = ret ?: feed_open(journal, FEED_SYNC_NEVER, false,
			       &options.feed, err, sizeof(err));
	if (ret)
		return ret;
	options.catalog = catalog;
	options.version = pglayout_find(15);
	options.hold_ns = UINT64_MAX / 2;
	ret = monitor_new(&options, &monitor);
	if (ret) {
		feed_close(options.feed);
		return ret;
	}
	start = cpu_seconds();
	replay(s, monitor, options.feed);
	cpu = cpu_seconds() - start;
	monitor_stats(monitor, &stats);
	monitor_free(monitor);
	feed_close(options.feed);
	/* the journal's account first: it names the stray record */
	if (!journal_as_expected(journal, expected) ||
	    stats.violations != expected)
		return -EPROTO;
	out->records_per_s = s->n / cpu;
	out->statements_per_s = s->statements / cpu;
	out->us_per_statement = cpu * 1e6 / s->statements;
	out->violations = stats.violations;
	return 0;
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *values, int n)
{
	qsort(values, n, sizeof(*values), compare_double);
	return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

#define MAX_ROUNDS 99

struct path {
	const char *workload, *name;
	struct stream *stream;
	bool bind;
	unsigned int violations_per_xact;
	double records[MAX_ROUNDS], statements[MAX_ROUNDS], us[MAX_ROUNDS];
	uint64_t violations;
};

static void print_path(struct path *p, int rounds, size_t transactions)
{
	printf("%-12s %-11s %12.0f %12.0f %9.2f %12.2f\n", p->workload, p->name,
	       median(p->records, rounds), median(p->statements, rounds),
	       median(p->us, rounds), (double)p->violations / transactions);
}

/* The journal of the last run of 'p', moved to 'keep_dir'. */
static int keep_journal(const char *journal, const char *keep_dir,
			const struct path *p)
{
	char kept[4096];

	snprintf(kept, sizeof(kept), "%s/%s-%s.jsonl", keep_dir, p->workload,
		 p->name);
	if (rename(journal, kept)) {
		fprintf(stderr, "pgv-microbench: cannot keep the journal as "
			"'%s': %s\n", kept, strerror(errno));
		return -errno;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: pgv-microbench [-k DIR] [ROUNDS [TRANSACTIONS]]\n");
}

int main(int argc, char **argv)
{
	int rounds = 5, r, k, opt, ret;
	unsigned int transactions = 20000;
	struct stream tpcb = { 0 }, select = { 0 };
	struct path paths[] = {
		{ "tpcb", "capture", &tpcb, false, 0 },
		{ "tpcb", "violations", &tpcb, true, 3 },
		{ "select-only", "capture", &select, false, 0 },
	};
	char dir[] = "/tmp/pgv-microbench.XXXXXX", journal[64];
	const char *keep_dir = NULL;
	struct catalog *catalog;
	struct result res;

	while ((opt = getopt(argc, argv, "k:")) != -1) {
		if (opt != 'k') {
			usage();
			return 2;
		}
		keep_dir = optarg;
	}
	if (optind < argc)
		rounds = atoi(argv[optind]);
	if (optind + 1 < argc)
		transactions = atoi(argv[optind + 1]);
	if (rounds < 1 || rounds > MAX_ROUNDS || !transactions ||
	    optind + 2 < argc) {
		usage();
		return 2;
	}
	log_setup(LOG_WARN, LOG_FORMAT_TEXT);
	transaction_stmt = pglayout_tag_number(pglayout_find(15),
					       "TransactionStmt");
	if (transaction_stmt < 0) {
		fprintf(stderr, "pgv-microbench: no TransactionStmt tag\n");
		return 2;
	}
	if (!mkdtemp(dir)) {
		perror("pgv-microbench: mkdtemp");
		return 2;
	}
	snprintf(journal, sizeof(journal), "%s/journal", dir);
	if (catalog_open(NULL, &catalog) ||
	    stream_build(&tpcb, true, transactions) ||
	    stream_build(&select, false, transactions)) {
		fprintf(stderr, "pgv-microbench: out of memory\n");
		return 2;
	}
	for (r = 0; r < rounds; r++) {
		for (k = 0; k < 3; k++) {
			ret = run_once(paths[k].stream, catalog, paths[k].bind,
				       (uint64_t)paths[k].violations_per_xact *
				       transactions, journal, &res);
			if (!ret && keep_dir && r == rounds - 1)
				ret = keep_journal(journal, keep_dir, &paths[k]);
			unlink(journal);
			if (ret) {
				fprintf(stderr, "pgv-microbench: %s %s: %s\n",
					paths[k].workload, paths[k].name,
					ret == -EPROTO ? "wrong output"
						       : strerror(-ret));
				rmdir(dir);
				return ret == -EPROTO ? 1 : 2;
			}
			paths[k].records[r] = res.records_per_s;
			paths[k].statements[r] = res.statements_per_s;
			paths[k].us[r] = res.us_per_statement;
			paths[k].violations = res.violations;
		}
	}
	printf("%u transactions per run, %d rounds interleaved, medians, one core\n",
	       transactions, rounds);
	printf("%-12s %-11s %12s %12s %9s %12s\n", "workload", "path",
	       "records/s", "stmts/s", "us/stmt", "viol/xact");
	for (k = 0; k < 3; k++)
		print_path(&paths[k], rounds, transactions);
	catalog_close(catalog);
	rmdir(dir);
	return 0;
}
