/*
 * Catalog cache over libpq. One connection per database, opened on first
 * use with default_transaction_read_only, so the monitor can only read.
 *
 * A connection the server dropped (a restart, a terminated backend) is
 * opened again by the next query that finds it broken, at most once a
 * second after a failed attempt; the new backend's pid replaces the old
 * one for catalog_own_backend. A database whose policy could not be bound
 * again is stale: catalog_db and catalog_ready refuse it until a binding
 * succeeds, so that its statements are reported as not classified rather
 * than classified against what may no longer be true.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "catalog.h"
#include "log.h"

#define MAX_DATABASES 64

struct catalog_db {
	struct catalog *catalog;
	char *name;
	PGconn *conn;
	uint32_t backend_pid;
	time_t failed_at;		/* last failed connect or bind */
	bool stale;			/* the last binding failed */
	char error[256];		/* why, for the caller */
	struct oidmap relations;	/* oid -> catalog_relation */
	struct oidmap functions;	/* oid -> char * */
	struct oidmap balances;		/* relid -> catalog_balance */
	struct oidmap allowed;		/* oid -> allowed_version */
	bool bound;			/* the policy was bound once */
	uint32_t changed[16];		/* allowed functions new or redefined */
	int n_changed;
	struct oidmap immutable;	/* relid -> (void *)1 */
	uint32_t events_relid;		/* the hash events table */
};

struct catalog {
	const struct policy *policy;
	struct catalog_db *dbs[MAX_DATABASES];
	int n_dbs;
	struct catalog_stats stats;
};

#define BOUND ((void *)1)

/* The definition of an allowed function as last read. */
struct allowed_version {
	char digest[33];		/* md5 of what can redefine it */
	uint64_t seen_ns;		/* CLOCK_MONOTONIC of the first read */
};

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int catalog_open(const struct policy *policy, struct catalog **out)
{
	struct catalog *catalog = calloc(1, sizeof(*catalog));

	if (!catalog)
		return -ENOMEM;
	catalog->policy = policy;
	*out = catalog;
	return 0;
}

static void free_relation(void *value)
{
	struct catalog_relation *rel = value;

	free(rel->schema);
	free(rel->name);
	free(rel->qualified);
	free(rel);
}

static void free_balance(void *value)
{
	struct catalog_balance *balance = value;
	int i;

	for (i = 0; i < balance->n_columns; i++)
		free(balance->names[i]);
	free(balance);
}

static void clear_names(struct catalog_db *db)
{
	oidmap_clear(&db->relations, free_relation);
	oidmap_clear(&db->functions, free);
}

static void free_db(struct catalog_db *db)
{
	clear_names(db);
	oidmap_clear(&db->balances, free_balance);
	oidmap_free(&db->relations);
	oidmap_free(&db->functions);
	oidmap_free(&db->balances);
	oidmap_clear(&db->allowed, free);
	oidmap_free(&db->allowed);
	oidmap_free(&db->immutable);
	if (db->conn)
		PQfinish(db->conn);
	free(db->name);
	free(db);
}

void catalog_close(struct catalog *catalog)
{
	int i;

	if (!catalog)
		return;
	for (i = 0; i < catalog->n_dbs; i++)
		free_db(catalog->dbs[i]);
	free(catalog);
}

static void note_error(struct catalog_db *db, const char *what)
{
	snprintf(db->error, sizeof(db->error), "%s '%s': %s", what, db->name,
		 db->conn ? PQerrorMessage(db->conn) : "out of memory");
	db->error[strcspn(db->error, "\n")] = 0;
}

/*
 * Open the connection, or open it again when the server dropped it (the
 * old one is of no use: its backend is gone). Returns 0 or -ECONNREFUSED;
 * after a failure, tries again only in a later second.
 */
static int ensure_connected(struct catalog_db *db)
{
	const char *keys[] = { "dbname", "dbname", "application_name",
			       "options", NULL };
	const char *values[] = { db->catalog->policy->dsn, db->name,
				 "pgvigil catalog",
				 "-c default_transaction_read_only=on", NULL };

	if (db->conn && PQstatus(db->conn) == CONNECTION_OK)
		return 0;
	if (db->failed_at == time(NULL))
		return -ECONNREFUSED;
	if (db->conn)
		PQreset(db->conn);
	else
		db->conn = PQconnectdbParams(keys, values, 1);
	if (PQstatus(db->conn) != CONNECTION_OK) {
		note_error(db, "cannot connect to database");
		db->failed_at = time(NULL);
		return -ECONNREFUSED;
	}
	db->backend_pid = PQbackendPID(db->conn);
	return 0;
}

static PGresult *run_query(struct catalog_db *db, const char *sql,
			   int nparams, const char *const *params)
{
	PGresult *res;

	db->catalog->stats.queries++;
	res = PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		return res;
	db->catalog->stats.errors++;
	note_error(db, "cannot read the catalog of");
	log_debug("catalog query failed in '%s': %s", db->name,
		  PQerrorMessage(db->conn));
	PQclear(res);
	return NULL;
}

/* A query, on a connection opened again if the server dropped it. */
static PGresult *query(struct catalog_db *db, const char *sql, int nparams,
		       const char *const *params)
{
	PGresult *res = NULL;

	if (!ensure_connected(db))
		res = run_query(db, sql, nparams, params);
	/* a dropped connection shows only when it is used */
	if (!res && db->conn && PQstatus(db->conn) == CONNECTION_BAD &&
	    !ensure_connected(db))
		res = run_query(db, sql, nparams, params);
	return res;
}

static struct catalog_relation *add_relation(struct catalog_db *db,
					     PGresult *res, int row)
{
	struct catalog_relation *rel = calloc(1, sizeof(*rel));

	if (!rel)
		return NULL;
	rel->oid = strtoul(PQgetvalue(res, row, 0), NULL, 10);
	rel->schema = strdup(PQgetvalue(res, row, 1));
	rel->name = strdup(PQgetvalue(res, row, 2));
	rel->relkind = PQgetvalue(res, row, 3)[0];
	if (asprintf(&rel->qualified, "%s.%s", rel->schema, rel->name) < 0)
		rel->qualified = NULL;
	if (!rel->schema || !rel->name || !rel->qualified ||
	    oidmap_put(&db->relations, rel->oid, rel)) {
		free_relation(rel);
		return NULL;
	}
	return rel;
}

#define RELATIONS_SQL                                                          \
	"SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c "       \
	"JOIN pg_namespace n ON n.oid = c.relnamespace "

/* Load every user relation's name; bind immutable and balance tables. */
static int load_relations(struct catalog_db *db, struct oidmap *balance_rels)
{
	const struct policy *policy = db->catalog->policy;
	PGresult *res;
	int row;

	res = query(db, RELATIONS_SQL
		    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND "
		    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
		    "AND n.nspname NOT LIKE 'pg_toast%'", 0, NULL);
	if (!res)
		return -EIO;
	for (row = 0; row < PQntuples(res); row++) {
		struct catalog_relation *rel = add_relation(db, res, row);

		if (!rel)
			continue;
		if (policy_names_match(&policy->immutable_tables, rel->schema,
				       rel->name, NULL))
			oidmap_put(&db->immutable, rel->oid, BOUND);
		if (policy_names_match(&policy->balance_columns, rel->schema,
				       rel->name, NULL))
			oidmap_put(balance_rels, rel->oid, rel);
		if (policy->hash.enabled &&
		    !strcmp(rel->qualified, policy->hash.events_table))
			db->events_relid = rel->oid;
	}
	PQclear(res);
	return 0;
}

static struct catalog_balance *balance_for(struct catalog_db *db,
					   uint32_t relid)
{
	struct catalog_balance *balance = oidmap_get(&db->balances, relid);

	if (balance)
		return balance;
	balance = calloc(1, sizeof(*balance));
	if (!balance)
		return NULL;
	balance->relid = relid;
	if (oidmap_put(&db->balances, relid, balance)) {
		free(balance);
		return NULL;
	}
	return balance;
}

static void bind_column(struct catalog_db *db, uint32_t relid, int attnum,
			const char *attname)
{
	struct catalog_balance *balance = balance_for(db, relid);
	int i;

	if (!balance)
		return;
	for (i = 0; i < balance->n_columns; i++)
		if (balance->attnums[i] == attnum)
			return;
	if (balance->n_columns == 16)
		return;
	balance->attnums[balance->n_columns] = attnum;
	balance->names[balance->n_columns++] = strdup(attname);
}

/*
 * Partitions and inheritance children of a protected table are protected
 * too: an UPDATE through the parent writes to them, and the executor names
 * them, not the parent, as its result relations. A child's balance
 * columns are matched by the names of the table the policy named.
 */
static int bind_descendants(struct catalog_db *db, struct oidmap *balance_rels)
{
	PGresult *res;
	int row, pass;
	bool grew = true;

	res = query(db, "SELECT inhrelid, inhparent FROM pg_inherits", 0, NULL);
	if (!res)
		return -EIO;
	for (pass = 0; grew && pass < 32; pass++) {
		grew = false;
		for (row = 0; row < PQntuples(res); row++) {
			uint32_t child = strtoul(PQgetvalue(res, row, 0), NULL, 10);
			uint32_t parent = strtoul(PQgetvalue(res, row, 1), NULL, 10);
			void *source = oidmap_get(balance_rels, parent);

			if (oidmap_get(&db->immutable, parent) &&
			    !oidmap_get(&db->immutable, child)) {
				oidmap_put(&db->immutable, child, BOUND);
				grew = true;
			}
			if (source && !oidmap_get(balance_rels, child)) {
				oidmap_put(balance_rels, child, source);
				grew = true;
			}
		}
	}
	PQclear(res);
	return 0;
}

/* A bound column keeps its number through a rename; follow its name. */
static void rename_column(struct catalog_db *db, uint32_t relid, int attnum,
			  const char *attname)
{
	struct catalog_balance *balance = oidmap_get(&db->balances, relid);
	char *copy;
	int i;

	for (i = 0; balance && i < balance->n_columns; i++) {
		if (balance->attnums[i] != attnum ||
		    !strcmp(balance->names[i], attname))
			continue;
		copy = strdup(attname);
		if (!copy)
			return;
		free(balance->names[i]);
		balance->names[i] = copy;
	}
}

/* Bind the balance columns of the relations that match by name. */
static int load_balance_columns(struct catalog_db *db,
				struct oidmap *balance_rels)
{
	const struct policy *policy = db->catalog->policy;
	const struct catalog_relation *rel;
	PGresult *res;
	int row;

	if (!balance_rels->count && !db->balances.count)
		return 0;
	res = query(db, "SELECT attrelid, attnum, attname FROM pg_attribute "
		    "WHERE attnum > 0 AND NOT attisdropped AND attrelid IN "
		    "(SELECT oid FROM pg_class WHERE relkind IN ('r', 'p'))",
		    0, NULL);
	if (!res)
		return -EIO;
	for (row = 0; row < PQntuples(res); row++) {
		uint32_t relid = strtoul(PQgetvalue(res, row, 0), NULL, 10);
		const char *attname = PQgetvalue(res, row, 2);

		rename_column(db, relid, atoi(PQgetvalue(res, row, 1)), attname);
		rel = oidmap_get(balance_rels, relid);
		if (rel && policy_names_match(&policy->balance_columns,
					      rel->schema, rel->name, attname))
			bind_column(db, relid, atoi(PQgetvalue(res, row, 1)),
				    attname);
	}
	PQclear(res);
	return 0;
}

/*
 * Bind an allowed function with the digest of its definition. After the
 * first binding, an allowed function that appears or whose definition
 * changes is noted: whoever can redefine postings_apply can move money
 * through it.
 */
static void bind_allowed(struct catalog_db *db, uint32_t oid,
			 const char *digest, uint64_t read_ns)
{
	struct allowed_version *version = oidmap_get(&db->allowed, oid);

	if (version && !strcmp(version->digest, digest))
		return;
	if (!version) {
		version = calloc(1, sizeof(*version));
		if (!version || oidmap_put(&db->allowed, oid, version)) {
			free(version);
			return;
		}
	}
	snprintf(version->digest, sizeof(version->digest), "%s", digest);
	version->seen_ns = read_ns;
	if (db->bound && db->n_changed < 16)
		db->changed[db->n_changed++] = oid;
}

/* Load user function names; bind the allowed functions. */
static int load_functions(struct catalog_db *db)
{
	const struct policy *policy = db->catalog->policy;
	uint64_t read_ns;
	PGresult *res;
	char *name;
	int row;

	res = query(db, "SELECT p.oid, n.nspname, p.proname, md5(concat_ws("
		    "'|', p.prosrc, p.probin, p.prosecdef, p.proconfig, "
		    "p.prolang, p.proowner, p.provolatile)) FROM pg_proc p "
		    "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE "
		    "n.nspname NOT IN ('pg_catalog', 'information_schema')",
		    0, NULL);
	if (!res)
		return -EIO;
	/*
	 * After the answer, not before the question: a commit whose probe
	 * fired while the query was on its way may be in the snapshot, and
	 * must count as before the read (at worst it claims a change that was
	 * not its own, never misses one).
	 */
	read_ns = monotonic_ns();
	for (row = 0; row < PQntuples(res); row++) {
		uint32_t oid = strtoul(PQgetvalue(res, row, 0), NULL, 10);
		const char *schema = PQgetvalue(res, row, 1);
		const char *proname = PQgetvalue(res, row, 2);

		if (asprintf(&name, "%s.%s", schema, proname) < 0)
			continue;
		free(oidmap_get(&db->functions, oid));
		oidmap_put(&db->functions, oid, name);
		if (oidmap_get(&db->allowed, oid) ||
		    policy_names_match(&policy->allowed_functions, schema,
				       proname, NULL))
			bind_allowed(db, oid, PQgetvalue(res, row, 3),
				     read_ns);
	}
	PQclear(res);
	return 0;
}

/* Remove the keys of 'map' that 'keep' lacks; 'fn' frees a value. */
static void prune_map(struct oidmap *map, const struct oidmap *keep,
		      void (*fn)(void *value))
{
	uint32_t *gone = calloc(map->count + 1, sizeof(*gone));
	size_t i, n = 0;
	void *value;

	if (!gone)
		return;
	oidmap_foreach(map, i)
		if (!oidmap_get(keep, map->keys[i]))
			gone[n++] = map->keys[i];
	for (i = 0; i < n; i++) {
		value = oidmap_remove(map, gone[i]);
		if (fn)
			fn(value);
	}
	free(gone);
}

/*
 * Drop bound OIDs whose objects no longer exist (a dropped table's OID may
 * be reused); keep the others, renamed or not.
 */
static void prune_bindings(struct catalog_db *db)
{
	prune_map(&db->immutable, &db->relations, NULL);
	prune_map(&db->balances, &db->relations, free_balance);
	prune_map(&db->allowed, &db->functions, free);
}

static int bind_policy(struct catalog_db *db)
{
	struct oidmap balance_rels = { 0 };
	int ret;

	clear_names(db);
	ret = load_relations(db, &balance_rels);
	if (!ret)
		ret = bind_descendants(db, &balance_rels);
	if (!ret)
		ret = load_balance_columns(db, &balance_rels);
	if (!ret)
		ret = load_functions(db);
	oidmap_free(&balance_rels);
	if (!ret) {
		prune_bindings(db);
		db->bound = true;
	} else {
		db->failed_at = time(NULL);
	}
	db->stale = ret != 0;
	log_debug("catalog '%s': %zu relations, %zu immutable, %zu with "
		  "balances, %zu allowed functions", db->name,
		  db->relations.count, db->immutable.count, db->balances.count,
		  db->allowed.count);
	return ret;
}

static struct catalog_db *find_db(struct catalog *catalog, const char *name)
{
	int i;

	for (i = 0; i < catalog->n_dbs; i++)
		if (!strcmp(catalog->dbs[i]->name, name))
			return catalog->dbs[i];
	return NULL;
}

/* Bind again a database whose last binding failed; 0 or -errno. */
static int rebind(struct catalog_db *db, char *err, size_t err_len)
{
	if (!db->stale)
		return 0;
	if (db->failed_at == time(NULL)) {
		snprintf(err, err_len, "%s", db->error);
		return -EAGAIN;
	}
	if (bind_policy(db)) {
		snprintf(err, err_len, "%s", db->error);
		return -EIO;
	}
	return 0;
}

struct catalog_db *catalog_db(struct catalog *catalog, const char *dbname,
			      char *err, size_t err_len)
{
	struct catalog_db *db = find_db(catalog, dbname);

	if (!db) {
		if (catalog->n_dbs == MAX_DATABASES) {
			snprintf(err, err_len, "more than %d databases",
				 MAX_DATABASES);
			return NULL;
		}
		db = calloc(1, sizeof(*db));
		if (!db || !(db->name = strdup(dbname))) {
			free(db);
			snprintf(err, err_len, "out of memory");
			return NULL;
		}
		db->catalog = catalog;
		db->stale = true;
		catalog->dbs[catalog->n_dbs++] = db;
	}
	return rebind(db, err, err_len) ? NULL : db;
}

bool catalog_ready(struct catalog_db *db, char *err, size_t err_len)
{
	return !rebind(db, err, err_len);
}

const struct catalog_relation *catalog_relation(struct catalog_db *db,
						uint32_t oid)
{
	const struct catalog_relation *rel = oidmap_get(&db->relations, oid);
	char param[16];
	const char *params[] = { param };
	PGresult *res;

	if (rel) {
		db->catalog->stats.hits++;
		return rel;
	}
	db->catalog->stats.misses++;
	snprintf(param, sizeof(param), "%u", oid);
	res = query(db, RELATIONS_SQL "WHERE c.oid = $1::oid", 1, params);
	if (!res)
		return NULL;
	if (PQntuples(res) == 1)
		rel = add_relation(db, res, 0);
	PQclear(res);
	return rel;
}

const char *catalog_function(struct catalog_db *db, uint32_t oid)
{
	char param[16], *name = oidmap_get(&db->functions, oid);
	const char *params[] = { param };
	PGresult *res;

	if (!oid)
		return "inline_code_block";
	if (name) {
		db->catalog->stats.hits++;
		return name;
	}
	db->catalog->stats.misses++;
	snprintf(param, sizeof(param), "%u", oid);
	res = query(db, "SELECT n.nspname || '.' || p.proname FROM pg_proc p "
		    "JOIN pg_namespace n ON n.oid = p.pronamespace "
		    "WHERE p.oid = $1::oid", 1, params);
	if (res && PQntuples(res) == 1)
		name = strdup(PQgetvalue(res, 0, 0));
	else if (asprintf(&name, "oid:%u", oid) < 0)
		name = NULL;
	PQclear(res);
	if (name && oidmap_put(&db->functions, oid, name)) {
		free(name);
		return "?";
	}
	return name ? name : "?";
}

const struct catalog_balance *catalog_balance(struct catalog_db *db,
					      uint32_t relid)
{
	return oidmap_get(&db->balances, relid);
}

bool catalog_allowed_function(struct catalog_db *db, uint32_t oid)
{
	return oidmap_get(&db->allowed, oid) != NULL;
}

bool catalog_immutable(struct catalog_db *db, uint32_t relid)
{
	return oidmap_get(&db->immutable, relid) != NULL;
}

int catalog_take_changed_allowed(struct catalog_db *db, uint32_t *oids,
				 int max)
{
	int n = db->n_changed < max ? db->n_changed : max;

	memcpy(oids, db->changed, n * sizeof(*oids));
	db->n_changed = 0;
	return n;
}

uint32_t catalog_events_table(struct catalog_db *db)
{
	return db->events_relid;
}

bool catalog_own_backend(struct catalog *catalog, uint32_t pid)
{
	int i;

	for (i = 0; i < catalog->n_dbs; i++)
		if (catalog->dbs[i]->conn && catalog->dbs[i]->backend_pid == pid)
			return true;
	return false;
}

int catalog_invalidate(struct catalog_db *db)
{
	return bind_policy(db);
}

int catalog_allowed_seen_since(struct catalog_db *db, uint64_t since_ns,
			       uint32_t *oids, int max)
{
	const struct allowed_version *version;
	size_t i;
	int n = 0;

	oidmap_foreach(&db->allowed, i) {
		version = db->allowed.values[i];
		if (version->seen_ns > since_ns && n < max)
			oids[n++] = db->allowed.keys[i];
	}
	return n;
}

void catalog_stats(const struct catalog *catalog, struct catalog_stats *out)
{
	*out = catalog->stats;
}
