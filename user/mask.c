/*
 * Literal masking with libpg_query. See mask.h.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include "mask.h"

static bool is_literal(PgQuery__Token token)
{
	switch (token) {
	case PG_QUERY__TOKEN__SCONST:
	case PG_QUERY__TOKEN__USCONST:
	case PG_QUERY__TOKEN__FCONST:
	case PG_QUERY__TOKEN__BCONST:
	case PG_QUERY__TOKEN__XCONST:
	case PG_QUERY__TOKEN__ICONST:
		return true;
	default:
		return false;
	}
}

/*
 * The end of the literal that is token 'i'. libpg_query's scanner gives a
 * U&'...' constant no end (it keeps the start), so a literal whose end is
 * not past its start, or runs into the next token, ends where the next
 * token starts, less the blanks before it: a comment in between is masked
 * with it.
 */
static size_t literal_end(const PgQuery__ScanResult *scan, size_t i,
			  const char *text, size_t len)
{
	size_t start = scan->tokens[i]->start, end = scan->tokens[i]->end;
	size_t next = len;

	if (i + 1 < scan->n_tokens && scan->tokens[i + 1]->start > (int)start)
		next = scan->tokens[i + 1]->start;
	if (end > start && end <= next)
		return end;
	while (next > start + 1 && strchr(" \t\n\r\f\v", text[next - 1]))
		next--;
	return next;
}

/* 'text' (of 'len' bytes) with every literal token replaced by '?'. */
static char *replace_literals(const PgQuery__ScanResult *scan,
			      const char *text, size_t len)
{
	char *out = malloc(len + 1), *p = out;
	size_t i, pos = 0, start;

	for (i = 0; out && i < scan->n_tokens; i++) {
		start = scan->tokens[i]->start;
		if (!is_literal(scan->tokens[i]->token) || start < pos ||
		    start >= len)
			continue;
		memcpy(p, text + pos, start - pos);
		p += start - pos;
		*p++ = '?';
		pos = literal_end(scan, i, text, len);
	}
	if (out) {
		memcpy(p, text + pos, len - pos);
		p[len - pos] = 0;
	}
	return out;
}

/* The length of the UTF-8 character led by 'lead', as the server counts. */
static size_t char_length(unsigned char lead)
{
	if ((lead & 0xe0) == 0xc0)
		return 2;
	if ((lead & 0xf0) == 0xe0)
		return 3;
	if ((lead & 0xf8) == 0xf0)
		return 4;
	return 1;
}

/*
 * The byte offset of the character the scanner's error points at (its
 * 'cursorpos' counts characters from 1, as the server's scanner does for
 * UTF-8), or 'len' when there is none.
 */
static size_t error_offset(const PgQueryError *error, const char *text,
			   size_t len)
{
	size_t pos = 0;
	int chars;

	if (error->cursorpos < 1)
		return len;
	for (chars = 1; chars < error->cursorpos && pos < len; chars++)
		pos += char_length((unsigned char)text[pos]);
	return pos < len ? pos : len;
}

/*
 * Copy the first 'len' bytes of 'sql' with every literal token replaced
 * by '?'. Returns NULL when out of memory or when the scanner rejects the
 * text; then *error_at (if not NULL) is where the scanner gave up, or
 * 'len' when it did not say.
 */
static char *mask_tokens(const char *sql, size_t len, size_t *error_at)
{
	PgQuery__ScanResult *scan = NULL;
	PgQueryScanResult result;
	char *text, *out = NULL;

	if (error_at)
		*error_at = len;
	text = strndup(sql, len);
	if (!text)
		return NULL;
	result = pg_query_scan(text);
	if (result.error && error_at)
		*error_at = error_offset(result.error, text, len);
	if (!result.error)
		scan = pg_query__scan_result__unpack(
			NULL, result.pbuf.len, (const uint8_t *)result.pbuf.data);
	if (scan) {
		out = replace_literals(scan, text, len);
		pg_query__scan_result__free_unpacked(scan, NULL);
	}
	pg_query_free_scan_result(result);
	free(text);
	return out;
}

/*
 * The start of the last quote before 'end' that may open a literal; 0
 * when there is none.
 */
static size_t last_quote(const char *sql, size_t end)
{
	while (end > 0 && sql[end - 1] != '\'' && sql[end - 1] != '$')
		end--;
	return end ? end - 1 : 0;
}

/* 'masked' grown by 'extra' bytes of 'suffix'; frees it on failure. */
static char *with_suffix(char *masked, const char *suffix, size_t extra)
{
	size_t len = masked ? strlen(masked) : 0;
	char *grown = masked ? realloc(masked, len + extra + 1) : NULL;

	if (!grown) {
		free(masked);
		return NULL;
	}
	memcpy(grown + len, suffix, extra);
	grown[len + extra] = 0;
	return grown;
}

/*
 * A text the scanner rejects at 'cut': a comment or a literal that the
 * capture cut short, or a malformed token. The scanner reads left to
 * right, so the text before the construct it gave up in scans the same
 * alone, and a literal cut short there would itself fail to scan: masking
 * the longest prefix that scans can show no literal. An unterminated
 * block comment runs to the end of what was scanned and holds no token;
 * it is shown as a complete comment would be. Anything else from the cut
 * on is withheld.
 */
static char *mask_cut(const char *sql, size_t cut)
{
	size_t limit = strlen(sql), next;
	const char *rest;
	char *out;

	while (limit > 0) {
		/* an error at the end of input points nowhere earlier */
		if (cut >= limit)
			cut = last_quote(sql, limit);
		out = mask_tokens(sql, cut, &next);
		if (out && !strncmp(sql + cut, "/*", 2)) {
			out = with_suffix(out, sql + cut, limit - cut);
			rest = "…";
		} else {
			rest = "?…";
		}
		if (out)
			return with_suffix(out, rest, strlen(rest));
		limit = cut;
		cut = next;
	}
	return strdup("…");
}

/*
 * pg_query_normalize turns into $n only the constants its parse tree
 * keeps locations for; most utility statements (PREPARE, SET of a
 * function, COPY ... PROGRAM, CREATE RULE, ...) and some clauses (FETCH
 * counts, type modifiers) come back as written. Its output is scanned
 * again, and every literal left is replaced by '?'.
 */
static char *mask_normalized(const char *sql)
{
	PgQueryNormalizeResult normalized = pg_query_normalize(sql);
	char *out = NULL;

	if (!normalized.error && normalized.normalized_query)
		out = mask_tokens(normalized.normalized_query,
				  strlen(normalized.normalized_query), NULL);
	pg_query_free_normalize_result(normalized);
	return out;
}

char *mask_statement(const char *sql, enum mask_method *method)
{
	char *out;
	size_t cut;

	*method = MASK_NORMALIZED;
	out = mask_normalized(sql);
	if (out)
		return out;
	*method = MASK_TOKENS;
	out = mask_tokens(sql, strlen(sql), &cut);
	if (out)
		return out;
	*method = MASK_WITHHELD;
	return mask_cut(sql, cut);
}

const char *mask_method_name(enum mask_method method)
{
	switch (method) {
	case MASK_NORMALIZED:
		return "normalized";
	case MASK_TOKENS:
		return "tokens";
	default:
		return "withheld";
	}
}

/*
 * The shape cache. A statement's key is its text with every literal
 * replaced by SHAPE_MARK and a class byte; the entry keeps, per literal,
 * the parameter number the parse gave it and whether a '-' just before it
 * was folded into the constant (the parser folds "-5" into one constant).
 */
#define SHAPE_SLOTS 256		/* direct-mapped by the key's hash */
#define SHAPE_LITERALS 64
#define SHAPE_KEY_MAX 4096
#define SHAPE_MARK '\x01'

struct shape_literal {
	uint16_t param;
	bool folded;
};

struct shape {
	uint64_t hash;
	char *key;		/* NULL: an empty slot */
	size_t key_len;
	int n_literals;
	struct shape_literal literals[];
};

struct literal_span {
	size_t start, end;
};

struct mask_cache {
	struct shape *slots[SHAPE_SLOTS];
	char key[SHAPE_KEY_MAX + 2 * SHAPE_LITERALS];
	size_t key_len;
	struct literal_span spans[SHAPE_LITERALS];
	int n_spans;
};

struct mask_cache *mask_cache_new(void)
{
	return calloc(1, sizeof(struct mask_cache));
}

void mask_cache_free(struct mask_cache *cache)
{
	int i;

	if (!cache)
		return;
	for (i = 0; i < SHAPE_SLOTS; i++)
		if (cache->slots[i])
			free(cache->slots[i]->key);
	for (i = 0; i < SHAPE_SLOTS; i++)
		free(cache->slots[i]);
	free(cache);
}

static bool is_ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '$';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool key_put(struct mask_cache *cache, const char *bytes, size_t len)
{
	if (cache->key_len + len > sizeof(cache->key))
		return false;
	memcpy(cache->key + cache->key_len, bytes, len);
	cache->key_len += len;
	return true;
}

/* A literal at [start, end) of class 'kind': a mark in the key. */
static bool add_literal(struct mask_cache *cache, size_t start, size_t end,
			char kind)
{
	char mark[2] = { SHAPE_MARK, kind };

	if (cache->n_spans == SHAPE_LITERALS)
		return false;
	cache->spans[cache->n_spans].start = start;
	cache->spans[cache->n_spans++].end = end;
	return key_put(cache, mark, sizeof(mark));
}

/*
 * The end of the plain '...' string at 'i' ('' inside), or 0 when it is
 * not one the cache takes: unterminated, or holding a byte outside
 * printable ASCII.
 */
static size_t string_end(const char *sql, size_t i)
{
	for (i++; sql[i]; i++) {
		if (sql[i] == '\'' && sql[i + 1] == '\'')
			i++;
		else if (sql[i] == '\'')
			return i + 1;
		else if (sql[i] < 0x20 || sql[i] > 0x7e)
			return 0;
	}
	return 0;
}

/*
 * The end of the unsigned number at 'i': digits, or digits '.' digits, of
 * at most 9 digits before the point (so always an integer constant to the
 * server, never a bigger type). 0 for any other form.
 */
static size_t number_end(const char *sql, size_t i)
{
	size_t start = i;

	while (is_digit(sql[i]))
		i++;
	if (i - start > 9)
		return 0;
	if (sql[i] == '.' && is_digit(sql[i + 1]))
		for (i++; is_digit(sql[i]); i++)
			;
	if (is_ident_char(sql[i]) || sql[i] == '.')
		return 0;
	return i;
}

/* 'i' for an integer, 'd' for a decimal: the parser tells them apart. */
static char number_kind(const char *sql, size_t start, size_t end)
{
	return memchr(sql + start, '.', end - start) ? 'd' : 'i';
}

/* The end of the "quoted identifier" at 'i', or 0. */
static size_t quoted_ident_end(const char *sql, size_t i)
{
	for (i++; sql[i]; i++) {
		if (sql[i] == '"' && sql[i + 1] == '"')
			i++;
		else if (sql[i] == '"')
			return i + 1;
		else if (sql[i] < 0x20 || sql[i] > 0x7e)
			return 0;
	}
	return 0;
}

/*
 * The key and literal spans of 'sql'; false when the statement is not one
 * the cache takes (see mask.h), so it goes the slow way.
 */
static bool shape_of(struct mask_cache *cache, const char *sql)
{
	size_t i = 0, end;
	char c;

	cache->key_len = 0;
	cache->n_spans = 0;
	while ((c = sql[i])) {
		if (c == '\'') {
			if (i && (is_ident_char(sql[i - 1]) || sql[i - 1] == '&'))
				return false;
			end = string_end(sql, i);
			if (!end || !add_literal(cache, i, end, 's'))
				return false;
		} else if (is_digit(c)) {
			if (i && sql[i - 1] == '.')
				return false;
			end = number_end(sql, i);
			if (!end || !add_literal(cache, i, end,
						 number_kind(sql, i, end)))
				return false;
		} else if (c == '"') {
			end = quoted_ident_end(sql, i);
			if (!end || !key_put(cache, sql + i, end - i))
				return false;
		} else if (is_ident_char(c) && c != '$') {
			for (end = i + 1; is_ident_char(sql[end]); end++)
				;
			if (!key_put(cache, sql + i, end - i))
				return false;
		} else if (c == '$' && is_digit(sql[i + 1])) {
			for (end = i + 1; is_digit(sql[end]); end++)
				;
			if (is_ident_char(sql[end]) ||
			    !key_put(cache, sql + i, end - i))
				return false;
		} else if (c == '$' || c == '\\' || c < 0x20 || c > 0x7e ||
			   (c == '-' && sql[i + 1] == '-') ||
			   (c == '/' && sql[i + 1] == '*')) {
			if (c != '\t' && c != '\n' && c != '\r')
				return false;
			end = i + 1;
			if (!key_put(cache, sql + i, 1))
				return false;
		} else {
			end = i + 1;
			if (!key_put(cache, sql + i, 1))
				return false;
		}
		i = end;
	}
	return true;
}

static uint64_t key_hash(const char *key, size_t len)
{
	uint64_t hash = 0xcbf29ce484222325ULL;	/* FNV-1a */
	size_t i;

	for (i = 0; i < len; i++)
		hash = (hash ^ (unsigned char)key[i]) * 0x100000001b3ULL;
	return hash;
}

/*
 * Read the shape's template off the parse's output: 'normalized' must be
 * 'sql' with each literal span (with a '-' just before it, if the parser
 * folded that in) replaced by $n, every other byte as it was. Fills
 * 'literals'; false when the output is anything else. A literal that the
 * normalisation kept came out as '?', so a shape with one is never kept:
 * a kept shape renders, for any statement of it, exactly the text read
 * here, which mask_normalized scanned and found free of literals.
 */
static bool read_template(const struct mask_cache *cache, const char *sql,
			  const char *normalized, struct shape_literal *literals)
{
	size_t pos = 0, out = 0, seg, out_len = strlen(normalized);
	unsigned long param;
	char *digits_end;
	int i;

	for (i = 0; i < cache->n_spans; i++) {
		const struct literal_span *span = &cache->spans[i];

		seg = span->start - pos;
		literals[i].folded = seg > 0 && sql[span->start - 1] == '-' &&
				     out + seg - 1 < out_len &&
				     normalized[out + seg - 1] == '$';
		if (literals[i].folded)
			seg--;
		if (out + seg >= out_len ||
		    memcmp(normalized + out, sql + pos, seg) ||
		    normalized[out + seg] != '$' ||
		    !is_digit(normalized[out + seg + 1]))
			return false;
		param = strtoul(normalized + out + seg + 1, &digits_end, 10);
		if (param == 0 || param > UINT16_MAX || is_digit(sql[span->end]))
			return false;
		literals[i].param = (uint16_t)param;
		out = (size_t)(digits_end - normalized);
		pos = span->end;
	}
	return out_len - out == strlen(sql + pos) &&
	       !memcmp(normalized + out, sql + pos, out_len - out);
}

static void shape_remember(struct mask_cache *cache, const char *sql,
			   const char *normalized)
{
	struct shape *shape;
	size_t slot;

	shape = malloc(sizeof(*shape) +
		       cache->n_spans * sizeof(shape->literals[0]));
	if (!shape)
		return;
	if (!read_template(cache, sql, normalized, shape->literals) ||
	    !(shape->key = malloc(cache->key_len))) {
		free(shape);
		return;
	}
	memcpy(shape->key, cache->key, cache->key_len);
	shape->key_len = cache->key_len;
	shape->hash = key_hash(cache->key, cache->key_len);
	shape->n_literals = cache->n_spans;
	slot = shape->hash % SHAPE_SLOTS;
	if (cache->slots[slot])
		free(cache->slots[slot]->key);
	free(cache->slots[slot]);
	cache->slots[slot] = shape;
}

static const struct shape *shape_find(const struct mask_cache *cache)
{
	uint64_t hash = key_hash(cache->key, cache->key_len);
	const struct shape *shape = cache->slots[hash % SHAPE_SLOTS];

	if (!shape || shape->hash != hash || shape->key_len != cache->key_len ||
	    shape->n_literals != cache->n_spans ||
	    memcmp(shape->key, cache->key, cache->key_len))
		return NULL;
	return shape;
}

/* "$n" at 'out' (room for 6 bytes); returns its length. */
static size_t put_param(char *out, uint16_t param)
{
	char digits[5], *p = digits + sizeof(digits);
	size_t len;

	do {
		*--p = (char)('0' + param % 10);
		param /= 10;
	} while (param);
	len = (size_t)(digits + sizeof(digits) - p);
	out[0] = '$';
	memcpy(out + 1, p, len);
	return len + 1;
}

/* 'sql' with its literal spans replaced as the shape says. */
static char *shape_render(const struct mask_cache *cache,
			  const struct shape *shape, const char *sql)
{
	size_t len = strlen(sql), pos = 0, seg;
	char *out = malloc(len + 6 * (size_t)shape->n_literals + 1), *p = out;
	int i;

	if (!out)
		return NULL;
	for (i = 0; i < shape->n_literals; i++) {
		seg = cache->spans[i].start - pos - shape->literals[i].folded;
		memcpy(p, sql + pos, seg);
		p += seg;
		p += put_param(p, shape->literals[i].param);
		pos = cache->spans[i].end;
	}
	memcpy(p, sql + pos, len - pos + 1);
	return out;
}

char *mask_statement_cached(struct mask_cache *cache, const char *sql,
			    enum mask_method *method)
{
	const struct shape *shape;
	char *masked;

	if (!cache || !shape_of(cache, sql))
		return mask_statement(sql, method);
	shape = shape_find(cache);
	if (shape) {
		*method = MASK_NORMALIZED;
		return shape_render(cache, shape, sql);
	}
	masked = mask_statement(sql, method);
	if (masked && *method == MASK_NORMALIZED &&
	    cache->key_len <= SHAPE_KEY_MAX)
		shape_remember(cache, sql, masked);
	return masked;
}
