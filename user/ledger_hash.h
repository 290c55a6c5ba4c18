/*
 * Hash scheme v1 of the ledger (DESIGN.md, "The reference ledger and hash
 * scheme v1"): SHA-256 over the scheme prefix, the predecessor's hash, the
 * event id and the posting set in canonical order, integers big-endian.
 * A hasher keeps its digest context and message buffer between calls, so
 * each verifier thread owns one; hashers are not shared between threads.
 */
#ifndef USER_LEDGER_HASH_H
#define USER_LEDGER_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEDGER_HASH_LEN 32
#define LEDGER_EVENT_ID_LEN 16
#define LEDGER_CURRENCY_LEN 3
#define LEDGER_ACCOUNT_MAX 65535	/* the length is a u16 */
#define LEDGER_HASH_SCHEME "pgvigil.postings.v1"

struct ledger_posting {
	const uint8_t *account;		/* UTF-8, not terminated; caller's */
	size_t account_len;
	uint8_t currency[LEDGER_CURRENCY_LEN];
	int64_t amount;			/* minor units */
};

struct ledger_hasher;

/* Make a hasher. Returns 0 or -ENOMEM. */
int ledger_hasher_new(struct ledger_hasher **out);

void ledger_hasher_free(struct ledger_hasher *hasher);

/*
 * postings_hash of one event into 'out'. 'prev' is the predecessor's hash
 * (zeros for seq 1). Sorts 'postings' in place into canonical order
 * (account bytewise, currency, amount). Returns 0, -EOVERFLOW for an
 * account longer than LEDGER_ACCOUNT_MAX, or -ENOMEM / -EIO.
 */
int ledger_hash_v1(struct ledger_hasher *hasher,
		   const uint8_t prev[LEDGER_HASH_LEN],
		   const uint8_t event_id[LEDGER_EVENT_ID_LEN],
		   struct ledger_posting *postings, size_t count,
		   uint8_t out[LEDGER_HASH_LEN]);

/* Does the set sum to zero in each currency (exactly, without overflow)? */
bool ledger_postings_balanced(const struct ledger_posting *postings,
			      size_t count);

/* Lower-case hex of a hash into 'hex' (2 * LEDGER_HASH_LEN + 1 bytes). */
void ledger_hash_hex(const uint8_t hash[LEDGER_HASH_LEN], char *hex);

/* Parse 64 hex digits. Returns 0 or -EINVAL. */
int ledger_hash_parse(const char *hex, uint8_t hash[LEDGER_HASH_LEN]);

#endif /* USER_LEDGER_HASH_H */
