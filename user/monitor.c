/*
 * Event processing, see monitor.h.
 *
 * Violations are held per backend until the transaction ends, so that each
 * record carries the outcome: "committed" or "rolled_back" (from the
 * server's transaction probes; a backend that exits inside a transaction is
 * rolled back by the server), or "in_progress" when the transaction is still
 * open after hold_ns or at shutdown.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>

#include <json-c/json.h>

#include "classify.h"
#include "jsonw.h"
#include "log.h"
#include "mask.h"
#include "monitor.h"
#include "observe.h"
#include "oidmap.h"
#include "wire.h"
#include "recorder.h"

#define REFUSED_MAX 64
#define DEFERRED_MAX 32

/* Utility statements that cannot change the catalog, by node name. */
static const char *const catalog_neutral_names[] = {
	"TransactionStmt", "VariableSetStmt", "VariableShowStmt",
	"ExplainStmt", "CallStmt", "DoStmt", "CopyStmt", "DeallocateStmt",
	"PrepareStmt", "ExecuteStmt", "FetchStmt", "ClosePortalStmt",
	"DeclareCursorStmt",
};

#define CATALOG_NEUTRAL_MAX \
	(sizeof(catalog_neutral_names) / sizeof(catalog_neutral_names[0]))

/*
 * Utility statements that can create or redefine a function (nested ones,
 * in a DO block or a function, come as statements of their own).
 */
static const char *const function_ddl_names[] = {
	"CreateFunctionStmt", "AlterFunctionStmt", "RenameStmt",
	"AlterOwnerStmt", "AlterObjectSchemaStmt", "ReassignOwnedStmt",
	"CreateExtensionStmt", "AlterExtensionStmt",
	"AlterExtensionContentsStmt",
};

#define FUNCTION_DDL_MAX \
	(sizeof(function_ddl_names) / sizeof(function_ddl_names[0]))

/* long enough for a committing backend to finish making it visible */
#define DDL_SETTLE_NS (200 * 1000000ULL)

/*
 * A violation waiting for its transaction's outcome: its members already
 * serialised (the text between the braces, without the outcome).
 */
struct held_record {
	char *members;
	size_t len;
	const char *invariant;		/* static strings, for the count */
	const char *rule;
};

struct backend {
	uint32_t pid;
	uint32_t ppid;
	uint32_t uid;			/* the server's OS user */
	uint64_t cgroup_id;		/* tells containers apart */
	char comm[PGV_COMM_LEN + 1];
	uint64_t last_seq;
	bool has_session;
	bool reported_unclassified;
	bool ddl;			/* a utility statement in this xact */
	bool function_ddl;		/* one that can redefine a function */
	bool inserted_events;		/* into the hash events table */
	/*
	 * DDL committed, catalog not re-read yet: the commit probe fires
	 * before the transaction becomes visible to other sessions, so the
	 * catalog is re-read at the backend's next event (or exit), which
	 * comes after, or after a short delay when the backend stays idle.
	 */
	uint64_t ddl_committed_ns;
	bool function_ddl_committed;	/* function_ddl of that transaction */
	uint64_t start_ns;		/* first seen: tells pid reuse apart */
	char user[PGV_NAME_MAX];
	char database[PGV_NAME_MAX];
	char application[PGV_APP_MAX];
	char client[96];
	struct catalog_db *db;
	struct held_record *held;	/* records awaiting the outcome */
	size_t n_held;
	size_t held_cap;
	struct json_object *sent_in_progress;	/* their ids, if sent early */
	/*
	 * Writes to relations created in the open transaction: unknown to the
	 * catalog until it commits, so classified again after it does (a new
	 * table may match an immutable pattern).
	 */
	struct pgv_exec_event *deferred[DEFERRED_MAX];
	int n_deferred;
	uint64_t held_since_ns;
	char *utility_text;		/* the last utility statement */
	uint32_t utility_len;
	bool utility_truncated;
	struct wire_conn *wire;		/* its client's messages */
	bool wire_reported;		/* a protocol error was reported */
	/*
	 * The session object of its violations, serialised once: every
	 * violation of a backend carries the same one until a session or wire
	 * event, which may change it, drops it. NULL: not written yet.
	 */
	char *session_text;
	size_t session_len;
};

struct monitor {
	struct monitor_options options;
	struct oidmap backends;
	uint32_t *watched;
	size_t n_watched;
	uint32_t refused[REFUSED_MAX];	/* parents not to watch, recent */
	size_t n_refused;
	int64_t realtime_offset_ns;
	uint64_t last_drops[PGV_DROP_CAUSES];
	struct monitor_stats stats;
	struct jsonw writer;		/* the record being built, reused */
	struct jsonw session_writer;	/* a backend's session object */
	struct mask_cache *masks;	/* statement shapes; NULL: none */
	struct pgv_exec_event exec;	/* the exec record, unpacked */
	/* the date and time of day of the last record's second */
	int64_t stamp_second;
	char stamp_prefix[32];		/* "" until the first record */
	size_t stamp_prefix_len;
	/* catalog_neutral_names as the server version numbers them */
	uint32_t neutral_tags[CATALOG_NEUTRAL_MAX];
	size_t n_neutral_tags;
	uint32_t function_ddl_tags[FUNCTION_DDL_MAX];
	size_t n_function_ddl_tags;
};

static const char *const drop_causes[PGV_DROP_CAUSES] = {
	[PGV_DROP_RINGBUF_FULL] = "ring_buffer_full",
	[PGV_DROP_NO_BACKEND] = "backend_table_full",
	[PGV_DROP_READ_FAILED] = "server_read_failed",
	[PGV_DROP_NO_LAYOUT] = "no_layout",
	[PGV_DROP_STACK_OVERFLOW] = "function_stack_overflow",
	[PGV_DROP_WIRE_TRUNCATED] = "wire_read_truncated",
};

static int64_t clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Node tags are numbered per server version: the names are resolved once,
 * so that each utility statement costs a few integer compares. A name the
 * version lacks is left out (no statement can carry it).
 */
static size_t resolve_tags(const struct monitor *monitor,
			   const char *const *names, size_t n_names,
			   uint32_t *tags)
{
	size_t i, n = 0;
	int tag;

	for (i = 0; monitor->options.version && i < n_names; i++) {
		tag = pglayout_tag_number(monitor->options.version, names[i]);
		if (tag >= 0)
			tags[n++] = tag;
	}
	return n;
}

static void resolve_neutral_tags(struct monitor *monitor)
{
	monitor->n_neutral_tags = resolve_tags(monitor, catalog_neutral_names,
					       CATALOG_NEUTRAL_MAX,
					       monitor->neutral_tags);
	monitor->n_function_ddl_tags = resolve_tags(monitor, function_ddl_names,
						    FUNCTION_DDL_MAX,
						    monitor->function_ddl_tags);
}

static bool tag_in(const uint32_t *tags, size_t n, uint32_t tag)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (tags[i] == tag)
			return true;
	return false;
}

static bool catalog_neutral(const struct monitor *monitor, uint32_t tag)
{
	return tag_in(monitor->neutral_tags, monitor->n_neutral_tags, tag);
}

int monitor_new(const struct monitor_options *options, struct monitor **out)
{
	struct monitor *monitor = calloc(1, sizeof(*monitor));

	if (!monitor)
		return -ENOMEM;
	monitor->options = *options;
	resolve_neutral_tags(monitor);
	/* without it masking is slower, not wrong */
	monitor->masks = mask_cache_new();
	monitor->realtime_offset_ns = clock_ns(CLOCK_REALTIME) -
				      clock_ns(CLOCK_MONOTONIC);
	*out = monitor;
	return 0;
}

void monitor_watch(struct monitor *monitor, const uint32_t *pids, size_t n)
{
	free(monitor->watched);
	monitor->watched = NULL;
	monitor->n_watched = 0;
	if (!n)
		return;
	monitor->watched = malloc(n * sizeof(*pids));
	if (!monitor->watched)
		return;
	memcpy(monitor->watched, pids, n * sizeof(*pids));
	monitor->n_watched = n;
}

static bool watched(struct monitor *monitor, uint32_t ppid)
{
	size_t i;

	if (!monitor->watched)
		return true;
	for (i = 0; i < monitor->n_watched; i++)
		if (monitor->watched[i] == ppid)
			return true;
	/* ask once per parent: a refusal is remembered */
	for (i = 0; i < REFUSED_MAX; i++)
		if (monitor->refused[i] == ppid)
			return false;
	if (monitor->options.adopt &&
	    monitor->options.adopt(monitor->options.arg, ppid))
		return true;
	monitor->refused[monitor->n_refused++ % REFUSED_MAX] = ppid;
	return false;
}

/*
 * A record's time in UTC with microseconds, into 'buf' of STAMP_MAX. Records
 * come in bursts within one second: its date and time of day are formatted
 * once, and each record adds its fraction.
 */
#define STAMP_MAX 40

static void format_time(struct monitor *monitor, uint64_t mono_ns, char *buf)
{
	int64_t ns = (int64_t)mono_ns + monitor->realtime_offset_ns;
	time_t secs = ns / 1000000000;
	uint32_t micros = (uint32_t)(ns % 1000000000 / 1000);
	char *p;
	struct tm tm;
	int i;

	if (ns < 0) {
		/* before 1970: no clock of this century; the plain way */
		gmtime_r(&secs, &tm);
		p = buf + strftime(buf, STAMP_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(p, STAMP_MAX - (p - buf), ".%06ldZ",
			 (long)(ns % 1000000000) / 1000);
		return;
	}
	if (secs != monitor->stamp_second || !monitor->stamp_prefix_len) {
		gmtime_r(&secs, &tm);
		monitor->stamp_prefix_len = strftime(monitor->stamp_prefix,
					sizeof(monitor->stamp_prefix),
					"%Y-%m-%dT%H:%M:%S", &tm);
		monitor->stamp_second = secs;
	}
	memcpy(buf, monitor->stamp_prefix, monitor->stamp_prefix_len);
	p = buf + monitor->stamp_prefix_len;
	*p = '.';
	for (i = 6; i > 0; i--, micros /= 10)
		p[i] = (char)('0' + micros % 10);
	memcpy(p + 7, "Z", 2);
}

/* Number and send a record whose members are in 'parts'. */
static int64_t emit_members(struct monitor *monitor, const struct iovec *parts,
			    int n, const char *invariant, const char *rule)
{
	int64_t id = feed_emit_members(monitor->options.feed, parts, n,
				       invariant, rule);

	if (id < 0)
		log_error("cannot write a violation record: %s",
			  strerror((int)-id));
	monitor->stats.violations++;
	return id;
}

/* Send the record in the writer; an allocation that failed is reported. */
static int64_t emit(struct monitor *monitor, const char *invariant,
		    const char *rule)
{
	struct jsonw *w = &monitor->writer;
	struct iovec members = { w->buf, w->len };

	if (jsonw_failed(w)) {
		log_error("cannot write a violation record: %s",
			  strerror(ENOMEM));
		monitor->stats.violations++;
		return -ENOMEM;
	}
	return emit_members(monitor, &members, 1, invariant, rule);
}

/* Start a record in the writer: its time, invariant and rule. */
static struct jsonw *record_begin(struct monitor *monitor, uint64_t mono_ns,
				  const char *invariant, const char *rule)
{
	struct jsonw *w = &monitor->writer;
	char stamp[STAMP_MAX];

	jsonw_reset(w);
	format_time(monitor, mono_ns, stamp);
	jsonw_key(w, "time");
	jsonw_string(w, stamp);
	jsonw_key(w, "invariant");
	jsonw_string(w, invariant);
	jsonw_key(w, "rule");
	jsonw_string(w, rule);
	return w;
}

static struct jsonw *monitor_record(struct monitor *monitor, const char *rule)
{
	return record_begin(monitor, clock_ns(CLOCK_MONOTONIC), "monitor",
			    rule);
}

/* A json-c value as a member of the record being written. */
static void write_json(struct jsonw *w, const char *key,
		       struct json_object *value)
{
	const char *text = json_object_to_json_string_ext(value,
						JSON_C_TO_STRING_PLAIN);

	jsonw_key(w, key);
	jsonw_raw(w, text, strlen(text));
}

void monitor_report(struct monitor *monitor, const char *rule,
		    struct json_object *detail)
{
	struct jsonw *w = monitor_record(monitor, rule);

	if (detail)
		write_json(w, "detail", detail);
	json_object_put(detail);
	emit(monitor, "monitor", rule);
}

static void report_backend(struct monitor *monitor, const char *rule,
			   const struct backend *backend, const char *key,
			   int64_t value, const char *reason)
{
	struct json_object *detail = json_object_new_object();

	json_object_object_add(detail, "pid",
			       json_object_new_int64(backend->pid));
	if (key)
		json_object_object_add(detail, key, json_object_new_int64(value));
	if (reason)
		json_object_object_add(detail, "reason",
				       json_object_new_string(reason));
	if (backend->database[0])
		json_object_object_add(detail, "database",
				       json_object_new_string(backend->database));
	monitor_report(monitor, rule, detail);
}

static void write_session(struct jsonw *w, const struct backend *backend,
			  bool with_startup);
static struct json_object *session_json(const struct backend *backend);

/* The member that ends a held record: its transaction's outcome. */
static struct iovec outcome_member(const char *outcome)
{
#define OUTCOME(name) ",\"transaction\":{\"outcome\":\"" name "\"}"
	static const char committed[] = OUTCOME("committed");
	static const char rolled_back[] = OUTCOME("rolled_back");
	static const char in_progress[] = OUTCOME("in_progress");
#undef OUTCOME
	struct iovec member = { (void *)in_progress, sizeof(in_progress) - 1 };

	if (!strcmp(outcome, "committed")) {
		member.iov_base = (void *)committed;
		member.iov_len = sizeof(committed) - 1;
	} else if (!strcmp(outcome, "rolled_back")) {
		member.iov_base = (void *)rolled_back;
		member.iov_len = sizeof(rolled_back) - 1;
	}
	return member;
}

/*
 * Emit every held record of 'backend' with 'outcome': "committed",
 * "rolled_back" or "in_progress".
 */
static void release(struct monitor *monitor, struct backend *backend,
		    const char *outcome)
{
	struct iovec parts[2];
	bool in_progress;
	size_t i;

	if (!backend->n_held)
		return;
	parts[1] = outcome_member(outcome);
	in_progress = !strcmp(outcome, "in_progress");
	for (i = 0; i < backend->n_held; i++) {
		struct held_record *record = &backend->held[i];
		int64_t id;

		parts[0].iov_base = record->members;
		parts[0].iov_len = record->len;
		id = emit_members(monitor, parts, 2, record->invariant,
				  record->rule);
		free(record->members);
		if (id > 0 && in_progress) {
			if (!backend->sent_in_progress)
				backend->sent_in_progress = json_object_new_array();
			json_object_array_add(backend->sent_in_progress,
					      json_object_new_int64(id));
		}
	}
	backend->n_held = 0;
}

/*
 * Records sent as in_progress learn their transaction's outcome in a
 * record of the monitor's own that names them by id.
 */
static void report_late_outcome(struct monitor *monitor,
				struct backend *backend, const char *outcome)
{
	struct json_object *detail;
	struct jsonw *w;

	if (!backend->sent_in_progress)
		return;
	w = monitor_record(monitor, "transaction_outcome");
	detail = json_object_new_object();
	json_object_object_add(detail, "ids", backend->sent_in_progress);
	json_object_object_add(detail, "outcome",
			       json_object_new_string(outcome));
	write_json(w, "detail", detail);
	json_object_put(detail);
	jsonw_key(w, "session");
	write_session(w, backend, false);
	backend->sent_in_progress = NULL;
	emit(monitor, "monitor", "transaction_outcome");
}

/* Keep the record in the writer until the transaction's outcome. */
static void hold(struct monitor *monitor, struct backend *backend,
		 const struct finding *f, uint64_t now_ns)
{
	const struct jsonw *w = &monitor->writer;
	struct held_record *grown, *record;
	size_t cap;

	if (jsonw_failed(w))
		goto failed;
	if (backend->n_held == backend->held_cap) {
		cap = backend->held_cap ? backend->held_cap * 2 : 8;
		grown = realloc(backend->held, cap * sizeof(*grown));
		if (!grown)
			goto failed;
		backend->held = grown;
		backend->held_cap = cap;
	}
	record = &backend->held[backend->n_held];
	record->members = malloc(w->len + 1);
	if (!record->members)
		goto failed;
	memcpy(record->members, w->buf, w->len + 1);
	record->len = w->len;
	record->invariant = classify_invariant_name(f->invariant);
	record->rule = f->rule;
	if (!backend->n_held++)
		backend->held_since_ns = now_ns;
	return;
failed:
	log_error("cannot hold a violation record: %s", strerror(ENOMEM));
}

static void drop_deferred(struct backend *backend)
{
	while (backend->n_deferred > 0)
		free(backend->deferred[--backend->n_deferred]);
}

static void free_backend(void *value)
{
	struct backend *backend = value;

	while (backend->n_held > 0)
		free(backend->held[--backend->n_held].members);
	free(backend->held);
	json_object_put(backend->sent_in_progress);
	drop_deferred(backend);
	free(backend->utility_text);
	free(backend->session_text);
	wire_conn_free(backend->wire);
	free(backend);
}

static void forget_session(struct backend *backend)
{
	free(backend->session_text);
	backend->session_text = NULL;
}

/*
 * The backend of 'hdr', created on its first event; a sequence gap (events
 * the kernel side could not send) is reported, naming the backend.
 */
static struct backend *backend_of(struct monitor *monitor,
				  const struct pgv_header *hdr)
{
	struct backend *backend = oidmap_get(&monitor->backends, hdr->pid);
	uint64_t expected;

	if (!backend) {
		backend = calloc(1, sizeof(*backend));
		if (!backend || oidmap_put(&monitor->backends, hdr->pid, backend)) {
			free(backend);
			return NULL;
		}
		backend->pid = hdr->pid;
		backend->ppid = hdr->ppid;
		backend->start_ns = hdr->time_ns;
		backend->uid = hdr->uid;
		backend->cgroup_id = hdr->cgroup_id;
		memcpy(backend->comm, hdr->comm, PGV_COMM_LEN);
		monitor->stats.backends++;
	}
	expected = backend->last_seq + 1;
	if (hdr->seq > expected) {
		monitor->stats.events_lost += hdr->seq - expected;
		observe_sequence_gap(hdr->pid, hdr->seq - expected);
		report_backend(monitor, "events_lost", backend, "lost",
			       hdr->seq - expected, NULL);
		/* what the client sent in between is unknown */
		if (backend->wire) {
			wire_gap(backend->wire, 0);
			forget_session(backend);
		}
	}
	backend->last_seq = hdr->seq;
	return backend;
}

static void format_client(const uint8_t *addr, char *buf, size_t len)
{
	const struct sockaddr *sa = (const void *)addr;
	char host[INET6_ADDRSTRLEN] = "";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else if (sa->sa_family == AF_UNIX) {
		snprintf(buf, len, "local");
	} else {
		buf[0] = 0;
	}
}

static void copy_name(char *dst, const char *src, size_t len)
{
	memcpy(dst, src, len);
	dst[len - 1] = 0;
}

static void record_session(struct monitor *monitor, struct backend *backend)
{
	struct json_object *session;

	if (!monitor->options.recorder)
		return;
	session = session_json(backend);
	recorder_session(monitor->options.recorder, backend->pid,
			 backend->start_ns, session);
	json_object_put(session);
}

static void on_session(struct monitor *monitor, struct backend *backend,
		       const struct pgv_session_event *event)
{
	char err[512];

	forget_session(backend);
	copy_name(backend->user, event->user, sizeof(backend->user));
	copy_name(backend->database, event->database, sizeof(backend->database));
	copy_name(backend->application, event->application,
		  sizeof(backend->application));
	format_client(event->client_addr, backend->client,
		      sizeof(backend->client));
	backend->has_session = true;
	record_session(monitor, backend);
	if (!backend->database[0] || backend->db)
		return;
	backend->db = catalog_db(monitor->options.catalog, backend->database,
				 err, sizeof(err));
	if (!backend->db)
		log_warn("%s", err);
}

static void write_startup(struct jsonw *w, const struct wire_conn *wire)
{
	const struct wire_startup *startup = wire_startup(wire);

	jsonw_object_begin(w);
	jsonw_key(w, "user");
	jsonw_string(w, startup->user);
	jsonw_key(w, "database");
	jsonw_string(w, startup->database);
	jsonw_key(w, "application_name");
	jsonw_string(w, startup->application_name);
	jsonw_key(w, "options");
	jsonw_string(w, startup->options);
	jsonw_key(w, "ssl_requested");
	jsonw_bool(w, startup->ssl_requested);
	jsonw_object_end(w);
}

/*
 * The session object; a violation's adds the client's startup packet once
 * it was seen.
 */
static void write_session(struct jsonw *w, const struct backend *backend,
			  bool with_startup)
{
	jsonw_object_begin(w);
	jsonw_key(w, "pid");
	jsonw_int(w, backend->pid);
	jsonw_key(w, "user");
	jsonw_string(w, backend->user);
	jsonw_key(w, "database");
	jsonw_string(w, backend->database);
	jsonw_key(w, "application");
	jsonw_string(w, backend->application);
	jsonw_key(w, "client");
	jsonw_string(w, backend->client);
	jsonw_key(w, "postmaster");
	jsonw_int(w, backend->ppid);
	jsonw_key(w, "os_uid");
	jsonw_int(w, backend->uid);
	jsonw_key(w, "comm");
	jsonw_string(w, backend->comm);
	jsonw_key(w, "cgroup_id");
	jsonw_int(w, (int64_t)backend->cgroup_id);
	if (with_startup && backend->wire &&
	    wire_startup(backend->wire)->seen) {
		jsonw_key(w, "startup");
		write_startup(w, backend->wire);
	}
	jsonw_object_end(w);
}

/*
 * A violation's session object, with the startup packet: copied from the
 * backend's serialised one, which is written first if need be. Written in
 * place when there is no memory to keep it.
 */
static void write_violation_session(struct monitor *monitor,
				    struct jsonw *w, struct backend *backend)
{
	struct jsonw *session = &monitor->session_writer;

	if (!backend->session_text) {
		jsonw_reset(session);
		write_session(session, backend, true);
		if (!jsonw_failed(session))
			backend->session_text = strndup(session->buf,
							session->len);
		backend->session_len = session->len;
	}
	if (backend->session_text)
		jsonw_raw(w, backend->session_text, backend->session_len);
	else
		write_session(w, backend, true);
}

/* The session as a json-c object, for the flight recorder; or NULL. */
static struct json_object *session_json(const struct backend *backend)
{
	struct jsonw w = { 0 };
	struct json_object *session = NULL;

	write_session(&w, backend, false);
	if (!jsonw_failed(&w))
		session = json_tokener_parse(w.buf);
	jsonw_free(&w);
	return session;
}

/* The statement, masked unless --unmasked, and whether it was cut. */
static void write_statement(struct monitor *monitor, struct jsonw *w,
			    const char *text, uint32_t full_len, bool truncated)
{
	enum mask_method method = MASK_NORMALIZED;
	char *masked = NULL;

	/* a statement cut from a multi-statement string keeps its lead space */
	while (*text == ' ' || *text == '\n' || *text == '\t' || *text == '\r')
		text++;
	if (!monitor->options.unmasked)
		masked = mask_statement_cached(monitor->masks, text, &method);
	jsonw_key(w, "statement");
	jsonw_string(w, masked ? masked : text);
	if (!monitor->options.unmasked) {
		jsonw_key(w, "statement_masking");
		jsonw_string(w, mask_method_name(method));
	}
	if (truncated) {
		jsonw_key(w, "statement_truncated");
		jsonw_bool(w, true);
		jsonw_key(w, "statement_length");
		jsonw_int(w, full_len);
	}
	free(masked);
}

/* Printable as a JSON string: UTF-8 without NUL (overlongs let pass). */
static bool valid_utf8(const unsigned char *s, size_t len)
{
	size_t i = 0, n, k;

	while (i < len) {
		if (!s[i])
			return false;
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if (s[i] >= 0xc2 && s[i] <= 0xdf)
			n = 1;
		else if (s[i] >= 0xe0 && s[i] <= 0xef)
			n = 2;
		else if (s[i] >= 0xf0 && s[i] <= 0xf4)
			n = 3;
		else
			return false;
		if (len - i <= n)
			return false;
		for (k = 1; k <= n; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
		i += n + 1;
	}
	return true;
}

/*
 * A bound value as captured: text as is, binary or odd bytes in hex. Sets
 * *hex to a string to free when the value is shown in hex. NULL: a SQL NULL
 * or out of memory.
 */
static const char *value_text(const struct wire_value *value, size_t *len,
			      char **hex)
{
	static const char digits[] = "0123456789abcdef";
	uint32_t i;

	*hex = NULL;
	if (value->length < 0)
		return NULL;
	*len = value->kept;
	if (value->format == 0 &&
	    valid_utf8((const unsigned char *)value->bytes, value->kept))
		return value->bytes;
	*hex = malloc(2 * (size_t)value->kept + 3);
	if (!*hex)
		return NULL;
	strcpy(*hex, "\\x");
	for (i = 0; i < value->kept; i++) {
		unsigned char byte = (unsigned char)value->bytes[i];

		(*hex)[2 + 2 * i] = digits[byte >> 4];
		(*hex)[3 + 2 * i] = digits[byte & 15];
	}
	(*hex)[2 + 2 * (size_t)value->kept] = 0;
	*len = 2 + 2 * (size_t)value->kept;
	return *hex;
}

static struct json_object *value_json(const struct wire_value *value)
{
	struct json_object *json;
	const char *text;
	size_t len;
	char *hex;

	text = value_text(value, &len, &hex);
	json = text ? json_object_new_string_len(text, len) : NULL;
	free(hex);
	return json;
}

static void write_value(struct jsonw *w, const struct wire_value *value)
{
	const char *text;
	size_t len;
	char *hex;

	text = value_text(value, &len, &hex);
	if (text)
		jsonw_string_len(w, text, len);
	else
		jsonw_null(w);
	free(hex);
}

/*
 * Bound values: masked, each non-NULL value is "?" (NULL stays null: that a
 * value was absent is not data); unmasked, as captured.
 */
static void write_bind_values(struct monitor *monitor, struct jsonw *w,
			      const struct wire_command *client)
{
	uint16_t i;

	jsonw_key(w, "bind_values");
	jsonw_array_begin(w);
	for (i = 0; i < client->n_values; i++) {
		const struct wire_value *value = &client->values[i];

		if (value->length < 0)
			jsonw_null(w);
		else if (!monitor->options.unmasked)
			jsonw_string(w, "?");
		else
			write_value(w, value);
	}
	jsonw_array_end(w);
	jsonw_key(w, "bind_formats");
	jsonw_array_begin(w);
	for (i = 0; i < client->n_values; i++)
		jsonw_string(w, client->values[i].format ? "binary" : "text");
	jsonw_array_end(w);
	if (!monitor->options.unmasked) {
		jsonw_key(w, "bind_values_masking");
		jsonw_string(w, "replaced");
	}
	if (client->values_truncated || client->n_values < client->n_params) {
		jsonw_key(w, "bind_values_truncated");
		jsonw_bool(w, true);
		jsonw_key(w, "bind_count");
		jsonw_int(w, client->n_params);
	}
}

/*
 * What the client sent for the statement: its own text (masked like
 * "statement") and, through the extended protocol, the values it bound.
 */
static void write_client(struct monitor *monitor, struct jsonw *w,
			 const struct wire_command *client)
{
	enum mask_method method = MASK_NORMALIZED;
	char *masked = NULL;

	jsonw_key(w, "client_protocol");
	jsonw_string(w, client->protocol == WIRE_SIMPLE ? "simple"
							: "extended");
	if (client->text && !monitor->options.unmasked)
		masked = mask_statement_cached(monitor->masks, client->text,
					       &method);
	if (client->text) {
		jsonw_key(w, "client_statement");
		jsonw_string(w, masked ? masked : client->text);
		if (!monitor->options.unmasked) {
			jsonw_key(w, "client_statement_masking");
			jsonw_string(w, mask_method_name(method));
		}
	}
	if (client->text_truncated) {
		jsonw_key(w, "client_statement_truncated");
		jsonw_bool(w, true);
		jsonw_key(w, "client_statement_length");
		jsonw_int(w, client->text_len);
	}
	free(masked);
	if (client->protocol == WIRE_EXTENDED) {
		if (client->statement_name && client->statement_name[0]) {
			jsonw_key(w, "prepared_statement");
			jsonw_string(w, client->statement_name);
		}
		write_bind_values(monitor, w, client);
	}
}

static struct json_object *function_stack(struct backend *backend,
					  const struct pgv_header *hdr)
{
	struct json_object *stack = json_object_new_array();
	__u32 i;

	for (i = 0; i < hdr->stack_len && i < PGV_STACK_MAX; i++)
		json_object_array_add(stack, json_object_new_string(
				catalog_function(backend->db, hdr->stack[i])));
	return stack;
}

static void write_function_stack(struct jsonw *w, struct backend *backend,
				 const struct pgv_header *hdr)
{
	__u32 i;

	jsonw_array_begin(w);
	for (i = 0; i < hdr->stack_len && i < PGV_STACK_MAX; i++)
		jsonw_string(w, catalog_function(backend->db, hdr->stack[i]));
	jsonw_array_end(w);
}

struct statement {
	const char *text;
	uint32_t full_len;
	bool truncated;
	const struct wire_command *client;	/* from the wire, or NULL */
};

/* A violation's record, into the monitor's writer. */
static void build_record(struct monitor *monitor, struct backend *backend,
			 const struct pgv_header *hdr, const struct finding *f,
			 const struct statement *stmt)
{
	const struct catalog_relation *rel = catalog_relation(backend->db,
							      f->relid);
	struct jsonw *w;
	char oid[24];
	int i;

	w = record_begin(monitor, hdr->time_ns,
			 classify_invariant_name(f->invariant), f->rule);
	jsonw_key(w, "relation");
	if (rel) {
		jsonw_string(w, rel->qualified);
	} else {
		snprintf(oid, sizeof(oid), "oid:%u", f->relid);
		jsonw_string(w, oid);
	}
	jsonw_key(w, "relation_oid");
	jsonw_int(w, f->relid);
	jsonw_key(w, "columns");
	jsonw_array_begin(w);
	for (i = 0; i < f->n_columns; i++)
		jsonw_string(w, f->columns[i]);
	jsonw_array_end(w);
	jsonw_key(w, "command");
	jsonw_string(w, f->command);
	if (f->n_detail) {
		jsonw_key(w, "subcommands");
		jsonw_array_begin(w);
		for (i = 0; i < f->n_detail; i++)
			jsonw_string(w, f->detail[i]);
		jsonw_array_end(w);
	}
	write_statement(monitor, w, stmt->text, stmt->full_len,
			stmt->truncated);
	jsonw_key(w, "function_stack");
	write_function_stack(w, backend, hdr);
	jsonw_key(w, "depth");
	jsonw_int(w, hdr->depth);
	if (hdr->flags & PGV_F_STACK_TRUNCATED) {
		jsonw_key(w, "function_stack_truncated");
		jsonw_bool(w, true);
	}
	jsonw_key(w, "session");
	write_violation_session(monitor, w, backend);
	if (stmt->client)
		write_client(monitor, w, stmt->client);
	jsonw_key(w, "backend_seq");
	jsonw_int(w, hdr->seq);
}

/* The flight recorder keeps the violation as one JSON object. */
static void record_violation(struct monitor *monitor, struct backend *backend)
{
	const struct jsonw *w = &monitor->writer;
	char *text;

	if (jsonw_failed(w) || asprintf(&text, "{%s}", w->buf) < 0)
		return;
	recorder_violation(monitor->options.recorder, backend->pid,
			   backend->start_ns, text);
	free(text);
}

static const struct catalog_balance *bind_balance(void *arg, uint32_t relid)
{
	return catalog_balance(arg, relid);
}

static bool bind_allowed(void *arg, uint32_t oid)
{
	return catalog_allowed_function(arg, oid);
}

static bool bind_immutable(void *arg, uint32_t relid)
{
	return catalog_immutable(arg, relid);
}

/*
 * Can this backend's statements be classified? Not while its catalog
 * cannot be read (what was bound may be out of date). Reports once if not.
 */
static bool classifiable(struct monitor *monitor, struct backend *backend)
{
	char err[512];

	if (!backend->db && backend->database[0])
		backend->db = catalog_db(monitor->options.catalog,
					 backend->database, err, sizeof(err));
	if (backend->db && catalog_ready(backend->db, err, sizeof(err)))
		return true;
	if (!backend->reported_unclassified) {
		backend->reported_unclassified = true;
		report_backend(monitor, "statement_not_classified", backend,
			       NULL, 0, backend->has_session
					? "the catalog of its database is unreachable"
					: "no session context (not a client backend)");
	}
	return false;
}

static void classify_and_hold(struct monitor *monitor, struct backend *backend,
			      const struct pgv_header *hdr, struct finding *found,
			      int n, const struct statement *stmt)
{
	int i;

	for (i = 0; i < n; i++) {
		build_record(monitor, backend, hdr, &found[i], stmt);
		hold(monitor, backend, &found[i], hdr->time_ns);
		if (monitor->options.recorder)
			record_violation(monitor, backend);
	}
}

static struct classify_bindings bindings_of(struct monitor *monitor,
					    struct backend *backend)
{
	struct classify_bindings bindings = {
		.balance = bind_balance,
		.allowed = bind_allowed,
		.immutable = bind_immutable,
		.arg = backend->db,
		.version = monitor->options.version,
	};

	return bindings;
}

static const char *const command_names[8] = {
	"UNKNOWN", "SELECT", "UPDATE", "INSERT", "DELETE", "MERGE", "UTILITY",
	"NOTHING",
};

/*
 * Give the flight recorder the statement, unmasked: it masks what it writes
 * unless the dump is encrypted. 'exec' is NULL for a utility statement.
 */
/*
 * The client's own statement and values, as captured: the recorder masks
 * them (and drops the values) when it writes an unencrypted dump.
 */
static void record_client(struct json_object *record,
			  const struct wire_command *client)
{
	struct json_object *values;
	uint16_t i;

	json_object_object_add(record, "client_protocol", json_object_new_string(
				       client->protocol == WIRE_SIMPLE
					       ? "simple" : "extended"));
	if (client->text)
		json_object_object_add(record, "client_statement",
				       json_object_new_string(client->text));
	if (client->protocol != WIRE_EXTENDED)
		return;
	values = json_object_new_array();
	for (i = 0; i < client->n_values; i++)
		json_object_array_add(values, value_json(&client->values[i]));
	json_object_object_add(record, "bind_values", values);
}

static void record_statement(struct monitor *monitor, struct backend *backend,
			     const struct pgv_header *hdr, const char *text,
			     const struct pgv_exec_event *exec,
			     const struct wire_command *client)
{
	struct json_object *record, *rels;
	char stamp[STAMP_MAX];
	int i;

	if (!monitor->options.recorder)
		return;
	record = json_object_new_object();
	format_time(monitor, hdr->time_ns, stamp);
	json_object_object_add(record, "time", json_object_new_string(stamp));
	json_object_object_add(record, "backend_seq",
			       json_object_new_int64(hdr->seq));
	json_object_object_add(record, "command", json_object_new_string(
		exec ? command_names[exec->operation & 7] : "UTILITY"));
	json_object_object_add(record, "statement", json_object_new_string(text));
	rels = json_object_new_array();
	for (i = 0; exec && i < exec->n_result_rels && i < PGV_RESULT_RELS_MAX; i++)
		json_object_array_add(rels,
				      json_object_new_int64(exec->rels[i].relid));
	json_object_object_add(record, "result_relation_oids", rels);
	json_object_object_add(record, "depth", json_object_new_int64(hdr->depth));
	if (backend->db)
		json_object_object_add(record, "function_stack",
				       function_stack(backend, hdr));
	if (client)
		record_client(record, client);
	recorder_add(monitor->options.recorder, backend->pid, backend->start_ns,
		     record);
	json_object_put(record);
}

/* Inserts into the hash events table wake the verifier at commit. */
static void note_event_inserts(struct backend *backend,
			       const struct pgv_exec_event *event)
{
	uint32_t events = catalog_events_table(backend->db);
	int i;

	for (i = 0; events && i < event->n_result_rels &&
		    i < PGV_RESULT_RELS_MAX; i++)
		if (event->rels[i].relid == events &&
		    (event->rels[i].required_perms & ACL_INSERT_BIT))
			backend->inserted_events = true;
}

/*
 * A statement named more write targets than the probe keeps: the ones not
 * kept were not classified, so the blind spot is reported with the
 * statement.
 */
static void report_truncated(struct monitor *monitor, struct backend *backend,
			     const struct pgv_header *hdr, const char *text,
			     uint32_t full_len, bool text_truncated)
{
	struct jsonw *w = monitor_record(monitor, "relations_not_classified");

	jsonw_key(w, "detail");
	jsonw_string(w, "the statement writes more relations than the probe "
		     "keeps; those beyond were not classified");
	write_statement(monitor, w, text, full_len, text_truncated);
	jsonw_key(w, "session");
	write_session(w, backend, false);
	jsonw_key(w, "backend_seq");
	jsonw_int(w, hdr->seq);
	emit(monitor, "monitor", "relations_not_classified");
}

/*
 * Keep a write, in a transaction that ran DDL, to a relation no rule binds
 * yet: the transaction may have created it (or renamed it) to match the
 * policy, and it is classified again once the commit is read. Whether the
 * catalog knows the relation cannot tell: records arrive in batches, and
 * by the time this one is read the transaction may have committed. False
 * when it could not be kept (more than DEFERRED_MAX such writes).
 */
static bool defer_if_new(struct backend *backend,
			 const struct pgv_exec_event *event,
			 const struct classify_bindings *bindings)
{
	size_t size = PGV_EXEC_FIXED + event->text_captured + 1;
	struct pgv_exec_event *copy;
	int i;

	if (!backend->ddl)
		return true;
	for (i = 0; i < event->n_result_rels && i < PGV_RESULT_RELS_MAX; i++) {
		const struct pgv_result_rel *rel = &event->rels[i];

		if (!(rel->required_perms & (ACL_UPDATE_BIT | ACL_DELETE_BIT)) ||
		    bindings->immutable(bindings->arg, rel->relid) ||
		    bindings->balance(bindings->arg, rel->relid))
			continue;
		copy = backend->n_deferred < DEFERRED_MAX
			       ? malloc(sizeof(*copy)) : NULL;
		if (!copy)
			return false;
		memcpy(copy, event, size);
		backend->deferred[backend->n_deferred++] = copy;
		return true;
	}
	return true;
}

/* After the commit is visible: classify the deferred writes again. */
static void classify_deferred(struct monitor *monitor, struct backend *backend)
{
	struct finding found[CLASSIFY_FINDINGS_MAX];
	struct classify_bindings bindings = bindings_of(monitor, backend);
	struct statement stmt = { 0 };
	int i, n;

	for (i = 0; i < backend->n_deferred; i++) {
		const struct pgv_exec_event *event = backend->deferred[i];

		n = classify_exec(&bindings, event, found);
		stmt.text = event->text;
		stmt.full_len = event->text_len;
		stmt.truncated = event->hdr.flags & PGV_F_TEXT_TRUNCATED;
		classify_and_hold(monitor, backend, &event->hdr, found, n, &stmt);
	}
	drop_deferred(backend);
	release(monitor, backend, "committed");
}

static void on_exec(struct monitor *monitor, struct backend *backend,
		    const struct pgv_exec_event *event)
{
	struct finding found[CLASSIFY_FINDINGS_MAX];
	struct classify_bindings bindings;
	struct statement stmt;
	int n;

	monitor->stats.statements[event->operation & 7]++;
	/* every statement moves the join along, violation or not */
	stmt.client = backend->wire ? wire_match(backend->wire, event->text)
				    : NULL;
	record_statement(monitor, backend, &event->hdr, event->text, event,
			 stmt.client);
	/* more targets, or a wider column set, than the probe could keep */
	if (event->hdr.flags & (PGV_F_RELS_TRUNCATED | PGV_F_COLS_TRUNCATED))
		report_truncated(monitor, backend, &event->hdr, event->text,
				 event->text_len,
				 event->hdr.flags & PGV_F_TEXT_TRUNCATED);
	if (!event->n_result_rels || !classifiable(monitor, backend))
		return;
	note_event_inserts(backend, event);
	bindings = bindings_of(monitor, backend);
	if (!defer_if_new(backend, event, &bindings))
		report_truncated(monitor, backend, &event->hdr, event->text,
				 event->text_len,
				 event->hdr.flags & PGV_F_TEXT_TRUNCATED);
	n = classify_exec(&bindings, event, found);
	if (!n)
		return;
	stmt.text = event->text;
	stmt.full_len = event->text_len;
	stmt.truncated = event->hdr.flags & PGV_F_TEXT_TRUNCATED;
	classify_and_hold(monitor, backend, &event->hdr, found, n, &stmt);
}

static void on_utility(struct monitor *monitor, struct backend *backend,
		       const struct pgv_utility_event *event)
{
	monitor->stats.statements[6]++;
	record_statement(monitor, backend, &event->hdr, event->text, NULL,
			 backend->wire ? wire_match(backend->wire, event->text)
				       : NULL);
	free(backend->utility_text);
	backend->utility_text = strndup(event->text, event->text_captured);
	backend->utility_len = event->text_len;
	backend->utility_truncated = event->hdr.flags & PGV_F_TEXT_TRUNCATED;
	if (!catalog_neutral(monitor, event->node_tag))
		backend->ddl = true;
	if (tag_in(monitor->function_ddl_tags, monitor->n_function_ddl_tags,
		   event->node_tag))
		backend->function_ddl = true;
}

static void on_target(struct monitor *monitor, struct backend *backend,
		      const struct pgv_target_event *event)
{
	struct finding found[CLASSIFY_FINDINGS_MAX];
	struct classify_bindings bindings;
	struct statement stmt;
	int n;

	if (event->hdr.flags & PGV_F_RELS_TRUNCATED)
		report_truncated(monitor, backend, &event->hdr,
				 backend->utility_text ? backend->utility_text : "",
				 backend->utility_len, backend->utility_truncated);
	if (!classifiable(monitor, backend))
		return;
	bindings = bindings_of(monitor, backend);
	n = classify_target(&bindings, event, found);
	if (!n)
		return;
	stmt.text = backend->utility_text ? backend->utility_text : "";
	stmt.client = backend->wire ? wire_match(backend->wire, stmt.text)
				    : NULL;
	stmt.full_len = backend->utility_len;
	stmt.truncated = backend->utility_truncated;
	classify_and_hold(monitor, backend, &event->hdr, found, n, &stmt);
}

static void on_xact(struct monitor *monitor, struct backend *backend,
		    const struct pgv_xact_event *event)
{
	bool committed = event->kind == PGV_XACT_COMMIT;

	if (event->kind == PGV_XACT_START)
		return;
	release(monitor, backend, committed ? "committed" : "rolled_back");
	report_late_outcome(monitor, backend,
			    committed ? "committed" : "rolled_back");
	if (monitor->options.recorder)
		recorder_xact_end(monitor->options.recorder, backend->pid,
				  backend->start_ns,
				  committed ? "committed" : "aborted");
	if (backend->inserted_events && committed &&
	    monitor->options.events_committed)
		monitor->options.events_committed(monitor->options.arg);
	backend->inserted_events = false;
	if (backend->ddl && committed && backend->db) {
		backend->ddl_committed_ns = event->hdr.time_ns;
		backend->function_ddl_committed = backend->function_ddl;
	} else {
		drop_deferred(backend);	/* its new relations are gone */
	}
	backend->ddl = false;
	backend->function_ddl = false;
}

/* An allowed function was created or redefined by this backend's DDL. */
static void report_allowed_change(struct monitor *monitor,
				  struct backend *backend, uint32_t oid)
{
	static const char rule[] = "allowed_function_redefined";
	struct jsonw *w = record_begin(monitor, backend->ddl_committed_ns,
				       "monetary", rule);

	jsonw_key(w, "function");
	jsonw_string(w, catalog_function(backend->db, oid));
	jsonw_key(w, "function_oid");
	jsonw_int(w, oid);
	write_statement(monitor, w,
			backend->utility_text ? backend->utility_text : "",
			backend->utility_len, backend->utility_truncated);
	jsonw_key(w, "session");
	write_session(w, backend, false);
	jsonw_key(w, "transaction");
	jsonw_object_begin(w);
	jsonw_key(w, "outcome");
	jsonw_string(w, "committed");
	jsonw_object_end(w);
	emit(monitor, "monetary", rule);
}

/* Another backend's committed DDL on 'db' that may redefine a function. */
static bool function_ddl_pending(struct monitor *monitor,
				 const struct backend *self)
{
	const struct backend *other;
	size_t i;

	oidmap_foreach(&monitor->backends, i) {
		other = monitor->backends.values[i];
		if (other != self && other->db == self->db &&
		    other->ddl_committed_ns && other->function_ddl_committed)
			return true;
	}
	return false;
}

/*
 * The allowed functions this backend's DDL may have redefined. A read of
 * the catalog sees every commit before it: when two backends commit DDL
 * before either is read, the first read sees both changes and the second
 * none. So a transaction that ran function DDL owns every definition first
 * read after it committed, whoever's read saw it first; other DDL owns
 * what its own read found changed, unless such a transaction is waiting
 * to claim it.
 */
static int allowed_changes_of(struct monitor *monitor, struct backend *backend,
			      uint32_t *oids, int max)
{
	int n = catalog_take_changed_allowed(backend->db, oids, max);

	if (backend->function_ddl_committed)
		return catalog_allowed_seen_since(backend->db,
						  backend->ddl_committed_ns,
						  oids, max);
	return function_ddl_pending(monitor, backend) ? 0 : n;
}

/*
 * Re-read the catalog after DDL this backend committed, if still due. When
 * it cannot be read, the backend's statements are not classified from here
 * on, and that is reported.
 */
static void refresh_after_ddl(struct monitor *monitor, struct backend *backend)
{
	char err[512];
	uint32_t changed[16];
	int n, i;

	if (!backend->ddl_committed_ns || !backend->db)
		return;
	if (catalog_invalidate(backend->db)) {
		catalog_ready(backend->db, err, sizeof(err));
		log_warn("cannot refresh the catalog of '%s' after DDL: %s",
			 backend->database, err);
		classifiable(monitor, backend);
	}
	n = allowed_changes_of(monitor, backend, changed, 16);
	for (i = 0; i < n; i++)
		report_allowed_change(monitor, backend, changed[i]);
	classify_deferred(monitor, backend);
	backend->ddl_committed_ns = 0;
	backend->function_ddl_committed = false;
}

/*
 * Bytes the backend read from its client. A protocol error is reported once
 * per connection: the wire fields of its records are missing or stale from
 * there until the parser is back in step.
 */
static void on_wire(struct monitor *monitor, struct backend *backend,
		    const struct pgv_wire_event *event)
{
	uint32_t end = event->offset + event->captured;
	int ret = 0;

	monitor->stats.wire_bytes += event->captured;
	/* the client address or the startup packet may come with it */
	forget_session(backend);
	if (!backend->wire) {
		backend->wire = wire_conn_new();
		if (!backend->wire)
			return;
	}
	if (event->client_addr_len && !backend->client[0])
		format_client(event->client_addr, backend->client,
			      sizeof(backend->client));
	if (event->hdr.flags & PGV_F_READ_FAILED)
		wire_gap(backend->wire, event->read_len - event->offset);
	else
		ret = wire_feed(backend->wire, event->data, event->captured,
				event->offset == 0);
	/* the last chunk of a read longer than the capture */
	if (!ret && event->captured == PGV_WIRE_CHUNK &&
	    event->offset == (PGV_WIRE_CHUNKS - 1) * PGV_WIRE_CHUNK &&
	    event->read_len > end)
		wire_gap(backend->wire, event->read_len - end);
	if (ret == -EPROTO) {
		monitor->stats.wire_errors++;
		if (!backend->wire_reported)
			report_backend(monitor, "wire_protocol_error", backend,
				       NULL, 0, wire_error(backend->wire));
		backend->wire_reported = true;
	}
}

static void on_backend_exit(struct monitor *monitor, struct backend *backend)
{
	/* the server rolls back what an exiting backend left open */
	release(monitor, backend, "rolled_back");
	report_late_outcome(monitor, backend, "rolled_back");
	if (backend->wire && wire_end(backend->wire) == -EPIPE)
		log_debug("backend %u: connection ended mid-message",
			  backend->pid);
	if (monitor->options.recorder)
		recorder_backend_exit(monitor->options.recorder, backend->pid,
				      backend->start_ns);
	free_backend(oidmap_remove(&monitor->backends, backend->pid));
}

static size_t minimum_size(__u16 type)
{
	switch (type) {
	case PGV_EV_EXEC:
		return PGV_EXEC_PACKED(0, 0);
	case PGV_EV_UTILITY:
		return PGV_UTIL_FIXED + 1;
	case PGV_EV_TARGET:
		return sizeof(struct pgv_target_event);
	case PGV_EV_XACT:
		return sizeof(struct pgv_xact_event);
	case PGV_EV_SESSION:
		return sizeof(struct pgv_session_event);
	case PGV_EV_EXIT:
		return sizeof(struct pgv_exit_event);
	case PGV_EV_WIRE:
		return PGV_WIRE_FIXED;
	default:
		return SIZE_MAX;
	}
}

/* A record whose text is cut short of what it claims is made consistent. */
static bool text_fits(const char *text, uint32_t captured, size_t room)
{
	return captured < room && text[captured] == 0;
}

/*
 * Unpack an exec record (see PGV_EXEC_PACKED) into 'out'. False when the
 * record's counts do not match its size: more relations than kept, or a
 * text that is not where and as long as it claims.
 */
static bool exec_unpack(struct pgv_exec_event *out, const void *data,
			size_t size)
{
	const struct pgv_exec_event *packed = data;
	size_t rels, room;
	const char *text;

	if (packed->n_result_rels > PGV_RESULT_RELS_MAX ||
	    packed->text_captured >= PGV_TEXT_MAX)
		return false;
	rels = packed->n_result_rels * sizeof(struct pgv_result_rel);
	if (size < PGV_EXEC_PACKED(packed->n_result_rels, 0))
		return false;
	text = (const char *)data + PGV_EXEC_RELS + rels;
	room = size - PGV_EXEC_RELS - rels;
	if (!text_fits(text, packed->text_captured, room))
		return false;
	/* a constant size first: the compiler inlines it, no rep movs */
	memcpy(out, data, PGV_EXEC_RELS);
	if (rels)
		memcpy(out->rels, packed->rels, rels);
	memcpy(out->text, text, packed->text_captured + 1);
	return true;
}

int monitor_handle(struct monitor *monitor, const void *data, size_t size)
{
	const struct pgv_header *hdr = data;
	struct backend *backend;

	monitor->stats.events++;
	if (size < sizeof(*hdr) || size < minimum_size(hdr->type)) {
		monitor_report(monitor, "malformed_event", NULL);
		return 0;
	}
	if (!watched(monitor, hdr->ppid)) {
		monitor->stats.ignored++;
		return 0;
	}
	if (catalog_own_backend(monitor->options.catalog, hdr->pid)) {
		monitor->stats.own++;
		return 0;
	}
	backend = backend_of(monitor, hdr);
	if (!backend)
		return 0;
	refresh_after_ddl(monitor, backend);
	switch (hdr->type) {
	case PGV_EV_EXEC:
		if (!exec_unpack(&monitor->exec, data, size)) {
			monitor_report(monitor, "malformed_event", NULL);
			break;
		}
		on_exec(monitor, backend, &monitor->exec);
		break;
	case PGV_EV_UTILITY: {
		const struct pgv_utility_event *e = data;

		if (!text_fits(e->text, e->text_captured,
			       size - PGV_UTIL_FIXED)) {
			monitor_report(monitor, "malformed_event", NULL);
			break;
		}
		on_utility(monitor, backend, e);
		break;
	}
	case PGV_EV_TARGET:
		on_target(monitor, backend, data);
		break;
	case PGV_EV_XACT:
		on_xact(monitor, backend, data);
		break;
	case PGV_EV_SESSION:
		on_session(monitor, backend, data);
		break;
	case PGV_EV_EXIT:
		on_backend_exit(monitor, backend);
		break;
	case PGV_EV_WIRE: {
		const struct pgv_wire_event *e = data;

		if (e->captured > PGV_WIRE_CHUNK ||
		    e->captured > size - PGV_WIRE_FIXED) {
			monitor_report(monitor, "malformed_event", NULL);
			break;
		}
		on_wire(monitor, backend, e);
		break;
	}
	}
	return 0;
}

static void report_drops(struct monitor *monitor, const uint64_t drops[],
			 size_t n)
{
	struct json_object *detail;
	size_t cause;

	for (cause = 0; cause < n && cause < PGV_DROP_CAUSES; cause++) {
		if (drops[cause] <= monitor->last_drops[cause])
			continue;
		detail = json_object_new_object();
		json_object_object_add(detail, "cause", json_object_new_string(
					       drop_causes[cause]));
		json_object_object_add(detail, "count", json_object_new_int64(
				drops[cause] - monitor->last_drops[cause]));
		json_object_object_add(detail, "total",
				       json_object_new_int64(drops[cause]));
		monitor_report(monitor, "probe_drops", detail);
		monitor->last_drops[cause] = drops[cause];
	}
}

void monitor_tick(struct monitor *monitor, uint64_t now_ns,
		  const uint64_t drops[], size_t n_drops)
{
	size_t i;

	oidmap_foreach(&monitor->backends, i) {
		struct backend *backend = monitor->backends.values[i];

		if (backend->n_held &&
		    now_ns - backend->held_since_ns > monitor->options.hold_ns)
			release(monitor, backend, "in_progress");
		if (backend->ddl_committed_ns &&
		    now_ns - backend->ddl_committed_ns > DDL_SETTLE_NS)
			refresh_after_ddl(monitor, backend);
	}
	if (drops)
		report_drops(monitor, drops, n_drops);
}

void monitor_flush(struct monitor *monitor)
{
	size_t i;

	oidmap_foreach(&monitor->backends, i)
		release(monitor, monitor->backends.values[i], "in_progress");
}

void monitor_stats(const struct monitor *monitor, struct monitor_stats *out)
{
	*out = monitor->stats;
}

void monitor_free(struct monitor *monitor)
{
	if (!monitor)
		return;
	oidmap_clear(&monitor->backends, free_backend);
	oidmap_free(&monitor->backends);
	jsonw_free(&monitor->writer);
	jsonw_free(&monitor->session_writer);
	mask_cache_free(monitor->masks);
	free(monitor->watched);
	free(monitor);
}
