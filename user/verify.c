/*
 * The verification engine; see verify.h for the threads. Shared state of a
 * run lives in struct run: the range table (each range written by the one
 * worker that took it, read by the caller after the join), atomic counters,
 * and the first error under a mutex. Each worker owns its connections, its
 * hasher and its posting buffer.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <libpq-fe.h>

#include "checkpoint.h"
#include "feed.h"
#include "pgcopy.h"
#include "policy.h"
#include "metrics.h"
#include "verify.h"

#define RANGE_MIN 4096		/* below this, query start-up costs show */
#define RANGES_PER_THREAD 8	/* slack so that threads finish together */

/* Quoted names of the policy's tables and columns, ready for SQL. */
struct names {
	char *events, *postings;
	char *seq, *event_id, *prev_hash, *postings_hash;
	char *event_seq, *account, *currency, *amount;
};

struct range {
	int64_t lo, hi;
	bool any;			/* at least one event */
	bool gap_inside;
	int64_t first_seq, last_seq, run_end;
	bool first_hash_ok;
	uint8_t first_prev[LEDGER_HASH_LEN];
	uint8_t first_id[LEDGER_EVENT_ID_LEN];
	struct verify_anchor last;	/* last event seen */
	struct verify_anchor run;	/* end of the gap-free run from first */
};

struct run {
	const struct verify_options *opts;
	struct names names;
	struct range *ranges;
	size_t range_count;
	atomic_size_t next_range;
	atomic_uint_fast64_t events, postings, findings;
	atomic_bool failed;
	pthread_mutex_t lock;
	pthread_cond_t done;
	int workers_done;
	int error;
	char message[256];
};

/* One finding; fields that do not apply are NULL or 0. */
struct finding {
	const char *rule;
	const char *relation;
	int64_t seq;
	const uint8_t *event_id;
	int64_t seq_last;		/* missing_seq: last missing of the run */
	int64_t next_seq;		/* chain_break: the successor that differs */
	const uint8_t *stored;
	const uint8_t *computed;
};

static void run_fail(struct run *run, int error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void run_fail(struct run *run, int error, const char *fmt, ...)
{
	va_list args;

	pthread_mutex_lock(&run->lock);
	if (!run->error) {
		run->error = error;
		va_start(args, fmt);
		vsnprintf(run->message, sizeof(run->message), fmt, args);
		va_end(args);
	}
	pthread_mutex_unlock(&run->lock);
	atomic_store(&run->failed, true);
}

/* libpq's message, one line, without the severity prefix */
static const char *server_message(PGconn *conn)
{
	static __thread char line[200];
	const char *text = PQerrorMessage(conn);
	size_t n;

	if (!strncmp(text, "ERROR:  ", 8))
		text += 8;
	snprintf(line, sizeof(line), "%s", text);
	n = strcspn(line, "\n");
	line[n] = 0;
	return line;
}

static void uuid_text(const uint8_t *id, char *out)
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		 "%02x%02x%02x%02x%02x%02x", id[0], id[1], id[2], id[3], id[4],
		 id[5], id[6], id[7], id[8], id[9], id[10], id[11], id[12],
		 id[13], id[14], id[15]);
}

static void add_hash(struct json_object *record, const char *key,
		     const uint8_t *hash)
{
	char hex[2 * LEDGER_HASH_LEN + 1];

	if (!hash)
		return;
	ledger_hash_hex(hash, hex);
	json_object_object_add(record, key, json_object_new_string(hex));
}

static void add_time(struct json_object *record)
{
	struct timespec now;
	struct tm tm;
	char text[40];
	size_t n;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	n = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(text + n, sizeof(text) - n, ".%06ldZ", now.tv_nsec / 1000);
	json_object_object_add(record, "time", json_object_new_string(text));
}

static void report(struct run *run, const struct finding *f)
{
	struct json_object *record = json_object_new_object();
	char id[37];

	if (!record)
		return;
	add_time(record);
	json_object_object_add(record, "invariant",
			       json_object_new_string("hash_integrity"));
	json_object_object_add(record, "rule", json_object_new_string(f->rule));
	json_object_object_add(record, "relation",
			       json_object_new_string(f->relation));
	json_object_object_add(record, "seq", json_object_new_int64(f->seq));
	if (f->event_id)
		uuid_text(f->event_id, id);
	json_object_object_add(record, "event_id",
			       f->event_id ? json_object_new_string(id) : NULL);
	if (f->seq_last)
		json_object_object_add(record, "seq_last",
				       json_object_new_int64(f->seq_last));
	if (f->next_seq)
		json_object_object_add(record, "next_seq",
				       json_object_new_int64(f->next_seq));
	add_hash(record, "stored_hash", f->stored);
	add_hash(record, "computed_hash", f->computed);
	feed_emit(run->opts->feed, record);
	json_object_put(record);
	metrics_inc(METRIC_VERIFY_FINDINGS, f->rule);
	atomic_fetch_add(&run->findings, 1);
}

static const char *events_relation(const struct run *run)
{
	return run->opts->policy->hash.events_table;
}

static const char *postings_relation(const struct run *run)
{
	return run->opts->policy->hash.postings_table;
}

/* ---- names ---- */

static char *quote(PGconn *conn, const char *name)
{
	char *quoted = PQescapeIdentifier(conn, name, strlen(name));
	char *copy = quoted ? strdup(quoted) : NULL;

	PQfreemem(quoted);
	return copy;
}

static char *quote_table(PGconn *conn, const char *text)
{
	struct policy_name name;
	char *schema, *table, *joined = NULL;

	if (policy_parse_name(text, false, &name))
		return NULL;
	schema = quote(conn, name.schema);
	table = quote(conn, name.object);
	if (schema && table && asprintf(&joined, "%s.%s", schema, table) < 0)
		joined = NULL;
	free(schema);
	free(table);
	free(name.schema);
	free(name.object);
	return joined;
}

static void names_free(struct names *names)
{
	char **all = &names->events;
	size_t i;

	for (i = 0; i < sizeof(*names) / sizeof(char *); i++)
		free(all[i]);
}

static int names_build(PGconn *conn, const struct policy_hash *hash,
		       struct names *names)
{
	const char *columns[] = {
		hash->seq_column, hash->event_id_column, hash->prev_hash_column,
		hash->postings_hash_column, hash->event_seq_column,
		hash->account_column, hash->currency_column,
		hash->amount_column,
	};
	char **quoted = &names->seq;
	size_t i;

	memset(names, 0, sizeof(*names));
	names->events = quote_table(conn, hash->events_table);
	names->postings = quote_table(conn, hash->postings_table);
	if (!names->events || !names->postings)
		return -EINVAL;
	for (i = 0; i < sizeof(columns) / sizeof(columns[0]); i++)
		if (!(quoted[i] = quote(conn, columns[i])))
			return -ENOMEM;
	return 0;
}

/* ---- queries ---- */

static char *events_query(const struct names *n, int64_t lo, int64_t hi)
{
	char *query;

	if (asprintf(&query, "COPY (SELECT %s::int8, %s::uuid, %s::bytea, "
		     "%s::bytea FROM %s WHERE %s BETWEEN %lld AND %lld "
		     "ORDER BY %s) TO STDOUT (FORMAT binary)", n->seq,
		     n->event_id, n->prev_hash, n->postings_hash, n->events,
		     n->seq, (long long)lo, (long long)hi, n->seq) < 0)
		return NULL;
	return query;
}

static char *postings_query(const struct names *n, int64_t lo, int64_t hi)
{
	char *query;

	if (asprintf(&query, "COPY (SELECT %s::int8, %s::text, %s::text, "
		     "%s::int8 FROM %s WHERE %s BETWEEN %lld AND %lld "
		     "ORDER BY %s) TO STDOUT (FORMAT binary)", n->event_seq,
		     n->account, n->currency, n->amount, n->postings,
		     n->event_seq, (long long)lo, (long long)hi,
		     n->event_seq) < 0)
		return NULL;
	return query;
}

/* Run a query that should succeed; on failure say which table. */
static int probe(struct run *run, PGconn *conn, const char *query,
		 const char *table, int64_t *max_seq)
{
	PGresult *result = PQexec(conn, query);
	const char *state;
	int ret = 0;

	if (PQresultStatus(result) != PGRES_TUPLES_OK) {
		state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
		/* 42P01 undefined table, 42703 undefined column, 3F000 schema */
		ret = state && (!strcmp(state, "42P01") ||
				!strcmp(state, "42703") ||
				!strcmp(state, "3F000")) ? -ENOENT : -EIO;
		run_fail(run, ret, "cannot read '%s': %s", table,
			 server_message(conn));
	} else if (max_seq && PQntuples(result) == 1) {
		*max_seq = PQgetisnull(result, 0, 0)
				   ? 0 : strtoll(PQgetvalue(result, 0, 0), NULL, 10);
	}
	PQclear(result);
	return ret;
}

/* Check that the policy's tables and columns exist; find the last seq. */
static int probe_tables(struct run *run, PGconn *conn, int64_t *max_seq)
{
	const struct names *n = &run->names;
	char *events = NULL, *postings = NULL;
	int ret = -ENOMEM;

	if (asprintf(&events, "SELECT max(%s)::int8, (SELECT count(*) FROM "
		     "(SELECT %s, %s, %s FROM %s LIMIT 0) x) FROM %s", n->seq,
		     n->event_id, n->prev_hash, n->postings_hash, n->events,
		     n->events) < 0)
		events = NULL;
	if (asprintf(&postings, "SELECT %s, %s, %s, %s FROM %s LIMIT 0",
		     n->event_seq, n->account, n->currency, n->amount,
		     n->postings) < 0)
		postings = NULL;
	if (events && postings) {
		ret = probe(run, conn, events, events_relation(run), max_seq);
		if (!ret)
			ret = probe(run, conn, postings, postings_relation(run),
				    NULL);
	}
	free(events);
	free(postings);
	return ret;
}

static PGconn *connect_db(struct run *run)
{
	PGconn *conn = PQconnectdb(run->opts->policy->dsn);

	if (PQstatus(conn) != CONNECTION_OK) {
		run_fail(run, -ECONNREFUSED, "cannot connect to the database: %s",
			 server_message(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/* ---- one range, on a worker ---- */

/* The posting set of the current event; accounts copied into 'bytes'. */
struct posting_set {
	struct ledger_posting *items;
	size_t *offsets;		/* of each account in 'bytes' */
	size_t count, capacity;
	uint8_t *bytes;
	size_t used, bytes_capacity;
};

/* A posting read ahead: it belongs to a later event. */
struct lookahead {
	bool present;
	int64_t seq;
	uint8_t currency[LEDGER_CURRENCY_LEN];
	int64_t amount;
	uint8_t *account;
	size_t account_len, capacity;
};

struct worker {
	struct run *run;
	PGconn *events_conn, *postings_conn;
	struct ledger_hasher *hasher;
	struct posting_set set;
	struct lookahead ahead;
	struct pgcopy events, postings;
	bool postings_done;
	struct range *range;
	size_t next_checkpoint;
	bool has_prev;
	struct verify_anchor prev;	/* previous event of this range */
};

/* A posting row as received (or as kept in the lookahead) */
struct posting_in {
	int64_t seq;
	const uint8_t *account;
	size_t account_len;
	uint8_t currency[LEDGER_CURRENCY_LEN];
	int64_t amount;
};

static int grow(void **buffer, size_t *capacity, size_t need, size_t item)
{
	size_t next = *capacity ? *capacity : 16;
	void *grown;

	if (need <= *capacity)
		return 0;
	while (next < need)
		next *= 2;
	grown = realloc(*buffer, next * item);
	if (!grown)
		return -ENOMEM;
	*buffer = grown;
	*capacity = next;
	return 0;
}

static int set_add(struct posting_set *set, const struct posting_in *in)
{
	size_t capacity = set->capacity;
	struct ledger_posting *posting;

	if (grow((void **)&set->items, &capacity, set->count + 1,
		 sizeof(*set->items)) ||
	    grow((void **)&set->offsets, &set->capacity, set->count + 1,
		 sizeof(*set->offsets)) ||
	    grow((void **)&set->bytes, &set->bytes_capacity,
		 set->used + in->account_len + 1, 1))
		return -ENOMEM;
	posting = &set->items[set->count];
	memcpy(posting->currency, in->currency, LEDGER_CURRENCY_LEN);
	posting->amount = in->amount;
	posting->account_len = in->account_len;
	set->offsets[set->count++] = set->used;
	memcpy(set->bytes + set->used, in->account, in->account_len);
	set->used += in->account_len;
	return 0;
}

/* Account pointers are fixed up only once the byte buffer stops moving. */
static void set_seal(struct posting_set *set)
{
	size_t i;

	for (i = 0; i < set->count; i++)
		set->items[i].account = set->bytes + set->offsets[i];
}

static int keep_ahead(struct lookahead *ahead, const struct posting_in *in)
{
	if (grow((void **)&ahead->account, &ahead->capacity,
		 in->account_len + 1, 1))
		return -ENOMEM;
	memcpy(ahead->account, in->account, in->account_len);
	ahead->account_len = in->account_len;
	memcpy(ahead->currency, in->currency, LEDGER_CURRENCY_LEN);
	ahead->amount = in->amount;
	ahead->seq = in->seq;
	ahead->present = true;
	return 0;
}

/*
 * A currency that is not 3 bytes is padded with spaces as char(3) is; a
 * NULL amount counts as 0. Either way the hash tells whether it was so.
 */
static void posting_decode(const struct pgcopy_field *f, struct posting_in *in)
{
	int n = f[2].length < LEDGER_CURRENCY_LEN ? f[2].length
						   : LEDGER_CURRENCY_LEN;

	in->seq = pgcopy_int64(&f[0]);
	in->account = f[1].data ? f[1].data : (const uint8_t *)"";
	in->account_len = f[1].length;
	memset(in->currency, ' ', LEDGER_CURRENCY_LEN);
	if (n > 0)
		memcpy(in->currency, f[2].data, n);
	in->amount = pgcopy_int64(&f[3]);
}

/* Take the lookahead, if it belongs to 'seq'; 1 if a later event's. */
static int take_ahead(struct worker *w, int64_t seq)
{
	struct lookahead *a = &w->ahead;
	struct posting_in in = { a->seq, a->account, a->account_len,
				 { 0 }, a->amount };

	if (!a->present)
		return 0;
	if (a->seq > seq)
		return 1;
	a->present = false;
	if (a->seq < seq)	/* no such event: the gap is reported there */
		return 0;
	memcpy(in.currency, a->currency, LEDGER_CURRENCY_LEN);
	return set_add(&w->set, &in);
}

/* Gather the postings of event 'seq' from the ordered postings stream. */
static int collect_postings(struct worker *w, int64_t seq)
{
	struct pgcopy_field fields[4];
	struct posting_in in;
	int ret;

	w->set.count = 0;
	w->set.used = 0;
	ret = take_ahead(w, seq);
	while (!ret && !w->postings_done) {
		ret = pgcopy_next(&w->postings, fields, 4);
		if (ret <= 0) {
			w->postings_done = true;
			break;
		}
		posting_decode(fields, &in);
		if (in.seq < seq)
			ret = 0;
		else if (in.seq == seq)
			ret = set_add(&w->set, &in);
		else
			ret = keep_ahead(&w->ahead, &in) ?: 1;
	}
	set_seal(&w->set);
	atomic_fetch_add(&w->run->postings, w->set.count);
	return ret < 0 ? ret : 0;
}

/* An event row as received; pointers into the events reader's buffer. */
struct event_in {
	int64_t seq;
	const uint8_t *event_id;	/* NULL unless 16 bytes */
	const uint8_t *prev_hash;	/* NULL unless 32 bytes */
	const uint8_t *hash;		/* NULL unless 32 bytes */
	bool hash_ok;
	uint8_t computed[LEDGER_HASH_LEN];
};

static const uint8_t *sized(const struct pgcopy_field *field, int length)
{
	return field->data && field->length == length ? field->data : NULL;
}

static void event_decode(const struct pgcopy_field *f, struct event_in *ev)
{
	ev->seq = pgcopy_int64(&f[0]);
	ev->event_id = sized(&f[1], LEDGER_EVENT_ID_LEN);
	ev->prev_hash = sized(&f[2], LEDGER_HASH_LEN);
	ev->hash = sized(&f[3], LEDGER_HASH_LEN);
}

static void report_missing(struct run *run, int64_t first, int64_t last)
{
	struct finding f = { "missing_seq", events_relation(run), first, NULL,
			     last };

	report(run, &f);
}

/*
 * A link n-1 -> n that does not hold. If event n's own hash verifies, its
 * prev_hash is what the chain recorded and n-1 is the event that changed;
 * otherwise n's prev_hash itself is suspect.
 */
static void report_link(struct run *run, const struct verify_anchor *prev,
			int64_t seq, const uint8_t *event_id, bool hash_ok,
			const uint8_t *prev_hash)
{
	struct finding f = { "chain_break", events_relation(run) };

	f.seq = hash_ok ? prev->seq : seq;
	f.event_id = hash_ok ? prev->event_id : event_id;
	f.next_seq = seq;
	f.stored = prev->hash;
	f.computed = prev_hash;
	report(run, &f);
}

static bool link_holds(const struct verify_anchor *prev, const uint8_t *prev_hash)
{
	return prev_hash && !memcmp(prev->hash, prev_hash, LEDGER_HASH_LEN);
}

static void check_checkpoints(struct worker *w, const struct event_in *ev)
{
	const struct checkpoint_set *cps = w->run->opts->checkpoints;
	struct finding f = { "checkpoint_mismatch", events_relation(w->run) };
	const struct checkpoint *cp;

	while (cps && w->next_checkpoint < cps->count) {
		cp = &cps->items[w->next_checkpoint];
		if (cp->seq > (ev ? ev->seq : w->range->hi))
			break;
		w->next_checkpoint++;
		/* a checkpointed seq the stream skipped no longer exists */
		if (ev && cp->seq == ev->seq && ev->hash &&
		    !memcmp(ev->hash, cp->hash, LEDGER_HASH_LEN))
			continue;
		f.seq = cp->seq;
		f.event_id = ev && cp->seq == ev->seq ? ev->event_id : NULL;
		f.stored = ev && cp->seq == ev->seq ? ev->hash : NULL;
		f.computed = cp->hash;
		report(w->run, &f);
	}
}

static void check_contents(struct worker *w, struct event_in *ev)
{
	struct run *run = w->run;
	struct finding f = { NULL, postings_relation(run), ev->seq, ev->event_id };
	static const uint8_t no_id[LEDGER_EVENT_ID_LEN];
	int ret;

	if (w->set.count == 0) {
		f.rule = "event_without_postings";
		report(run, &f);
	} else if (!ledger_postings_balanced(w->set.items, w->set.count)) {
		f.rule = "unbalanced_postings";
		report(run, &f);
	}
	ret = ledger_hash_v1(w->hasher, ev->prev_hash ? ev->prev_hash : no_id,
			     ev->event_id ? ev->event_id : no_id, w->set.items,
			     w->set.count, ev->computed);
	ev->hash_ok = !ret && ev->prev_hash && ev->event_id && ev->hash &&
		      !memcmp(ev->hash, ev->computed, LEDGER_HASH_LEN);
	if (!ev->hash_ok) {
		f.rule = "hash_mismatch";
		f.relation = events_relation(run);
		f.stored = ev->hash;
		f.computed = ret ? NULL : ev->computed;
		report(run, &f);
	}
}

/* The first event of the ledger links to 32 zero bytes. */
static void check_genesis(struct worker *w, const struct event_in *ev)
{
	static const struct verify_anchor none;

	if (ev->seq == 1 && !link_holds(&none, ev->prev_hash))
		report_link(w->run, &none, 1, ev->event_id, false, ev->prev_hash);
}

static void note_first(struct range *r, const struct event_in *ev)
{
	r->any = true;
	r->first_seq = ev->seq;
	r->first_hash_ok = ev->hash_ok;
	memset(r->first_prev, 0, LEDGER_HASH_LEN);
	if (ev->prev_hash)
		memcpy(r->first_prev, ev->prev_hash, LEDGER_HASH_LEN);
	memset(r->first_id, 0, LEDGER_EVENT_ID_LEN);
	if (ev->event_id)
		memcpy(r->first_id, ev->event_id, LEDGER_EVENT_ID_LEN);
}

static void anchor_set(struct verify_anchor *a, const struct event_in *ev)
{
	memset(a, 0, sizeof(*a));
	a->seq = ev->seq;
	if (ev->hash)
		memcpy(a->hash, ev->hash, LEDGER_HASH_LEN);
	if (ev->event_id)
		memcpy(a->event_id, ev->event_id, LEDGER_EVENT_ID_LEN);
}

static void check_event(struct worker *w, struct event_in *ev)
{
	struct range *r = w->range;
	bool gap = w->has_prev && ev->seq > w->prev.seq + 1;

	if (w->has_prev && ev->seq == w->prev.seq) {
		struct finding f = { "duplicate_seq", events_relation(w->run),
				     ev->seq, ev->event_id };

		report(w->run, &f);
		return;
	}
	if (gap && w->run->opts->report_gaps)
		report_missing(w->run, w->prev.seq + 1, ev->seq - 1);
	check_contents(w, ev);
	check_genesis(w, ev);
	if (w->has_prev && !gap && !link_holds(&w->prev, ev->prev_hash))
		report_link(w->run, &w->prev, ev->seq, ev->event_id,
			    ev->hash_ok, ev->prev_hash);
	check_checkpoints(w, ev);
	if (!w->has_prev)
		note_first(r, ev);
	r->gap_inside |= gap;
	anchor_set(&w->prev, ev);
	if (!r->gap_inside)
		r->run = w->prev;
	r->last = w->prev;
	w->has_prev = true;
	atomic_fetch_add(&w->run->events, 1);
}

static int start_range(struct worker *w)
{
	const struct names *n = &w->run->names;
	char *events = events_query(n, w->range->lo, w->range->hi);
	char *postings = postings_query(n, w->range->lo, w->range->hi);
	int ret = -ENOMEM;

	/* events first: their snapshot is older than the postings' */
	if (events && postings) {
		ret = pgcopy_start(&w->events, w->events_conn, events);
		if (ret)
			run_fail(w->run, ret, "cannot read '%s': %s",
				 events_relation(w->run),
				 server_message(w->events_conn));
	}
	if (!ret) {
		ret = pgcopy_start(&w->postings, w->postings_conn, postings);
		if (ret)
			run_fail(w->run, ret, "cannot read '%s': %s",
				 postings_relation(w->run),
				 server_message(w->postings_conn));
	}
	free(events);
	free(postings);
	return ret;
}

static size_t first_checkpoint(const struct checkpoint_set *cps, int64_t lo)
{
	size_t low = 0, high = cps ? cps->count : 0;

	while (low < high) {
		size_t mid = (low + high) / 2;

		if (cps->items[mid].seq < lo)
			low = mid + 1;
		else
			high = mid;
	}
	return low;
}

/* Drain what is left of the postings (orphans past the last event). */
static int drain_postings(struct worker *w)
{
	struct pgcopy_field fields[4];
	int ret = 0;

	while (!w->postings_done) {
		ret = pgcopy_next(&w->postings, fields, 4);
		if (ret <= 0)
			w->postings_done = true;
	}
	return ret < 0 ? ret : 0;
}

static int verify_range(struct worker *w, struct range *r)
{
	struct pgcopy_field fields[4];
	struct event_in ev;
	int ret;

	w->range = r;
	w->has_prev = false;
	w->postings_done = false;
	w->ahead.present = false;
	w->next_checkpoint = first_checkpoint(w->run->opts->checkpoints, r->lo);
	ret = start_range(w);
	while (!ret && !atomic_load(&w->run->failed)) {
		ret = pgcopy_next(&w->events, fields, 4);
		if (ret <= 0)
			break;
		event_decode(fields, &ev);
		ret = collect_postings(w, ev.seq);
		if (!ret)
			check_event(w, &ev);
	}
	if (!ret)
		ret = drain_postings(w);
	if (!ret)
		check_checkpoints(w, NULL);
	pgcopy_end(&w->events);
	pgcopy_end(&w->postings);
	if (ret && !atomic_load(&w->run->failed))
		run_fail(w->run, ret, "reading the ledger failed: %s",
			 server_message(ret == -EIO ? w->events_conn
						    : w->postings_conn));
	return ret;
}

/* ---- the pool ---- */

static void worker_release(struct worker *w)
{
	PQfinish(w->events_conn);
	PQfinish(w->postings_conn);
	ledger_hasher_free(w->hasher);
	free(w->set.items);
	free(w->set.offsets);
	free(w->set.bytes);
	free(w->ahead.account);
}

static void *worker_main(void *arg)
{
	struct worker w = { .run = arg };
	struct run *run = w.run;
	size_t i;

	w.events_conn = connect_db(run);
	w.postings_conn = w.events_conn ? connect_db(run) : NULL;
	if (w.postings_conn && ledger_hasher_new(&w.hasher))
		run_fail(run, -ENOMEM, "out of memory");
	while (w.hasher && !atomic_load(&run->failed)) {
		i = atomic_fetch_add(&run->next_range, 1);
		if (i >= run->range_count || verify_range(&w, &run->ranges[i]))
			break;
	}
	worker_release(&w);
	pthread_mutex_lock(&run->lock);
	run->workers_done++;
	pthread_cond_signal(&run->done);
	pthread_mutex_unlock(&run->lock);
	return NULL;
}

static int make_ranges(struct run *run, int64_t from, int64_t to)
{
	const struct verify_options *o = run->opts;
	int64_t span = to - from + 1, size = o->range_size, lo;
	size_t i;

	if (size <= 0) {
		size = span / ((int64_t)o->threads * RANGES_PER_THREAD) + 1;
		size = size < RANGE_MIN ? RANGE_MIN : size;
	}
	run->range_count = span <= 0 ? 0 : (size_t)((span + size - 1) / size);
	run->ranges = calloc(run->range_count ? run->range_count : 1,
			     sizeof(*run->ranges));
	if (!run->ranges)
		return -ENOMEM;
	for (i = 0, lo = from; i < run->range_count; i++, lo += size) {
		run->ranges[i].lo = lo;
		run->ranges[i].hi = lo + size - 1 < to ? lo + size - 1 : to;
	}
	return 0;
}

static void wait_workers(struct run *run, int workers, int64_t span)
{
	const struct verify_options *o = run->opts;
	struct timespec deadline;

	pthread_mutex_lock(&run->lock);
	while (run->workers_done < workers) {
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_nsec += 200 * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&run->done, &run->lock, &deadline);
		if (o->progress) {
			pthread_mutex_unlock(&run->lock);
			o->progress(o->progress_arg, atomic_load(&run->events),
				    span);
			pthread_mutex_lock(&run->lock);
		}
	}
	pthread_mutex_unlock(&run->lock);
}

static int run_pool(struct run *run, int64_t span)
{
	int workers = run->opts->threads, started = 0, i;
	pthread_t *threads;

	if ((size_t)workers > run->range_count)
		workers = run->range_count;
	threads = calloc(workers ? workers : 1, sizeof(*threads));
	if (!threads)
		return -ENOMEM;
	for (i = 0; i < workers; i++) {
		if (pthread_create(&threads[i], NULL, worker_main, run)) {
			run_fail(run, -EAGAIN, "cannot start a verifier thread");
			break;
		}
		started++;
	}
	wait_workers(run, started, span);
	for (i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	free(threads);
	return run->error;
}

/* ---- stitching the ranges ---- */

struct stitch {
	bool has_prev;
	struct verify_anchor prev;	/* last event of the ranges so far */
	bool contiguous;		/* no gap from from_seq up to prev */
};

static void stitch_range(struct run *run, struct stitch *s,
			 const struct range *r, struct verify_result *result)
{
	int64_t expected = s->has_prev ? s->prev.seq + 1 : run->opts->from_seq;

	if (!r->any)
		return;
	if (r->first_seq > expected) {
		if (run->opts->report_gaps)
			report_missing(run, expected, r->first_seq - 1);
		s->contiguous = false;
	}
	if (s->has_prev && r->first_seq == s->prev.seq + 1 &&
	    !link_holds(&s->prev, r->first_prev))
		report_link(run, &s->prev, r->first_seq, r->first_id,
			    r->first_hash_ok, r->first_prev);
	if (s->contiguous) {
		result->has_head = true;
		result->head = r->gap_inside ? r->run : r->last;
	}
	s->contiguous &= !r->gap_inside;
	result->has_last = true;
	result->last = r->last;
	s->prev = r->last;
	s->has_prev = true;
}

/* Checkpoints past the last event: the ledger lost its head. */
static void report_lost_checkpoints(struct run *run, int64_t max_seq)
{
	const struct checkpoint_set *cps = run->opts->checkpoints;
	struct finding f = { "checkpoint_mismatch", events_relation(run) };
	size_t i;

	for (i = first_checkpoint(cps, max_seq + 1); cps && i < cps->count; i++) {
		f.seq = cps->items[i].seq;
		f.computed = cps->items[i].hash;
		report(run, &f);
	}
}

static void stitch(struct run *run, struct verify_result *result)
{
	struct stitch s = { .contiguous = true };
	size_t i;

	if (run->opts->anchor) {
		s.has_prev = true;
		s.prev = *run->opts->anchor;
		result->has_head = true;
		result->head = s.prev;
	}
	for (i = 0; i < run->range_count; i++)
		stitch_range(run, &s, &run->ranges[i], result);
	report_lost_checkpoints(run, result->max_seq);
}

/* ---- entry ---- */

static int prepare(struct run *run, struct verify_result *result)
{
	PGconn *conn = connect_db(run);
	int ret;

	if (!conn)
		return run->error;
	ret = names_build(conn, &run->opts->policy->hash, &run->names);
	if (ret)
		run_fail(run, ret, "bad table name in the policy: '%s' or '%s'",
			 events_relation(run), postings_relation(run));
	else
		ret = probe_tables(run, conn, &result->max_seq);
	PQfinish(conn);
	if (!ret)
		ret = make_ranges(run, run->opts->from_seq, result->max_seq);
	return ret;
}

int verify_run(const struct verify_options *opts, struct verify_result *result,
	       char *err, size_t err_len)
{
	struct run run = { .opts = opts };
	int ret;

	memset(result, 0, sizeof(*result));
	pthread_mutex_init(&run.lock, NULL);
	pthread_cond_init(&run.done, NULL);
	ret = prepare(&run, result);
	if (!ret)
		ret = run_pool(&run, result->max_seq - opts->from_seq + 1);
	if (!ret)
		stitch(&run, result);
	if (ret && !run.error)
		run_fail(&run, ret, "%s", strerror(-ret));
	if (ret)
		snprintf(err, err_len, "%s", run.message);
	result->events = atomic_load(&run.events);
	result->postings = atomic_load(&run.postings);
	result->findings = atomic_load(&run.findings);
	names_free(&run.names);
	free(run.ranges);
	pthread_mutex_destroy(&run.lock);
	pthread_cond_destroy(&run.done);
	return ret;
}
