/*
 * Dump files: writer and reader of the format described in dumpfile.h.
 * The reader treats the file as hostile: every length is checked against
 * the remaining bytes and the format's limits before it is used, and the
 * chain is checked before a payload is decrypted, inflated or parsed.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zlib.h>

#include "dumpfile.h"

#define MAGIC		"PGVDUMP"	/* with its NUL: 8 bytes */
#define MAGIC_LEN	8
#define HEADER_FIXED	42		/* up to and including wrap_len */
#define WRAP_AAD_LEN	34		/* magic..flags, created, key_id */
#define FRAME_HDR_LEN	16
#define TAG_LEN		16
#define IV_LEN		12
#define STORED_MAX	(DUMPFILE_FRAME_MAX + 4096)
#define NONCE_FRAME	1u
#define NONCE_SEAL	2u
#define NONCE_WRAP	3u

static const char header_domain[] = "pgvigil.dump.v1";
static const char key_id_domain[] = "pgvigil.dump.keyid.v1";

struct dumpfile_writer {
	FILE *file;
	char *path;
	char *tmp_path;
	bool encrypted;
	uint8_t data_key[32];
	uint8_t chain[DUMPFILE_HASH_LEN];
	uint32_t frames;
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, v >> 32);
	put32(p + 4, v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

void dumpfile_hex(const uint8_t *bytes, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 15];
	}
	out[2 * len] = 0;
}

/* SHA-256 over up to three pieces; NULL pieces are skipped. */
static void sha256_3(const void *a, size_t a_len, const void *b, size_t b_len,
		     const void *c, size_t c_len, uint8_t out[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int out_len = 32;
	uint8_t hash[32];

	/* allocation failure leaves a zero hash, which never matches */
	memset(hash, 0, sizeof(hash));
	if (!md) {
		memcpy(out, hash, 32);
		return;
	}
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	if (a)
		EVP_DigestUpdate(md, a, a_len);
	if (b)
		EVP_DigestUpdate(md, b, b_len);
	if (c)
		EVP_DigestUpdate(md, c, c_len);
	EVP_DigestFinal_ex(md, hash, &out_len);
	EVP_MD_CTX_free(md);
	/* 'out' may be one of the inputs (the chain) */
	memcpy(out, hash, 32);
}

static void make_iv(uint8_t iv[IV_LEN], uint32_t domain, uint64_t index)
{
	put32(iv, domain);
	put64(iv + 4, index);
}

/*
 * AES-256-GCM one shot. Encrypts when 'encrypt', writing 'tag'; else
 * decrypts and checks 'tag', returning -EBADMSG on a mismatch.
 */
static int gcm(bool encrypt, const uint8_t key[32], const uint8_t iv[IV_LEN],
	       const uint8_t *aad, size_t aad_len, const uint8_t *in,
	       size_t len, uint8_t *out, uint8_t tag[TAG_LEN])
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n, ok;

	if (!ctx)
		return -ENOMEM;
	ok = EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv,
			       encrypt) == 1;
	if (ok && aad_len)
		ok = EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1;
	if (ok && len)
		ok = EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1;
	if (ok && !encrypt)
		ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
					 tag) == 1;
	if (ok)
		ok = EVP_CipherFinal_ex(ctx, out + len, &n) == 1;
	if (ok && encrypt)
		ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
					 tag) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
		return encrypt ? -EIO : -EBADMSG;
	return 0;
}

/* The default provider: blob = iv || AES-256-GCM(data key) || tag. */
static int local_wrap(const struct dumpfile_key *key, const uint8_t dek[32],
		      const uint8_t *aad, size_t aad_len, uint8_t *blob,
		      size_t *blob_len)
{
	if (*blob_len < IV_LEN + 32 + TAG_LEN)
		return -ENOSPC;
	if (RAND_bytes(blob, IV_LEN) != 1)
		return -EIO;
	*blob_len = IV_LEN + 32 + TAG_LEN;
	return gcm(true, key->master, blob, aad, aad_len, dek, 32,
		   blob + IV_LEN, blob + IV_LEN + 32);
}

static int local_unwrap(const struct dumpfile_key *key, const uint8_t *blob,
			size_t blob_len, const uint8_t *aad, size_t aad_len,
			uint8_t dek[32])
{
	uint8_t tag[TAG_LEN];

	if (blob_len != IV_LEN + 32 + TAG_LEN)
		return -EKEYREJECTED;
	memcpy(tag, blob + IV_LEN + 32, TAG_LEN);
	if (gcm(false, key->master, blob, aad, aad_len, blob + IV_LEN, 32,
		dek, tag))
		return -EKEYREJECTED;
	return 0;
}

void dumpfile_key_init(struct dumpfile_key *key, const uint8_t master[32])
{
	uint8_t id[32];

	memset(key, 0, sizeof(*key));
	memcpy(key->master, master, 32);
	sha256_3(key_id_domain, sizeof(key_id_domain) - 1, master, 32, NULL, 0,
		 id);
	memcpy(key->id, id, DUMPFILE_KEY_ID_LEN);
	key->wrap = local_wrap;
	key->unwrap = local_unwrap;
}

void dumpfile_key_clear(struct dumpfile_key *key)
{
	OPENSSL_cleanse(key, sizeof(*key));
}

/* 64 hex digits, whitespace allowed around them. */
static int parse_hex_key(const char *text, size_t len, uint8_t master[32])
{
	size_t i, n = 0;
	int hi = -1, v;

	for (i = 0; i < len; i++) {
		if (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' ||
		    text[i] == '\t')
			continue;
		v = OPENSSL_hexchar2int((unsigned char)text[i]);
		if (v < 0 || n == 32)
			return -EINVAL;
		if (hi < 0) {
			hi = v;
			continue;
		}
		master[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	return n == 32 && hi < 0 ? 0 : -EINVAL;
}

int dumpfile_key_load(const char *path, struct dumpfile_key *key)
{
	uint8_t master[32];
	char buf[256];
	struct stat st;
	ssize_t n;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		err = -errno;
	else if (st.st_mode & 077)
		err = -EPERM;	/* a readable master key is a leaked one */
	n = err ? 0 : read(fd, buf, sizeof(buf));
	if (!err && n < 0)
		err = -errno;
	close(fd);
	if (!err && n == 32)
		memcpy(master, buf, 32);
	else if (!err)
		err = parse_hex_key(buf, (size_t)n, master);
	if (!err)
		dumpfile_key_init(key, master);
	OPENSSL_cleanse(buf, sizeof(buf));
	OPENSSL_cleanse(master, sizeof(master));
	return err;
}

static int write_all(struct dumpfile_writer *w, const void *p, size_t len)
{
	if (len && fwrite(p, 1, len, w->file) != len)
		return -EIO;
	return 0;
}

/* Build and write the header; the header hash starts the chain. */
static int write_header(struct dumpfile_writer *w,
			const struct dumpfile_key *key, bool masked)
{
	uint8_t hdr[HEADER_FIXED + DUMPFILE_WRAP_MAX], aad[WRAP_AAD_LEN];
	size_t wrap_len = 0;
	struct timespec ts;
	int err;

	clock_gettime(CLOCK_REALTIME, &ts);
	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, MAGIC, MAGIC_LEN);
	put16(hdr + 8, DUMPFILE_VERSION);
	put16(hdr + 10, (w->encrypted ? DUMPFILE_F_ENCRYPTED : 0) |
			(masked ? DUMPFILE_F_MASKED : 0));
	put64(hdr + 16, (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec);
	if (key) {
		memcpy(hdr + 24, key->id, DUMPFILE_KEY_ID_LEN);
		memcpy(aad, hdr, 12);
		memcpy(aad + 12, hdr + 16, WRAP_AAD_LEN - 12);
		wrap_len = DUMPFILE_WRAP_MAX;
		err = key->wrap(key, w->data_key, aad, sizeof(aad),
				hdr + HEADER_FIXED, &wrap_len);
		if (err)
			return err;
		if (wrap_len == 0 || wrap_len > DUMPFILE_WRAP_MAX)
			return -EINVAL;
	}
	put16(hdr + 40, (uint16_t)wrap_len);
	put32(hdr + 12, HEADER_FIXED + wrap_len);
	sha256_3(header_domain, sizeof(header_domain) - 1, hdr,
		 HEADER_FIXED + wrap_len, NULL, 0, w->chain);
	err = write_all(w, hdr, HEADER_FIXED + wrap_len);
	return err ? err : write_all(w, w->chain, DUMPFILE_HASH_LEN);
}

static void writer_free(struct dumpfile_writer *w)
{
	if (w->file)
		fclose(w->file);
	OPENSSL_cleanse(w->data_key, sizeof(w->data_key));
	free(w->path);
	free(w->tmp_path);
	free(w);
}

int dumpfile_create(const char *path, const struct dumpfile_key *key,
		    bool masked, struct dumpfile_writer **out)
{
	struct dumpfile_writer *w = calloc(1, sizeof(*w));
	int fd, err;

	if (!w)
		return -ENOMEM;
	w->path = strdup(path);
	if (!w->path || asprintf(&w->tmp_path, "%s.tmp", path) < 0) {
		w->tmp_path = NULL;
		writer_free(w);
		return -ENOMEM;
	}
	fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = -errno;
		writer_free(w);
		return err;
	}
	w->file = fdopen(fd, "w");
	if (!w->file) {
		err = -errno;
		close(fd);
		dumpfile_abort(w);
		return err;
	}
	w->encrypted = key != NULL;
	if (key && RAND_bytes(w->data_key, sizeof(w->data_key)) != 1) {
		dumpfile_abort(w);
		return -EIO;
	}
	err = write_header(w, key, masked);
	if (err) {
		dumpfile_abort(w);
		return err;
	}
	*out = w;
	return 0;
}

/*
 * Compress 'text' into *stored, then fill in the frame header, whose
 * stored length is known only now and which the encryption binds.
 */
static int pack_payload(struct dumpfile_writer *w, uint8_t *hdr,
			const char *text, size_t len, uint8_t **stored,
			size_t *stored_len)
{
	uLongf zlen = compressBound(len);
	uint8_t *z = malloc(zlen + TAG_LEN), aad[FRAME_HDR_LEN + 32];
	uint8_t iv[IV_LEN];

	if (!z)
		return -ENOMEM;
	if (compress2(z, &zlen, (const uint8_t *)text, len, 6) != Z_OK) {
		free(z);
		return -EIO;
	}
	*stored = z;
	*stored_len = zlen + (w->encrypted ? TAG_LEN : 0);
	memcpy(hdr, "FRM1", 4);
	put32(hdr + 4, w->frames);
	put32(hdr + 8, (uint32_t)*stored_len);
	put32(hdr + 12, (uint32_t)len);
	if (!w->encrypted)
		return 0;
	memcpy(aad, hdr, FRAME_HDR_LEN);
	memcpy(aad + FRAME_HDR_LEN, w->chain, 32);
	make_iv(iv, NONCE_FRAME, w->frames);
	/* GCM is a stream mode: in place is fine */
	return gcm(true, w->data_key, iv, aad, sizeof(aad), z, zlen, z,
		   z + zlen);
}

int dumpfile_add(struct dumpfile_writer *w, struct json_object *frame)
{
	const char *text = json_object_to_json_string_ext(frame,
						JSON_C_TO_STRING_PLAIN);
	size_t len = text ? strlen(text) : 0, stored_len;
	uint8_t hdr[FRAME_HDR_LEN], *stored = NULL;
	int err;

	if (!text)
		return -ENOMEM;
	if (len == 0 || len > DUMPFILE_FRAME_MAX)
		return -EMSGSIZE;
	if (w->frames >= DUMPFILE_FRAMES_MAX)
		return -E2BIG;
	err = pack_payload(w, hdr, text, len, &stored, &stored_len);
	if (!err) {
		sha256_3(w->chain, 32, hdr, sizeof(hdr), stored, stored_len,
			 w->chain);
		err = write_all(w, hdr, sizeof(hdr));
	}
	if (!err)
		err = write_all(w, stored, stored_len);
	if (!err)
		err = write_all(w, w->chain, 32);
	free(stored);
	if (!err)
		w->frames++;
	return err;
}

/* Make the rename durable: it lives in the directory's data. */
static int sync_parent(const char *path)
{
	char *dir = strdup(path), *slash;
	int fd, err = 0;

	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = 0;
	fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		err = -errno;
	if (fd >= 0)
		close(fd);
	free(dir);
	return err;
}

int dumpfile_seal(struct dumpfile_writer *w, uint8_t seal_hash[32])
{
	uint8_t seal[8 + TAG_LEN], hash[32], aad[32 + 8], iv[IV_LEN];
	size_t seal_len = 8;
	int err = 0;

	memcpy(seal, "SEAL", 4);
	put32(seal + 4, w->frames);
	if (w->encrypted) {
		memcpy(aad, w->chain, 32);
		memcpy(aad + 32, seal, 8);
		make_iv(iv, NONCE_SEAL, w->frames);
		err = gcm(true, w->data_key, iv, aad, sizeof(aad), NULL, 0,
			  NULL, seal + 8);
		seal_len += TAG_LEN;
	}
	sha256_3(w->chain, 32, seal, seal_len, NULL, 0, hash);
	if (!err)
		err = write_all(w, seal, seal_len);
	if (!err)
		err = write_all(w, hash, sizeof(hash));
	if (!err && (fflush(w->file) || fsync(fileno(w->file))))
		err = -errno;
	if (!err && rename(w->tmp_path, w->path))
		err = -errno;
	if (!err)
		err = sync_parent(w->path);
	if (err) {
		dumpfile_abort(w);
		return err;
	}
	if (seal_hash)
		memcpy(seal_hash, hash, 32);
	writer_free(w);
	return 0;
}

void dumpfile_abort(struct dumpfile_writer *w)
{
	if (!w)
		return;
	unlink(w->tmp_path);
	writer_free(w);
}

/* A read in progress over untrusted bytes. */
struct reader {
	const uint8_t *data;
	size_t len;
	size_t off;
	const struct dumpfile_key *key;
	bool encrypted;
	bool decode;		/* frames are decrypted, inflated, parsed */
	uint8_t data_key[32];
	uint8_t chain[DUMPFILE_HASH_LEN];
	uint32_t frames;
	struct dumpfile_info *info;
	dumpfile_frame_fn fn;
	void *arg;
};

static int report(struct reader *r, int err, int frame, uint64_t offset,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Record what went wrong and where; returns 'err'. */
static int report(struct reader *r, int err, int frame, uint64_t offset,
		  const char *fmt, ...)
{
	va_list ap;

	r->info->damage_frame = frame;
	r->info->damage_offset = offset;
	va_start(ap, fmt);
	vsnprintf(r->info->message, sizeof(r->info->message), fmt, ap);
	va_end(ap);
	return err;
}

static size_t remaining(const struct reader *r)
{
	return r->len - r->off;
}

static int open_data_key(struct reader *r, const uint8_t *hdr,
			 uint16_t wrap_len)
{
	uint8_t aad[WRAP_AAD_LEN];
	char want[33], have[33];

	if (memcmp(r->key->id, hdr + 24, DUMPFILE_KEY_ID_LEN)) {
		dumpfile_hex(hdr + 24, DUMPFILE_KEY_ID_LEN, want);
		dumpfile_hex(r->key->id, DUMPFILE_KEY_ID_LEN, have);
		return report(r, -EKEYREJECTED, -1, 24,
			      "dump was written under key id %s, not %s",
			      want, have);
	}
	memcpy(aad, hdr, 12);
	memcpy(aad + 12, hdr + 16, WRAP_AAD_LEN - 12);
	if (r->key->unwrap(r->key, hdr + HEADER_FIXED, wrap_len, aad,
			   sizeof(aad), r->data_key))
		return report(r, -EKEYREJECTED, -1, HEADER_FIXED,
			      "the key does not open this dump's data key");
	return 0;
}

/* Check the header hash before believing any field but the length. */
static int read_header(struct reader *r)
{
	const uint8_t *hdr = r->data;
	uint32_t header_len;
	uint16_t flags, wrap_len;
	uint8_t hash[32];

	if (r->len < MAGIC_LEN || memcmp(hdr, MAGIC, MAGIC_LEN))
		return report(r, -EBADMSG, -1, 0, "not a pgvigil dump");
	if (r->len < HEADER_FIXED + DUMPFILE_HASH_LEN)
		return report(r, -EBADMSG, -1, r->len,
			      "file ends inside the header (truncated)");
	header_len = get32(hdr + 12);
	if (header_len < HEADER_FIXED ||
	    header_len > HEADER_FIXED + DUMPFILE_WRAP_MAX ||
	    header_len + DUMPFILE_HASH_LEN > r->len)
		return report(r, -EBADMSG, -1, 12,
			      "implausible header length %u", header_len);
	sha256_3(header_domain, sizeof(header_domain) - 1, hdr, header_len,
		 NULL, 0, hash);
	if (memcmp(hash, hdr + header_len, 32))
		return report(r, -EBADMSG, -1, 0,
			      "header damaged (bytes 0-%u)",
			      header_len + DUMPFILE_HASH_LEN - 1);
	r->info->version = get16(hdr + 8);
	flags = r->info->flags = get16(hdr + 10);
	r->info->created_ns = get64(hdr + 16);
	memcpy(r->info->key_id, hdr + 24, DUMPFILE_KEY_ID_LEN);
	if (r->info->version != DUMPFILE_VERSION ||
	    (flags & ~(DUMPFILE_F_ENCRYPTED | DUMPFILE_F_MASKED)))
		return report(r, -EPROTONOSUPPORT, -1, 8,
			      "unsupported dump version %u flags 0x%x",
			      r->info->version, flags);
	r->encrypted = flags & DUMPFILE_F_ENCRYPTED;
	wrap_len = get16(hdr + 40);
	if (header_len != HEADER_FIXED + (uint32_t)wrap_len ||
	    r->encrypted != (wrap_len > 0))
		return report(r, -EBADMSG, -1, 40, "inconsistent key wrap");
	memcpy(r->chain, hash, 32);
	r->off = header_len + DUMPFILE_HASH_LEN;
	if (r->encrypted && r->key)
		return open_data_key(r, hdr, wrap_len);
	return 0;
}

/* JSON text of exactly 'len' bytes that is an object, or NULL. */
static struct json_object *parse_object(const char *text, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *obj;

	if (!tok)
		return NULL;
	obj = json_tokener_parse_ex(tok, text, (int)len);
	if (obj && (json_tokener_get_error(tok) != json_tokener_success ||
		    json_tokener_get_parse_end(tok) != len ||
		    !json_object_is_type(obj, json_type_object))) {
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

/* Decrypt in a copy, inflate within plain_len, parse, hand over. */
static int decode_frame(struct reader *r, const uint8_t *hdr,
			const uint8_t *stored, size_t stored_len,
			uint32_t plain_len, size_t at)
{
	uint8_t aad[FRAME_HDR_LEN + 32], iv[IV_LEN], tag[TAG_LEN];
	uint8_t *z = NULL, *plain;
	uLongf out_len = plain_len;
	struct json_object *obj = NULL;
	int err = 0;

	if (r->encrypted) {
		if (stored_len < TAG_LEN)
			return report(r, -EBADMSG, r->frames, at,
				      "frame %u too short", r->frames);
		z = malloc(stored_len);
		if (!z)
			return -ENOMEM;
		memcpy(aad, hdr, FRAME_HDR_LEN);
		memcpy(aad + FRAME_HDR_LEN, r->chain, 32);
		make_iv(iv, NONCE_FRAME, r->frames);
		stored_len -= TAG_LEN;
		memcpy(tag, stored + stored_len, TAG_LEN);
		if (gcm(false, r->data_key, iv, aad, sizeof(aad), stored,
			stored_len, z, tag)) {
			free(z);
			return report(r, -EBADMSG, r->frames, at,
				      "frame %u fails authentication",
				      r->frames);
		}
		stored = z;
	}
	plain = malloc(plain_len + 1);
	if (!plain)
		err = -ENOMEM;
	else if (uncompress(plain, &out_len, stored, stored_len) != Z_OK ||
		 out_len != plain_len ||
		 !(obj = parse_object((char *)plain, plain_len)))
		err = report(r, -EBADMSG, r->frames, at,
			     "frame %u does not decode", r->frames);
	free(z);
	free(plain);
	if (!err && r->fn)
		err = r->fn(r->arg, r->frames, obj);
	json_object_put(obj);
	return err;
}

static int read_seal(struct reader *r)
{
	const uint8_t *seal = r->data + r->off;
	size_t seal_len = 8 + (r->encrypted ? TAG_LEN : 0);
	uint8_t hash[32], aad[32 + 8], iv[IV_LEN], tag[TAG_LEN];

	if (remaining(r) < seal_len + DUMPFILE_HASH_LEN)
		return report(r, -EBADMSG, -2, r->off,
			      "file ends inside the seal (truncated)");
	if (get32(seal + 4) != r->frames)
		return report(r, -EBADMSG, -2, r->off + 4,
			      "seal counts %u frames, file has %u",
			      get32(seal + 4), r->frames);
	sha256_3(r->chain, 32, seal, seal_len, NULL, 0, hash);
	if (memcmp(hash, seal + seal_len, 32))
		return report(r, -EBADMSG, -2, r->off,
			      "seal does not match the chain");
	if (r->encrypted && r->decode) {
		memcpy(aad, r->chain, 32);
		memcpy(aad + 32, seal, 8);
		memcpy(tag, seal + 8, TAG_LEN);
		make_iv(iv, NONCE_SEAL, r->frames);
		if (gcm(false, r->data_key, iv, aad, sizeof(aad), NULL, 0,
			NULL, tag))
			return report(r, -EBADMSG, -2, r->off + 8,
				      "seal fails authentication");
	}
	if (remaining(r) != seal_len + DUMPFILE_HASH_LEN)
		return report(r, -EBADMSG, -2, r->off + seal_len + 32,
			      "bytes after the seal");
	memcpy(r->info->seal_hash, hash, 32);
	r->off = r->len;
	return 0;
}

/* One frame at r->off: bounds, then chain, then contents. */
static int read_frame(struct reader *r)
{
	const uint8_t *hdr = r->data + r->off;
	uint32_t stored_len, plain_len, n = r->frames;
	uint8_t chain[32];
	int err;

	if (get32(hdr + 4) != n)
		return report(r, -EBADMSG, n, r->off + 4,
			      "frame %u carries index %u", n, get32(hdr + 4));
	stored_len = get32(hdr + 8);
	plain_len = get32(hdr + 12);
	if (stored_len > STORED_MAX || plain_len == 0 ||
	    plain_len > DUMPFILE_FRAME_MAX)
		return report(r, -EBADMSG, n, r->off + 8,
			      "frame %u has implausible lengths", n);
	if (remaining(r) - FRAME_HDR_LEN < (size_t)stored_len + 32)
		return report(r, -EBADMSG, n, r->off,
			      "frame %u runs past the end (truncated)", n);
	sha256_3(r->chain, 32, hdr, FRAME_HDR_LEN, hdr + FRAME_HDR_LEN,
		 stored_len, chain);
	if (memcmp(chain, hdr + FRAME_HDR_LEN + stored_len, 32))
		return report(r, -EBADMSG, n, r->off,
			      "frame %u damaged (bytes %zu-%zu)", n, r->off,
			      r->off + FRAME_HDR_LEN + stored_len + 31);
	if (r->decode) {
		err = decode_frame(r, hdr, hdr + FRAME_HDR_LEN, stored_len,
				   plain_len, r->off);
		if (err)
			return err;
	}
	memcpy(r->chain, chain, 32);
	r->off += FRAME_HDR_LEN + stored_len + 32;
	r->frames++;
	return 0;
}

static int read_body(struct reader *r)
{
	int err;

	for (;;) {
		if (remaining(r) < FRAME_HDR_LEN &&
		    !(remaining(r) >= 4 && !memcmp(r->data + r->off, "SEAL", 4)))
			return report(r, -EBADMSG, -2, r->off,
				      "no seal after frame %u (truncated)",
				      r->frames);
		if (!memcmp(r->data + r->off, "SEAL", 4))
			return read_seal(r);
		if (memcmp(r->data + r->off, "FRM1", 4))
			return report(r, -EBADMSG, r->frames, r->off,
				      "expected frame %u or the seal",
				      r->frames);
		if (r->frames >= DUMPFILE_FRAMES_MAX)
			return report(r, -EBADMSG, r->frames, r->off,
				      "more than %u frames",
				      DUMPFILE_FRAMES_MAX);
		err = read_frame(r);
		if (err)
			return err;
	}
}

int dumpfile_read(const uint8_t *data, size_t len,
		  const struct dumpfile_key *key, dumpfile_frame_fn fn,
		  void *arg, struct dumpfile_info *info)
{
	struct reader r = { .data = data, .len = len, .key = key,
			    .info = info, .fn = fn, .arg = arg };
	int err;

	memset(info, 0, sizeof(*info));
	info->damage_frame = -1;
	err = read_header(&r);
	if (!err && r.encrypted && !key && fn)
		err = report(&r, -ENOKEY, -1, 0,
			     "dump is encrypted: a key is needed");
	r.decode = !r.encrypted || key;
	if (!err)
		err = read_body(&r);
	info->frames = r.frames;
	info->authenticated = !err && r.encrypted && key;
	OPENSSL_cleanse(r.data_key, sizeof(r.data_key));
	if (!err)
		info->damage_frame = 0;
	return err;
}

int dumpfile_read_file(const char *path, const struct dumpfile_key *key,
		       dumpfile_frame_fn fn, void *arg,
		       struct dumpfile_info *info)
{
	struct stat st;
	uint8_t *data;
	size_t len;
	ssize_t n;
	int fd, err;

	memset(info, 0, sizeof(*info));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	if (st.st_size > DUMPFILE_FILE_MAX) {
		close(fd);
		return -EFBIG;
	}
	data = malloc(st.st_size ? st.st_size : 1);
	if (!data) {
		close(fd);
		return -ENOMEM;
	}
	for (len = 0, err = 0; len < (size_t)st.st_size; len += n) {
		n = read(fd, data + len, st.st_size - len);
		if (n <= 0) {
			err = n < 0 ? -errno : 0;
			break;
		}
	}
	close(fd);
	if (!err)
		err = dumpfile_read(data, len, key, fn, arg, info);
	free(data);
	return err;
}
