/*
 * Classification: what a captured statement or utility target did against
 * the policy, decided by identity (relation OIDs, column numbers, function
 * OIDs), never by statement text. Pure functions of the event and the
 * bindings the caller supplies, so they are tested without a server.
 */
#ifndef USER_CLASSIFY_H
#define USER_CLASSIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "pglayout.h"
#include "pgvigil/events.h"

/* How a statement touches a relation, from the permissions it needs. */
#define ACL_INSERT_BIT	(1u << 0)
#define ACL_UPDATE_BIT	(1u << 2)
#define ACL_DELETE_BIT	(1u << 3)

enum invariant {
	INV_MONETARY,
	INV_EVENT_IMMUTABILITY,
	INV_HASH_INTEGRITY,
	INV_MONITOR,
};

struct classify_bindings {
	const struct catalog_balance *(*balance)(void *arg, uint32_t relid);
	bool (*allowed)(void *arg, uint32_t fn_oid);
	bool (*immutable)(void *arg, uint32_t relid);
	void *arg;
	const struct pglayout_version *version;
};

#define FINDING_COLUMNS_MAX 16

struct finding {
	enum invariant invariant;
	const char *rule;
	const char *command;		/* "UPDATE", "TRUNCATE", ... */
	uint32_t relid;
	int n_columns;
	const char *columns[FINDING_COLUMNS_MAX];	/* bound names */
	const char *detail[PGV_ALTER_CMDS_MAX];		/* ALTER subcommands */
	int n_detail;
};

#define CLASSIFY_FINDINGS_MAX (2 * PGV_TARGETS_MAX)

/*
 * Findings of an executor statement, into 'out' (CLASSIFY_FINDINGS_MAX
 * entries). Returns how many.
 */
int classify_exec(const struct classify_bindings *bindings,
		  const struct pgv_exec_event *event, struct finding *out);

/* Findings of a utility target (TRUNCATE, DROP, ALTER, RENAME). */
int classify_target(const struct classify_bindings *bindings,
		    const struct pgv_target_event *event, struct finding *out);

/* "monetary", "event_immutability", "hash_integrity", "monitor" */
const char *classify_invariant_name(enum invariant invariant);

/* The command a statement runs against one result relation. */
const char *classify_command(uint32_t operation,
			     const struct pgv_result_rel *rel);

#endif /* USER_CLASSIFY_H */
