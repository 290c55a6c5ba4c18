/*
 * Unit tests of the JSON writer: its output must be json-c's, byte for
 * byte, for the same values, since records written by either are read by
 * the same tools and compared in tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "jsonw.h"

static void assert_same(const struct jsonw *w, struct json_object *obj)
{
	const char *expected = json_object_to_json_string_ext(obj,
						JSON_C_TO_STRING_PLAIN);

	assert_false(jsonw_failed(w));
	assert_int_equal(w->len, strlen(expected));
	assert_string_equal(w->buf, expected);
	json_object_put(obj);
}

static void jsonw_string__every_byte__escaped_as_json_c(void **state)
{
	struct jsonw w = { 0 };
	struct json_object *array = json_object_new_array();
	char s[3];
	int c;

	(void)state;
	jsonw_array_begin(&w);
	for (c = 0; c < 256; c++) {
		s[0] = 'a';
		s[1] = (char)c;
		s[2] = 'z';
		jsonw_string_len(&w, s, 3);
		json_object_array_add(array, json_object_new_string_len(s, 3));
	}
	jsonw_array_end(&w);
	assert_same(&w, array);
	jsonw_free(&w);
}

/*
 * Plain runs are scanned eight bytes at a time: every byte, at every
 * place in the words and the tail of a longer string, must still be seen.
 */
static void jsonw_string__every_byte_at_every_position__escaped_as_json_c(
	void **state)
{
	struct jsonw w = { 0 };
	char s[21];
	int c, at;

	(void)state;
	for (c = 0; c < 256; c++) {
		for (at = 0; at < (int)sizeof(s); at++) {
			struct json_object *array = json_object_new_array();

			memset(s, 'q', sizeof(s));
			s[at] = (char)c;
			jsonw_reset(&w);
			jsonw_array_begin(&w);
			jsonw_string_len(&w, s, sizeof(s));
			jsonw_array_end(&w);
			json_object_array_add(array,
				json_object_new_string_len(s, sizeof(s)));
			assert_same(&w, array);
		}
	}
	jsonw_free(&w);
}

static void jsonw_string__random_bytes__escaped_as_json_c(void **state)
{
	struct jsonw w = { 0 };
	char s[200];
	int round, i, len;

	(void)state;
	srand(7);
	for (round = 0; round < 500; round++) {
		struct json_object *obj = json_object_new_object();

		len = rand() % (int)sizeof(s);
		for (i = 0; i < len; i++)
			s[i] = (char)(rand() % 3 ? 32 + rand() % 96 : rand());
		jsonw_reset(&w);
		jsonw_object_begin(&w);
		jsonw_key(&w, "statement");
		jsonw_string_len(&w, s, len);
		jsonw_object_end(&w);
		json_object_object_add(obj, "statement",
				       json_object_new_string_len(s, len));
		assert_same(&w, obj);
	}
	jsonw_free(&w);
}

static void jsonw__nested_record__matches_json_c(void **state)
{
	static const int64_t ints[] = { 0, 1, -1, 9, 10, -10, 4242,
					INT64_MAX, INT64_MIN, UINT32_MAX };
	struct json_object *obj = json_object_new_object(), *list, *inner;
	struct jsonw w = { 0 };
	size_t i;

	(void)state;
	jsonw_object_begin(&w);
	jsonw_key(&w, "ints");
	jsonw_array_begin(&w);
	list = json_object_new_array();
	for (i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		jsonw_int(&w, ints[i]);
		json_object_array_add(list, json_object_new_int64(ints[i]));
	}
	jsonw_array_end(&w);
	json_object_object_add(obj, "ints", list);
	jsonw_key(&w, "empty_array");
	jsonw_array_begin(&w);
	jsonw_array_end(&w);
	json_object_object_add(obj, "empty_array", json_object_new_array());
	jsonw_key(&w, "empty_object");
	jsonw_object_begin(&w);
	jsonw_object_end(&w);
	json_object_object_add(obj, "empty_object", json_object_new_object());
	jsonw_key(&w, "session");
	jsonw_object_begin(&w);
	jsonw_key(&w, "user");
	jsonw_string(&w, "al/ice \"q\"");
	jsonw_key(&w, "ok");
	jsonw_bool(&w, true);
	jsonw_key(&w, "no");
	jsonw_bool(&w, false);
	jsonw_key(&w, "none");
	jsonw_null(&w);
	jsonw_object_end(&w);
	inner = json_object_new_object();
	json_object_object_add(inner, "user",
			       json_object_new_string("al/ice \"q\""));
	json_object_object_add(inner, "ok", json_object_new_boolean(1));
	json_object_object_add(inner, "no", json_object_new_boolean(0));
	json_object_object_add(inner, "none", NULL);
	json_object_object_add(obj, "session", inner);
	jsonw_key(&w, "values");
	jsonw_array_begin(&w);
	jsonw_null(&w);
	jsonw_string(&w, "?");
	jsonw_raw(&w, "{\"a\":1}", 7);
	jsonw_array_end(&w);
	list = json_object_new_array();
	json_object_array_add(list, NULL);
	json_object_array_add(list, json_object_new_string("?"));
	json_object_array_add(list, json_tokener_parse("{\"a\":1}"));
	json_object_object_add(obj, "values", list);
	jsonw_object_end(&w);
	assert_same(&w, obj);
	jsonw_free(&w);
}

static void jsonw_reset__after_use__starts_empty(void **state)
{
	struct jsonw w = { 0 };

	(void)state;
	jsonw_array_begin(&w);
	jsonw_int(&w, 1);
	jsonw_array_end(&w);
	jsonw_reset(&w);
	jsonw_array_begin(&w);
	jsonw_array_end(&w);
	assert_string_equal(w.buf, "[]");
	jsonw_free(&w);
	assert_null(w.buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(jsonw_string__every_byte__escaped_as_json_c),
		cmocka_unit_test(jsonw_string__every_byte_at_every_position__escaped_as_json_c),
		cmocka_unit_test(jsonw_string__random_bytes__escaped_as_json_c),
		cmocka_unit_test(jsonw__nested_record__matches_json_c),
		cmocka_unit_test(jsonw_reset__after_use__starts_empty),
	};

	return cmocka_run_group_tests_name("jsonw", tests, NULL, NULL);
}
