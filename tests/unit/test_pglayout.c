/*
 * Unit tests of the layout check: the probes take struct fields from
 * one-piece reads, so a layout placing a field beyond the bytes read must
 * be refused before load, with the field named.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "pglayout.h"

static struct pg_layout pg15(void)
{
	const struct pglayout_version *version = pglayout_find(15);

	assert_non_null(version);
	return *version->layout;
}

static void check__supported_layout__fits(void **state)
{
	struct pg_layout layout = pg15();
	char err[256] = "";

	(void)state;
	assert_int_equal(pglayout_check(&layout, err, sizeof(err)), 0);
	assert_string_equal(err, "");
}

static void check__field_beyond_struct_size__names_it(void **state)
{
	struct pg_layout layout = pg15();
	char err[256];

	(void)state;
	layout.rte_updated_cols = layout.rte_size - 4;
	assert_int_equal(pglayout_check(&layout, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "RangeTblEntry.rte_updated_cols"));
}

static void check__field_beyond_window__names_it(void **state)
{
	struct pg_layout layout = pg15();
	char err[256];

	(void)state;
	/* a bigger struct is read in part: its fields must lie in that part */
	layout.ps_size = 4 * PGV_WIN_PS;
	layout.ps_stmt_len = PGV_WIN_PS;
	assert_int_equal(pglayout_check(&layout, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "PlannedStmt.ps_stmt_len"));
	layout.ps_stmt_len = PGV_WIN_PS - 4;
	assert_int_equal(pglayout_check(&layout, err, sizeof(err)), 0);
}

static void check__list_cells_or_column_words_beyond_window__refused(void **state)
{
	struct pg_layout layout = pg15();
	char err[256];

	(void)state;
	layout.list_initial_elements = PGV_WIN_LIST;
	assert_int_equal(pglayout_check(&layout, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "List.list_initial_elements"));
	layout = pg15();
	layout.bms_words = PGV_WIN_BMS - 8;
	assert_int_equal(pglayout_check(&layout, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "Bitmapset.bms_words"));
}

static void tag_number__known_name__round_trips(void **state)
{
	const struct pglayout_version *version = pglayout_find(15);
	int tag = pglayout_tag_number(version, "TransactionStmt");

	(void)state;
	assert_true(tag > 0);
	assert_string_equal(pglayout_tag_name(version, tag), "TransactionStmt");
}

static void tag_number__unknown_name__enoent(void **state)
{
	(void)state;
	assert_int_equal(pglayout_tag_number(pglayout_find(15), "NoSuchStmt"),
			 -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(check__supported_layout__fits),
		cmocka_unit_test(check__field_beyond_struct_size__names_it),
		cmocka_unit_test(check__field_beyond_window__names_it),
		cmocka_unit_test(check__list_cells_or_column_words_beyond_window__refused),
		cmocka_unit_test(tag_number__known_name__round_trips),
		cmocka_unit_test(tag_number__unknown_name__enoent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
