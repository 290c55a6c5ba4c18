/*
 * Forensic dump files: one versioned, tamper-evident container of JSON
 * frames. Layout (all integers big-endian):
 *
 *   header   "PGVDUMP\0" u16 version u16 flags u32 header_len u64 created_ns
 *            key_id[16] u16 wrap_len wrap[wrap_len]
 *            header_hash[32] = SHA-256("pgvigil.dump.v1" || header)
 *   frame i  "FRM1" u32 index u32 stored_len u32 plain_len
 *            payload[stored_len]  zlib of one JSON text; when encrypted,
 *                                 AES-256-GCM of that, 16-byte tag appended
 *            chain[32] = SHA-256(chain[i-1] || frame header || payload),
 *                        chain[-1] being the header hash
 *   seal     "SEAL" u32 frame_count [tag[16] when encrypted]
 *            seal_hash[32] = SHA-256(last chain || "SEAL" || count || tag)
 *
 * The chain makes any change to a stored byte visible and lets the reader
 * name the first damaged frame; the seal makes a cut visible. Without a
 * key anyone able to rewrite the whole file can recompute the chain, so
 * the writer returns the seal hash for the caller to record elsewhere
 * (the daemon logs it). With a key, every frame and the seal are also
 * authenticated under a random per-dump data key, which is wrapped by a
 * master key through a pluggable provider (struct dumpfile_key).
 *
 * Not thread-safe per object; distinct writers and reads may run in
 * parallel.
 */
#ifndef USER_DUMPFILE_H
#define USER_DUMPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;

#define DUMPFILE_VERSION	1
#define DUMPFILE_F_ENCRYPTED	(1u << 0)
#define DUMPFILE_F_MASKED	(1u << 1)	/* statements masked */

#define DUMPFILE_FRAME_MAX	(1u << 20)	/* plain bytes per frame */
#define DUMPFILE_FRAMES_MAX	(1u << 16)
#define DUMPFILE_WRAP_MAX	1024
#define DUMPFILE_FILE_MAX	(256u << 20)
#define DUMPFILE_KEY_ID_LEN	16
#define DUMPFILE_HASH_LEN	32

/*
 * A master key. The default provider (dumpfile_key_load) keeps 32 bytes
 * read from a key file and wraps data keys with AES-256-GCM. A KMS fills
 * in its own wrap/unwrap (envelope encryption: the blob is what the KMS
 * returns for Encrypt of the data key) and an id naming its key; 'arg'
 * is its state. Both callbacks return 0 or a negative errno; unwrap
 * returns -EKEYREJECTED when the blob is not theirs.
 */
struct dumpfile_key {
	uint8_t id[DUMPFILE_KEY_ID_LEN];
	int (*wrap)(const struct dumpfile_key *key, const uint8_t data_key[32],
		    const uint8_t *aad, size_t aad_len, uint8_t *blob,
		    size_t *blob_len);
	int (*unwrap)(const struct dumpfile_key *key, const uint8_t *blob,
		      size_t blob_len, const uint8_t *aad, size_t aad_len,
		      uint8_t data_key[32]);
	void *arg;
	uint8_t master[32];
};

/*
 * Read a master key file: 32 raw bytes, or 64 hex digits and optional
 * whitespace. The file must not be readable by group or others (-EPERM).
 * Returns 0 or a negative errno.
 */
int dumpfile_key_load(const char *path, struct dumpfile_key *key);

/* Same from 32 bytes in memory (tests, a KMS agent's plaintext key). */
void dumpfile_key_init(struct dumpfile_key *key, const uint8_t master[32]);

/* Overwrite the key material. */
void dumpfile_key_clear(struct dumpfile_key *key);

struct dumpfile_writer;

/*
 * Start a dump at 'path', written under a temporary name and renamed when
 * sealed, mode 0600. 'key' NULL: not encrypted. 'masked' only records in
 * the header what the caller did to the statements. Returns 0 or a
 * negative errno; the writer is the caller's until seal or abort.
 */
int dumpfile_create(const char *path, const struct dumpfile_key *key,
		    bool masked, struct dumpfile_writer **out);

/*
 * Append one frame holding 'frame' (borrowed). -EMSGSIZE when its text
 * exceeds DUMPFILE_FRAME_MAX, -E2BIG past DUMPFILE_FRAMES_MAX frames.
 */
int dumpfile_add(struct dumpfile_writer *writer, struct json_object *frame);

/*
 * Write the seal, sync, rename into place and free the writer, whatever
 * the outcome. 'seal_hash' (may be NULL) receives the seal hash.
 */
int dumpfile_seal(struct dumpfile_writer *writer,
		  uint8_t seal_hash[DUMPFILE_HASH_LEN]);

/* Remove the partial file and free the writer. */
void dumpfile_abort(struct dumpfile_writer *writer);

/* What a read found. 'damage_frame': -1 header, -2 seal, else frame. */
struct dumpfile_info {
	uint16_t version;
	uint16_t flags;
	uint64_t created_ns;	/* CLOCK_REALTIME */
	uint32_t frames;
	bool authenticated;	/* frames and seal checked under the key */
	uint8_t key_id[DUMPFILE_KEY_ID_LEN];
	uint8_t seal_hash[DUMPFILE_HASH_LEN];
	int damage_frame;
	uint64_t damage_offset;
	char message[160];	/* damage or error, empty when intact */
};

/* Called per frame in order; a non-zero return stops the read with it. */
typedef int (*dumpfile_frame_fn)(void *arg, uint32_t index,
				 struct json_object *frame);

/*
 * Check and decode a dump held in memory. Lengths in the data are never
 * trusted beyond the limits above. 'key' may be NULL: an encrypted dump
 * then has its chain and seal checked but no frame decoded. 'fn' may be
 * NULL (verify only). Returns 0 intact, -EBADMSG damaged (position in
 * info), -EKEYREJECTED wrong key, -ENOKEY frames wanted without a key,
 * -EPROTONOSUPPORT a newer format, or fn's non-zero return.
 */
int dumpfile_read(const uint8_t *data, size_t len,
		  const struct dumpfile_key *key, dumpfile_frame_fn fn,
		  void *arg, struct dumpfile_info *info);

/* Same for a file of at most DUMPFILE_FILE_MAX bytes. */
int dumpfile_read_file(const char *path, const struct dumpfile_key *key,
		       dumpfile_frame_fn fn, void *arg,
		       struct dumpfile_info *info);

/* Lowercase hex of 'len' bytes into 'out' (2 * len + 1 bytes). */
void dumpfile_hex(const uint8_t *bytes, size_t len, char *out);

#endif /* USER_DUMPFILE_H */
