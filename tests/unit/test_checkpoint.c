/* Unit tests of signed checkpoints: sign, append, load, detect edits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/pem.h>

#include "checkpoint.h"

struct fixture {
	char key_path[64];
	char file_path[64];
	EVP_PKEY *key;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	FILE *out;
	int fd;

	strcpy(f->key_path, "/tmp/pgvigil-ckey-XXXXXX");
	strcpy(f->file_path, "/tmp/pgvigil-cfile-XXXXXX");
	fd = mkstemp(f->key_path);
	out = fdopen(fd, "w");
	f->key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(f->key);
	assert_true(PEM_write_PrivateKey(out, f->key, NULL, NULL, 0, NULL, NULL));
	fclose(out);
	close(mkstemp(f->file_path));
	unlink(f->file_path);	/* absent: the first append makes it */
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	unlink(f->key_path);
	unlink(f->file_path);
	EVP_PKEY_free(f->key);
	free(f);
	return 0;
}

static void append_two(struct fixture *f, EVP_PKEY *key)
{
	uint8_t hash[LEDGER_HASH_LEN];
	char err[256];

	memset(hash, 0xab, sizeof(hash));
	assert_int_equal(checkpoint_append(f->file_path, key, 300, hash, err,
					   sizeof(err)), 0);
	hash[0] = 1;
	assert_int_equal(checkpoint_append(f->file_path, key, 42, hash, err,
					   sizeof(err)), 0);
}

static void checkpoint_load__appended__sorted_and_valid(void **state)
{
	struct fixture *f = *state;
	struct checkpoint_set set;
	EVP_PKEY *key;
	char err[256];

	assert_int_equal(checkpoint_key_load(f->key_path, false, &key, err,
					     sizeof(err)), 0);
	append_two(f, key);
	assert_int_equal(checkpoint_load(f->file_path, key, &set, err,
					 sizeof(err)), 0);
	assert_int_equal(set.count, 2);
	assert_int_equal(set.bad_lines, 0);
	assert_int_equal(set.items[0].seq, 42);
	assert_int_equal(set.items[0].hash[0], 1);
	assert_int_equal(checkpoint_last(&set)->seq, 300);
	checkpoint_set_free(&set);
	EVP_PKEY_free(key);
}

static void checkpoint_load__edited_line__rejected(void **state)
{
	struct fixture *f = *state;
	struct checkpoint_set set;
	char err[256], line[300];
	FILE *file;

	append_two(f, f->key);
	file = fopen(f->file_path, "r+");
	assert_non_null(fgets(line, sizeof(line), file));
	rewind(file);
	line[0] = '9';		/* seq 300 becomes 900, signature unchanged */
	fputs(line, file);
	fclose(file);
	assert_int_equal(checkpoint_load(f->file_path, f->key, &set, err,
					 sizeof(err)), 0);
	assert_int_equal(set.count, 1);
	assert_int_equal(set.bad_lines, 1);
	assert_int_equal(set.first_bad_line, 1);
	checkpoint_set_free(&set);
}

static void checkpoint_load__other_key__all_rejected(void **state)
{
	struct fixture *f = *state;
	EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	struct checkpoint_set set;
	char err[256];

	append_two(f, f->key);
	assert_int_equal(checkpoint_load(f->file_path, other, &set, err,
					 sizeof(err)), 0);
	assert_int_equal(set.count, 0);
	assert_int_equal(set.bad_lines, 2);
	EVP_PKEY_free(other);
}

static void checkpoint_load__missing_file__empty(void **state)
{
	struct fixture *f = *state;
	struct checkpoint_set set;
	char err[256];

	assert_int_equal(checkpoint_load(f->file_path, f->key, &set, err,
					 sizeof(err)), 0);
	assert_int_equal(set.count, 0);
	assert_null(checkpoint_last(&set));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(checkpoint_load__appended__sorted_and_valid, setup, teardown),
		cmocka_unit_test_setup_teardown(checkpoint_load__edited_line__rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(checkpoint_load__other_key__all_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(checkpoint_load__missing_file__empty, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
