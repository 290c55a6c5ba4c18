/*
 * The flight recorder (see recorder.h). Memory is bounded three ways:
 * each record's text (record_bytes), each backend's ring (statements +
 * xact_records entries, backend_bytes), and everything together
 * (total_bytes, pending copies included, at most PENDING_MAX of them).
 * When a bound bites, the oldest records of the backend at hand go first,
 * and records of a transaction in progress lost that way are counted.
 *
 * Owned by one thread, except 'requests' and 'request_all', which signal
 * handlers set with atomic operations and recorder_tick drains.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "recorder.h"

#define BUCKETS		1024
#define PENDING_MAX	16
#define VIOLATIONS_MAX	16
#define REQUEST_SLOTS	8
#define CHUNK_BYTES	(256u << 10)	/* records per frame, well under max */
#define MASK_BYTES	(32u << 10)
#define ENTRY_OVERHEAD	64		/* accounted per record beyond text */
#define REQUEST_ALL	(-1)

struct entry {
	char *text;
	uint32_t len;
	uint32_t xact;
};

/* The copy a violation starts, filled until its transaction ends. */
struct pending {
	struct entry *items;
	uint32_t count;
	uint32_t cap;
	uint32_t followed;	/* records added after the violation */
	uint32_t xact;
	uint64_t started_ms;
	uint64_t dropped;
	size_t bytes;
	char *violations[VIOLATIONS_MAX];
	int violation_count;
};

struct backend {
	struct backend *next;	/* hash chain */
	uint32_t pid;
	uint64_t start;
	char *session;
	struct entry *ring;
	uint32_t head;		/* oldest */
	uint32_t count;
	uint32_t xact;		/* number of the transaction in progress */
	uint32_t xact_count;	/* ring entries that belong to it */
	size_t bytes;
	uint64_t dropped;
	struct pending *pending;
};

struct recorder {
	struct recorder_config cfg;
	uint32_t ring_cap;
	struct backend *buckets[BUCKETS];
	struct recorder_stats st;
	uint64_t last_violation_ms;
	bool violated;
	uint64_t dump_seq;
	int requests[REQUEST_SLOTS];	/* 0 free, pid, or REQUEST_ALL */
	int request_all;
};

static struct recorder *signal_recorder;

static uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t now_ms(const struct recorder *rec)
{
	return rec->cfg.clock_ms ? rec->cfg.clock_ms() : monotonic_ms();
}

static void config_defaults(struct recorder_config *c)
{
	if (c->statements <= 0)
		c->statements = 64;
	if (c->xact_records <= 0)
		c->xact_records = 4 * c->statements;
	if (c->follow_statements <= 0)
		c->follow_statements = c->statements;
	if (c->follow_ms <= 0)
		c->follow_ms = 10000;
	if (c->min_interval_ms < 0)
		c->min_interval_ms = 0;
	if (c->backends <= 0)
		c->backends = 4096;
	if (!c->record_bytes)
		c->record_bytes = 16u << 10;
	if (!c->backend_bytes)
		c->backend_bytes = 1u << 20;
	if (!c->total_bytes)
		c->total_bytes = 64u << 20;
}

int recorder_create(const struct recorder_config *config,
		    struct recorder **out)
{
	struct recorder *rec;

	if (!config->directory || (!config->key && !config->mask_fn))
		return -EINVAL;
	rec = calloc(1, sizeof(*rec));
	if (!rec)
		return -ENOMEM;
	rec->cfg = *config;
	config_defaults(&rec->cfg);
	rec->ring_cap = rec->cfg.statements + rec->cfg.xact_records;
	*out = rec;
	return 0;
}

static size_t entry_cost(const struct entry *e)
{
	return e->len + ENTRY_OVERHEAD;
}

/*
 * A record too long to keep whole keeps its other fields' worth in a
 * stub: the statement cut short and the original size, so the dump says
 * what was lost.
 */
static char *shorten(const struct recorder *rec, struct json_object *record,
		     size_t len)
{
	struct json_object *stub = json_object_new_object(), *field;
	size_t keep = rec->cfg.record_bytes / 2;
	const char *text;
	char *out;

	if (!stub)
		return NULL;
	json_object_object_foreach(record, key, val) {
		if (strcmp(key, "statement") && strcmp(key, "params") &&
		    strcmp(key, "client_statement") &&
		    json_object_get_type(val) != json_type_array &&
		    json_object_get_type(val) != json_type_object)
			json_object_object_add(stub, key, json_object_get(val));
	}
	if (json_object_object_get_ex(record, "statement", &field) &&
	    (text = json_object_get_string(field)))
		json_object_object_add(stub, "statement",
			json_object_new_string_len(text,
				strlen(text) < keep ? strlen(text) : keep));
	json_object_object_add(stub, "record_truncated_from",
			       json_object_new_int64((int64_t)len));
	text = json_object_to_json_string_ext(stub, JSON_C_TO_STRING_PLAIN);
	out = text && strlen(text) <= rec->cfg.record_bytes ? strdup(text)
							    : NULL;
	json_object_put(stub);
	return out;
}

static int entry_make(const struct recorder *rec, struct json_object *record,
		      uint32_t xact, struct entry *e)
{
	const char *text = json_object_to_json_string_ext(record,
						JSON_C_TO_STRING_PLAIN);
	size_t len = text ? strlen(text) : 0;

	if (!text)
		return -ENOMEM;
	e->text = len <= rec->cfg.record_bytes ? strdup(text)
					       : shorten(rec, record, len);
	if (!e->text)
		return len <= rec->cfg.record_bytes ? -ENOMEM : -EMSGSIZE;
	e->len = (uint32_t)strlen(e->text);
	e->xact = xact;
	return 0;
}

static struct backend **bucket(struct recorder *rec, uint32_t pid)
{
	return &rec->buckets[(pid * 2654435761u) % BUCKETS];
}

static struct backend *backend_lookup(struct recorder *rec, uint32_t pid)
{
	struct backend *b;

	for (b = *bucket(rec, pid); b; b = b->next)
		if (b->pid == pid)
			return b;
	return NULL;
}

static struct entry *ring_at(const struct recorder *rec,
			     const struct backend *b, uint32_t i)
{
	return &b->ring[(b->head + i) % rec->ring_cap];
}

/* Drop the backend's oldest record; counted if its transaction is open. */
static void ring_evict(struct recorder *rec, struct backend *b)
{
	struct entry *e = ring_at(rec, b, 0);

	if (e->xact == b->xact) {
		b->xact_count--;
		b->dropped++;
		rec->st.records_dropped++;
	}
	b->bytes -= entry_cost(e);
	rec->st.bytes -= entry_cost(e);
	rec->st.records--;
	free(e->text);
	e->text = NULL;
	b->head = (b->head + 1) % rec->ring_cap;
	b->count--;
}

static bool over_budget(const struct recorder *rec, const struct backend *b)
{
	return b->bytes > rec->cfg.backend_bytes ||
	       rec->st.bytes > rec->cfg.total_bytes;
}

/* Take ownership of 'e' and enforce every bound on this backend. */
static void ring_push(struct recorder *rec, struct backend *b,
		      struct entry *e)
{
	if (b->count == rec->ring_cap)
		ring_evict(rec, b);
	*ring_at(rec, b, b->count) = *e;
	b->count++;
	b->xact_count++;
	b->bytes += entry_cost(e);
	rec->st.bytes += entry_cost(e);
	rec->st.records++;
	while (b->count - b->xact_count > (uint32_t)rec->cfg.statements)
		ring_evict(rec, b);
	while (b->count && over_budget(rec, b))
		ring_evict(rec, b);
}

static void pending_free(struct recorder *rec, struct pending *p)
{
	uint32_t i;
	int v;

	if (!p)
		return;
	for (i = 0; i < p->count; i++)
		free(p->items[i].text);
	for (v = 0; v < p->violation_count; v++)
		free(p->violations[v]);
	rec->st.bytes -= p->bytes;
	rec->st.pending--;
	free(p->items);
	free(p);
}

/* Copy 'e' into the pending dump unless a bound says no (counted). */
static void pending_append(struct recorder *rec, struct pending *p,
			   const struct entry *e)
{
	struct entry *copy;

	if (p->count == p->cap || rec->st.bytes + entry_cost(e) >
				  rec->cfg.total_bytes) {
		p->dropped++;
		return;
	}
	copy = &p->items[p->count];
	copy->text = strdup(e->text);
	if (!copy->text) {
		p->dropped++;
		return;
	}
	copy->len = e->len;
	copy->xact = e->xact;
	p->count++;
	p->bytes += entry_cost(e);
	rec->st.bytes += entry_cost(e);
}

/* A dump being written. */
struct dump_ctx {
	struct recorder *rec;
	struct dumpfile_writer *writer;
	uint32_t frames;
	uint64_t records;
	bool masked;
	char *mask_buf;
	struct json_object *chunk;	/* records waiting for a frame */
	size_t chunk_bytes;
};

/* What one backend contributes to a dump. */
struct dump_source {
	uint32_t pid;
	uint64_t start;
	const char *session;
	const struct entry *items;
	uint32_t head;
	uint32_t count;
	uint32_t cap;
	char *const *violations;
	int violation_count;
	uint64_t dropped;
	const char *complete;	/* why collection ended, or NULL */
};

/* Replace the string 'key' of 'obj' with its masked form. */
static void mask_field(struct dump_ctx *ctx, struct json_object *obj,
		       const char *key)
{
	struct json_object *field;
	const char *masked;

	if (!json_object_object_get_ex(obj, key, &field) ||
	    !json_object_is_type(field, json_type_string))
		return;
	masked = ctx->rec->cfg.mask_fn(json_object_get_string(field),
				       ctx->mask_buf, MASK_BYTES);
	json_object_object_add(obj, key, json_object_new_string(
		masked ? masked : "[masked: not maskable]"));
}

/*
 * Unencrypted dumps never carry literals: the statements (the executor's
 * and the client's own, from wire capture) go through the caller's masker
 * and bind values are left out.
 */
static void mask_record(struct dump_ctx *ctx, struct json_object *obj)
{
	if (!ctx->masked || !json_object_is_type(obj, json_type_object))
		return;
	json_object_object_del(obj, "params");
	json_object_object_del(obj, "bind_values");
	mask_field(ctx, obj, "statement");
	mask_field(ctx, obj, "client_statement");
}

/* Write one frame, reserving the last frame for a truncation mark. */
static int ctx_add(struct dump_ctx *ctx, struct json_object *frame)
{
	struct json_object *mark;
	int err;

	if (ctx->frames + 1 >= DUMPFILE_FRAMES_MAX) {
		mark = json_object_new_object();
		json_object_object_add(mark, "kind",
				       json_object_new_string("truncated"));
		err = dumpfile_add(ctx->writer, mark);
		json_object_put(mark);
		json_object_put(frame);
		return err ? err : -E2BIG;
	}
	err = dumpfile_add(ctx->writer, frame);
	json_object_put(frame);
	if (!err)
		ctx->frames++;
	return err;
}

static struct json_object *frame_new(const char *kind, uint32_t pid)
{
	struct json_object *frame = json_object_new_object();

	json_object_object_add(frame, "kind", json_object_new_string(kind));
	json_object_object_add(frame, "pid", json_object_new_int64(pid));
	return frame;
}

static int flush_chunk(struct dump_ctx *ctx, uint32_t pid)
{
	struct json_object *frame;

	if (!ctx->chunk)
		return 0;
	frame = frame_new("records", pid);
	json_object_object_add(frame, "records", ctx->chunk);
	ctx->chunk = NULL;
	ctx->chunk_bytes = 0;
	return ctx_add(ctx, frame);
}

static int add_record(struct dump_ctx *ctx, uint32_t pid,
		      const struct entry *e)
{
	struct json_object *wrap = json_object_new_object(), *record;

	record = json_tokener_parse(e->text);
	mask_record(ctx, record);
	json_object_object_add(wrap, "xact", json_object_new_int64(e->xact));
	json_object_object_add(wrap, "record", record);
	if (!ctx->chunk)
		ctx->chunk = json_object_new_array();
	json_object_array_add(ctx->chunk, wrap);
	ctx->records++;
	ctx->chunk_bytes += e->len;
	return ctx->chunk_bytes >= CHUNK_BYTES ? flush_chunk(ctx, pid) : 0;
}

static struct json_object *violations_json(struct dump_ctx *ctx,
					   const struct dump_source *src)
{
	struct json_object *list = json_object_new_array(), *v;
	int i;

	for (i = 0; i < src->violation_count; i++) {
		v = json_tokener_parse(src->violations[i]);
		mask_record(ctx, v);
		json_object_array_add(list, v);
	}
	return list;
}

static int add_source(struct dump_ctx *ctx, const struct dump_source *src)
{
	struct json_object *frame = frame_new("session", src->pid);
	uint32_t i;
	int err;

	json_object_object_add(frame, "backend_start",
			       json_object_new_int64((int64_t)src->start));
	json_object_object_add(frame, "session", src->session ?
			       json_tokener_parse(src->session) : NULL);
	json_object_object_add(frame, "records",
			       json_object_new_int64(src->count));
	json_object_object_add(frame, "records_dropped",
			       json_object_new_int64((int64_t)src->dropped));
	json_object_object_add(frame, "violations", violations_json(ctx, src));
	if (src->complete)
		json_object_object_add(frame, "complete",
				       json_object_new_string(src->complete));
	err = ctx_add(ctx, frame);
	for (i = 0; !err && i < src->count; i++)
		err = add_record(ctx, src->pid,
				 &src->items[(src->head + i) % src->cap]);
	if (!err)
		err = flush_chunk(ctx, src->pid);
	json_object_put(ctx->chunk);
	ctx->chunk = NULL;
	return err;
}

/* Now as the feed writes times: 2026-12-04T15:00:00.123456Z */
static struct json_object *wall_time(void)
{
	struct timespec ts;
	char text[80], date[32];
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(text, sizeof(text), "%s.%06ldZ", date, ts.tv_nsec / 1000);
	return json_object_new_string(text);
}

static struct json_object *meta_frame(struct dump_ctx *ctx, const char *reason,
				      uint32_t pid)
{
	struct json_object *frame = frame_new("dump", pid), *policy, *stats;
	const struct recorder_config *c = &ctx->rec->cfg;
	char host[256] = "";

	gethostname(host, sizeof(host) - 1);
	json_object_object_add(frame, "format",
			       json_object_new_int(DUMPFILE_VERSION));
	json_object_object_add(frame, "reason", json_object_new_string(reason));
	json_object_object_add(frame, "created", wall_time());
	json_object_object_add(frame, "host", json_object_new_string(host));
	json_object_object_add(frame, "monitor_pid",
			       json_object_new_int64(getpid()));
	json_object_object_add(frame, "statements", json_object_new_string(
				       ctx->masked ? "masked" : "unmasked"));
	policy = json_object_new_object();
	json_object_object_add(policy, "path", c->policy_path ?
			       json_object_new_string(c->policy_path) : NULL);
	json_object_object_add(policy, "digest", c->policy_digest ?
			       json_object_new_string(c->policy_digest) : NULL);
	json_object_object_add(frame, "policy", policy);
	json_object_object_add(frame, "counters", c->counters_fn ?
			       c->counters_fn(c->arg) : NULL);
	stats = json_object_new_object();
	json_object_object_add(stats, "backends",
		json_object_new_int64((int64_t)ctx->rec->st.backends));
	json_object_object_add(stats, "records_dropped",
		json_object_new_int64((int64_t)ctx->rec->st.records_dropped));
	json_object_object_add(stats, "dumps_suppressed",
		json_object_new_int64((int64_t)ctx->rec->st.dumps_suppressed));
	json_object_object_add(frame, "recorder", stats);
	return frame;
}

static int dump_path(struct recorder *rec, const char *reason, uint32_t pid,
		     char *path, size_t path_len)
{
	struct timespec ts;
	char when[32], who[16];
	struct tm tm;
	int n;

	if (mkdir(rec->cfg.directory, 0700) < 0 && errno != EEXIST)
		return -errno;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y%m%dT%H%M%S", &tm);
	if (pid)
		snprintf(who, sizeof(who), "%u", pid);
	else
		strcpy(who, "all");
	n = snprintf(path, path_len, "%s/pgvigil-%s.%03ldZ-%s-%s-%llu.pgvd",
		     rec->cfg.directory, when, ts.tv_nsec / 1000000, reason,
		     who, (unsigned long long)++rec->dump_seq);
	return n < 0 || (size_t)n >= path_len ? -ENAMETOOLONG : 0;
}

static int dump_begin(struct dump_ctx *ctx, struct recorder *rec,
		      const char *reason, uint32_t pid, const char *path)
{
	int err;

	memset(ctx, 0, sizeof(*ctx));
	ctx->rec = rec;
	ctx->masked = rec->cfg.key == NULL;
	ctx->mask_buf = malloc(MASK_BYTES);
	if (!ctx->mask_buf)
		return -ENOMEM;
	err = dumpfile_create(path, rec->cfg.key, ctx->masked, &ctx->writer);
	if (!err)
		err = ctx_add(ctx, meta_frame(ctx, reason, pid));
	return err;
}

/* Seal or abandon, count, and tell the caller. Returns the outcome. */
static int dump_end(struct dump_ctx *ctx, int err, const char *reason,
		    uint32_t pid, const char *path)
{
	struct recorder_dump_result result = { .path = path, .reason = reason,
					       .pid = pid };

	if (err == -E2BIG)
		err = 0;	/* sealed with a truncation mark */
	if (ctx->writer && !err)
		err = dumpfile_seal(ctx->writer, result.seal_hash);
	else if (ctx->writer)
		dumpfile_abort(ctx->writer);
	free(ctx->mask_buf);
	if (err)
		ctx->rec->st.dumps_failed++;
	else
		ctx->rec->st.dumps_written++;
	result.error = err;
	result.records = ctx->records;
	if (err)
		result.path = NULL;
	if (ctx->rec->cfg.on_dump)
		ctx->rec->cfg.on_dump(ctx->rec->cfg.arg, &result);
	return err;
}

static void source_of_backend(const struct recorder *rec,
			      const struct backend *b, struct dump_source *src)
{
	memset(src, 0, sizeof(*src));
	src->pid = b->pid;
	src->start = b->start;
	src->session = b->session;
	src->items = b->ring;
	src->head = b->head;
	src->count = b->count;
	src->cap = rec->ring_cap;
	src->dropped = b->dropped;
}

/* Write the backend's pending dump and let it go. */
static void pending_complete(struct recorder *rec, struct backend *b,
			     const char *why)
{
	struct pending *p = b->pending;
	struct dump_ctx ctx = { .rec = rec };
	struct dump_source src;
	char path[4096];
	int err;

	source_of_backend(rec, b, &src);
	src.items = p->items;
	src.head = 0;
	src.count = p->count;
	src.cap = p->cap;
	src.violations = p->violations;
	src.violation_count = p->violation_count;
	src.dropped = b->dropped + p->dropped;
	src.complete = why;
	err = dump_path(rec, "violation", b->pid, path, sizeof(path));
	if (!err)
		err = dump_begin(&ctx, rec, "violation", b->pid, path);
	if (!err)
		err = add_source(&ctx, &src);
	dump_end(&ctx, err, "violation", b->pid, path);
	b->pending = NULL;
	pending_free(rec, p);
}

/* The backend is gone: write its pending dump, free what it held. */
static void backend_end(struct recorder *rec, struct backend *b,
			const char *why)
{
	struct backend **link = bucket(rec, b->pid);

	if (b->pending)
		pending_complete(rec, b, why);
	while (b->count)
		ring_evict(rec, b);
	while (*link != b)
		link = &(*link)->next;
	*link = b->next;
	if (b->session) {
		rec->st.bytes -= strlen(b->session);
		free(b->session);
	}
	free(b->ring);
	free(b);
	rec->st.backends--;
}

/* The backend (pid, start), made if new; NULL with *err set otherwise. */
static struct backend *backend_get(struct recorder *rec, uint32_t pid,
				   uint64_t start, int *err)
{
	struct backend *b = backend_lookup(rec, pid);

	if (b && b->start == start)
		return b;
	if (b)
		backend_end(rec, b, "backend_exit");
	*err = -ENOSPC;
	if (rec->st.backends >= (uint64_t)rec->cfg.backends)
		return NULL;
	*err = -ENOMEM;
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->ring = calloc(rec->ring_cap, sizeof(*b->ring));
	if (!b->ring) {
		free(b);
		return NULL;
	}
	b->pid = pid;
	b->start = start;
	b->xact = 1;
	b->next = *bucket(rec, pid);
	*bucket(rec, pid) = b;
	rec->st.backends++;
	return b;
}

int recorder_session(struct recorder *rec, uint32_t pid, uint64_t start,
		     struct json_object *session)
{
	const char *text = json_object_to_json_string_ext(session,
						JSON_C_TO_STRING_PLAIN);
	struct backend *b;
	char *copy;
	int err;

	b = backend_get(rec, pid, start, &err);
	if (!b)
		return err;
	if (!text || strlen(text) > rec->cfg.record_bytes)
		return -EMSGSIZE;
	copy = strdup(text);
	if (!copy)
		return -ENOMEM;
	if (b->session)
		rec->st.bytes -= strlen(b->session);
	free(b->session);
	b->session = copy;
	rec->st.bytes += strlen(copy);
	return 0;
}

static void pending_check_bounds(struct recorder *rec, struct backend *b)
{
	struct pending *p = b->pending;

	if (p->followed >= (uint32_t)rec->cfg.follow_statements)
		pending_complete(rec, b, "statement_bound");
	else if (now_ms(rec) - p->started_ms >= (uint64_t)rec->cfg.follow_ms)
		pending_complete(rec, b, "time_bound");
}

/* Keep 'e' (owned) in the ring and in a pending dump if there is one. */
static void backend_record(struct recorder *rec, struct backend *b,
			   struct entry *e, bool follows)
{
	if (b->pending) {
		pending_append(rec, b->pending, e);
		b->pending->followed += follows;
	}
	ring_push(rec, b, e);
	if (b->pending && follows)
		pending_check_bounds(rec, b);
}

int recorder_add(struct recorder *rec, uint32_t pid, uint64_t start,
		 struct json_object *record)
{
	struct backend *b;
	struct entry e;
	int err;

	b = backend_get(rec, pid, start, &err);
	if (!b)
		return err;
	err = entry_make(rec, record, b->xact, &e);
	if (err)
		return err;
	backend_record(rec, b, &e, true);
	return 0;
}

int recorder_xact_end(struct recorder *rec, uint32_t pid, uint64_t start,
		      const char *outcome)
{
	struct json_object *mark = json_object_new_object();
	struct backend *b;
	struct entry e;
	int err;

	b = backend_get(rec, pid, start, &err);
	json_object_object_add(mark, "event", json_object_new_string("xact_end"));
	json_object_object_add(mark, "outcome", json_object_new_string(outcome));
	err = b ? entry_make(rec, mark, b->xact, &e) : err;
	json_object_put(mark);
	if (err)
		return err;
	backend_record(rec, b, &e, false);
	if (b->pending && b->pending->xact == b->xact)
		pending_complete(rec, b, "xact_end");
	b->xact++;
	b->xact_count = 0;
	while (b->count > (uint32_t)rec->cfg.statements)
		ring_evict(rec, b);
	return 0;
}

static struct pending *pending_start(struct recorder *rec, struct backend *b,
				     const char *violation)
{
	struct pending *p = calloc(1, sizeof(*p));
	uint32_t i;

	if (!p)
		return NULL;
	rec->st.pending++;
	/* room for the ring, what follows, and the transaction's end */
	p->cap = rec->ring_cap + rec->cfg.follow_statements + 1;
	p->items = calloc(p->cap, sizeof(*p->items));
	p->violations[0] = strdup(violation);
	if (!p->items || !p->violations[0]) {
		pending_free(rec, p);
		return NULL;
	}
	p->violation_count = 1;
	for (i = 0; i < b->count; i++)
		pending_append(rec, p, ring_at(rec, b, i));
	p->xact = b->xact;
	p->started_ms = now_ms(rec);
	return p;
}

int recorder_violation(struct recorder *rec, uint32_t pid, uint64_t start,
		       const char *text)
{
	struct pending *p;
	struct backend *b;
	uint64_t now = now_ms(rec);
	int err;

	b = backend_get(rec, pid, start, &err);
	if (!b)
		return err;
	if (!text || strlen(text) > rec->cfg.record_bytes)
		return -EMSGSIZE;
	p = b->pending;
	if (p) {
		if (p->violation_count < VIOLATIONS_MAX &&
		    (p->violations[p->violation_count] = strdup(text)))
			p->violation_count++;
		return 0;
	}
	if ((rec->violated &&
	     now - rec->last_violation_ms < (uint64_t)rec->cfg.min_interval_ms) ||
	    rec->st.pending >= PENDING_MAX) {
		rec->st.dumps_suppressed++;
		return -EBUSY;
	}
	b->pending = pending_start(rec, b, text);
	if (!b->pending)
		return -ENOMEM;
	rec->violated = true;
	rec->last_violation_ms = now;
	return 0;
}

void recorder_backend_exit(struct recorder *rec, uint32_t pid,
			   uint64_t start)
{
	struct backend *b = backend_lookup(rec, pid);

	if (b && b->start == start)
		backend_end(rec, b, "backend_exit");
}

struct json_object *recorder_snapshot(struct recorder *rec, uint32_t pid)
{
	struct backend *b = backend_lookup(rec, pid);
	struct json_object *snap, *records, *wrap;
	const struct entry *e;
	uint32_t i;

	if (!b)
		return NULL;
	snap = frame_new("snapshot", pid);
	json_object_object_add(snap, "backend_start",
			       json_object_new_int64((int64_t)b->start));
	json_object_object_add(snap, "session", b->session ?
			       json_tokener_parse(b->session) : NULL);
	records = json_object_new_array();
	for (i = 0; i < b->count; i++) {
		e = ring_at(rec, b, i);
		wrap = json_object_new_object();
		json_object_object_add(wrap, "xact",
				       json_object_new_int64(e->xact));
		json_object_object_add(wrap, "record",
				       json_tokener_parse(e->text));
		json_object_array_add(records, wrap);
	}
	json_object_object_add(snap, "records", records);
	json_object_object_add(snap, "records_dropped",
			       json_object_new_int64((int64_t)b->dropped));
	return snap;
}

static int dump_backend(struct dump_ctx *ctx, struct backend *b)
{
	struct dump_source src;

	source_of_backend(ctx->rec, b, &src);
	if (b->pending) {
		src.violations = b->pending->violations;
		src.violation_count = b->pending->violation_count;
	}
	return add_source(ctx, &src);
}

int recorder_dump(struct recorder *rec, uint32_t pid, const char *reason,
		  char *path, size_t path_len)
{
	struct dump_ctx ctx = { .rec = rec };
	struct backend *b = pid ? backend_lookup(rec, pid) : NULL;
	char local[4096];
	int err, i;

	if (pid && !b)
		return -ENOENT;
	err = dump_path(rec, reason, pid, local, sizeof(local));
	if (!err)
		err = dump_begin(&ctx, rec, reason, pid, local);
	if (!err && b)
		err = dump_backend(&ctx, b);
	for (i = 0; !err && !pid && i < BUCKETS; i++)
		for (b = rec->buckets[i]; !err && b; b = b->next)
			err = dump_backend(&ctx, b);
	err = dump_end(&ctx, err, reason, pid, local);
	if (!err && path)
		snprintf(path, path_len, "%s", local);
	return err;
}

void recorder_request(struct recorder *rec, int32_t pid)
{
	int value = pid > 0 ? pid : REQUEST_ALL, expected, i;

	for (i = 0; i < REQUEST_SLOTS; i++) {
		expected = 0;
		if (__atomic_compare_exchange_n(&rec->requests[i], &expected,
						value, false, __ATOMIC_SEQ_CST,
						__ATOMIC_SEQ_CST) ||
		    expected == value)
			return;
	}
	__atomic_store_n(&rec->request_all, 1, __ATOMIC_SEQ_CST);
}

static void on_sigusr1(int sig, siginfo_t *info, void *context)
{
	struct recorder *rec = __atomic_load_n(&signal_recorder,
					       __ATOMIC_SEQ_CST);

	(void)sig;
	(void)context;
	if (rec)
		recorder_request(rec, info->si_code == SI_QUEUE ?
				 info->si_value.sival_int : 0);
}

int recorder_install_sigusr1(struct recorder *rec)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigusr1;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	__atomic_store_n(&signal_recorder, rec, __ATOMIC_SEQ_CST);
	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		return -errno;
	return 0;
}

static void pending_sweep(struct recorder *rec)
{
	struct backend *b;
	int i;

	for (i = 0; rec->st.pending && i < BUCKETS; i++)
		for (b = rec->buckets[i]; b; b = b->next)
			if (b->pending)
				pending_check_bounds(rec, b);
}

void recorder_tick(struct recorder *rec)
{
	bool all = __atomic_exchange_n(&rec->request_all, 0,
				       __ATOMIC_SEQ_CST);
	int i, value;

	for (i = 0; i < REQUEST_SLOTS; i++) {
		value = __atomic_exchange_n(&rec->requests[i], 0,
					    __ATOMIC_SEQ_CST);
		if (value == REQUEST_ALL)
			all = true;
		else if (value > 0)
			recorder_dump(rec, (uint32_t)value, "request", NULL, 0);
	}
	if (all)
		recorder_dump(rec, 0, "signal", NULL, 0);
	pending_sweep(rec);
}

void recorder_flush(struct recorder *rec)
{
	struct backend *b;
	int i;

	for (i = 0; rec->st.pending && i < BUCKETS; i++)
		for (b = rec->buckets[i]; b; b = b->next)
			if (b->pending)
				pending_complete(rec, b, "shutdown");
}

void recorder_stats(const struct recorder *rec, struct recorder_stats *st)
{
	*st = rec->st;
}

void recorder_free(struct recorder *rec)
{
	struct recorder *self = rec;
	int i;

	if (!rec)
		return;
	__atomic_compare_exchange_n(&signal_recorder, &self, NULL, false,
				    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	for (i = 0; i < BUCKETS; i++) {
		while (rec->buckets[i]) {
			pending_free(rec, rec->buckets[i]->pending);
			rec->buckets[i]->pending = NULL;
			backend_end(rec, rec->buckets[i], "shutdown");
		}
	}
	free(rec);
}
