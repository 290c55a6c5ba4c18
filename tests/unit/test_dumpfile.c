/* Unit tests of the dump file format: round trip, damage, keys. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "dumpfile.h"

static const uint8_t master_a[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
static const uint8_t master_b[32] = { 9, 9, 9 };

static char *temp_path(void)
{
	static char path[64];
	int fd;

	strcpy(path, "/tmp/pgvigil-dump-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	return path;
}

/* A small dump of 'frames' frames; returns its bytes, length in *len. */
static uint8_t *make_dump(const struct dumpfile_key *key, int frames,
			  size_t *len)
{
	struct dumpfile_writer *w;
	struct json_object *obj;
	char *path = temp_path();
	uint8_t *data;
	FILE *f;
	int i;

	assert_int_equal(dumpfile_create(path, key, key == NULL, &w), 0);
	for (i = 0; i < frames; i++) {
		obj = json_object_new_object();
		json_object_object_add(obj, "n", json_object_new_int(i));
		json_object_object_add(obj, "statement",
			json_object_new_string("UPDATE accounts SET x = 1"));
		assert_int_equal(dumpfile_add(w, obj), 0);
		json_object_put(obj);
	}
	assert_int_equal(dumpfile_seal(w, NULL), 0);
	f = fopen(path, "rb");
	assert_non_null(f);
	data = malloc(1 << 16);
	*len = fread(data, 1, 1 << 16, f);
	fclose(f);
	unlink(path);
	return data;
}

static int count_frames(void *arg, uint32_t index, struct json_object *frame)
{
	struct json_object *n;
	int *count = arg;

	assert_true(json_object_object_get_ex(frame, "n", &n));
	assert_int_equal(json_object_get_int(n), (int)index);
	(*count)++;
	return 0;
}

static void dumpfile_read__round_trip__returns_frames(void **state)
{
	struct dumpfile_info info;
	struct dumpfile_key key;
	uint8_t *data;
	size_t len;
	int count = 0;

	(void)state;
	data = make_dump(NULL, 3, &len);
	assert_int_equal(dumpfile_read(data, len, NULL, count_frames, &count,
				       &info), 0);
	assert_int_equal(count, 3);
	assert_int_equal(info.frames, 3);
	assert_true(info.flags & DUMPFILE_F_MASKED);
	free(data);

	dumpfile_key_init(&key, master_a);
	data = make_dump(&key, 3, &len);
	count = 0;
	assert_int_equal(dumpfile_read(data, len, &key, count_frames, &count,
				       &info), 0);
	assert_int_equal(count, 3);
	assert_true(info.authenticated);
	assert_true(info.flags & DUMPFILE_F_ENCRYPTED);
	free(data);
}

/* Flip each byte in turn: every read must fail and say where. */
static void check_every_flip(const struct dumpfile_key *key)
{
	struct dumpfile_info info;
	uint8_t *data;
	size_t len, i;
	int err;

	data = make_dump(key, 2, &len);
	for (i = 0; i < len; i++) {
		data[i] ^= 0x20;
		err = dumpfile_read(data, len, key, NULL, NULL, &info);
		if (err != -EBADMSG)
			fail_msg("flip at %zu: read returned %d", i, err);
		if (info.damage_offset > len || !info.message[0])
			fail_msg("flip at %zu: no position", i);
		data[i] ^= 0x20;
	}
	assert_int_equal(dumpfile_read(data, len, key, NULL, NULL, &info), 0);
	free(data);
}

static void dumpfile_read__any_byte_flipped__names_damage(void **state)
{
	struct dumpfile_key key;

	(void)state;
	check_every_flip(NULL);
	dumpfile_key_init(&key, master_a);
	check_every_flip(&key);
}

static void dumpfile_read__flip_without_key__still_detected(void **state)
{
	struct dumpfile_info info;
	struct dumpfile_key key;
	uint8_t *data;
	size_t len, i;

	(void)state;
	dumpfile_key_init(&key, master_a);
	data = make_dump(&key, 2, &len);
	for (i = 0; i < len; i++) {
		data[i] ^= 1;
		assert_int_equal(dumpfile_read(data, len, NULL, NULL, NULL,
					       &info), -EBADMSG);
		data[i] ^= 1;
	}
	assert_int_equal(dumpfile_read(data, len, NULL, NULL, NULL, &info), 0);
	assert_false(info.authenticated);
	free(data);
}

static void dumpfile_read__wrong_key__refused(void **state)
{
	struct dumpfile_key key_a, key_b;
	struct dumpfile_info info;
	uint8_t *data;
	size_t len;
	int count = 0;

	(void)state;
	dumpfile_key_init(&key_a, master_a);
	dumpfile_key_init(&key_b, master_b);
	data = make_dump(&key_a, 2, &len);
	assert_int_equal(dumpfile_read(data, len, &key_b, count_frames, &count,
				       &info), -EKEYREJECTED);
	assert_int_equal(count, 0);
	/* same id, different material: the unwrap itself must refuse */
	memcpy(key_b.id, key_a.id, sizeof(key_a.id));
	assert_int_equal(dumpfile_read(data, len, &key_b, count_frames, &count,
				       &info), -EKEYREJECTED);
	assert_int_equal(count, 0);
	assert_int_equal(dumpfile_read(data, len, NULL, count_frames, &count,
				       &info), -ENOKEY);
	free(data);
}

static void dumpfile_read__truncated__detected(void **state)
{
	struct dumpfile_info info;
	uint8_t *data;
	size_t len, cut;

	(void)state;
	data = make_dump(NULL, 3, &len);
	for (cut = 0; cut < len; cut++) {
		assert_int_equal(dumpfile_read(data, cut, NULL, NULL, NULL,
					       &info), -EBADMSG);
		assert_true(info.damage_offset <= cut);
	}
	free(data);
}

static void dumpfile_key_load__loose_mode__refused(void **state)
{
	struct dumpfile_key key, direct;
	char *path = temp_path();
	FILE *f = fopen(path, "w");

	(void)state;
	fprintf(f, "0102030405060708090a0000000000000000000000000000000000"
		   "0000000000\n");
	fclose(f);
	chmod(path, 0644);
	assert_int_equal(dumpfile_key_load(path, &key), -EPERM);
	chmod(path, 0600);
	assert_int_equal(dumpfile_key_load(path, &key), 0);
	dumpfile_key_init(&direct, master_a);
	assert_memory_equal(key.master, direct.master, 32);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(dumpfile_read__round_trip__returns_frames),
		cmocka_unit_test(dumpfile_read__any_byte_flipped__names_damage),
		cmocka_unit_test(dumpfile_read__flip_without_key__still_detected),
		cmocka_unit_test(dumpfile_read__wrong_key__refused),
		cmocka_unit_test(dumpfile_read__truncated__detected),
		cmocka_unit_test(dumpfile_key_load__loose_mode__refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
