/*
 * Open-addressing hash map, see oidmap.h.
 */
#include <errno.h>
#include <stdlib.h>

#include "oidmap.h"

static size_t slot_of(const struct oidmap *map, uint32_t key)
{
	/* Fibonacci hashing spreads sequential OIDs and pids */
	return (size_t)((key * 2654435769u) >> 7) & (map->capacity - 1);
}

void *oidmap_get(const struct oidmap *map, uint32_t key)
{
	size_t i;

	if (!map->capacity)
		return NULL;
	for (i = slot_of(map, key); map->values[i];
	     i = (i + 1) & (map->capacity - 1))
		if (map->keys[i] == key)
			return map->values[i];
	return NULL;
}

static int grow(struct oidmap *map)
{
	struct oidmap bigger = { .capacity = map->capacity ? map->capacity * 2
							  : 64 };
	size_t i;

	bigger.keys = calloc(bigger.capacity, sizeof(*bigger.keys));
	bigger.values = calloc(bigger.capacity, sizeof(*bigger.values));
	if (!bigger.keys || !bigger.values) {
		free(bigger.keys);
		free(bigger.values);
		return -ENOMEM;
	}
	oidmap_foreach(map, i)
		oidmap_put(&bigger, map->keys[i], map->values[i]);
	free(map->keys);
	free(map->values);
	*map = bigger;
	return 0;
}

int oidmap_put(struct oidmap *map, uint32_t key, void *value)
{
	size_t i;

	if ((map->count + 1) * 4 > map->capacity * 3 && grow(map))
		return -ENOMEM;
	for (i = slot_of(map, key); map->values[i];
	     i = (i + 1) & (map->capacity - 1)) {
		if (map->keys[i] == key) {
			map->values[i] = value;
			return 0;
		}
	}
	map->keys[i] = key;
	map->values[i] = value;
	map->count++;
	return 0;
}

void *oidmap_remove(struct oidmap *map, uint32_t key)
{
	size_t i, j, home, mask = map->capacity - 1;
	void *value;

	if (!map->capacity)
		return NULL;
	for (i = slot_of(map, key); map->values[i]; i = (i + 1) & mask)
		if (map->keys[i] == key)
			break;
	if (!map->values[i])
		return NULL;
	value = map->values[i];
	map->values[i] = NULL;
	map->count--;
	/* shift back later entries of the run that would be cut off */
	for (j = (i + 1) & mask; map->values[j]; j = (j + 1) & mask) {
		home = slot_of(map, map->keys[j]);
		if (((j - home) & mask) >= ((j - i) & mask)) {
			map->keys[i] = map->keys[j];
			map->values[i] = map->values[j];
			map->values[j] = NULL;
			i = j;
		}
	}
	return value;
}

void oidmap_clear(struct oidmap *map, void (*fn)(void *value))
{
	size_t i;

	oidmap_foreach(map, i) {
		if (fn)
			fn(map->values[i]);
		map->values[i] = NULL;
	}
	map->count = 0;
}

void oidmap_free(struct oidmap *map)
{
	free(map->keys);
	free(map->values);
	map->keys = NULL;
	map->values = NULL;
	map->capacity = map->count = 0;
}
