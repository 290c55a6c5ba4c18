/*
 * A hash map from a 32-bit key (an OID, a pid) to a pointer. Open addressing
 * with linear probing; entries are removed with backward-shift deletion so
 * no tombstones build up. Not thread-safe: each map has one owning thread.
 */
#ifndef USER_OIDMAP_H
#define USER_OIDMAP_H

#include <stddef.h>
#include <stdint.h>

struct oidmap {
	uint32_t *keys;
	void **values;		/* NULL marks an empty slot */
	size_t capacity;	/* a power of two */
	size_t count;
};

/* The value for 'key', or NULL. */
void *oidmap_get(const struct oidmap *map, uint32_t key);

/* Insert or replace (value must not be NULL). Returns 0 or -ENOMEM. */
int oidmap_put(struct oidmap *map, uint32_t key, void *value);

/* Remove 'key'; returns its value or NULL. */
void *oidmap_remove(struct oidmap *map, uint32_t key);

/*
 * Call 'fn' on every value (the map may not change meanwhile), then empty
 * the map. fn may be NULL.
 */
void oidmap_clear(struct oidmap *map, void (*fn)(void *value));

/* Free the map's storage (not the values). */
void oidmap_free(struct oidmap *map);

#define oidmap_foreach(map, i)                                                 \
	for ((i) = 0; (i) < (map)->capacity; (i)++)                            \
		if ((map)->values[i])

#endif /* USER_OIDMAP_H */
