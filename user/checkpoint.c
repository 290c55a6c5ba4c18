/*
 * Checkpoint file. A line is "seq hash time signature": decimal seq, the
 * event's postings_hash in hex, UTC time, and the base64 Ed25519 signature
 * of "pgvigil.checkpoint.v1 seq hash time". The prefix names the format so
 * that a signature made for anything else never verifies as a checkpoint.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "checkpoint.h"

#define CHECKPOINT_FORMAT "pgvigil.checkpoint.v1"
#define SIGNATURE_LEN 64
#define SIGNATURE_B64_LEN 88

static EVP_PKEY *read_key(FILE *f, bool allow_public)
{
	EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);

	if (!key && allow_public) {
		rewind(f);
		key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	}
	return key;
}

int checkpoint_key_load(const char *path, bool allow_public, EVP_PKEY **out,
			char *err, size_t err_len)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *key;
	int ret;

	if (!f) {
		ret = -errno;
		snprintf(err, err_len, "cannot open checkpoint key '%s': %s",
			 path, strerror(-ret));
		return ret;
	}
	key = read_key(f, allow_public);
	fclose(f);
	if (!key || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
		EVP_PKEY_free(key);
		snprintf(err, err_len, "'%s' is not an Ed25519 %s key in PEM",
			 path, allow_public ? "private or public" : "private");
		return -EINVAL;
	}
	*out = key;
	return 0;
}

static int signed_text(char *buf, size_t len, int64_t seq, const char *hex,
		       const char *time_text)
{
	int n = snprintf(buf, len, CHECKPOINT_FORMAT " %lld %s %s",
			 (long long)seq, hex, time_text);

	return n < 0 || (size_t)n >= len ? -EINVAL : n;
}

static bool signature_valid(EVP_PKEY *key, const char *text, size_t len,
			    const char *b64)
{
	unsigned char signature[SIGNATURE_B64_LEN];
	EVP_MD_CTX *ctx;
	bool valid;

	if (strlen(b64) != SIGNATURE_B64_LEN ||
	    EVP_DecodeBlock(signature, (const unsigned char *)b64,
			    SIGNATURE_B64_LEN) < SIGNATURE_LEN)
		return false;
	ctx = EVP_MD_CTX_new();
	valid = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
		EVP_DigestVerify(ctx, signature, SIGNATURE_LEN,
				 (const unsigned char *)text, len) == 1;
	EVP_MD_CTX_free(ctx);
	return valid;
}

/* One line into 'cp'; false if malformed or not signed by 'key'. */
static bool parse_line(const char *line, EVP_PKEY *key, struct checkpoint *cp)
{
	char hex[65], time_text[40], b64[SIGNATURE_B64_LEN + 2], text[160];
	long long seq;
	char extra;
	int n;

	if (sscanf(line, "%lld %64s %39s %89s %c", &seq, hex, time_text, b64,
		   &extra) != 4 || seq <= 0 ||
	    ledger_hash_parse(hex, cp->hash))
		return false;
	cp->seq = seq;
	n = signed_text(text, sizeof(text), seq, hex, time_text);
	return n > 0 && signature_valid(key, text, n, b64);
}

static int set_add(struct checkpoint_set *set, const struct checkpoint *cp)
{
	struct checkpoint *grown;

	if (set->count % 64 == 0) {
		grown = realloc(set->items, (set->count + 64) * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		set->items = grown;
	}
	set->items[set->count++] = *cp;
	return 0;
}

static int by_seq(const void *a, const void *b)
{
	const struct checkpoint *x = a, *y = b;

	return (x->seq > y->seq) - (x->seq < y->seq);
}

static int read_lines(FILE *f, EVP_PKEY *key, struct checkpoint_set *set)
{
	struct checkpoint cp;
	char *line = NULL;
	size_t capacity = 0;
	int ret = 0;

	while (!ret && getline(&line, &capacity, f) > 0) {
		cp.line = ++set->lines;
		if (parse_line(line, key, &cp)) {
			ret = set_add(set, &cp);
		} else {
			set->bad_lines++;
			if (!set->first_bad_line)
				set->first_bad_line = cp.line;
		}
	}
	free(line);
	return ret;
}

int checkpoint_load(const char *path, EVP_PKEY *key, struct checkpoint_set *set,
		    char *err, size_t err_len)
{
	FILE *f = fopen(path, "r");
	int ret;

	memset(set, 0, sizeof(*set));
	if (!f && errno == ENOENT)
		return 0;
	if (!f) {
		ret = -errno;
		snprintf(err, err_len, "cannot open checkpoint file '%s': %s",
			 path, strerror(-ret));
		return ret;
	}
	ret = read_lines(f, key, set);
	fclose(f);
	if (ret) {
		snprintf(err, err_len, "cannot load '%s': %s", path,
			 strerror(-ret));
		checkpoint_set_free(set);
		return ret;
	}
	/* stable enough: equal seqs keep both entries, each is checked */
	qsort(set->items, set->count, sizeof(*set->items), by_seq);
	return 0;
}

void checkpoint_set_free(struct checkpoint_set *set)
{
	free(set->items);
	memset(set, 0, sizeof(*set));
}

const struct checkpoint *checkpoint_last(const struct checkpoint_set *set)
{
	return set->count ? &set->items[set->count - 1] : NULL;
}

static int sign(EVP_PKEY *key, const char *text, size_t len, char *b64)
{
	unsigned char signature[SIGNATURE_LEN];
	size_t signature_len = sizeof(signature);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok;

	ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
	     EVP_DigestSign(ctx, signature, &signature_len,
			    (const unsigned char *)text, len) == 1 &&
	     signature_len == SIGNATURE_LEN;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -EINVAL;
	EVP_EncodeBlock((unsigned char *)b64, signature, SIGNATURE_LEN);
	return 0;
}

static int append_line(const char *path, const char *line)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	size_t len = strlen(line);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, line, len) != (ssize_t)len)
		ret = errno ? -errno : -EIO;
	if (!ret && fdatasync(fd))
		ret = -errno;
	close(fd);
	return ret;
}

int checkpoint_append(const char *path, EVP_PKEY *key, int64_t seq,
		      const uint8_t hash[LEDGER_HASH_LEN], char *err,
		      size_t err_len)
{
	char hex[65], time_text[40], text[160], b64[SIGNATURE_B64_LEN + 1];
	char line[300];
	time_t now = time(NULL);
	struct tm tm;
	int n, ret;

	ledger_hash_hex(hash, hex);
	strftime(time_text, sizeof(time_text), "%Y-%m-%dT%H:%M:%SZ",
		 gmtime_r(&now, &tm));
	n = signed_text(text, sizeof(text), seq, hex, time_text);
	ret = n < 0 ? n : sign(key, text, n, b64);
	if (ret) {
		snprintf(err, err_len, "cannot sign a checkpoint: the key "
			 "must be an Ed25519 private key");
		return ret;
	}
	snprintf(line, sizeof(line), "%lld %s %s %s\n", (long long)seq, hex,
		 time_text, b64);
	ret = append_line(path, line);
	if (ret)
		snprintf(err, err_len, "cannot append to '%s': %s", path,
			 strerror(-ret));
	return ret;
}
