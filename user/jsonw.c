/*
 * The append-only JSON writer. See jsonw.h.
 */
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

/* Room for 'extra' more bytes and the NUL; false once failed. */
static bool reserve(struct jsonw *w, size_t extra)
{
	size_t cap;
	char *grown;

	if (w->failed)
		return false;
	if (w->len + extra < w->cap)
		return true;
	cap = w->cap ? w->cap : 512;
	while (cap <= w->len + extra)
		cap *= 2;
	grown = realloc(w->buf, cap);
	if (!grown) {
		w->failed = true;
		return false;
	}
	w->buf = grown;
	w->cap = cap;
	return true;
}

static void put(struct jsonw *w, const char *bytes, size_t len)
{
	if (!reserve(w, len))
		return;
	memcpy(w->buf + w->len, bytes, len);
	w->len += len;
	w->buf[w->len] = 0;
}

static void put_char(struct jsonw *w, char c)
{
	if (!reserve(w, 1))
		return;
	w->buf[w->len++] = c;
	w->buf[w->len] = 0;
}

/* Before a value or a key: the comma that separates it from the last. */
static void separate(struct jsonw *w)
{
	if (w->comma)
		put_char(w, ',');
	w->comma = true;
}

void jsonw_reset(struct jsonw *w)
{
	w->len = 0;
	w->comma = false;
	w->failed = false;
	if (w->buf)
		w->buf[0] = 0;
}

void jsonw_free(struct jsonw *w)
{
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

bool jsonw_failed(const struct jsonw *w)
{
	return w->failed;
}

void jsonw_object_begin(struct jsonw *w)
{
	separate(w);
	put_char(w, '{');
	w->comma = false;
}

void jsonw_object_end(struct jsonw *w)
{
	put_char(w, '}');
	w->comma = true;
}

void jsonw_array_begin(struct jsonw *w)
{
	separate(w);
	put_char(w, '[');
	w->comma = false;
}

void jsonw_array_end(struct jsonw *w)
{
	put_char(w, ']');
	w->comma = true;
}

/*
 * The escape for each byte, 0 for none. json-c escapes the control
 * characters, the quote, the backslash and the solidus; bytes from 0x7f up
 * go through as they are (json-c does not check UTF-8 either).
 */
static const char short_escape[256] = {
	['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n', ['\f'] = 'f', ['\r'] = 'r',
	['"'] = '"', ['\\'] = '\\', ['/'] = '/',
};

static bool needs_escape(unsigned char c)
{
	return c < 0x20 || short_escape[c];
}

/*
 * Quoted and escaped. Room for the worst case (every byte a \u escape) is
 * taken first, so the loop writes without checking.
 */
static void put_quoted(struct jsonw *w, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char c;
	char *out;
	size_t i;

	if (!reserve(w, 6 * len + 2))
		return;
	out = w->buf + w->len;
	*out++ = '"';
	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (!needs_escape(c)) {
			*out++ = (char)c;
		} else if (short_escape[c]) {
			*out++ = '\\';
			*out++ = short_escape[c];
		} else {
			memcpy(out, "\\u00", 4);
			out[4] = hex[c >> 4];
			out[5] = hex[c & 15];
			out += 6;
		}
	}
	*out++ = '"';
	*out = 0;
	w->len = (size_t)(out - w->buf);
}

void jsonw_key(struct jsonw *w, const char *key)
{
	separate(w);
	put_quoted(w, key, strlen(key));
	put_char(w, ':');
	w->comma = false;
}

void jsonw_string_len(struct jsonw *w, const char *s, size_t len)
{
	separate(w);
	put_quoted(w, s, len);
}

void jsonw_string(struct jsonw *w, const char *s)
{
	jsonw_string_len(w, s, strlen(s));
}

void jsonw_int(struct jsonw *w, int64_t value)
{
	uint64_t magnitude = value < 0 ? -(uint64_t)value : (uint64_t)value;
	char digits[24], *p = digits + sizeof(digits);

	do {
		*--p = (char)('0' + magnitude % 10);
		magnitude /= 10;
	} while (magnitude);
	if (value < 0)
		*--p = '-';
	separate(w);
	put(w, p, (size_t)(digits + sizeof(digits) - p));
}

void jsonw_bool(struct jsonw *w, bool value)
{
	separate(w);
	if (value)
		put(w, "true", 4);
	else
		put(w, "false", 5);
}

void jsonw_null(struct jsonw *w)
{
	separate(w);
	put(w, "null", 4);
}

void jsonw_raw(struct jsonw *w, const char *json, size_t len)
{
	separate(w);
	put(w, json, len);
}
