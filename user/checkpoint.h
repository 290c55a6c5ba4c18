/*
 * Signed checkpoints of the hash chain: a text file outside the database,
 * one line per verified head, "seq hash time signature", each line signed
 * with an Ed25519 key. Someone able to rewrite the ledger and recompute
 * every hash still cannot make the chain match a checkpoint made before,
 * nor forge a new one without the key. Functions here are called from one
 * thread at a time per file; a loaded set is read-only and may be shared.
 */
#ifndef USER_CHECKPOINT_H
#define USER_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "ledger_hash.h"

struct checkpoint {
	int64_t seq;
	uint8_t hash[LEDGER_HASH_LEN];
	int line;
};

/* Checkpoints with a valid signature, sorted by seq. */
struct checkpoint_set {
	struct checkpoint *items;
	size_t count;
	size_t lines;
	size_t bad_lines;	/* malformed or badly signed, not in items */
	int first_bad_line;
};

/*
 * Load an Ed25519 key from a PEM file: a private key (which can also
 * verify) or, when 'allow_public', a public key. Returns 0 and a key the
 * caller frees with EVP_PKEY_free, or a negative errno with a message.
 */
int checkpoint_key_load(const char *path, bool allow_public, EVP_PKEY **out,
			char *err, size_t err_len);

/*
 * Read 'path' and keep the lines whose signature 'key' verifies. A missing
 * file is an empty set. Returns 0 or a negative errno with a message; the
 * caller frees the set with checkpoint_set_free.
 */
int checkpoint_load(const char *path, EVP_PKEY *key, struct checkpoint_set *set,
		    char *err, size_t err_len);

void checkpoint_set_free(struct checkpoint_set *set);

/* The checkpoint of the highest seq, or NULL for an empty set. */
const struct checkpoint *checkpoint_last(const struct checkpoint_set *set);

/*
 * Sign (seq, hash, now) with the private 'key' and append the line to
 * 'path' (made 0600 if absent), synced before returning. Returns 0 or a
 * negative errno with a message.
 */
int checkpoint_append(const char *path, EVP_PKEY *key, int64_t seq,
		      const uint8_t hash[LEDGER_HASH_LEN], char *err,
		      size_t err_len);

#endif /* USER_CHECKPOINT_H */
