/*
 * Masking literal values in statements, so that the feed, logs and metrics
 * carry no data. A statement is normalised with libpg_query (literals become
 * $1, $2, ...); one that does not parse is masked token by token with the
 * server's own scanner; one that does not even scan (a cut string literal)
 * is masked up to the cut and the rest withheld.
 *
 * libpg_query redirects the process's stderr during some calls: call these
 * from one thread only (the daemon's classifier thread).
 */
#ifndef USER_MASK_H
#define USER_MASK_H

enum mask_method {
	MASK_NORMALIZED,	/* parsed and normalised */
	MASK_TOKENS,		/* scanned; literal tokens replaced by '?' */
	MASK_WITHHELD,		/* could not be scanned: withheld */
};

/*
 * Mask 'sql'. Returns a malloc'd string the caller frees (NULL on out of
 * memory) and sets *method.
 */
char *mask_statement(const char *sql, enum mask_method *method);

/* "normalized", "tokens" or "withheld", for records. */
const char *mask_method_name(enum mask_method method);

#endif /* USER_MASK_H */
