/*
 * The PostgreSQL frontend protocol (version 3), parsed incrementally from
 * the bytes one backend reads from its client, and joined to what the
 * executor runs.
 *
 * One struct wire_conn per backend. The bytes arrive in reads of any size:
 * messages may be pipelined several to a read, split across reads, or far
 * larger than what is kept (statement text, bind values and message bodies
 * are kept up to fixed bounds and marked truncated). Bytes that are not the
 * protocol (garbage, a capture that started mid-stream, bytes lost) put the
 * connection out of step: the parser then waits for a read that starts with
 * plausible messages and resumes there, and after WIRE_DESYNC_MAX errors
 * gives the connection up. Nothing the input holds can make it read out of
 * bounds, allocate without bound or loop without progress.
 *
 * The join: every simple Query and every Execute of a bound portal queues a
 * client command; wire_match() takes the command whose text the executor is
 * running, so that a violation record can carry the statement as the client
 * wrote it and the values it bound.
 *
 * Not thread-safe: a connection is used by one thread at a time (the
 * daemon's classifier thread). No logging; errors are returned and
 * described by wire_error().
 */
#ifndef USER_WIRE_H
#define USER_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_TEXT_MAX		16384	/* statement bytes kept */
#define WIRE_VALUE_MAX		1024	/* bytes kept per bind value */
#define WIRE_PARAMS_MAX		64	/* bind values kept per Bind */
#define WIRE_BODY_MAX		65536	/* message body bytes kept */
#define WIRE_QUEUE_MAX		64	/* commands awaiting the executor */
#define WIRE_NAMES_MAX		256	/* prepared statements and portals */
#define WIRE_DESYNC_MAX		8	/* protocol errors before giving up */
#define WIRE_STARTUP_MAX	10000	/* the server's own startup bound */

enum wire_protocol {
	WIRE_SIMPLE = 1,	/* a Query message */
	WIRE_EXTENDED,		/* Parse, Bind, Execute */
};

struct wire_value {
	int32_t length;		/* as sent; -1 is NULL */
	uint16_t format;	/* 0 text, 1 binary (as sent) */
	bool truncated;		/* 'kept' < length */
	uint32_t kept;
	char *bytes;		/* 'kept' bytes and a NUL; NULL for NULL */
};

struct wire_command {
	unsigned refs;		/* private */
	enum wire_protocol protocol;
	char *text;		/* NUL-terminated; NULL: statement unseen */
	uint32_t text_kept;
	uint32_t text_len;	/* full length as sent */
	bool text_truncated;
	char *statement_name;	/* extended: the prepared statement's name */
	uint16_t n_params;	/* values the Bind carried */
	uint16_t n_values;	/* values kept in values[] */
	bool values_truncated;	/* fewer kept than sent, or a value cut */
	struct wire_value *values;
};

struct wire_startup {
	bool seen;
	bool ssl_requested;	/* an SSLRequest came first */
	bool gss_requested;
	uint32_t protocol;	/* 196608 for 3.0 */
	char user[64];
	char database[64];
	char application_name[64];
	char options[256];
};

struct wire_counts {
	uint64_t bytes;
	uint64_t messages;
	uint64_t copy_bytes;	/* COPY data, counted, never kept */
	uint64_t truncated;	/* messages kept in part */
	uint64_t errors;	/* protocol errors */
	uint64_t resyncs;	/* times back in step after a desync */
	uint64_t queue_dropped;	/* commands pushed out of a full queue */
};

struct wire_conn;

/* A new connection, or NULL when out of memory. */
struct wire_conn *wire_conn_new(void);

/* Free 'conn' and every command it holds (NULL is fine). */
void wire_conn_free(struct wire_conn *conn);

/*
 * Parse 'len' more bytes of the client stream. 'read_start' says that they
 * begin a read of the server's (the only places a lost step can be
 * regained). Returns 0; -EPROTO when these bytes put the connection out of
 * step or made it give up (wire_error() says why; report it once);
 * -ENOMEM when memory ran out (the connection is given up).
 */
int wire_feed(struct wire_conn *conn, const void *data, size_t len,
	      bool read_start);

/*
 * 'len' bytes of the stream were not captured (a read longer than the
 * capture); 'len' 0: an unknown number (records lost). A message body
 * that loses bytes is kept cut; a lost header puts the connection out of
 * step until a later read starts in step. Never counted as an error.
 */
void wire_gap(struct wire_conn *conn, size_t len);

/*
 * The connection ended. Returns 0, or -EPIPE when it ended in the middle of
 * a message (what was kept of it is dropped).
 */
int wire_end(struct wire_conn *conn);

/*
 * The client command that statement 'executor_text' belongs to: the first
 * queued command whose text holds it (the commands before it are dropped:
 * they ran without reaching the executor), else the command matched last
 * (a statement nested in a function, a trigger, the body of an EXECUTE).
 * NULL when there is none. Valid until the next call on 'conn'.
 */
const struct wire_command *wire_match(struct wire_conn *conn,
				      const char *executor_text);

/* The startup packet, once seen (seen false before). */
const struct wire_startup *wire_startup(const struct wire_conn *conn);

/* Why the connection last went out of step, or "" when it never did. */
const char *wire_error(const struct wire_conn *conn);

/* True once the parser gave the connection up or it ended. */
bool wire_done(const struct wire_conn *conn);

/* What the connection has seen so far. */
void wire_counts(const struct wire_conn *conn, struct wire_counts *out);

#endif /* USER_WIRE_H */
