/*
 * The frontend protocol parser and the join to executor statements; see
 * wire.h. Framing first (a startup packet, then type byte, length, body),
 * then the messages that name statements and values are decoded from the
 * part of their body kept. Everything is bounds-checked against what was
 * kept, so a body cut anywhere decodes as far as it goes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#define PROTOCOL_V3		196608		/* 3.0 */
#define CANCEL_REQUEST		80877102
#define SSL_REQUEST		80877103
#define GSSENC_REQUEST		80877104
#define SMALL_LIMIT		10000		/* PQ_SMALL_MESSAGE_LIMIT */
#define LARGE_LIMIT		0x3fffffff	/* PQ_LARGE_MESSAGE_LIMIT */

enum phase {
	PHASE_FRESH,		/* nothing seen yet */
	PHASE_STARTUP,		/* a startup packet (or request) next */
	PHASE_MESSAGES,		/* typed messages */
	PHASE_DESYNC,		/* out of step: wait for a read in step */
	PHASE_DONE,		/* ended or given up: ignore the rest */
};

struct named {
	char *name;
	struct wire_command *command;	/* a statement: text only */
};

struct wire_conn {
	enum phase phase;
	bool in_startup;	/* the frame being read is a startup packet */
	uint8_t head[5];
	uint32_t head_have;
	uint8_t type;
	uint32_t body_len;	/* body bytes the frame declares */
	uint32_t body_seen;	/* of them, consumed */
	uint8_t *body;
	uint32_t body_kept;
	uint32_t body_cap;
	bool body_cut;		/* bytes of the body were not kept */
	bool keep_body;		/* this message type is decoded */
	struct wire_startup startup;
	struct named statements[WIRE_NAMES_MAX];
	struct named portals[WIRE_NAMES_MAX];
	struct wire_command *queue[WIRE_QUEUE_MAX];
	uint32_t queued;
	struct wire_command *current;
	struct wire_counts counts;
	unsigned desyncs;
	char error[128];
};

/* --- commands -------------------------------------------------------- */

static void command_put(struct wire_command *command)
{
	uint16_t i;

	if (!command || --command->refs)
		return;
	for (i = 0; i < command->n_values; i++)
		free(command->values[i].bytes);
	free(command->values);
	free(command->text);
	free(command->statement_name);
	free(command);
}

static struct wire_command *command_get(struct wire_command *command)
{
	if (command)
		command->refs++;
	return command;
}

static struct wire_command *command_new(enum wire_protocol protocol)
{
	struct wire_command *command = calloc(1, sizeof(*command));

	if (command) {
		command->refs = 1;
		command->protocol = protocol;
	}
	return command;
}

/* Copy 'len' bytes of a text as a command's text, kept up to the bound. */
static int command_set_text(struct wire_command *command, const char *text,
			    size_t kept, size_t full, bool cut)
{
	if (kept > WIRE_TEXT_MAX) {
		kept = WIRE_TEXT_MAX;
		cut = true;
	}
	command->text = strndup(text, kept);
	if (!command->text)
		return -ENOMEM;
	command->text_kept = strlen(command->text);
	command->text_len = full > UINT32_MAX ? UINT32_MAX : (uint32_t)full;
	command->text_truncated = cut;
	return 0;
}

/* --- names of prepared statements and portals ------------------------ */

static struct named *named_find(struct named *table, const char *name)
{
	size_t i;

	for (i = 0; i < WIRE_NAMES_MAX; i++)
		if (table[i].name && !strcmp(table[i].name, name))
			return &table[i];
	return NULL;
}

static void named_drop(struct named *entry)
{
	free(entry->name);
	command_put(entry->command);
	entry->name = NULL;
	entry->command = NULL;
}

/*
 * Bind 'name' to 'command' (a reference is taken). A full table forgets
 * its first entry: a client that keeps more than WIRE_NAMES_MAX statements
 * loses the text of the oldest, not the parser its bound.
 */
static int named_set(struct named *table, const char *name,
		     struct wire_command *command)
{
	struct named *entry = named_find(table, name);
	size_t i;

	if (!entry)
		for (i = 0; i < WIRE_NAMES_MAX && !entry; i++)
			if (!table[i].name)
				entry = &table[i];
	if (!entry)
		entry = &table[0];
	named_drop(entry);
	entry->name = strdup(name);
	if (!entry->name)
		return -ENOMEM;
	entry->command = command_get(command);
	return 0;
}

/* --- the queue of commands awaiting the executor --------------------- */

static void queue_shift(struct wire_conn *conn, uint32_t n)
{
	memmove(conn->queue, conn->queue + n,
		(conn->queued - n) * sizeof(conn->queue[0]));
	conn->queued -= n;
}

static void queue_push(struct wire_conn *conn, struct wire_command *command)
{
	if (conn->queued == WIRE_QUEUE_MAX) {
		command_put(conn->queue[0]);
		queue_shift(conn, 1);
		conn->counts.queue_dropped++;
	}
	conn->queue[conn->queued++] = command_get(command);
}

/* --- bounded reading of a kept body ---------------------------------- */

struct reader {
	const uint8_t *p;
	size_t len;
	size_t off;
	bool short_read;	/* ran past what was kept */
};

static bool read_u16(struct reader *r, uint16_t *out)
{
	if (r->len - r->off < 2) {
		r->short_read = true;
		return false;
	}
	*out = (uint16_t)(r->p[r->off] << 8 | r->p[r->off + 1]);
	r->off += 2;
	return true;
}

static bool read_i32(struct reader *r, int32_t *out)
{
	uint32_t v;

	if (r->len - r->off < 4) {
		r->short_read = true;
		return false;
	}
	v = (uint32_t)r->p[r->off] << 24 | (uint32_t)r->p[r->off + 1] << 16 |
	    (uint32_t)r->p[r->off + 2] << 8 | r->p[r->off + 3];
	*out = (int32_t)v;
	r->off += 4;
	return true;
}

/*
 * A NUL-terminated string at the reader: its start and length. Without a
 * NUL in what was kept, the rest is the string, cut.
 */
static const char *read_str(struct reader *r, size_t *len, bool *cut)
{
	const char *start = (const char *)r->p + r->off;
	const uint8_t *nul = memchr(r->p + r->off, 0, r->len - r->off);

	*cut = !nul;
	*len = nul ? (size_t)(nul - (r->p + r->off)) : r->len - r->off;
	r->off += *len + (nul ? 1 : 0);
	if (!nul)
		r->short_read = true;
	return start;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* --- messages ---------------------------------------------------------- */

/* Query: the text, queued as a simple-protocol command. */
static int on_query(struct wire_conn *conn, struct reader *r, bool cut)
{
	struct wire_command *command = command_new(WIRE_SIMPLE);
	const char *text;
	size_t len;
	bool str_cut;
	int ret;

	if (!command)
		return -ENOMEM;
	text = read_str(r, &len, &str_cut);
	ret = command_set_text(command, text, len,
			       cut ? conn->body_len - 1 : len, cut);
	if (!ret)
		queue_push(conn, command);
	command_put(command);
	return ret;
}

/* Parse: a statement's name and text (parameter types are not kept). */
static int on_parse(struct wire_conn *conn, struct reader *r)
{
	struct wire_command *command;
	const char *name, *text;
	size_t name_len, len;
	bool str_cut;
	int ret;

	name = read_str(r, &name_len, &str_cut);
	if (str_cut)
		return 0;	/* a name cut short names nothing */
	command = command_new(WIRE_EXTENDED);
	if (!command)
		return -ENOMEM;
	text = read_str(r, &len, &str_cut);
	/*
	 * A cut text is at least the body less the name, two terminators and
	 * the parameter count.
	 */
	ret = command_set_text(command, text, len,
			       str_cut ? conn->body_len - name_len - 4 : len,
			       str_cut);
	if (!ret)
		ret = named_set(conn->statements, name, command);
	command_put(command);
	return ret;
}

static int keep_value(struct wire_value *value, struct reader *r,
		      int32_t length)
{
	size_t avail = r->len - r->off, want;

	value->length = length;
	if (length < 0)
		return 0;
	want = (size_t)length;
	value->kept = (uint32_t)(want < avail ? want : avail);
	if (value->kept > WIRE_VALUE_MAX)
		value->kept = WIRE_VALUE_MAX;
	value->truncated = value->kept < want;
	value->bytes = malloc(value->kept + 1);
	if (!value->bytes)
		return -ENOMEM;
	memcpy(value->bytes, r->p + r->off, value->kept);
	value->bytes[value->kept] = 0;
	if (want > avail) {
		r->off = r->len;
		r->short_read = true;
	} else {
		r->off += want;
	}
	return 0;
}

/* Bind's parameter formats and values, as far as kept. */
static int bind_values(struct wire_command *command, struct reader *r)
{
	uint16_t n_formats = 0, formats[WIRE_PARAMS_MAX] = { 0 }, fmt, i;
	uint16_t n_params = 0;
	int32_t length;
	int ret;

	if (!read_u16(r, &n_formats))
		return 0;
	for (i = 0; i < n_formats; i++) {
		if (!read_u16(r, &fmt))
			return 0;
		if (i < WIRE_PARAMS_MAX)
			formats[i] = fmt;
	}
	if (!read_u16(r, &n_params))
		return 0;
	command->n_params = n_params;
	command->values = calloc(n_params < WIRE_PARAMS_MAX ? n_params :
				 WIRE_PARAMS_MAX, sizeof(*command->values));
	if (n_params && !command->values)
		return -ENOMEM;
	for (i = 0; i < n_params && i < WIRE_PARAMS_MAX; i++) {
		if (!read_i32(r, &length))
			break;
		command->values[i].format = n_formats == 1 ? formats[0] :
			i < n_formats ? formats[i] : 0;
		command->n_values = i + 1;
		ret = keep_value(&command->values[i], r, length);
		if (ret)
			return ret;
		if (command->values[i].truncated)
			command->values_truncated = true;
	}
	return 0;
}

/*
 * Bind: a portal made from a statement and values. A statement parsed
 * before the capture began is unknown: its text stays NULL.
 */
static int on_bind(struct wire_conn *conn, struct reader *r, bool cut)
{
	struct wire_command *command, *statement;
	const char *portal, *name;
	size_t portal_len, name_len;
	struct named *entry;
	bool str_cut;
	int ret;

	portal = read_str(r, &portal_len, &str_cut);
	if (str_cut)
		return 0;
	name = read_str(r, &name_len, &str_cut);
	if (str_cut)
		return 0;
	command = command_new(WIRE_EXTENDED);
	if (!command)
		return -ENOMEM;
	entry = named_find(conn->statements, name);
	statement = entry ? entry->command : NULL;
	command->statement_name = strdup(name);
	ret = command->statement_name ? 0 : -ENOMEM;
	if (!ret && statement && statement->text)
		ret = command_set_text(command, statement->text,
				       statement->text_kept,
				       statement->text_len,
				       statement->text_truncated);
	if (!ret)
		ret = bind_values(command, r);
	if (r->short_read && cut)
		command->values_truncated = true;
	if (!ret)
		ret = named_set(conn->portals, portal, command);
	command_put(command);
	return ret;
}

/* Execute: the portal's command goes to the queue. */
static int on_execute(struct wire_conn *conn, struct reader *r)
{
	const char *portal;
	struct named *entry;
	size_t len;
	bool cut;

	portal = read_str(r, &len, &cut);
	if (cut)
		return 0;
	entry = named_find(conn->portals, portal);
	if (entry)
		queue_push(conn, entry->command);
	return 0;
}

/* Close: forget a statement ('S') or a portal ('P'). */
static int on_close(struct wire_conn *conn, struct reader *r)
{
	struct named *entry;
	const char *name;
	uint8_t kind;
	size_t len;
	bool cut;

	if (r->off >= r->len)
		return 0;
	kind = r->p[r->off++];
	name = read_str(r, &len, &cut);
	if (cut)
		return 0;
	entry = named_find(kind == 'S' ? conn->statements : conn->portals,
			   name);
	if (entry)
		named_drop(entry);
	return 0;
}

/* Whether a frontend message type is known, and its length bound. */
static uint32_t type_limit(uint8_t type)
{
	switch (type) {
	case 'Q': case 'P': case 'B': case 'F': case 'd': case 'p':
	case 'f':
		return LARGE_LIMIT;
	case 'E': case 'C': case 'D': case 'S': case 'H': case 'X':
	case 'c':
		return SMALL_LIMIT;
	default:
		return 0;
	}
}

/* Bodies worth keeping: the rest are counted and skipped. */
static bool type_kept(uint8_t type)
{
	return type == 'Q' || type == 'P' || type == 'B' || type == 'E' ||
	       type == 'C';
}

static int dispatch_message(struct wire_conn *conn)
{
	struct reader r = { conn->body, conn->body_kept, 0, false };
	bool cut = conn->body_cut;

	conn->counts.messages++;
	if (cut)
		conn->counts.truncated++;
	switch (conn->type) {
	case 'Q':
		return on_query(conn, &r, cut);
	case 'P':
		return on_parse(conn, &r);
	case 'B':
		return on_bind(conn, &r, cut);
	case 'E':
		return on_execute(conn, &r);
	case 'C':
		return on_close(conn, &r);
	case 'X':
		conn->phase = PHASE_DONE;
		return 0;
	default:
		return 0;
	}
}

/* --- the startup packet ------------------------------------------------ */

static void startup_param(struct wire_startup *startup, const char *key,
			  const char *value, size_t len)
{
	char *dst = NULL;
	size_t size = 0;

	if (!strcmp(key, "user")) {
		dst = startup->user;
		size = sizeof(startup->user);
	} else if (!strcmp(key, "database")) {
		dst = startup->database;
		size = sizeof(startup->database);
	} else if (!strcmp(key, "application_name")) {
		dst = startup->application_name;
		size = sizeof(startup->application_name);
	} else if (!strcmp(key, "options")) {
		dst = startup->options;
		size = sizeof(startup->options);
	}
	if (!dst)
		return;
	if (len >= size)
		len = size - 1;
	memcpy(dst, value, len);
	dst[len] = 0;
}

static int desync(struct wire_conn *conn, const char *reason, bool error);

static int dispatch_startup(struct wire_conn *conn)
{
	struct reader r = { conn->body, conn->body_kept, 0, false };
	const char *key, *value;
	size_t key_len, value_len;
	int32_t code;
	bool cut;

	if (!read_i32(&r, &code))
		return desync(conn, "startup packet too short", true);
	switch ((uint32_t)code) {
	case SSL_REQUEST:
		conn->startup.ssl_requested = true;
		return 0;	/* the startup packet follows, after TLS */
	case GSSENC_REQUEST:
		conn->startup.gss_requested = true;
		return 0;
	case CANCEL_REQUEST:
		conn->phase = PHASE_DONE;
		return 0;
	}
	if ((uint32_t)code >> 16 != 3)
		return desync(conn, "unsupported protocol version", true);
	conn->startup.protocol = (uint32_t)code;
	while (r.off < r.len) {
		key = read_str(&r, &key_len, &cut);
		if (cut || !key_len)
			break;
		value = read_str(&r, &value_len, &cut);
		startup_param(&conn->startup, key, value, value_len);
		if (cut)
			break;
	}
	conn->startup.seen = true;
	conn->phase = PHASE_MESSAGES;
	return 0;
}

/* --- framing ------------------------------------------------------------ */

static int desync(struct wire_conn *conn, const char *reason, bool error)
{
	conn->phase = PHASE_DESYNC;
	conn->head_have = 0;
	conn->body_kept = 0;
	if (!error)
		return 0;
	snprintf(conn->error, sizeof(conn->error), "%s", reason);
	conn->counts.errors++;
	if (++conn->desyncs >= WIRE_DESYNC_MAX) {
		conn->phase = PHASE_DONE;
		snprintf(conn->error, sizeof(conn->error),
			 "%s; gave up after %d protocol errors", reason,
			 WIRE_DESYNC_MAX);
	}
	return -EPROTO;
}

/* Whether a message header is one a client could send. */
static bool header_valid(const uint8_t head[5])
{
	uint32_t limit = type_limit(head[0]), len = be32(head + 1);

	return limit && len >= 4 && len <= limit;
}

/*
 * Whether a read begins in step: its bytes are a chain of valid headers
 * whose lengths end at the read's end or past it (a message split across
 * reads). Used to join a stream mid-way and to regain step.
 */
static bool plausible_messages(const uint8_t *data, size_t len)
{
	size_t off = 0;
	int n;

	for (n = 0; n < 1024 && off < len; n++) {
		if (len - off < 5)
			return n > 0;
		if (!header_valid(data + off))
			return false;
		off += 1 + (size_t)be32(data + off + 1);
	}
	return off >= len;
}

static bool plausible_startup(const uint8_t *data, size_t len)
{
	uint32_t length;

	if (len < 4)
		return false;
	length = be32(data);
	return length >= 8 && length <= WIRE_STARTUP_MAX;
}

/* Begin a frame whose header is complete. */
static int frame_begin(struct wire_conn *conn)
{
	uint32_t length;

	if (conn->in_startup) {
		length = be32(conn->head);
		if (length < 8 || length > WIRE_STARTUP_MAX)
			return desync(conn, "invalid startup packet length",
				      true);
		conn->body_len = length - 4;
		conn->keep_body = true;
	} else {
		if (!header_valid(conn->head))
			return desync(conn, type_limit(conn->head[0])
					  ? "invalid message length"
					  : "invalid message type", true);
		conn->type = conn->head[0];
		conn->body_len = be32(conn->head + 1) - 4;
		conn->keep_body = type_kept(conn->type);
	}
	conn->body_seen = 0;
	conn->body_kept = 0;
	conn->body_cut = false;
	return 0;
}

static int body_reserve(struct wire_conn *conn, uint32_t need)
{
	uint32_t cap = conn->body_cap ? conn->body_cap : 256;
	uint8_t *body;

	if (need <= conn->body_cap)
		return 0;
	while (cap < need)
		cap *= 2;
	body = realloc(conn->body, cap);
	if (!body)
		return -ENOMEM;
	conn->body = body;
	conn->body_cap = cap;
	return 0;
}

/* Take body bytes; returns how many were consumed, or a negative errno. */
static long frame_body(struct wire_conn *conn, const uint8_t *data,
		       size_t len)
{
	uint32_t take = conn->body_len - conn->body_seen, keep;

	if (take > len)
		take = (uint32_t)len;
	keep = take;
	if (!conn->keep_body || conn->body_cut)
		keep = 0;
	if (conn->body_kept + keep > WIRE_BODY_MAX) {
		keep = WIRE_BODY_MAX - conn->body_kept;
		conn->body_cut = true;
	}
	if (keep) {
		if (body_reserve(conn, conn->body_kept + keep))
			return -ENOMEM;
		memcpy(conn->body + conn->body_kept, data, keep);
		conn->body_kept += keep;
	}
	if (!conn->in_startup && conn->type == 'd')
		conn->counts.copy_bytes += take;
	conn->body_seen += take;
	return take;
}

static int frame_end(struct wire_conn *conn)
{
	bool startup = conn->in_startup;

	conn->head_have = 0;
	if (startup)
		return dispatch_startup(conn);
	return dispatch_message(conn);
}

/* Consume bytes in PHASE_STARTUP or PHASE_MESSAGES. */
static long frame_feed(struct wire_conn *conn, const uint8_t *data,
		       size_t len)
{
	uint32_t head_len = conn->in_startup ? 4 : 5;
	long used = 0, took;
	int ret;

	if (conn->head_have < head_len) {
		while (conn->head_have < head_len && (size_t)used < len)
			conn->head[conn->head_have++] = data[used++];
		if (conn->head_have < head_len)
			return used;
		ret = frame_begin(conn);
		if (ret)
			return ret;
	}
	took = frame_body(conn, data + used, len - used);
	if (took < 0)
		return took;
	used += took;
	if (conn->body_seen == conn->body_len) {
		ret = frame_end(conn);
		if (ret)
			return ret;
	}
	return used;
}

/* Where a fresh or out-of-step connection can start, at a read's start. */
static void find_step(struct wire_conn *conn, const uint8_t *data,
		      size_t len)
{
	bool fresh = conn->phase == PHASE_FRESH;

	if (fresh && plausible_startup(data, len)) {
		conn->phase = PHASE_STARTUP;
	} else if (plausible_messages(data, len)) {
		conn->phase = PHASE_MESSAGES;
		if (!fresh)
			conn->counts.resyncs++;
	} else {
		conn->phase = PHASE_DESYNC;	/* joined mid-stream */
	}
	conn->head_have = 0;
}

int wire_feed(struct wire_conn *conn, const void *data, size_t len,
	      bool read_start)
{
	const uint8_t *bytes = data;
	size_t off = 0;
	long used;

	conn->counts.bytes += len;
	if ((conn->phase == PHASE_FRESH || conn->phase == PHASE_DESYNC) &&
	    read_start)
		find_step(conn, bytes, len);
	while (off < len) {
		if (conn->phase != PHASE_STARTUP &&
		    conn->phase != PHASE_MESSAGES)
			return 0;
		conn->in_startup = conn->phase == PHASE_STARTUP;
		used = frame_feed(conn, bytes + off, len - off);
		if (used == -ENOMEM) {
			conn->phase = PHASE_DONE;
			snprintf(conn->error, sizeof(conn->error),
				 "out of memory");
		}
		if (used < 0)
			return (int)used;
		off += (size_t)used;
	}
	return 0;
}

void wire_gap(struct wire_conn *conn, size_t len)
{
	uint32_t left;

	if (conn->phase == PHASE_FRESH) {
		conn->phase = PHASE_DESYNC;
		return;
	}
	if (conn->phase != PHASE_STARTUP && conn->phase != PHASE_MESSAGES)
		return;
	left = conn->body_len - conn->body_seen;
	/* bytes lost inside a body whose header was read: the body is cut */
	if (len && conn->head_have == (conn->in_startup ? 4u : 5u) &&
	    len <= left) {
		conn->body_seen += (uint32_t)len;
		conn->body_cut = true;
		if (conn->body_seen == conn->body_len)
			frame_end(conn);
		return;
	}
	desync(conn, "bytes lost", false);
}

int wire_end(struct wire_conn *conn)
{
	bool mid = (conn->phase == PHASE_STARTUP ||
		    conn->phase == PHASE_MESSAGES) && conn->head_have;

	conn->phase = PHASE_DONE;
	conn->body_kept = 0;
	return mid ? -EPIPE : 0;
}

/* --- the join --------------------------------------------------------- */

/* Does the client's text hold the executor's (as far as both were kept)? */
static bool text_holds(const struct wire_command *command, const char *text)
{
	size_t len = strlen(text);

	if (!command->text)
		return false;
	if (command->text_kept >= len)
		return memmem(command->text, command->text_kept, text, len);
	/* the client's text was cut shorter than the executor's */
	return command->text_truncated &&
	       !memcmp(command->text, text, command->text_kept);
}

const struct wire_command *wire_match(struct wire_conn *conn,
				      const char *executor_text)
{
	uint32_t match, i;

	for (match = 0; match < conn->queued; match++) {
		/* a statement prepared before capture matches in turn only */
		if (text_holds(conn->queue[match], executor_text) ||
		    (match == 0 && !conn->queue[match]->text))
			break;
	}
	if (match == conn->queued)
		return conn->current;
	command_put(conn->current);
	conn->current = conn->queue[match];	/* takes the queue's reference */
	for (i = 0; i < match; i++)
		command_put(conn->queue[i]);
	queue_shift(conn, match + 1);
	return conn->current;
}

/* --- the rest of the interface ------------------------------------------ */

struct wire_conn *wire_conn_new(void)
{
	return calloc(1, sizeof(struct wire_conn));
}

void wire_conn_free(struct wire_conn *conn)
{
	size_t i;

	if (!conn)
		return;
	for (i = 0; i < WIRE_NAMES_MAX; i++) {
		named_drop(&conn->statements[i]);
		named_drop(&conn->portals[i]);
	}
	for (i = 0; i < conn->queued; i++)
		command_put(conn->queue[i]);
	command_put(conn->current);
	free(conn->body);
	free(conn);
}

const struct wire_startup *wire_startup(const struct wire_conn *conn)
{
	return &conn->startup;
}

const char *wire_error(const struct wire_conn *conn)
{
	return conn->error;
}

bool wire_done(const struct wire_conn *conn)
{
	return conn->phase == PHASE_DONE;
}

void wire_counts(const struct wire_conn *conn, struct wire_counts *out)
{
	*out = conn->counts;
}
