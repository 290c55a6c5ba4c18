/*
 * Masking literal values in statements, so that the feed, logs and metrics
 * carry no data. A statement is normalised with libpg_query (literals become
 * $1, $2, ...), and any literal the normalisation left (utility statements,
 * type modifiers) is then replaced by '?'; one that does not parse is
 * masked token by token with the server's own scanner; one that does not
 * even scan (a comment or a literal cut short by the capture) is masked up
 * to where the scanner gave up, an unterminated block comment is shown as
 * it is, and the rest is withheld. In every mode the output holds no
 * literal token (string, bit, hex, Unicode string or numeric constant).
 *
 * libpg_query redirects the process's stderr during some calls: call these
 * from one thread only (the daemon's classifier thread).
 */
#ifndef USER_MASK_H
#define USER_MASK_H

enum mask_method {
	MASK_NORMALIZED,	/* parsed and normalised; literals left are '?' */
	MASK_TOKENS,		/* scanned; literal tokens replaced by '?' */
	MASK_WITHHELD,		/* could not be scanned: withheld */
};

/*
 * Mask 'sql'. Returns a malloc'd string the caller frees (NULL on out of
 * memory) and sets *method.
 */
char *mask_statement(const char *sql, enum mask_method *method);

/*
 * A cache of statement shapes, for callers that mask the same statements
 * again and again with other literals (a pgbench-like load): normalising
 * costs a full parse. The shape of a statement is its text with each
 * literal (a plain integer, a decimal, a '...' string) cut out. When the
 * parse of one statement of a shape turned exactly those literals into
 * $n and left every other byte as it was, later statements of the same
 * shape are masked by cutting their literals out the same way, without a
 * parse. Statements with comments, dollar quotes, backslashes, bytes
 * outside printable ASCII, prefixed strings (E'', U&'', ...) or other
 * numeric forms never use the cache. So every literal token of a statement
 * that uses it is one of the literals cut out, and the text rendered for a
 * shape is the same for every statement of it: the text masking gave the
 * first, which held no literal, or the shape would not have been kept.
 * Owned by one thread.
 */
struct mask_cache;

/* A new, empty cache; NULL when out of memory. */
struct mask_cache *mask_cache_new(void);

void mask_cache_free(struct mask_cache *cache);

/*
 * As mask_statement, through 'cache' (NULL: no cache). The result is the
 * same as mask_statement's for the same text.
 */
char *mask_statement_cached(struct mask_cache *cache, const char *sql,
			    enum mask_method *method);

/* "normalized", "tokens" or "withheld", for records. */
const char *mask_method_name(enum mask_method method);

#endif /* USER_MASK_H */
