/*
 * The policy file: what the monitor protects and how it reaches the
 * database. YAML, parsed with libyaml; every error names file:line.
 * A policy is immutable once loaded and may be shared between threads.
 */
#ifndef USER_POLICY_H
#define USER_POLICY_H

#include <stdbool.h>
#include <stddef.h>

/* schema.table[.column] or schema.function; '*' globs within one part */
struct policy_name {
	char *schema;
	char *object;
	char *column;		/* NULL where the name has no column part */
	int line;
};

struct policy_names {
	struct policy_name *items;
	size_t count;
};

struct policy_hash {
	char *events_table;	/* schema.table */
	char *postings_table;
	/* column names in the events table */
	char *seq_column;
	char *event_id_column;
	char *prev_hash_column;
	char *postings_hash_column;
	/* column names in the postings table */
	char *event_seq_column;
	char *account_column;
	char *currency_column;
	char *amount_column;
	char *scheme;		/* "pgvigil.postings.v1" */
	char *checkpoint_file;	/* NULL: no checkpoints */
	char *checkpoint_key;	/* Ed25519 private key, PEM */
	int sweep_interval_s;	/* full sweep in 'run'; 0 disables */
	bool enabled;		/* the section is present */
};

struct policy_http {
	char *tls_cert;
	char *tls_key;
	char *tls_client_ca;	/* mTLS: clients must present a cert of it */
	char *token_file;	/* bearer token, compared in constant time */
	bool metrics_open;	/* /metrics without authentication */
};

struct policy_journal {
	char *fsync;		/* "always" (default), "interval", "never" */
	long long max_bytes;	/* rotate when larger; 0: never */
	int keep;		/* rotated files kept */
};

struct policy_dump {
	char *directory;
	char *key_file;		/* master key; NULL: dumps are not encrypted */
	int statements;		/* flight recorder: last N per backend */
	int min_interval_ms;	/* rate limit of dumps on violations */
};

struct policy {
	char *path;
	char *dsn;
	struct policy_names balance_columns;
	struct policy_names allowed_functions;
	struct policy_names immutable_tables;
	struct policy_hash hash;
	struct policy_http http;
	struct policy_journal journal;
	struct policy_dump dump;
	bool capture_wire;
	char *digest;		/* SHA-256 of the file, hex */
};

/*
 * Load and check a policy. Returns 0 and a policy the caller frees with
 * policy_free, or a negative errno with a message "file:line: ..." in err.
 */
int policy_load(const char *path, struct policy **out, char *err,
		size_t err_len);

void policy_free(struct policy *policy);

/*
 * Split "schema.object[.column]" into a policy_name (with_column: the
 * column part is required). Returns 0 or -EINVAL.
 */
int policy_parse_name(const char *text, bool with_column,
		      struct policy_name *name);

/* Shell-style match where '*' stands for any run of characters. */
bool policy_glob(const char *pattern, const char *text);

/*
 * Does an entry of 'names' match? With 'column' NULL, only the schema and
 * object parts are compared (does the table hold a protected column?).
 */
bool policy_names_match(const struct policy_names *names, const char *schema,
			const char *object, const char *column);

#endif /* USER_POLICY_H */
