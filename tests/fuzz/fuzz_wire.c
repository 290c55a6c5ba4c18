/*
 * libFuzzer target for the frontend protocol parser (user/wire.c): any
 * bytes, cut into reads anywhere, with bytes lost between them, must leave
 * the parser without a crash, a leak, an unbounded allocation or a stall.
 *
 * The first input byte drives the cuts (a small generator, so that one
 * input always cuts the same way); the rest is the client stream. Between
 * reads the join is asked about texts taken from the stream itself, so
 * that matches happen and the queue turns over.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wire.h"

static uint32_t next(uint32_t *state)
{
	*state = *state * 1103515245u + 12345u;
	return *state >> 16;
}

/* Ask the join about a text cut from the stream near 'at'. */
static void match_near(struct wire_conn *conn, const uint8_t *data,
		       size_t len, size_t at)
{
	char text[64];
	size_t n = len - at < sizeof(text) - 1 ? len - at : sizeof(text) - 1;
	const struct wire_command *command;

	memcpy(text, data + at, n);
	text[n] = 0;
	command = wire_match(conn, text);
	if (command && command->text)
		(void)strlen(command->text);
	command = wire_match(conn, "");
	if (command)
		for (uint16_t i = 0; i < command->n_values; i++)
			if (command->values[i].bytes)
				(void)command->values[i].bytes[
					command->values[i].kept];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_conn *conn;
	struct wire_counts counts;
	uint32_t state;
	size_t off = 1, cut;
	int reads;

	if (size < 1)
		return 0;
	conn = wire_conn_new();
	if (!conn)
		return 0;
	state = data[0];
	/* bounded: every pass takes at least one byte or ends */
	for (reads = 0; off < size && reads < 100000; reads++) {
		cut = 1 + next(&state) % (data[0] & 1 ? 16 : 9000);
		if (cut > size - off)
			cut = size - off;
		if (next(&state) % 17 == 0) {
			wire_gap(conn, next(&state) % 3 ? cut : 0);
		} else {
			wire_feed(conn, data + off, cut,
				  next(&state) % 4 != 0);
		}
		match_near(conn, data, size, off);
		off += cut;
	}
	(void)wire_startup(conn)->user[0];
	(void)wire_error(conn);
	(void)wire_done(conn);
	wire_counts(conn, &counts);
	wire_end(conn);
	wire_conn_free(conn);
	return 0;
}
