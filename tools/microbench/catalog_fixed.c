/*
 * A catalog with the API of user/catalog.h but no server behind it, for the
 * microbenchmark: one database holding pgbench's four tables, answered from
 * the same oidmaps the real cache uses, so a lookup costs what a cache hit
 * costs in the daemon. Balance columns are bound or not, as the benchmark
 * asks (microbench_catalog_bind). Single-threaded.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_fixed.h"

struct catalog_db {
	struct catalog *catalog;
	struct oidmap relations;
	struct oidmap balances;
};

struct catalog {
	struct catalog_db db;
	struct catalog_stats stats;
};

static struct catalog_relation relations[] = {
	{ MICROBENCH_ACCOUNTS, 'r', "public", "pgbench_accounts",
	  "public.pgbench_accounts" },
	{ MICROBENCH_TELLERS, 'r', "public", "pgbench_tellers",
	  "public.pgbench_tellers" },
	{ MICROBENCH_BRANCHES, 'r', "public", "pgbench_branches",
	  "public.pgbench_branches" },
	{ MICROBENCH_HISTORY, 'r', "public", "pgbench_history",
	  "public.pgbench_history" },
};

/* abalance, tbalance and bbalance, by their attribute numbers */
static struct catalog_balance balances[] = {
	{ MICROBENCH_ACCOUNTS, 1, { 3 }, { "abalance" } },
	{ MICROBENCH_TELLERS, 1, { 3 }, { "tbalance" } },
	{ MICROBENCH_BRANCHES, 1, { 2 }, { "bbalance" } },
};

int catalog_open(const struct policy *policy, struct catalog **out)
{
	struct catalog *catalog = calloc(1, sizeof(*catalog));
	size_t i;

	(void)policy;
	if (!catalog)
		return -ENOMEM;
	catalog->db.catalog = catalog;
	for (i = 0; i < sizeof(relations) / sizeof(relations[0]); i++)
		if (oidmap_put(&catalog->db.relations, relations[i].oid,
			       &relations[i])) {
			catalog_close(catalog);
			return -ENOMEM;
		}
	*out = catalog;
	return 0;
}

int microbench_catalog_bind(struct catalog *catalog, bool bind_balances)
{
	size_t i;

	oidmap_clear(&catalog->db.balances, NULL);
	if (!bind_balances)
		return 0;
	for (i = 0; i < sizeof(balances) / sizeof(balances[0]); i++)
		if (oidmap_put(&catalog->db.balances, balances[i].relid,
			       &balances[i]))
			return -ENOMEM;
	return 0;
}

void catalog_close(struct catalog *catalog)
{
	if (!catalog)
		return;
	oidmap_free(&catalog->db.relations);
	oidmap_free(&catalog->db.balances);
	free(catalog);
}

struct catalog_db *catalog_db(struct catalog *catalog, const char *dbname,
			      char *err, size_t err_len)
{
	(void)dbname;
	(void)err;
	(void)err_len;
	return &catalog->db;
}

const struct catalog_relation *catalog_relation(struct catalog_db *db,
						uint32_t oid)
{
	db->catalog->stats.hits++;
	return oidmap_get(&db->relations, oid);
}

const char *catalog_function(struct catalog_db *db, uint32_t oid)
{
	(void)db;
	return oid ? "public.unknown" : "inline_code_block";
}

const struct catalog_balance *catalog_balance(struct catalog_db *db,
					      uint32_t relid)
{
	return oidmap_get(&db->balances, relid);
}

bool catalog_allowed_function(struct catalog_db *db, uint32_t oid)
{
	(void)db;
	(void)oid;
	return false;
}

bool catalog_immutable(struct catalog_db *db, uint32_t relid)
{
	(void)db;
	(void)relid;
	return false;
}

bool catalog_own_backend(struct catalog *catalog, uint32_t pid)
{
	(void)catalog;
	(void)pid;
	return false;
}

int catalog_invalidate(struct catalog_db *db)
{
	(void)db;
	return 0;
}

void catalog_stats(const struct catalog *catalog, struct catalog_stats *out)
{
	*out = catalog->stats;
}

int catalog_take_changed_allowed(struct catalog_db *db, uint32_t *oids,
				 int max)
{
	(void)db;
	(void)oids;
	(void)max;
	return 0;
}

uint32_t catalog_events_table(struct catalog_db *db)
{
	(void)db;
	return 0;
}
