/*
 * Writes the seed corpus for fuzz_dumpfile: a masked and an encrypted
 * dump made by the recorder from a few statements around a violation.
 * Run by hand when the format changes: make fuzz-corpus.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "fuzz_key.h"
#include "recorder.h"
#include "../unit/dumptest.h"

static void add(struct recorder *rec, const char *sql)
{
	struct json_object *obj = json_object_new_object();

	json_object_object_add(obj, "command", json_object_new_string("UPDATE"));
	json_object_object_add(obj, "statement", json_object_new_string(sql));
	recorder_add(rec, 4242, 1, obj);
	json_object_put(obj);
}

static int write_one(const char *dir, const struct dumpfile_key *key)
{
	struct recorder_config cfg = { .statements = 4, .directory = dir,
				       .key = key, .mask_fn = mask_digits,
				       .policy_digest = "0123abcd" };
	struct json_object *session = json_object_new_object();
	struct recorder *rec;
	char path[4096];
	int err;

	if (recorder_create(&cfg, &rec))
		return 1;
	json_object_object_add(session, "user", json_object_new_string("al"));
	recorder_session(rec, 4242, 1, session);
	json_object_put(session);
	add(rec, "SELECT balance FROM accounts WHERE id = 1");
	add(rec, "UPDATE accounts SET balance = 10 WHERE id = 1");
	recorder_xact_end(rec, 4242, 1, "committed");
	err = recorder_dump(rec, 4242, "request", path, sizeof(path));
	if (!err)
		printf("%s\n", path);
	recorder_free(rec);
	return err ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct dumpfile_key key;

	if (argc != 2) {
		fprintf(stderr, "usage: make_corpus DIR\n");
		return 2;
	}
	dumpfile_key_init(&key, fuzz_master_key);
	return write_one(argv[1], NULL) | write_one(argv[1], &key);
}
