/*
 * Unit tests of hash scheme v1 against vectors that PostgreSQL computed,
 * not this code. They were produced on PostgreSQL 15.x with pgcrypto by
 * loading sql/reference_ledger.sql into a fresh database and running
 * tests/unit/ledger_hash_vectors.sql (psql -f), which hashes each posting
 * set below with the SQL functions ledger_posting_bytes and ledger_hash_v1
 * that postings_apply uses. Vectors 1 and 2 were also recomputed with a
 * short Python hashlib script written from DESIGN.md alone; they agreed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "ledger_hash.h"

#define P(account, currency, amount) \
	{ (const uint8_t *)(account), sizeof(account) - 1, currency, amount }

static const uint8_t zero_hash[LEDGER_HASH_LEN];

static void hash_of(struct ledger_posting *postings, size_t count,
		    const uint8_t *prev, const char *event_id_hex, char *hex)
{
	struct ledger_hasher *hasher;
	uint8_t event_id[LEDGER_EVENT_ID_LEN], out[LEDGER_HASH_LEN];
	char id_hex[2 * LEDGER_HASH_LEN + 1];

	/* reuse the 32-byte parser: pad the 16-byte id with zeros */
	snprintf(id_hex, sizeof(id_hex), "%s%032d", event_id_hex, 0);
	assert_int_equal(ledger_hash_parse(id_hex, out), 0);
	memcpy(event_id, out, sizeof(event_id));
	assert_int_equal(ledger_hasher_new(&hasher), 0);
	assert_int_equal(ledger_hash_v1(hasher, prev, event_id, postings, count,
					out), 0);
	ledger_hasher_free(hasher);
	ledger_hash_hex(out, hex);
}

static const char vector1[] =
	"cd7f5b7319716601190fe12c03632d4337279fc1d75d53262efaa675f8d13cde";

static void ledger_hash_v1__two_postings__matches_postgres(void **state)
{
	struct ledger_posting postings[] = {
		P("alice", "EUR", 100),
		P("bob", "EUR", -100),
	};
	char hex[65];

	(void)state;
	hash_of(postings, 2, zero_hash, "00000000000000000000000000000001",
		hex);
	assert_string_equal(hex, vector1);
}

/* unsorted input, non-ASCII names, prefixes, equal accounts */
static void ledger_hash_v1__unsorted_utf8_chained__matches_postgres(void **state)
{
	struct ledger_posting postings[] = {
		P("Z\xc3\xbcrich", "CHF", -250),
		P("\xe6\x9d\xb1\xe4\xba\xac", "JPY", 1000),
		P("Z\xc3\xbcrich", "CHF", 250),
		P("\xe6\x9d\xb1\xe4\xba\xac", "JPY", -1000),
		P("Zoo", "CHF", 0),
		P("abc", "USD", 5),
		P("ab", "USD", -5),
		P("ab", "EUR", 7),
		P("ab", "EUR", -7),
	};
	uint8_t prev[LEDGER_HASH_LEN];
	char hex[65];

	(void)state;
	assert_int_equal(ledger_hash_parse(vector1, prev), 0);
	hash_of(postings, 9, prev, "6ba7b8109dad11d180b400c04fd430c8", hex);
	assert_string_equal(hex, "7ef1fd265651bff0fdfa5878cbf415681bab36b0"
				 "56c73fdc5515c2edbea47b53");
}

/* a 300-byte account (both length bytes used), empty account, int64 ends */
static void ledger_hash_v1__extremes__matches_postgres(void **state)
{
	uint8_t long_account[300], prev[LEDGER_HASH_LEN];
	struct ledger_posting postings[] = {
		{ long_account, sizeof(long_account), "USD", INT64_MAX },
		P("", "USD", INT64_MIN),
		P("x", "USD", -1),
	};
	char hex[65];
	int i;

	(void)state;
	memset(long_account, 'x', sizeof(long_account));
	for (i = 0; i < LEDGER_HASH_LEN; i++)
		prev[i] = i + 1;
	hash_of(postings, 3, prev, "ffffffff0000400080000123456789ab", hex);
	assert_string_equal(hex, "a0dac58164065d5008b6846e8b6803363b1fba3d"
				 "3cc62251ec0033f8a615aa98");
}

static void ledger_hash_v1__no_postings__matches_postgres(void **state)
{
	char hex[65];

	(void)state;
	hash_of(NULL, 0, zero_hash, "6ba7b8109dad11d180b400c04fd430c8", hex);
	assert_string_equal(hex, "2e31d74da2895496f4c90c9f8488dbc75a61242b"
				 "7c53ab36571711010b54f4e3");
}

static void ledger_hash_v1__account_too_long__eoverflow(void **state)
{
	static uint8_t account[LEDGER_ACCOUNT_MAX + 1];
	struct ledger_posting posting = { account, sizeof(account), "EUR", 1 };
	struct ledger_hasher *hasher;
	uint8_t out[LEDGER_HASH_LEN];

	(void)state;
	assert_int_equal(ledger_hasher_new(&hasher), 0);
	assert_int_equal(ledger_hash_v1(hasher, zero_hash, zero_hash, &posting,
					1, out), -EOVERFLOW);
	ledger_hasher_free(hasher);
}

static void ledger_postings_balanced__per_currency__exact(void **state)
{
	struct ledger_posting balanced[] = {
		P("a", "EUR", 5), P("b", "USD", 3), P("c", "EUR", -5),
		P("d", "USD", -3),
	};
	struct ledger_posting crossed[] = {
		P("a", "EUR", 5), P("b", "USD", -5),
	};
	/* sums to zero only modulo 2^64 */
	struct ledger_posting wrapping[] = {
		P("a", "EUR", INT64_MAX), P("b", "EUR", INT64_MAX),
		P("c", "EUR", 2),
	};

	(void)state;
	assert_true(ledger_postings_balanced(balanced, 4));
	assert_false(ledger_postings_balanced(crossed, 2));
	assert_false(ledger_postings_balanced(wrapping, 3));
	assert_true(ledger_postings_balanced(NULL, 0));
}

static void ledger_hash_parse__bad_input__einval(void **state)
{
	uint8_t hash[LEDGER_HASH_LEN];

	(void)state;
	assert_int_equal(ledger_hash_parse("00", hash), -EINVAL);
	assert_int_equal(ledger_hash_parse(vector1 + 1, hash), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ledger_hash_v1__two_postings__matches_postgres),
		cmocka_unit_test(ledger_hash_v1__unsorted_utf8_chained__matches_postgres),
		cmocka_unit_test(ledger_hash_v1__extremes__matches_postgres),
		cmocka_unit_test(ledger_hash_v1__no_postings__matches_postgres),
		cmocka_unit_test(ledger_hash_v1__account_too_long__eoverflow),
		cmocka_unit_test(ledger_postings_balanced__per_currency__exact),
		cmocka_unit_test(ledger_hash_parse__bad_input__einval),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
