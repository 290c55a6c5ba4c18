/* Unit tests of the policy parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "policy.h"

static char *write_temp(const char *text)
{
	static char path[64];
	int fd;

	strcpy(path, "/tmp/pgvigil-policy-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (int)strlen(text));
	close(fd);
	return path;
}

static const char *reference =
	"database:\n"
	"  dsn: \"host=/tmp dbname=bank\"\n"
	"monetary:\n"
	"  balance_columns: [public.accounts.balance]\n"
	"  allowed_functions: [public.postings_apply]\n"
	"immutable:\n"
	"  tables: [public.ledger_events, \"*.*_domain_events\"]\n"
	"hash_integrity:\n"
	"  events_table: public.ledger_events\n"
	"  postings_table: public.postings\n";

static void policy_load__reference__parses(void **state)
{
	struct policy *policy;
	char err[256] = "";

	(void)state;
	char *path = write_temp(reference);

	assert_int_equal(policy_load(path, &policy, err, sizeof(err)), 0);
	unlink(path);
	assert_string_equal(policy->dsn, "host=/tmp dbname=bank");
	assert_int_equal(policy->balance_columns.count, 1);
	assert_string_equal(policy->balance_columns.items[0].column, "balance");
	assert_int_equal(policy->immutable_tables.count, 2);
	assert_string_equal(policy->immutable_tables.items[1].object,
			    "*_domain_events");
	assert_string_equal(policy->hash.seq_column, "seq");
	assert_int_equal(strlen(policy->digest), 64);
	policy_free(policy);
}

static void expect_error(const char *text, const char *message)
{
	struct policy *policy = NULL;
	char err[256] = "";
	char *path = write_temp(text);

	assert_int_not_equal(policy_load(path, &policy, err, sizeof(err)), 0);
	unlink(path);
	assert_null(policy);
	if (!strstr(err, message))
		fail_msg("error '%s' lacks '%s'", err, message);
}

static void policy_load__unknown_key__names_line(void **state)
{
	(void)state;
	expect_error("database:\n  dsn: x\nmonetary:\n  balance_colums: []\n",
		     ":4: unknown key 'balance_colums' in 'monetary'");
}

static void policy_load__malformed_yaml__names_line(void **state)
{
	(void)state;
	expect_error("database:\n  dsn: x\nmonetary: [\n", ":4:");
}

static void policy_load__bad_name__names_line(void **state)
{
	(void)state;
	expect_error("database:\n  dsn: x\nmonetary:\n"
		     "  balance_columns:\n    - accounts.balance\n",
		     ":5: bad name 'accounts.balance'");
}

/* A value refused for what it says is reported at its own line. */
static void policy_load__bad_value__names_value_line(void **state)
{
	(void)state;
	expect_error("journal:\n  fsync: sometimes\n",
		     ":2: journal.fsync must be always, interval or "
		     "never, not 'sometimes'");
	expect_error("database:\n  dsn: x\njournal:\n  keep: 2\n"
		     "  fsync: sometimes\n",
		     ":5: journal.fsync must be");
	expect_error("database:\n  dsn: x\nhash_integrity:\n"
		     "  events_table: public.e\n  scheme: v2\n",
		     ":5: hash_integrity.scheme must be pgvigil.postings.v1, not 'v2'");
	expect_error("database:\n  dsn: x\njournal:\n  keep: lots\n",
		     ":4: 'keep' expects a non-negative integer, not 'lots'");
	expect_error("database:\n  dsn: x\nhttp:\n  metrics_open: maybe\n",
		     ":4: 'metrics_open' expects true or false");
	expect_error("database:\n  dsn: x\ncapture:\n  wire: sometimes\n",
		     ":4: 'wire' expects on or off");
}

static void policy_load__allowed_choice__kept(void **state)
{
	struct policy *policy;
	char err[256] = "";
	char *path = write_temp("database:\n  dsn: x\njournal:\n"
				"  fsync: interval\n");

	(void)state;
	assert_int_equal(policy_load(path, &policy, err, sizeof(err)), 0);
	unlink(path);
	assert_string_equal(policy->journal.fsync, "interval");
	assert_string_equal(policy->hash.scheme, "pgvigil.postings.v1");
	policy_free(policy);
}

static void policy_load__missing_dsn__fails(void **state)
{
	(void)state;
	expect_error("monetary:\n  balance_columns: []\n", "missing 'database.dsn'");
}

static void policy_load__device_or_directory__is_refused(void **state)
{
	struct policy *policy;
	char err[256];

	(void)state;
	assert_int_not_equal(policy_load("/dev/zero", &policy, err,
					 sizeof(err)), 0);
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_not_equal(policy_load("/tmp", &policy, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "not a regular file"));
}

static void policy_load__missing_file__says_so(void **state)
{
	struct policy *policy;
	char err[256];

	(void)state;
	assert_int_not_equal(policy_load("/nonexistent/p.yaml", &policy, err,
					 sizeof(err)), 0);
	assert_non_null(strstr(err, "No such file"));
}

static void policy_parse_name__quoted__keeps_case(void **state)
{
	struct policy_name name;

	(void)state;
	assert_int_equal(policy_parse_name("Public.\"My.Table\".Balance", true,
					   &name), 0);
	assert_string_equal(name.schema, "public");
	assert_string_equal(name.object, "My.Table");
	assert_string_equal(name.column, "balance");
	free(name.schema);
	free(name.object);
	free(name.column);
}

static void policy_glob__patterns__match(void **state)
{
	(void)state;
	assert_true(policy_glob("*_domain_events", "card_domain_events"));
	assert_false(policy_glob("*_domain_events", "card_domain_event"));
	assert_true(policy_glob("*", "anything"));
	assert_true(policy_glob("a*b*c", "aXXbYYc"));
	assert_false(policy_glob("accounts", "accounts2"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(policy_load__reference__parses),
		cmocka_unit_test(policy_load__unknown_key__names_line),
		cmocka_unit_test(policy_load__malformed_yaml__names_line),
		cmocka_unit_test(policy_load__bad_name__names_line),
		cmocka_unit_test(policy_load__bad_value__names_value_line),
		cmocka_unit_test(policy_load__allowed_choice__kept),
		cmocka_unit_test(policy_load__missing_dsn__fails),
		cmocka_unit_test(policy_load__missing_file__says_so),
		cmocka_unit_test(policy_load__device_or_directory__is_refused),
		cmocka_unit_test(policy_parse_name__quoted__keeps_case),
		cmocka_unit_test(policy_glob__patterns__match),
	};

	return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
