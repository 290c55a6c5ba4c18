/*
 * Reader of COPY ... TO STDOUT (FORMAT binary) through libpq. Binary rather
 * than text: bytea and uuid arrive as raw bytes, integers as fixed-width
 * big-endian, and nothing needs unescaping. Rows are read one at a time, so
 * memory stays bounded by the largest row. One reader per connection; a
 * reader is used by one thread.
 */
#ifndef USER_PGCOPY_H
#define USER_PGCOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

struct pgcopy {
	PGconn *conn;
	char *message;		/* libpq's buffer of the current CopyData */
	int length;
	int offset;
	bool header_seen;
	bool ended;		/* trailer seen */
};

struct pgcopy_field {
	const uint8_t *data;	/* into the reader's buffer; NULL for SQL NULL */
	int length;
};

/*
 * Send 'query' (a COPY ... TO STDOUT (FORMAT binary)) on 'conn'. Returns 0
 * or -EIO (the server's message is PQerrorMessage(conn)).
 */
int pgcopy_start(struct pgcopy *copy, PGconn *conn, const char *query);

/*
 * Next row into 'fields' (exactly 'count' columns expected). The fields
 * stay valid until the next call. Returns 1 for a row, 0 at the end (the
 * COPY completed), -EPROTO for malformed data, -EIO for a server or
 * connection error.
 */
int pgcopy_next(struct pgcopy *copy, struct pgcopy_field *fields, int count);

/* Release the buffer. A COPY abandoned midway leaves the connection unusable. */
void pgcopy_end(struct pgcopy *copy);

/* Big-endian integers of binary COPY fields. */
int64_t pgcopy_int64(const struct pgcopy_field *field);

#endif /* USER_PGCOPY_H */
