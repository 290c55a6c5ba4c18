/* Unit tests of the frontend protocol parser and the join (user/wire.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "wire.h"

/* A client byte stream under construction. */
struct stream {
	uint8_t bytes[1 << 18];
	size_t len;
	size_t frame;		/* where the open message began */
};

static void put(struct stream *s, const void *data, size_t len)
{
	assert_true(s->len + len <= sizeof(s->bytes));
	memcpy(s->bytes + s->len, data, len);
	s->len += len;
}

static void put_u16(struct stream *s, uint16_t v)
{
	uint8_t b[2] = { v >> 8, v & 0xff };

	put(s, b, 2);
}

static void put_u32(struct stream *s, uint32_t v)
{
	uint8_t b[4] = { v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff };

	put(s, b, 4);
}

static void put_str(struct stream *s, const char *str)
{
	put(s, str, strlen(str) + 1);
}

/* Open a message of 'type' (0: a startup packet); close() fills in length. */
static void open_msg(struct stream *s, char type)
{
	if (type)
		put(s, &type, 1);
	s->frame = s->len;
	put_u32(s, 0);
}

static void close_msg(struct stream *s)
{
	uint32_t len = s->len - s->frame;
	uint8_t *p = s->bytes + s->frame;

	p[0] = len >> 24;
	p[1] = (len >> 16) & 0xff;
	p[2] = (len >> 8) & 0xff;
	p[3] = len & 0xff;
}

static void startup(struct stream *s, const char *user, const char *app)
{
	open_msg(s, 0);
	put_u32(s, 196608);
	put_str(s, "user");
	put_str(s, user);
	put_str(s, "database");
	put_str(s, "bank");
	put_str(s, "application_name");
	put_str(s, app);
	put_str(s, "options");
	put_str(s, "-c geqo=off");
	put(s, "", 1);
	close_msg(s);
}

static void query(struct stream *s, const char *text)
{
	open_msg(s, 'Q');
	put_str(s, text);
	close_msg(s);
}

static void parse(struct stream *s, const char *name, const char *text)
{
	open_msg(s, 'P');
	put_str(s, name);
	put_str(s, text);
	put_u16(s, 0);
	close_msg(s);
}

/* Bind with text values ("\1" stands for NULL). */
static void bind_text(struct stream *s, const char *stmt, int n,
		      const char *const *values)
{
	int i;

	open_msg(s, 'B');
	put_str(s, "");
	put_str(s, stmt);
	put_u16(s, 0);
	put_u16(s, n);
	for (i = 0; i < n; i++) {
		if (!strcmp(values[i], "\1")) {
			put_u32(s, 0xffffffff);
			continue;
		}
		put_u32(s, strlen(values[i]));
		put(s, values[i], strlen(values[i]));
	}
	put_u16(s, 0);
	close_msg(s);
}

static void simple(struct stream *s, char type)
{
	open_msg(s, type);
	close_msg(s);
}

static void execute(struct stream *s)
{
	open_msg(s, 'E');
	put_str(s, "");
	put_u32(s, 0);
	close_msg(s);
}

static void extended(struct stream *s, const char *text, int n,
		     const char *const *values)
{
	parse(s, "", text);
	bind_text(s, "", n, values);
	open_msg(s, 'D');
	put(s, "P", 1);
	put_str(s, "");
	close_msg(s);
	execute(s);
	simple(s, 'S');
}

static struct wire_conn *connected(void)
{
	struct wire_conn *conn = wire_conn_new();
	static struct stream s;

	assert_non_null(conn);
	s.len = 0;
	startup(&s, "alice", "batch");
	assert_int_equal(wire_feed(conn, s.bytes, s.len, true), 0);
	return conn;
}

static void feed_all(struct wire_conn *conn, const struct stream *s)
{
	assert_int_equal(wire_feed(conn, s->bytes, s->len, true), 0);
}

static void wire_feed__startup_after_ssl_request__params_kept(void **state)
{
	struct wire_conn *conn = wire_conn_new();
	static struct stream s;
	const struct wire_startup *st;

	(void)state;
	open_msg(&s, 0);
	put_u32(&s, 80877103);
	close_msg(&s);
	feed_all(conn, &s);
	s.len = 0;
	startup(&s, "alice", "batch");
	feed_all(conn, &s);
	st = wire_startup(conn);
	assert_true(st->seen);
	assert_true(st->ssl_requested);
	assert_string_equal(st->user, "alice");
	assert_string_equal(st->database, "bank");
	assert_string_equal(st->application_name, "batch");
	assert_string_equal(st->options, "-c geqo=off");
	wire_conn_free(conn);
}

static void wire_match__pipelined_queries__matched_in_order(void **state)
{
	struct wire_conn *conn = connected();
	static struct stream s;
	const struct wire_command *c;

	(void)state;
	s.len = 0;
	query(&s, "UPDATE a SET x = 1");
	query(&s, "UPDATE b SET x = 2; UPDATE c SET x = 3");
	query(&s, "UPDATE a SET x = 1");
	feed_all(conn, &s);
	c = wire_match(conn, "UPDATE a SET x = 1");
	assert_string_equal(c->text, "UPDATE a SET x = 1");
	c = wire_match(conn, "UPDATE b SET x = 2");
	assert_string_equal(c->text, "UPDATE b SET x = 2; UPDATE c SET x = 3");
	/* the second statement of the same Query: still that command */
	c = wire_match(conn, " UPDATE c SET x = 3");
	assert_string_equal(c->text, "UPDATE b SET x = 2; UPDATE c SET x = 3");
	/* a statement nested in a function keeps the current command */
	c = wire_match(conn, "SELECT 1 FROM ONLY accounts");
	assert_string_equal(c->text, "UPDATE b SET x = 2; UPDATE c SET x = 3");
	c = wire_match(conn, "UPDATE a SET x = 1");
	assert_int_equal(c->protocol, WIRE_SIMPLE);
	assert_string_equal(c->text, "UPDATE a SET x = 1");
	wire_conn_free(conn);
}

static void wire_feed__extended_split_byte_by_byte__values_kept(void **state)
{
	const char *const values[] = { "1234", "\1", "42" };
	struct wire_conn *conn = connected();
	static struct stream s;
	const struct wire_command *c;
	size_t i;

	(void)state;
	s.len = 0;
	extended(&s, "UPDATE accounts SET balance = $1 WHERE id = $3", 3,
		 values);
	for (i = 0; i < s.len; i++)
		assert_int_equal(wire_feed(conn, s.bytes + i, 1, i == 0), 0);
	c = wire_match(conn, "UPDATE accounts SET balance = $1 WHERE id = $3");
	assert_non_null(c);
	assert_int_equal(c->protocol, WIRE_EXTENDED);
	assert_int_equal(c->n_params, 3);
	assert_int_equal(c->n_values, 3);
	assert_string_equal(c->values[0].bytes, "1234");
	assert_int_equal(c->values[1].length, -1);
	assert_null(c->values[1].bytes);
	assert_string_equal(c->values[2].bytes, "42");
	assert_false(c->values_truncated);
	wire_conn_free(conn);
}

static void wire_feed__binary_bind_values__formats_kept(void **state)
{
	const uint8_t int4[4] = { 0, 0, 0x30, 0x39 };	/* 12345 */
	struct wire_conn *conn = connected();
	static struct stream s;
	const struct wire_command *c;

	(void)state;
	s.len = 0;
	parse(&s, "upd", "UPDATE t SET v = $1, w = $2");
	open_msg(&s, 'B');
	put_str(&s, "p1");
	put_str(&s, "upd");
	put_u16(&s, 2);
	put_u16(&s, 1);
	put_u16(&s, 0);
	put_u16(&s, 2);
	put_u32(&s, 4);
	put(&s, int4, 4);
	put_u32(&s, 3);
	put(&s, "abc", 3);
	put_u16(&s, 0);
	close_msg(&s);
	open_msg(&s, 'E');
	put_str(&s, "p1");
	put_u32(&s, 0);
	close_msg(&s);
	simple(&s, 'S');
	feed_all(conn, &s);
	c = wire_match(conn, "UPDATE t SET v = $1, w = $2");
	assert_non_null(c);
	assert_string_equal(c->statement_name, "upd");
	assert_int_equal(c->values[0].format, 1);
	assert_int_equal(c->values[0].kept, 4);
	assert_memory_equal(c->values[0].bytes, int4, 4);
	assert_int_equal(c->values[1].format, 0);
	assert_string_equal(c->values[1].bytes, "abc");
	wire_conn_free(conn);
}

static void wire_feed__oversized_query__kept_cut_and_in_step(void **state)
{
	struct wire_conn *conn = connected();
	static struct stream s;
	static char text[100000];
	const struct wire_command *c;

	(void)state;
	memset(text, 'x', sizeof(text) - 1);
	memcpy(text, "SELECT '", 8);
	s.len = 0;
	query(&s, text);
	query(&s, "UPDATE a SET x = 1");
	/* in reads of 8 KiB, as the server's receive buffer takes them */
	for (size_t off = 0; off < s.len; off += 8192)
		assert_int_equal(wire_feed(conn, s.bytes + off,
					   s.len - off < 8192 ? s.len - off
							      : 8192,
					   true), 0);
	c = wire_match(conn, "SELECT 'xxxx");
	assert_non_null(c);
	assert_true(c->text_truncated);
	assert_int_equal(c->text_kept, WIRE_TEXT_MAX);
	assert_int_equal(c->text_len, sizeof(text) - 1);
	c = wire_match(conn, "UPDATE a SET x = 1");
	assert_string_equal(c->text, "UPDATE a SET x = 1");
	wire_conn_free(conn);
}

static void wire_feed__garbage__reported_then_back_in_step(void **state)
{
	const char garbage[] = "\x01\x02 this is not the protocol";
	struct wire_conn *conn = connected();
	static struct stream s;
	struct wire_counts counts;

	(void)state;
	assert_int_equal(wire_feed(conn, garbage, sizeof(garbage), true),
			 -EPROTO);
	assert_string_equal(wire_error(conn), "invalid message type");
	s.len = 0;
	query(&s, "UPDATE a SET x = 1");
	feed_all(conn, &s);
	assert_string_equal(wire_match(conn, "UPDATE a SET x = 1")->text,
			    "UPDATE a SET x = 1");
	wire_counts(conn, &counts);
	assert_int_equal(counts.errors, 1);
	assert_int_equal(counts.resyncs, 1);
	wire_conn_free(conn);
}

/*
 * Garbage while out of step is skipped quietly; a connection that keeps
 * falling out of step after regaining it is given up.
 */
static void wire_feed__repeated_garbage__gives_up(void **state)
{
	const uint8_t bad_length[] = { 'Q', 0, 0, 0, 1, 'x' };
	struct wire_conn *conn = connected();
	static struct stream s;
	int i;

	(void)state;
	s.len = 0;
	query(&s, "SELECT 1");
	for (i = 0; i < WIRE_DESYNC_MAX; i++) {
		assert_false(wire_done(conn));
		feed_all(conn, &s);
		assert_int_equal(wire_feed(conn, bad_length,
					   sizeof(bad_length), false), -EPROTO);
		assert_int_equal(wire_feed(conn, bad_length,
					   sizeof(bad_length), true), 0);
	}
	assert_true(wire_done(conn));
	s.len = 0;
	query(&s, "UPDATE a SET x = 1");
	feed_all(conn, &s);
	/* the UPDATE was not parsed: nothing holds its text */
	assert_null(wire_match(conn, "UPDATE a SET x = 1"));
	wire_conn_free(conn);
}

static void wire_end__mid_message__reports_epipe(void **state)
{
	struct wire_conn *conn = connected();
	static struct stream s;

	(void)state;
	s.len = 0;
	query(&s, "UPDATE a SET x = 1");
	assert_int_equal(wire_feed(conn, s.bytes, s.len - 3, true), 0);
	assert_int_equal(wire_end(conn), -EPIPE);
	assert_null(wire_match(conn, "UPDATE a SET x = 1"));
	wire_conn_free(conn);
}

static void wire_gap__inside_a_body__message_cut_stream_in_step(void **state)
{
	struct wire_conn *conn = connected();
	static struct stream s;
	const struct wire_command *c;

	(void)state;
	s.len = 0;
	query(&s, "UPDATE a SET x = 1 WHERE y = 'long enough'");
	query(&s, "UPDATE b SET x = 2");
	assert_int_equal(wire_feed(conn, s.bytes, 15, true), 0);
	wire_gap(conn, 10);
	assert_int_equal(wire_feed(conn, s.bytes + 25, s.len - 25, false), 0);
	c = wire_match(conn, "UPDATE a SET");
	assert_non_null(c);
	assert_true(c->text_truncated);
	c = wire_match(conn, "UPDATE b SET x = 2");
	assert_string_equal(c->text, "UPDATE b SET x = 2");
	wire_conn_free(conn);
}

static void wire_feed__joined_mid_stream__statement_unknown_values_kept(
	void **state)
{
	const char *const values[] = { "7" };
	struct wire_conn *conn = wire_conn_new();
	static struct stream s;
	const struct wire_command *c;

	(void)state;
	s.len = 0;
	bind_text(&s, "S_1", 1, values);
	execute(&s);
	simple(&s, 'S');
	feed_all(conn, &s);
	c = wire_match(conn, "UPDATE t SET v = $1");
	assert_non_null(c);
	assert_null(c->text);
	assert_string_equal(c->statement_name, "S_1");
	assert_string_equal(c->values[0].bytes, "7");
	wire_conn_free(conn);
}

static void wire_feed__copy_data__counted_not_kept(void **state)
{
	struct wire_conn *conn = connected();
	static struct stream s;
	struct wire_counts counts;

	(void)state;
	s.len = 0;
	query(&s, "COPY t FROM STDIN");
	open_msg(&s, 'd');
	put(&s, "1\tsecret\n", 9);
	close_msg(&s);
	simple(&s, 'c');
	feed_all(conn, &s);
	wire_counts(conn, &counts);
	assert_int_equal(counts.copy_bytes, 9);
	assert_int_equal(counts.messages, 3);
	wire_conn_free(conn);
}

static void wire_feed__closed_statement__text_forgotten(void **state)
{
	const char *const values[] = { "1" };
	struct wire_conn *conn = connected();
	static struct stream s;
	const struct wire_command *c;

	(void)state;
	s.len = 0;
	parse(&s, "s1", "UPDATE t SET v = $1");
	open_msg(&s, 'C');
	put(&s, "S", 1);
	put_str(&s, "s1");
	close_msg(&s);
	bind_text(&s, "s1", 1, values);
	execute(&s);
	feed_all(conn, &s);
	c = wire_match(conn, "UPDATE t SET v = $1");
	assert_non_null(c);
	assert_null(c->text);
	wire_conn_free(conn);
}

static void wire_feed__bind_cut_short__values_marked_truncated(void **state)
{
	struct wire_conn *conn = connected();
	static struct stream s;
	static char big[WIRE_BODY_MAX + 100];
	const char *values[] = { "small", big };
	const struct wire_command *c;

	(void)state;
	memset(big, 'v', sizeof(big) - 1);
	s.len = 0;
	extended(&s, "UPDATE t SET v = $1, w = $2", 2, values);
	feed_all(conn, &s);
	c = wire_match(conn, "UPDATE t SET v = $1, w = $2");
	assert_non_null(c);
	assert_string_equal(c->values[0].bytes, "small");
	assert_true(c->values[1].truncated);
	assert_int_equal(c->values[1].kept, WIRE_VALUE_MAX);
	assert_true(c->values_truncated);
	wire_conn_free(conn);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(wire_feed__startup_after_ssl_request__params_kept),
		cmocka_unit_test(wire_match__pipelined_queries__matched_in_order),
		cmocka_unit_test(wire_feed__extended_split_byte_by_byte__values_kept),
		cmocka_unit_test(wire_feed__binary_bind_values__formats_kept),
		cmocka_unit_test(wire_feed__oversized_query__kept_cut_and_in_step),
		cmocka_unit_test(wire_feed__garbage__reported_then_back_in_step),
		cmocka_unit_test(wire_feed__repeated_garbage__gives_up),
		cmocka_unit_test(wire_end__mid_message__reports_epipe),
		cmocka_unit_test(wire_gap__inside_a_body__message_cut_stream_in_step),
		cmocka_unit_test(wire_feed__joined_mid_stream__statement_unknown_values_kept),
		cmocka_unit_test(wire_feed__copy_data__counted_not_kept),
		cmocka_unit_test(wire_feed__closed_statement__text_forgotten),
		cmocka_unit_test(wire_feed__bind_cut_short__values_marked_truncated),
	};

	return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
