/* Unit tests of the OID map, against a plain array as the model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "oidmap.h"

static void oidmap__random_operations__match_model(void **state)
{
	static void *model[4096];
	struct oidmap map = { 0 };
	uint32_t key, i;
	size_t count = 0;

	(void)state;
	srand(7);
	for (i = 0; i < 200000; i++) {
		key = rand() % 4096;
		if (rand() % 3) {
			void *value = (void *)(uintptr_t)(i + 1);

			assert_int_equal(oidmap_put(&map, key, value), 0);
			count += !model[key];
			model[key] = value;
		} else {
			assert_ptr_equal(oidmap_remove(&map, key), model[key]);
			count -= !!model[key];
			model[key] = NULL;
		}
		assert_ptr_equal(oidmap_get(&map, key), model[key]);
	}
	assert_int_equal(map.count, count);
	for (key = 0; key < 4096; key++)
		assert_ptr_equal(oidmap_get(&map, key), model[key]);
	oidmap_free(&map);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(oidmap__random_operations__match_model),
	};

	return cmocka_run_group_tests_name("oidmap", tests, NULL, NULL);
}
