/*
 * libFuzzer target for the dump reader: any bytes must come back as a
 * result, never a crash, a leak or an unbounded allocation.
 *
 * Raw inputs rarely get past the chain hashes, yet anyone able to rewrite
 * an unencrypted dump can recompute them, so the inflate and JSON paths
 * behind them are reachable by an attacker. Hence a second mode: the
 * input is cut into frame payloads (compressed here when the first byte
 * is odd) and wrapped in a correctly chained and sealed container.
 * Every input is also read with the key the corpus's encrypted dump was
 * written under, to reach the unwrap and decryption.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "dumpfile.h"
#include "fuzz_key.h"

/* header and seal, 64 frames of framing and zlib overhead, the input */
#define BUILT_MAX(len) (256 + 64 * (48 + 64) + (len))

struct built {
	uint8_t *data;
	size_t len;
	uint8_t chain[32];
};

static int touch_frame(void *arg, uint32_t index, struct json_object *frame)
{
	(void)arg;
	(void)index;
	/* serializing walks the whole object the reader built */
	return json_object_to_json_string(frame) ? 0 : -1;
}

/* SHA-256 of up to three pieces into 'out', which may be an input */
static void sha256(uint8_t out[32], const void *a, size_t a_len,
		   const void *b, size_t b_len, const void *c, size_t c_len)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	EVP_DigestUpdate(md, a, a_len);
	EVP_DigestUpdate(md, b, b_len);
	if (c)
		EVP_DigestUpdate(md, c, c_len);
	EVP_DigestFinal_ex(md, out, NULL);
	EVP_MD_CTX_free(md);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static void emit(struct built *b, const void *p, size_t len)
{
	memcpy(b->data + b->len, p, len);
	b->len += len;
}

/* The version 1 header of an unencrypted, masked dump. */
static void build_header(struct built *b)
{
	static const char domain[] = "pgvigil.dump.v1";
	uint8_t hdr[42] = "PGVDUMP";

	hdr[9] = 1;
	hdr[11] = DUMPFILE_F_MASKED;
	put32(hdr + 12, sizeof(hdr));
	sha256(b->chain, domain, sizeof(domain) - 1, hdr, sizeof(hdr), NULL,
	       0);
	emit(b, hdr, sizeof(hdr));
	emit(b, b->chain, 32);
}

static void build_frame(struct built *b, uint32_t index, const uint8_t *stored,
			size_t stored_len, uint32_t plain_len)
{
	uint8_t hdr[16] = "FRM1";

	put32(hdr + 4, index);
	put32(hdr + 8, (uint32_t)stored_len);
	put32(hdr + 12, plain_len);
	sha256(b->chain, b->chain, 32, hdr, sizeof(hdr), stored, stored_len);
	emit(b, hdr, sizeof(hdr));
	emit(b, stored, stored_len);
	emit(b, b->chain, 32);
}

static void build_seal(struct built *b, uint32_t frames)
{
	uint8_t seal[8] = "SEAL", hash[32];

	put32(seal + 4, frames);
	sha256(hash, b->chain, 32, seal, sizeof(seal), NULL, 0);
	emit(b, seal, sizeof(seal));
	emit(b, hash, 32);
}

/*
 * Pieces are separated by a 0xff byte; when 'compress' a piece is the
 * plain text, else its first two bytes give a plain length and the rest
 * is the stored payload as is.
 */
static void build(struct built *b, const uint8_t *in, size_t len,
		  bool compress)
{
	uint8_t z[8192];
	uint32_t frames = 0;
	size_t start = 0, end;
	uLongf zlen;

	build_header(b);
	while (start < len && frames < 64) {
		for (end = start; end < len && in[end] != 0xff; end++)
			;
		zlen = sizeof(z);
		if (compress && end > start &&
		    compress2(z, &zlen, in + start, end - start, 1) == Z_OK)
			build_frame(b, frames++, z, zlen, end - start);
		else if (!compress && end - start >= 2)
			build_frame(b, frames++, in + start + 2, end - start - 2,
				    (uint32_t)(in[start] << 8 | in[start + 1]));
		start = end + 1;
	}
	build_seal(b, frames);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct dumpfile_info info;
	struct dumpfile_key key;
	struct built b = { 0 };

	dumpfile_read(data, len, NULL, NULL, NULL, &info);
	dumpfile_read(data, len, NULL, touch_frame, NULL, &info);
	dumpfile_key_init(&key, fuzz_master_key);
	dumpfile_read(data, len, &key, touch_frame, NULL, &info);
	if (len < 1 || len > 4096)
		return 0;
	b.data = malloc(BUILT_MAX(len));
	if (!b.data)
		return 0;
	build(&b, data + 1, len - 1, data[0] & 1);
	dumpfile_read(b.data, b.len, NULL, touch_frame, NULL, &info);
	free(b.data);
	return 0;
}
