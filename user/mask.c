/*
 * Literal masking with libpg_query. See mask.h.
 */
#include <stdbool.h>
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
 * Copy 'sql' (of 'len' bytes) with every literal token replaced by '?'.
 * Returns NULL when the scanner rejects the text.
 */
static char *mask_tokens(const char *sql, size_t len)
{
	PgQuery__ScanResult *scan;
	PgQueryScanResult result;
	char *text, *out, *p;
	size_t i, pos = 0;

	text = strndup(sql, len);
	if (!text)
		return NULL;
	result = pg_query_scan(text);
	if (result.error) {
		pg_query_free_scan_result(result);
		free(text);
		return NULL;
	}
	scan = pg_query__scan_result__unpack(NULL, result.pbuf.len,
					     (const uint8_t *)result.pbuf.data);
	out = scan ? malloc(len + 1) : NULL;
	for (p = out, i = 0; out && i < scan->n_tokens; i++) {
		const PgQuery__ScanToken *token = scan->tokens[i];

		if (!is_literal(token->token) || token->start < (int)pos ||
		    token->end > (int)len)
			continue;
		memcpy(p, text + pos, token->start - pos);
		p += token->start - pos;
		*p++ = '?';
		pos = token->end;
	}
	if (out) {
		memcpy(p, text + pos, len - pos);
		p[len - pos] = 0;
	}
	if (scan)
		pg_query__scan_result__free_unpacked(scan, NULL);
	pg_query_free_scan_result(result);
	free(text);
	return out;
}

/* The start of the last quote that may open an unterminated literal. */
static size_t last_quote(const char *sql)
{
	const char *single = strrchr(sql, '\''), *dollar = strrchr(sql, '$');
	const char *cut = single > dollar ? single : dollar;

	return cut ? (size_t)(cut - sql) : strlen(sql);
}

static char *with_suffix(char *masked, const char *suffix)
{
	size_t len = strlen(masked), extra = strlen(suffix);
	char *grown = realloc(masked, len + extra + 1);

	if (!grown) {
		free(masked);
		return NULL;
	}
	memcpy(grown + len, suffix, extra + 1);
	return grown;
}

char *mask_statement(const char *sql, enum mask_method *method)
{
	PgQueryNormalizeResult normalized = pg_query_normalize(sql);
	char *out;
	size_t cut;

	if (!normalized.error && normalized.normalized_query) {
		out = strdup(normalized.normalized_query);
		pg_query_free_normalize_result(normalized);
		*method = MASK_NORMALIZED;
		return out;
	}
	pg_query_free_normalize_result(normalized);
	*method = MASK_TOKENS;
	out = mask_tokens(sql, strlen(sql));
	if (out)
		return out;
	/* a literal cut short (a truncated capture): mask what precedes it */
	*method = MASK_WITHHELD;
	cut = last_quote(sql);
	out = mask_tokens(sql, cut);
	if (out)
		return with_suffix(out, "?…");
	return strdup("…");
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
