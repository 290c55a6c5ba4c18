/* Unit tests of literal masking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mask.h"

static void check(const char *sql, const char *expected,
		  enum mask_method expected_method)
{
	enum mask_method method;
	char *masked = mask_statement(sql, &method);

	assert_non_null(masked);
	assert_string_equal(masked, expected);
	assert_int_equal(method, expected_method);
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

static void mask_statement__no_literal_leaks__in_any_mode(void **state)
{
	const char *inputs[] = {
		"select 'topsecret'",
		"select 'topsecret' from from",
		"select E'top\\'secret' + + 'topsecret",
		"select $x$topsecret$x$ garbage ((",
		"select 'topsecret",
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
			mask_statement_cached__any_fill__same_as_uncached),
		cmocka_unit_test(
			mask_statement_cached__warm_cache__no_literal_leaks),
	};

	return cmocka_run_group_tests_name("mask", tests, NULL, NULL);
}
