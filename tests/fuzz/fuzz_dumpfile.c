/*
 * libFuzzer target for the dump reader: any bytes must come back as a
 * result, never a crash, a leak or an unbounded allocation. Each input is
 * read without a key and with the key the corpus was written under, so
 * the decrypting path is reached too.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "dumpfile.h"
#include "fuzz_key.h"

static int touch_frame(void *arg, uint32_t index, struct json_object *frame)
{
	(void)arg;
	(void)index;
	/* serializing walks the whole object the reader built */
	return json_object_to_json_string(frame) ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct dumpfile_info info;
	struct dumpfile_key key;

	dumpfile_read(data, len, NULL, NULL, NULL, &info);
	dumpfile_read(data, len, NULL, touch_frame, NULL, &info);
	dumpfile_key_init(&key, fuzz_master_key);
	dumpfile_read(data, len, &key, touch_frame, NULL, &info);
	return 0;
}
