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

/* Where the next bytes go, once reserve() made room for them. */
static char *tail(struct jsonw *w)
{
	return w->buf + w->len;
}

/* Bytes written up to 'end', terminated. */
static void commit(struct jsonw *w, char *end)
{
	*end = 0;
	w->len = (size_t)(end - w->buf);
}

/* Before a value or a key: the comma that separates it from the last. */
static char *put_separator(struct jsonw *w, char *out)
{
	if (w->comma)
		*out++ = ',';
	w->comma = true;
	return out;
}

/* One byte of structure ('{', ']', ...), with no separator. */
static void put_char(struct jsonw *w, char c)
{
	if (!reserve(w, 1))
		return;
	w->buf[w->len++] = c;
	w->buf[w->len] = 0;
}

/* A value written as is ('true', digits, ...), after its separator. */
static void put_value(struct jsonw *w, const char *bytes, size_t len)
{
	char *out;

	if (!reserve(w, len + 1))
		return;
	out = put_separator(w, tail(w));
	memcpy(out, bytes, len);
	commit(w, out + len);
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
	put_value(w, "{", 1);
	w->comma = false;
}

void jsonw_object_end(struct jsonw *w)
{
	put_char(w, '}');
	w->comma = true;
}

void jsonw_array_begin(struct jsonw *w)
{
	put_value(w, "[", 1);
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

#define ONES	0x0101010101010101ULL
#define HIGHS	0x8080808080808080ULL

/*
 * Does any byte of 'word' need an escape? Bit tricks on 8 bytes at once:
 * (x - 0x01..) & ~x & 0x80.. is non-zero exactly when some byte of x is
 * zero (a borrow only runs upwards from a zero byte), and with x - 0x20..
 * when some byte is below 0x20; bytes from 0x80 up never match, as ~x
 * clears their high bit.
 */
static bool word_needs_escape(uint64_t word)
{
	uint64_t quote = word ^ (ONES * '"');
	uint64_t backslash = word ^ (ONES * '\\');
	uint64_t solidus = word ^ (ONES * '/');
	uint64_t hits = ((word - ONES * 0x20) & ~word) |
			((quote - ONES) & ~quote) |
			((backslash - ONES) & ~backslash) |
			((solidus - ONES) & ~solidus);

	return hits & HIGHS;
}

/* How many bytes from the start of 's' go out as they are. */
static size_t plain_run(const char *s, size_t len)
{
	uint64_t word;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		memcpy(&word, s + i, 8);
		if (word_needs_escape(word))
			break;
	}
	while (i < len && !needs_escape((unsigned char)s[i]))
		i++;
	return i;
}

/*
 * 's' quoted and escaped, at 'out' (room for the worst case, every byte a
 * \u escape, taken by the caller); returns the end. Runs of bytes that
 * need no escape are copied whole.
 */
static char *put_quoted(char *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char c;
	size_t run;

	*out++ = '"';
	while (len) {
		run = plain_run(s, len);
		memcpy(out, s, run);
		out += run;
		if (run == len)
			break;
		c = (unsigned char)s[run];
		if (short_escape[c]) {
			*out++ = '\\';
			*out++ = short_escape[c];
		} else {
			memcpy(out, "\\u00", 4);
			out[4] = hex[c >> 4];
			out[5] = hex[c & 15];
			out += 6;
		}
		s += run + 1;
		len -= run + 1;
	}
	*out++ = '"';
	return out;
}

void jsonw_key(struct jsonw *w, const char *key)
{
	size_t len = strlen(key);
	char *out;

	/* comma, quotes and colon around the worst case */
	if (!reserve(w, 6 * len + 4))
		return;
	out = put_quoted(put_separator(w, tail(w)), key, len);
	*out++ = ':';
	commit(w, out);
	w->comma = false;
}

void jsonw_string_len(struct jsonw *w, const char *s, size_t len)
{
	if (!reserve(w, 6 * len + 3))
		return;
	commit(w, put_quoted(put_separator(w, tail(w)), s, len));
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
	put_value(w, p, (size_t)(digits + sizeof(digits) - p));
}

void jsonw_bool(struct jsonw *w, bool value)
{
	if (value)
		put_value(w, "true", 4);
	else
		put_value(w, "false", 5);
}

void jsonw_null(struct jsonw *w)
{
	put_value(w, "null", 4);
}

void jsonw_raw(struct jsonw *w, const char *json, size_t len)
{
	put_value(w, json, len);
}
