/*
 * An append-only JSON writer for the records the daemon emits at a high
 * rate: fields go straight into one growing buffer, with no tree of
 * objects to build, serialise and free per record. Its output is the same,
 * byte for byte, as json-c's JSON_C_TO_STRING_PLAIN for the same values
 * in the same order (including json-c's escaping of '/' as "\/"), so
 * records written either way read alike.
 *
 * Out of memory is sticky: the writer stops appending and jsonw_failed()
 * says so once the record is done, so callers check once. A writer belongs
 * to one thread.
 */
#ifndef USER_JSONW_H
#define USER_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jsonw {
	char *buf;		/* NUL-terminated while not failed */
	size_t len;
	size_t cap;
	bool comma;		/* a value precedes at the current level */
	bool failed;
};

/* Empty the writer, keeping its buffer for the next record. */
void jsonw_reset(struct jsonw *w);

/* Release the buffer; the writer may be used again from empty. */
void jsonw_free(struct jsonw *w);

/* True when an allocation failed since the last reset. */
bool jsonw_failed(const struct jsonw *w);

void jsonw_object_begin(struct jsonw *w);
void jsonw_object_end(struct jsonw *w);
void jsonw_array_begin(struct jsonw *w);
void jsonw_array_end(struct jsonw *w);

/* The key of the next member of the object being written. */
void jsonw_key(struct jsonw *w, const char *key);

/* Values: in an array as its next element, after jsonw_key as a member. */
void jsonw_string(struct jsonw *w, const char *s);
void jsonw_string_len(struct jsonw *w, const char *s, size_t len);
void jsonw_int(struct jsonw *w, int64_t value);
void jsonw_bool(struct jsonw *w, bool value);
void jsonw_null(struct jsonw *w);

/* A value already serialised ('json' of 'len' bytes), copied as is. */
void jsonw_raw(struct jsonw *w, const char *json, size_t len);

#endif /* USER_JSONW_H */
