/*
 * The catalog cache: relation, column and function names by OID, and the
 * policy bound to objects, per database, over read-only libpq connections.
 *
 * Policy names bind to OIDs when a database is first seen; after DDL commits
 * (catalog_invalidate) the names are matched again and the result joined to
 * what was bound before, so a protected table stays protected through a
 * rename and a new table that matches a pattern is protected too. A
 * connection the server dropped is opened again when next used.
 * Owned by the daemon's classifier thread; not thread-safe.
 */
#ifndef USER_CATALOG_H
#define USER_CATALOG_H

#include <stdbool.h>
#include <stdint.h>

#include "oidmap.h"
#include "policy.h"

struct catalog;
struct catalog_db;

struct catalog_relation {
	uint32_t oid;
	char relkind;
	char *schema;
	char *name;
	char *qualified;	/* schema.name as a record shows it */
};

/* A relation with protected columns: the bound attribute numbers. */
struct catalog_balance {
	uint32_t relid;
	int n_columns;
	int16_t attnums[16];
	char *names[16];
};

struct catalog_stats {
	uint64_t hits;
	uint64_t misses;
	uint64_t queries;
	uint64_t errors;
};

int catalog_open(const struct policy *policy, struct catalog **out);
void catalog_close(struct catalog *catalog);

/*
 * The cache of database 'dbname', connecting and binding the policy on
 * first use. Returns NULL when the database cannot be reached or its
 * policy not bound (err says why); a later call tries again, at most once
 * a second.
 */
struct catalog_db *catalog_db(struct catalog *catalog, const char *dbname,
			      char *err, size_t err_len);

/*
 * Can the policy bound in 'db' be trusted? False after a binding failed
 * (catalog_invalidate after DDL, with the server unreachable) until one
 * succeeds: tries again, at most once a second; err says why not.
 */
bool catalog_ready(struct catalog_db *db, char *err, size_t err_len);

/* The relation 'oid', from the cache or the server; NULL if unknown. */
const struct catalog_relation *catalog_relation(struct catalog_db *db,
						uint32_t oid);

/*
 * "schema.name" of function 'oid' ("inline_code_block" for 0, "oid:N"
 * when unknown). The string lives until the next invalidation.
 */
const char *catalog_function(struct catalog_db *db, uint32_t oid);

/* Policy bindings. */
const struct catalog_balance *catalog_balance(struct catalog_db *db,
					      uint32_t relid);
bool catalog_allowed_function(struct catalog_db *db, uint32_t oid);
bool catalog_immutable(struct catalog_db *db, uint32_t relid);

/*
 * Allowed functions that appeared or were redefined since the last call
 * (noticed when the policy is bound again after DDL). Copies up to 'max'
 * OIDs and returns how many.
 */
int catalog_take_changed_allowed(struct catalog_db *db, uint32_t *oids,
				 int max);

/*
 * Allowed functions whose current definition was first read after
 * 'since_ns' (CLOCK_MONOTONIC, as probe records are stamped): the ones a
 * transaction committed at 'since_ns' may have redefined, even when an
 * earlier read already saw its change. Copies up to 'max' OIDs and returns
 * how many.
 */
int catalog_allowed_seen_since(struct catalog_db *db, uint64_t since_ns,
			       uint32_t *oids, int max);

/* The OID of the policy's hash events table in 'db', 0 if none. */
uint32_t catalog_events_table(struct catalog_db *db);

/* Is 'pid' one of this daemon's own catalog connections? */
bool catalog_own_backend(struct catalog *catalog, uint32_t pid);

/*
 * DDL committed in 'db': forget names and bind the policy again, on a new
 * connection if the old one was dropped. Returns 0 or a negative errno
 * (the old binding is kept on failure, and 'db' is not ready).
 */
int catalog_invalidate(struct catalog_db *db);

void catalog_stats(const struct catalog *catalog, struct catalog_stats *out);

#endif /* USER_CATALOG_H */
