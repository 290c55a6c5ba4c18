/* Unit tests of literal masking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(mask_statement__parseable__normalizes),
		cmocka_unit_test(mask_statement__unparseable__masks_tokens),
		cmocka_unit_test(mask_statement__cut_literal__withholds_rest),
		cmocka_unit_test(mask_statement__no_literal_leaks__in_any_mode),
	};

	return cmocka_run_group_tests_name("mask", tests, NULL, NULL);
}
