/*
 * Hash scheme v1 in C. The message is serialised into one buffer and hashed
 * with a single EVP call: a posting is four small fields, and an update per
 * field would cost more than the SHA-256 compression itself.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ledger_hash.h"

struct ledger_hasher {
	EVP_MD_CTX *ctx;
	EVP_MD *sha256;		/* fetched once: an implicit fetch per digest is slow */
	uint8_t *message;
	size_t capacity;
};

int ledger_hasher_new(struct ledger_hasher **out)
{
	struct ledger_hasher *hasher = calloc(1, sizeof(*hasher));

	if (!hasher)
		return -ENOMEM;
	hasher->ctx = EVP_MD_CTX_new();
	hasher->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!hasher->ctx || !hasher->sha256) {
		ledger_hasher_free(hasher);
		return -ENOMEM;
	}
	*out = hasher;
	return 0;
}

void ledger_hasher_free(struct ledger_hasher *hasher)
{
	if (!hasher)
		return;
	EVP_MD_CTX_free(hasher->ctx);
	EVP_MD_free(hasher->sha256);
	free(hasher->message);
	free(hasher);
}

static int posting_cmp(const void *a, const void *b)
{
	const struct ledger_posting *x = a, *y = b;
	size_t n = x->account_len < y->account_len ? x->account_len
						   : y->account_len;
	int c = n ? memcmp(x->account, y->account, n) : 0;

	if (c)
		return c;
	if (x->account_len != y->account_len)
		return x->account_len < y->account_len ? -1 : 1;
	c = memcmp(x->currency, y->currency, LEDGER_CURRENCY_LEN);
	if (c)
		return c;
	return (x->amount > y->amount) - (x->amount < y->amount);
}

static uint8_t *put_be(uint8_t *p, uint64_t value, int bytes)
{
	while (bytes-- > 0)
		*p++ = value >> (8 * bytes);
	return p;
}

static int reserve(struct ledger_hasher *hasher, size_t need)
{
	uint8_t *grown;
	size_t capacity = hasher->capacity ? hasher->capacity : 512;

	if (need <= hasher->capacity)
		return 0;
	while (capacity < need)
		capacity *= 2;
	grown = realloc(hasher->message, capacity);
	if (!grown)
		return -ENOMEM;
	hasher->message = grown;
	hasher->capacity = capacity;
	return 0;
}

/* Bytes of the message, or 0 when an account is too long to encode. */
static size_t message_size(const struct ledger_posting *postings, size_t count)
{
	size_t size = sizeof(LEDGER_HASH_SCHEME) - 1 + LEDGER_HASH_LEN +
		      LEDGER_EVENT_ID_LEN + 4;
	size_t i;

	for (i = 0; i < count; i++) {
		if (postings[i].account_len > LEDGER_ACCOUNT_MAX)
			return 0;
		size += 2 + postings[i].account_len + LEDGER_CURRENCY_LEN + 8;
	}
	return size;
}

int ledger_hash_v1(struct ledger_hasher *hasher,
		   const uint8_t prev[LEDGER_HASH_LEN],
		   const uint8_t event_id[LEDGER_EVENT_ID_LEN],
		   struct ledger_posting *postings, size_t count,
		   uint8_t out[LEDGER_HASH_LEN])
{
	size_t size = message_size(postings, count), i;
	unsigned int out_len = 0;
	uint8_t *p;

	if (!size || count > UINT32_MAX)
		return -EOVERFLOW;
	if (reserve(hasher, size))
		return -ENOMEM;
	qsort(postings, count, sizeof(*postings), posting_cmp);

	p = hasher->message;
	memcpy(p, LEDGER_HASH_SCHEME, sizeof(LEDGER_HASH_SCHEME) - 1);
	p += sizeof(LEDGER_HASH_SCHEME) - 1;
	memcpy(p, prev, LEDGER_HASH_LEN);
	memcpy(p + LEDGER_HASH_LEN, event_id, LEDGER_EVENT_ID_LEN);
	p = put_be(p + LEDGER_HASH_LEN + LEDGER_EVENT_ID_LEN, count, 4);
	for (i = 0; i < count; i++) {
		p = put_be(p, postings[i].account_len, 2);
		memcpy(p, postings[i].account, postings[i].account_len);
		p += postings[i].account_len;
		memcpy(p, postings[i].currency, LEDGER_CURRENCY_LEN);
		p = put_be(p + LEDGER_CURRENCY_LEN, (uint64_t)postings[i].amount, 8);
	}

	if (!EVP_DigestInit_ex(hasher->ctx, hasher->sha256, NULL) ||
	    !EVP_DigestUpdate(hasher->ctx, hasher->message, size) ||
	    !EVP_DigestFinal_ex(hasher->ctx, out, &out_len) ||
	    out_len != LEDGER_HASH_LEN)
		return -EIO;
	return 0;
}

/*
 * Per currency, summed once from its first occurrence. Quadratic in the
 * number of currencies of one event, which is one or two in practice.
 * 128-bit sums: a set that only balances by wrapping is not balanced.
 */
bool ledger_postings_balanced(const struct ledger_posting *postings,
			      size_t count)
{
	size_t i, j;

	for (i = 0; i < count; i++) {
		__int128 sum = 0;

		for (j = 0; j < i; j++)
			if (!memcmp(postings[j].currency, postings[i].currency,
				    LEDGER_CURRENCY_LEN))
				break;
		if (j < i)
			continue;
		for (j = i; j < count; j++)
			if (!memcmp(postings[j].currency, postings[i].currency,
				    LEDGER_CURRENCY_LEN))
				sum += postings[j].amount;
		if (sum)
			return false;
	}
	return true;
}

void ledger_hash_hex(const uint8_t hash[LEDGER_HASH_LEN], char *hex)
{
	static const char digits[] = "0123456789abcdef";
	int i;

	for (i = 0; i < LEDGER_HASH_LEN; i++) {
		hex[2 * i] = digits[hash[i] >> 4];
		hex[2 * i + 1] = digits[hash[i] & 15];
	}
	hex[2 * LEDGER_HASH_LEN] = 0;
}

int ledger_hash_parse(const char *hex, uint8_t hash[LEDGER_HASH_LEN])
{
	int i, hi, lo;

	for (i = 0; i < LEDGER_HASH_LEN; i++) {
		hi = OPENSSL_hexchar2int(hex[2 * i]);
		lo = hi < 0 ? -1 : OPENSSL_hexchar2int(hex[2 * i + 1]);
		if (lo < 0)
			return -EINVAL;
		hash[i] = hi << 4 | lo;
	}
	return hex[2 * LEDGER_HASH_LEN] ? -EINVAL : 0;
}
