/* Unit tests of literal masking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include "mask.h"

static int is_literal_token(PgQuery__Token token)
{
	return token == PG_QUERY__TOKEN__SCONST ||
	       token == PG_QUERY__TOKEN__USCONST ||
	       token == PG_QUERY__TOKEN__FCONST ||
	       token == PG_QUERY__TOKEN__BCONST ||
	       token == PG_QUERY__TOKEN__XCONST ||
	       token == PG_QUERY__TOKEN__ICONST;
}

/*
 * Fail when the scanner finds a literal token in 'masked'. A withheld text
 * ends in an unterminated comment or in "?…", so a text that does not scan
 * is checked up to where the scanner gave up, as often as it gives up.
 * Whatever follows a literal token's start up to the next token counts as
 * the literal: the scanner gives some (U&'...') no end.
 */
static void assert_no_literal_token(const char *sql, const char *masked)
{
	char *text = strdup(masked);
	PgQueryScanResult result;
	PgQuery__ScanResult *scan;
	size_t i;

	assert_non_null(text);
	for (;;) {
		result = pg_query_scan(text);
		if (!result.error)
			break;
		if (result.error->cursorpos < 1 ||
		    (size_t)result.error->cursorpos > strlen(text))
			fail_msg("'%s' masked as '%s': does not scan", sql,
				 masked);
		text[result.error->cursorpos - 1] = 0;
		pg_query_free_scan_result(result);
	}
	scan = pg_query__scan_result__unpack(NULL, result.pbuf.len,
					     (const uint8_t *)result.pbuf.data);
	assert_non_null(scan);
	for (i = 0; i < scan->n_tokens; i++)
		if (is_literal_token(scan->tokens[i]->token))
			fail_msg("'%s' masked as '%s': literal at %d", sql,
				 masked, scan->tokens[i]->start);
	pg_query__scan_result__free_unpacked(scan, NULL);
	pg_query_free_scan_result(result);
	free(text);
}

static void check(const char *sql, const char *expected,
		  enum mask_method expected_method)
{
	enum mask_method method;
	char *masked = mask_statement(sql, &method);

	assert_non_null(masked);
	assert_string_equal(masked, expected);
	assert_int_equal(method, expected_method);
	assert_no_literal_token(sql, masked);
	free(masked);
}

static void mask_statement__parseable__normalizes(void **state)
{
	(void)state;
	check("UPDATE accounts SET balance = 100 WHERE account = 'alice'",
	      "UPDATE accounts SET balance = $1 WHERE account = $2",
	      MASK_NORMALIZED);
}

static void mask_statement__unparseable__masks_tokens(void **state)
{
	(void)state;
	check("UPDATE accounts SET balance = 100 WHERE WHERE 'secret' 4.5",
	      "UPDATE accounts SET balance = ? WHERE WHERE ? ?", MASK_TOKENS);
}

static void mask_statement__cut_literal__withholds_rest(void **state)
{
	(void)state;
	check("UPDATE t SET a = 7, note = 'my card is 4111",
	      "UPDATE t SET a = ?, note = ?…", MASK_WITHHELD);
}

/*
 * libpg_query normalises only the constants its parse tree records; the
 * literals of most utility statements come back as they were.
 */
/* 'head' and 'fill' repeated up to a text of 4095 bytes, as captured. */
static char *cut_statement(const char *head, char fill)
{
	char *sql = malloc(4096);

	assert_non_null(sql);
	memset(sql, fill, 4095);
	sql[4095] = 0;
	memcpy(sql, head, strlen(head));
	return sql;
}

static void check_cut(const char *head, char fill, const char *shown,
		      enum mask_method expected_method)
{
	enum mask_method method;
	char *sql = cut_statement(head, fill);
	char *masked = mask_statement(sql, &method);

	assert_non_null(masked);
	if (strncmp(masked, shown, strlen(shown)))
		fail_msg("'%.80s...' masked as '%.80s...', not '%s...'", sql,
			 masked, shown);
	assert_int_equal(method, expected_method);
	assert_no_literal_token(sql, masked);
	free(masked);
	free(sql);
}

static void mask_statement__cut_in_block_comment__shows_masked_head(
	void **state)
{
	(void)state;
	check_cut("UPDATE accounts SET balance = 12 /* ", 'c',
		  "UPDATE accounts SET balance = ? /* ccc", MASK_WITHHELD);
	check_cut("UPDATE accounts SET balance = 12 /* a /* b */ ", 'c',
		  "UPDATE accounts SET balance = ? /* a /* b */ ccc",
		  MASK_WITHHELD);
	check_cut("UPDATE accounts SET balance = 12 -- it's 'x\n/* ", 'c',
		  "UPDATE accounts SET balance = ? -- it's 'x\n/* ccc",
		  MASK_WITHHELD);
	check_cut("UPDATE t SET a = 'x' WHERE b = 5 /* -- 'y' $$ */ /* ", 'c',
		  "UPDATE t SET a = ? WHERE b = ? /* -- 'y' $$ */ /* ccc",
		  MASK_WITHHELD);
}

/* A line comment cut short still scans and parses: nothing to withhold. */
static void mask_statement__cut_in_line_comment__shows_masked_head(
	void **state)
{
	(void)state;
	check_cut("UPDATE accounts SET balance = 12 -- ", 'c',
		  "UPDATE accounts SET balance = $1 -- ccc", MASK_NORMALIZED);
	check_cut("UPDATE accounts SET balance = 12 WHERE -- /* it's ", 'c',
		  "UPDATE accounts SET balance = ? WHERE -- /* it's ccc",
		  MASK_TOKENS);
}

static void mask_statement__cut_literal_holding_quotes__shows_masked_head(
	void **state)
{
	(void)state;
	check_cut("UPDATE t SET a = 7, note = 'costs $5 for ", 'x',
		  "UPDATE t SET a = ?, note = ?…", MASK_WITHHELD);
	check_cut("UPDATE t SET a = 7, note = E'it\\'s ", 'x',
		  "UPDATE t SET a = ?, note = ?…", MASK_WITHHELD);
	check_cut("UPDATE t SET a = 7, note = $q$it's ", 'x',
		  "UPDATE t SET a = ?, note = ?…", MASK_WITHHELD);
	check_cut("UPDATE t /* 'a' */ SET a = 7, note = U&'", 'x',
		  "UPDATE t /* 'a' */ SET a = ?, note = ?…", MASK_WITHHELD);
	/* the scanner's error points at the end of input, not the quote */
	check("SELECT 'a' || E'\\uD800", "SELECT ? || E?…", MASK_WITHHELD);
	check("SELECT 'é', 'ü' /* ü", "SELECT ?, ? /* ü…", MASK_WITHHELD);
}

static void mask_statement__utility_literals__masked(void **state)
{
	(void)state;
	check("PREPARE q2 AS UPDATE accounts SET balance = 777, "
	      "note = 'secretnote' WHERE account = 'alice'",
	      "PREPARE q2 AS UPDATE accounts SET balance = ?, note = ? "
	      "WHERE account = ?", MASK_NORMALIZED);
	check("ALTER FUNCTION f(int) SET work_mem = '64123kB'",
	      "ALTER FUNCTION f(int) SET work_mem = ?", MASK_NORMALIZED);
	check("COPY t FROM PROGRAM 'curl -d secret x'",
	      "COPY t FROM PROGRAM ?", MASK_NORMALIZED);
	check("CREATE RULE r AS ON UPDATE TO t DO ALSO "
	      "INSERT INTO u VALUES (5, 'x')",
	      "CREATE RULE r AS ON UPDATE TO t DO ALSO "
	      "INSERT INTO u VALUES (?, ?)", MASK_NORMALIZED);
	check("CREATE TABLE t (a varchar(10) DEFAULT 'x')",
	      "CREATE TABLE t (a varchar(?) DEFAULT ?)", MASK_NORMALIZED);
}

static void mask_statement__any_literal_kind__no_literal_token(void **state)
{
	const char *inputs[] = {
		"CREATE VIEW v AS SELECT 5, 1.5e3, 'x', E'a\\'b', B'0101', "
		"X'ff', U&'d\\0061t' UESCAPE '!', $$dollar$$, $q$tag$q$",
		"COMMENT ON TABLE t IS U&'d\\0061t'",
		"EXECUTE q2(5, 'x')",
		"CALL p(5, 'x', 99999999999999999999)",
		"ALTER TABLE t ALTER COLUMN a SET DEFAULT 5",
		"CREATE INDEX i ON t (a) WHERE a > 5",
		"DECLARE c CURSOR FOR SELECT 5, 'x'",
		"SELECT U&'topsecret' from from",
		"SELECT B'0101', X'ff', U&'x', 1.5 from from",
		"SELECT 5 from from WHERE x = U&'d\\0061t' UESCAPE '!'",
	};
	enum mask_method method;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		char *masked = mask_statement(inputs[i], &method);

		assert_non_null(masked);
		assert_no_literal_token(inputs[i], masked);
		free(masked);
	}
}

static void mask_statement__no_literal_leaks__in_any_mode(void **state)
{
	const char *inputs[] = {
		"select 'topsecret'",
		"select 'topsecret' from from",
		"select E'top\\'secret' + + 'topsecret",
		"select $x$topsecret$x$ garbage ((",
		"select 'topsecret",
		"select U&'topsecret' from from",
		"PREPARE q AS SELECT 'topsecret'",
	};
	enum mask_method method;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		char *masked = mask_statement(inputs[i], &method);

		assert_non_null(masked);
		if (strstr(masked, "topsecret"))
			fail_msg("'%s' leaked as '%s'", inputs[i], masked);
		free(masked);
	}
}

/*
 * Statements of one shape, %s standing for a literal's text: each is
 * masked through a cache warmed by earlier fills, and must come out as
 * mask_statement alone masks it.
 */
static const char *const shapes[] = {
	"UPDATE pgbench_accounts SET abalance = abalance + %s WHERE aid = 7;",
	"UPDATE t SET a = %s WHERE b = -%s AND c = $1",
	"UPDATE t SET a = a -%s, b = b - %s, c = c+-%s",
	"SELECT %s::int, '%s'::text, %s + t1.c2 FROM t1",
	"FETCH %s FROM c",
	"SELECT float(%s) FROM t",
	"SELECT interval '1' second(%s)",
	"SELECT %s LIMIT %s OFFSET %s",
	"SELECT \"col%s\" FROM t WHERE x = %s",
	"SELECT 'a'\n'%s' FROM t",
	"SELECT E'%s' FROM t",
	"SELECT U&'%s' FROM t",
	"SELECT $q$%s$q$ FROM t",
	"SELECT %s /* 42 */ FROM t -- 43\n",
	"SELECT %s FROM t WHERE WHERE %s",
	"UPDATE t SET note = '%s",
	"SELECT x%s FROM t",
	"SELECT %se3, .%s, %s. FROM t",
	"PREPARE q2 AS UPDATE accounts SET balance = %s, note = '%s' "
	"WHERE account = 'alice'",
	"PREPARE q3 AS UPDATE accounts SET balance = $1 + %s",
	"ALTER FUNCTION f(int) SET work_mem = '%s'",
	"COPY t FROM PROGRAM '%s'",
	"CREATE RULE r AS ON UPDATE TO t DO ALSO INSERT INTO u VALUES (%s)",
	"CREATE TABLE t (a varchar(%s) DEFAULT '%s')",
	"EXECUTE q2(%s, '%s')",
	"SELECT %s /* ",
};

static const char *const fills[] = {
	"5", "5000", "123456789", "1234567890", "99999999999", "0", "1.5",
	"77.25", "x", "it''s", "topsecret", "a b", "-", "",
};

static void expand(char *out, size_t len, const char *shape, const char *fill)
{
	const char *p;
	size_t n = 0;

	for (p = shape; *p && n + 1 < len; p++) {
		if (p[0] == '%' && p[1] == 's') {
			n += snprintf(out + n, len - n, "%s", fill);
			p++;
		} else {
			out[n++] = *p;
		}
	}
	out[n < len ? n : len - 1] = 0;
}

static void mask_statement_cached__any_fill__same_as_uncached(void **state)
{
	struct mask_cache *cache = mask_cache_new();
	enum mask_method want_method, got_method;
	char sql[512], *want, *got;
	size_t s, f, round;

	(void)state;
	assert_non_null(cache);
	for (round = 0; round < 2; round++)
		for (s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
			for (f = 0; f < sizeof(fills) / sizeof(fills[0]); f++) {
				expand(sql, sizeof(sql), shapes[s],
				       fills[round ? sizeof(fills) /
						     sizeof(fills[0]) - 1 - f
						   : f]);
				want = mask_statement(sql, &want_method);
				got = mask_statement_cached(cache, sql,
							    &got_method);
				assert_non_null(want);
				assert_non_null(got);
				if (strcmp(want, got) ||
				    want_method != got_method)
					fail_msg("'%s': '%s' (%d) cached, "
						 "'%s' (%d) not", sql, got,
						 got_method, want, want_method);
				assert_no_literal_token(sql, got);
				free(want);
				free(got);
			}
	mask_cache_free(cache);
}

static void mask_statement_cached__warm_cache__no_literal_leaks(void **state)
{
	const char *inputs[] = {
		"UPDATE t SET a = 1 WHERE b = 'x'",
		"UPDATE t SET a = 987654 WHERE b = 'topsecret'",
		"UPDATE t SET a = -987654 WHERE b = 'top''secret'",
		"UPDATE t SET a = 1.5 WHERE b = 'x'",
		"UPDATE t SET a = 9876.54 WHERE b = 'topsecret'",
		"PREPARE q AS UPDATE t SET a = 1 WHERE b = 'x'",
		"PREPARE q AS UPDATE t SET a = 987654 WHERE b = 'topsecret'",
		"PREPARE q AS UPDATE t SET a = 1 WHERE b = 'x'",
		"PREPARE q AS UPDATE t SET a = -987654 WHERE b = 'topsecret'",
	};
	struct mask_cache *cache = mask_cache_new();
	enum mask_method method;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		char *masked = mask_statement_cached(cache, inputs[i], &method);

		assert_non_null(masked);
		assert_int_equal(method, MASK_NORMALIZED);
		if (strstr(masked, "secret") || strstr(masked, "9876"))
			fail_msg("'%s' leaked as '%s'", inputs[i], masked);
		assert_no_literal_token(inputs[i], masked);
		free(masked);
	}
	mask_cache_free(cache);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(mask_statement__parseable__normalizes),
		cmocka_unit_test(mask_statement__unparseable__masks_tokens),
		cmocka_unit_test(mask_statement__cut_literal__withholds_rest),
		cmocka_unit_test(mask_statement__no_literal_leaks__in_any_mode),
		cmocka_unit_test(
			mask_statement__cut_in_block_comment__shows_masked_head),
		cmocka_unit_test(
			mask_statement__cut_in_line_comment__shows_masked_head),
		cmocka_unit_test(
			mask_statement__cut_literal_holding_quotes__shows_masked_head),
		cmocka_unit_test(mask_statement__utility_literals__masked),
		cmocka_unit_test(
			mask_statement__any_literal_kind__no_literal_token),
		cmocka_unit_test(
			mask_statement_cached__any_fill__same_as_uncached),
		cmocka_unit_test(
			mask_statement_cached__warm_cache__no_literal_leaks),
	};

	return cmocka_run_group_tests_name("mask", tests, NULL, NULL);
}
