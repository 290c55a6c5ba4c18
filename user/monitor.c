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
#include <sys/un.h>
#include <time.h>

#include <json-c/json.h>

#include "classify.h"
#include "log.h"
#include "mask.h"
#include "monitor.h"
#include "observe.h"
#include "oidmap.h"
#include "wire.h"
#include "recorder.h"

#define REFUSED_MAX 64
#define DEFERRED_MAX 32

/* long enough for a committing backend to finish making it visible */
#define DDL_SETTLE_NS (200 * 1000000ULL)

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
	bool inserted_events;		/* into the hash events table */
	/*
	 * DDL committed, catalog not re-read yet: the commit probe fires
	 * before the transaction becomes visible to other sessions, so the
	 * catalog is re-read at the backend's next event (or exit), which
	 * comes after, or after a short delay when the backend stays idle.
	 */
	uint64_t ddl_committed_ns;
	uint64_t start_ns;		/* first seen: tells pid reuse apart */
	char user[PGV_NAME_MAX];
	char database[PGV_NAME_MAX];
	char application[PGV_APP_MAX];
	char client[96];
	struct catalog_db *db;
	struct json_object *held;	/* records awaiting the outcome */
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

int monitor_new(const struct monitor_options *options, struct monitor **out)
{
	struct monitor *monitor = calloc(1, sizeof(*monitor));

	if (!monitor)
		return -ENOMEM;
	monitor->options = *options;
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

static void format_time(const struct monitor *monitor, uint64_t mono_ns,
			char *buf, size_t len)
{
	int64_t ns = (int64_t)mono_ns + monitor->realtime_offset_ns;
	time_t secs = ns / 1000000000;
	struct tm tm;
	size_t n;

	gmtime_r(&secs, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%06ldZ", (long)(ns % 1000000000) / 1000);
}

static int64_t emit(struct monitor *monitor, struct json_object *record)
{
	int64_t id = feed_emit(monitor->options.feed, record);

	if (id < 0)
		log_error("cannot write a violation record: %s",
			  strerror((int)-id));
	monitor->stats.violations++;
	json_object_put(record);
	return id;
}

static struct json_object *monitor_record(struct monitor *monitor,
					  const char *rule)
{
	struct json_object *record = json_object_new_object();
	char stamp[40];

	format_time(monitor, clock_ns(CLOCK_MONOTONIC), stamp, sizeof(stamp));
	json_object_object_add(record, "time", json_object_new_string(stamp));
	json_object_object_add(record, "invariant",
			       json_object_new_string("monitor"));
	json_object_object_add(record, "rule", json_object_new_string(rule));
	return record;
}

void monitor_report(struct monitor *monitor, const char *rule,
		    struct json_object *detail)
{
	struct json_object *record = monitor_record(monitor, rule);

	if (detail)
		json_object_object_add(record, "detail", detail);
	emit(monitor, record);
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

static struct json_object *session_json(const struct backend *backend);

/* Emit every held record of 'backend' with 'outcome'. */
static void release(struct monitor *monitor, struct backend *backend,
		    const char *outcome)
{
	size_t i, n;

	if (!backend->held)
		return;
	n = json_object_array_length(backend->held);
	for (i = 0; i < n; i++) {
		struct json_object *record =
			json_object_array_get_idx(backend->held, i);
		struct json_object *xact = json_object_new_object();

		int64_t id;

		json_object_object_add(xact, "outcome",
				       json_object_new_string(outcome));
		json_object_object_add(record, "transaction", xact);
		id = emit(monitor, json_object_get(record));
		if (id > 0 && !strcmp(outcome, "in_progress")) {
			if (!backend->sent_in_progress)
				backend->sent_in_progress = json_object_new_array();
			json_object_array_add(backend->sent_in_progress,
					      json_object_new_int64(id));
		}
	}
	json_object_put(backend->held);
	backend->held = NULL;
}

/*
 * Records sent as in_progress learn their transaction's outcome in a
 * record of the monitor's own that names them by id.
 */
static void report_late_outcome(struct monitor *monitor,
				struct backend *backend, const char *outcome)
{
	struct json_object *record, *detail;

	if (!backend->sent_in_progress)
		return;
	record = monitor_record(monitor, "transaction_outcome");
	detail = json_object_new_object();
	json_object_object_add(detail, "ids", backend->sent_in_progress);
	json_object_object_add(detail, "outcome",
			       json_object_new_string(outcome));
	json_object_object_add(record, "detail", detail);
	json_object_object_add(record, "session", session_json(backend));
	backend->sent_in_progress = NULL;
	emit(monitor, record);
}

static void hold(struct backend *backend, struct json_object *record,
		 uint64_t now_ns)
{
	if (!backend->held) {
		backend->held = json_object_new_array();
		backend->held_since_ns = now_ns;
	}
	json_object_array_add(backend->held, record);
}

static void drop_deferred(struct backend *backend)
{
	while (backend->n_deferred > 0)
		free(backend->deferred[--backend->n_deferred]);
}

static void free_backend(void *value)
{
	struct backend *backend = value;

	json_object_put(backend->held);
	json_object_put(backend->sent_in_progress);
	drop_deferred(backend);
	free(backend->utility_text);
	wire_conn_free(backend->wire);
	free(backend);
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
		if (backend->wire)
			wire_gap(backend->wire, 0);
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

static struct json_object *session_json(const struct backend *backend)
{
	struct json_object *session = json_object_new_object();

	json_object_object_add(session, "pid",
			       json_object_new_int64(backend->pid));
	json_object_object_add(session, "user",
			       json_object_new_string(backend->user));
	json_object_object_add(session, "database",
			       json_object_new_string(backend->database));
	json_object_object_add(session, "application",
			       json_object_new_string(backend->application));
	json_object_object_add(session, "client",
			       json_object_new_string(backend->client));
	json_object_object_add(session, "postmaster",
			       json_object_new_int64(backend->ppid));
	json_object_object_add(session, "os_uid",
			       json_object_new_int64(backend->uid));
	json_object_object_add(session, "comm",
			       json_object_new_string(backend->comm));
	json_object_object_add(session, "cgroup_id",
			       json_object_new_int64((int64_t)backend->cgroup_id));
	return session;
}

static void add_statement(struct monitor *monitor, struct json_object *record,
			  const char *text, uint32_t full_len, bool truncated)
{
	enum mask_method method = MASK_NORMALIZED;
	char *masked = NULL;

	/* a statement cut from a multi-statement string keeps its lead space */
	while (*text == ' ' || *text == '\n' || *text == '\t' || *text == '\r')
		text++;
	if (!monitor->options.unmasked)
		masked = mask_statement(text, &method);
	json_object_object_add(record, "statement",
			       json_object_new_string(masked ? masked : text));
	if (!monitor->options.unmasked)
		json_object_object_add(record, "statement_masking",
				       json_object_new_string(
					       mask_method_name(method)));
	if (truncated) {
		json_object_object_add(record, "statement_truncated",
				       json_object_new_boolean(1));
		json_object_object_add(record, "statement_length",
				       json_object_new_int64(full_len));
	}
	free(masked);
}

static struct json_object *startup_json(const struct wire_conn *wire)
{
	const struct wire_startup *startup = wire_startup(wire);
	struct json_object *json = json_object_new_object();

	json_object_object_add(json, "user",
			       json_object_new_string(startup->user));
	json_object_object_add(json, "database",
			       json_object_new_string(startup->database));
	json_object_object_add(json, "application_name",
			       json_object_new_string(
				       startup->application_name));
	json_object_object_add(json, "options",
			       json_object_new_string(startup->options));
	json_object_object_add(json, "ssl_requested",
			       json_object_new_boolean(startup->ssl_requested));
	return json;
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

/* A bound value as captured: text as is, binary or odd bytes in hex. */
static struct json_object *value_json(const struct wire_value *value)
{
	struct json_object *json;
	char *hex;
	uint32_t i;

	if (value->length < 0)
		return NULL;
	if (value->format == 0 &&
	    valid_utf8((const unsigned char *)value->bytes, value->kept))
		return json_object_new_string_len(value->bytes, value->kept);
	hex = malloc(2 * (size_t)value->kept + 3);
	if (!hex)
		return NULL;
	strcpy(hex, "\\x");
	for (i = 0; i < value->kept; i++)
		sprintf(hex + 2 + 2 * i, "%02x", (unsigned char)value->bytes[i]);
	json = json_object_new_string(hex);
	free(hex);
	return json;
}

/*
 * Bound values: masked, each non-NULL value is "?" (NULL stays null: that a
 * value was absent is not data); unmasked, as captured.
 */
static void add_bind_values(struct monitor *monitor, struct json_object *record,
			    const struct wire_command *client)
{
	struct json_object *values = json_object_new_array();
	struct json_object *formats = json_object_new_array();
	uint16_t i;

	for (i = 0; i < client->n_values; i++) {
		const struct wire_value *value = &client->values[i];

		json_object_array_add(formats, json_object_new_string(
					       value->format ? "binary" : "text"));
		if (value->length < 0)
			json_object_array_add(values, NULL);
		else if (!monitor->options.unmasked)
			json_object_array_add(values, json_object_new_string("?"));
		else
			json_object_array_add(values, value_json(value));
	}
	json_object_object_add(record, "bind_values", values);
	json_object_object_add(record, "bind_formats", formats);
	if (!monitor->options.unmasked)
		json_object_object_add(record, "bind_values_masking",
				       json_object_new_string("replaced"));
	if (client->values_truncated || client->n_values < client->n_params) {
		json_object_object_add(record, "bind_values_truncated",
				       json_object_new_boolean(1));
		json_object_object_add(record, "bind_count",
				       json_object_new_int64(client->n_params));
	}
}

/*
 * What the client sent for the statement: its own text (masked like
 * "statement") and, through the extended protocol, the values it bound.
 */
static void add_client(struct monitor *monitor, struct json_object *record,
		       const struct wire_command *client)
{
	enum mask_method method = MASK_NORMALIZED;
	char *masked = NULL;

	json_object_object_add(record, "client_protocol", json_object_new_string(
				       client->protocol == WIRE_SIMPLE
					       ? "simple" : "extended"));
	if (client->text && !monitor->options.unmasked)
		masked = mask_statement(client->text, &method);
	if (client->text) {
		json_object_object_add(record, "client_statement",
				       json_object_new_string(masked ? masked
							      : client->text));
		if (!monitor->options.unmasked)
			json_object_object_add(record,
				"client_statement_masking",
				json_object_new_string(mask_method_name(method)));
	}
	if (client->text_truncated) {
		json_object_object_add(record, "client_statement_truncated",
				       json_object_new_boolean(1));
		json_object_object_add(record, "client_statement_length",
				       json_object_new_int64(client->text_len));
	}
	free(masked);
	if (client->protocol == WIRE_EXTENDED) {
		if (client->statement_name && client->statement_name[0])
			json_object_object_add(record, "prepared_statement",
				json_object_new_string(client->statement_name));
		add_bind_values(monitor, record, client);
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

struct statement {
	const char *text;
	uint32_t full_len;
	bool truncated;
	const struct wire_command *client;	/* from the wire, or NULL */
};

static struct json_object *build_record(struct monitor *monitor,
					struct backend *backend,
					const struct pgv_header *hdr,
					const struct finding *f,
					const struct statement *stmt)
{
	const struct catalog_relation *rel = catalog_relation(backend->db,
							      f->relid);
	struct json_object *record = json_object_new_object(), *list;
	char stamp[40], oid[24];
	int i;

	format_time(monitor, hdr->time_ns, stamp, sizeof(stamp));
	snprintf(oid, sizeof(oid), "oid:%u", f->relid);
	json_object_object_add(record, "time", json_object_new_string(stamp));
	json_object_object_add(record, "invariant", json_object_new_string(
				       classify_invariant_name(f->invariant)));
	json_object_object_add(record, "rule", json_object_new_string(f->rule));
	json_object_object_add(record, "relation", json_object_new_string(
				       rel ? rel->qualified : oid));
	json_object_object_add(record, "relation_oid",
			       json_object_new_int64(f->relid));
	list = json_object_new_array();
	for (i = 0; i < f->n_columns; i++)
		json_object_array_add(list, json_object_new_string(f->columns[i]));
	json_object_object_add(record, "columns", list);
	json_object_object_add(record, "command",
			       json_object_new_string(f->command));
	if (f->n_detail) {
		list = json_object_new_array();
		for (i = 0; i < f->n_detail; i++)
			json_object_array_add(list,
					      json_object_new_string(f->detail[i]));
		json_object_object_add(record, "subcommands", list);
	}
	add_statement(monitor, record, stmt->text, stmt->full_len,
		      stmt->truncated);
	json_object_object_add(record, "function_stack",
			       function_stack(backend, hdr));
	json_object_object_add(record, "depth", json_object_new_int64(hdr->depth));
	if (hdr->flags & PGV_F_STACK_TRUNCATED)
		json_object_object_add(record, "function_stack_truncated",
				       json_object_new_boolean(1));
	json_object_object_add(record, "session", session_json(backend));
	if (backend->wire && wire_startup(backend->wire)->seen)
		json_object_object_add(json_object_object_get(record, "session"),
				       "startup", startup_json(backend->wire));
	if (stmt->client)
		add_client(monitor, record, stmt->client);
	json_object_object_add(record, "backend_seq",
			       json_object_new_int64(hdr->seq));
	return record;
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

/* Can this backend's statements be classified? Reports once if not. */
static bool classifiable(struct monitor *monitor, struct backend *backend)
{
	char err[512];

	if (!backend->db && backend->database[0])
		backend->db = catalog_db(monitor->options.catalog,
					 backend->database, err, sizeof(err));
	if (backend->db)
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
		struct json_object *record = build_record(monitor, backend, hdr,
							  &found[i], stmt);

		hold(backend, record, hdr->time_ns);
		if (monitor->options.recorder)
			recorder_violation(monitor->options.recorder,
					   backend->pid, backend->start_ns,
					   record);
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
	char stamp[40];
	int i;

	if (!monitor->options.recorder)
		return;
	record = json_object_new_object();
	format_time(monitor, hdr->time_ns, stamp, sizeof(stamp));
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
	struct json_object *record = monitor_record(monitor,
						    "relations_not_classified");

	json_object_object_add(record, "detail", json_object_new_string(
		"the statement writes more relations than the probe keeps; "
		"those beyond were not classified"));
	add_statement(monitor, record, text, full_len, text_truncated);
	json_object_object_add(record, "session", session_json(backend));
	json_object_object_add(record, "backend_seq",
			       json_object_new_int64(hdr->seq));
	emit(monitor, record);
}

/* Keep a write to a relation this open transaction created. */
static void defer_if_new(struct backend *backend,
			 const struct pgv_exec_event *event)
{
	size_t size = PGV_EXEC_FIXED + event->text_captured + 1;
	struct pgv_exec_event *copy;
	int i;

	if (!backend->ddl || backend->n_deferred == DEFERRED_MAX)
		return;
	for (i = 0; i < event->n_result_rels && i < PGV_RESULT_RELS_MAX; i++) {
		const struct pgv_result_rel *rel = &event->rels[i];

		if (!(rel->required_perms & (ACL_UPDATE_BIT | ACL_DELETE_BIT)) ||
		    catalog_relation(backend->db, rel->relid))
			continue;
		copy = malloc(sizeof(*copy));
		if (!copy)
			return;
		memcpy(copy, event, size);
		backend->deferred[backend->n_deferred++] = copy;
		return;
	}
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
	if (event->hdr.flags & PGV_F_RELS_TRUNCATED)
		report_truncated(monitor, backend, &event->hdr, event->text,
				 event->text_len,
				 event->hdr.flags & PGV_F_TEXT_TRUNCATED);
	if (!event->n_result_rels || !classifiable(monitor, backend))
		return;
	note_event_inserts(backend, event);
	defer_if_new(backend, event);
	bindings = bindings_of(monitor, backend);
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
	const char *tag = pglayout_tag_name(monitor->options.version,
					    event->node_tag);

	monitor->stats.statements[6]++;
	record_statement(monitor, backend, &event->hdr, event->text, NULL,
			 backend->wire ? wire_match(backend->wire, event->text)
				       : NULL);
	free(backend->utility_text);
	backend->utility_text = strndup(event->text, event->text_captured);
	backend->utility_len = event->text_len;
	backend->utility_truncated = event->hdr.flags & PGV_F_TEXT_TRUNCATED;
	/* statements that cannot change the catalog */
	if (tag && (!strcmp(tag, "TransactionStmt") ||
		    !strcmp(tag, "VariableSetStmt") ||
		    !strcmp(tag, "VariableShowStmt") ||
		    !strcmp(tag, "ExplainStmt") ||
		    !strcmp(tag, "CallStmt") || !strcmp(tag, "DoStmt") ||
		    !strcmp(tag, "CopyStmt") || !strcmp(tag, "DeallocateStmt") ||
		    !strcmp(tag, "PrepareStmt") || !strcmp(tag, "ExecuteStmt") ||
		    !strcmp(tag, "FetchStmt") || !strcmp(tag, "ClosePortalStmt") ||
		    !strcmp(tag, "DeclareCursorStmt")))
		return;
	backend->ddl = true;
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
	if (backend->ddl && committed && backend->db)
		backend->ddl_committed_ns = event->hdr.time_ns;
	else
		drop_deferred(backend);	/* its new relations are gone */
	backend->ddl = false;
}

/* An allowed function was created or redefined by this backend's DDL. */
static void report_allowed_change(struct monitor *monitor,
				  struct backend *backend, uint32_t oid)
{
	struct json_object *record = json_object_new_object(), *xact;
	char stamp[40];

	format_time(monitor, backend->ddl_committed_ns, stamp, sizeof(stamp));
	json_object_object_add(record, "time", json_object_new_string(stamp));
	json_object_object_add(record, "invariant",
			       json_object_new_string("monetary"));
	json_object_object_add(record, "rule", json_object_new_string(
				       "allowed_function_redefined"));
	json_object_object_add(record, "function", json_object_new_string(
				       catalog_function(backend->db, oid)));
	json_object_object_add(record, "function_oid",
			       json_object_new_int64(oid));
	add_statement(monitor, record,
		      backend->utility_text ? backend->utility_text : "",
		      backend->utility_len, backend->utility_truncated);
	json_object_object_add(record, "session", session_json(backend));
	xact = json_object_new_object();
	json_object_object_add(xact, "outcome",
			       json_object_new_string("committed"));
	json_object_object_add(record, "transaction", xact);
	emit(monitor, record);
}

/* Re-read the catalog after DDL this backend committed, if still due. */
static void refresh_after_ddl(struct monitor *monitor, struct backend *backend)
{
	uint32_t changed[16];
	int n, i;

	if (!backend->ddl_committed_ns || !backend->db)
		return;
	if (catalog_invalidate(backend->db))
		log_warn("cannot refresh the catalog of '%s' after DDL",
			 backend->database);
	n = catalog_take_changed_allowed(backend->db, changed, 16);
	for (i = 0; i < n; i++)
		report_allowed_change(monitor, backend, changed[i]);
	classify_deferred(monitor, backend);
	backend->ddl_committed_ns = 0;
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
		return PGV_EXEC_FIXED + 1;
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
	case PGV_EV_EXEC: {
		const struct pgv_exec_event *e = data;

		if (!text_fits(e->text, e->text_captured, size - PGV_EXEC_FIXED))
			break;
		on_exec(monitor, backend, e);
		break;
	}
	case PGV_EV_UTILITY: {
		const struct pgv_utility_event *e = data;

		if (!text_fits(e->text, e->text_captured, size - PGV_UTIL_FIXED))
			break;
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

		if (backend->held &&
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
	free(monitor->watched);
	free(monitor);
}
