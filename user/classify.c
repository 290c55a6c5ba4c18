/*
 * The rules. Monetary: a result relation whose written columns (the
 * updatedCols set: UPDATE, ON CONFLICT DO UPDATE, MERGE ... UPDATE) meet a
 * bound balance column, while no allowed function is on the backend's
 * stack. Event immutability: a result relation bound as append-only that
 * the statement may update or delete (the permissions the planner checks:
 * UPDATE, DELETE, MERGE actions, upsert), and any TRUNCATE, DROP, RENAME or
 * weakening ALTER of one.
 */
#include <string.h>

#include "classify.h"

/* CmdType, PostgreSQL 12 and later */
enum { CMD_SELECT = 1, CMD_UPDATE, CMD_INSERT, CMD_DELETE, CMD_MERGE };

const char *classify_invariant_name(enum invariant invariant)
{
	switch (invariant) {
	case INV_MONETARY:
		return "monetary";
	case INV_EVENT_IMMUTABILITY:
		return "event_immutability";
	case INV_HASH_INTEGRITY:
		return "hash_integrity";
	default:
		return "monitor";
	}
}

const char *classify_command(uint32_t operation,
			     const struct pgv_result_rel *rel)
{
	switch (operation) {
	case CMD_UPDATE:
		return "UPDATE";
	case CMD_DELETE:
		return "DELETE";
	case CMD_MERGE:
		return "MERGE";
	case CMD_INSERT:
		return rel->required_perms & ACL_UPDATE_BIT
			       ? "INSERT ON CONFLICT DO UPDATE" : "INSERT";
	default:
		/* a data-modifying CTE under a SELECT */
		if (rel->required_perms & ACL_DELETE_BIT)
			return "DELETE";
		if (rel->required_perms & ACL_UPDATE_BIT)
			return "UPDATE";
		return "INSERT";
	}
}

static bool colset_has(const __u64 *words, unsigned int member)
{
	if (member >= PGV_COLSET_WORDS * 64)
		return false;
	return words[member / 64] & (1ULL << (member % 64));
}

/*
 * Is the write done inside an allowed function? Walking from the innermost
 * frame out, an allowed function makes it legal, but a trigger met first
 * does not pass: a trigger the allowed function's own writes fire is code
 * it does not control, and one on the balance table could ride on every
 * legal posting. Functions the allowed one calls directly are its own.
 */
static bool stack_allowed(const struct classify_bindings *bindings,
			  const struct pgv_header *hdr)
{
	int i = hdr->stack_len < PGV_STACK_MAX ? hdr->stack_len : PGV_STACK_MAX;

	while (--i >= 0) {
		if (bindings->allowed(bindings->arg, hdr->stack[i]))
			return true;
		if (hdr->trigger_mask & (1u << i))
			return false;
	}
	return false;
}

static bool monetary(const struct classify_bindings *bindings,
		     const struct pgv_exec_event *event,
		     const struct pgv_result_rel *rel, struct finding *f)
{
	const struct catalog_balance *balance;
	unsigned int offset = bindings->version->layout->attr_offset;
	int i;

	balance = bindings->balance(bindings->arg, rel->relid);
	if (!balance)
		return false;
	memset(f, 0, sizeof(*f));
	for (i = 0; i < balance->n_columns; i++)
		if (colset_has(rel->updated_cols, balance->attnums[i] + offset))
			f->columns[f->n_columns++] = balance->names[i];
	if (!f->n_columns || stack_allowed(bindings, &event->hdr))
		return false;
	f->invariant = INV_MONETARY;
	f->rule = "balance_write_outside_allowed_function";
	f->command = classify_command(event->operation, rel);
	f->relid = rel->relid;
	return true;
}

static bool immutability(const struct classify_bindings *bindings,
			 const struct pgv_exec_event *event,
			 const struct pgv_result_rel *rel, struct finding *f)
{
	__u32 perms = rel->required_perms;

	if (!(perms & (ACL_UPDATE_BIT | ACL_DELETE_BIT)) ||
	    !bindings->immutable(bindings->arg, rel->relid))
		return false;
	memset(f, 0, sizeof(*f));
	f->invariant = INV_EVENT_IMMUTABILITY;
	f->rule = perms & ACL_DELETE_BIT ? "event_deleted" : "event_updated";
	if ((perms & ACL_DELETE_BIT) && (perms & ACL_UPDATE_BIT))
		f->rule = "event_updated_or_deleted";
	f->command = classify_command(event->operation, rel);
	f->relid = rel->relid;
	return true;
}

int classify_exec(const struct classify_bindings *bindings,
		  const struct pgv_exec_event *event, struct finding *out)
{
	int i, n = 0;

	for (i = 0; i < event->n_result_rels && i < PGV_RESULT_RELS_MAX; i++) {
		const struct pgv_result_rel *rel = &event->rels[i];

		/*
		 * Partitions and inheritance children reached through their
		 * parent carry no permissions of their own: the parent, also a
		 * result relation, stands for them, so one statement gives
		 * one record.
		 */
		if (!rel->required_perms)
			continue;

		if (monetary(bindings, event, rel, &out[n]))
			n++;
		if (immutability(bindings, event, rel, &out[n]))
			n++;
	}
	return n;
}

static bool alter_finding(const struct classify_bindings *bindings,
			  const struct pgv_target_event *event,
			  struct finding *f)
{
	__u32 i;

	for (i = 0; i < event->n_alter_cmds && i < PGV_ALTER_CMDS_MAX; i++) {
		__u32 subtype = event->alter_cmds[i];
		const char *name;

		if (pglayout_alter_is_harmless(bindings->version, subtype))
			continue;
		name = pglayout_alter_name(bindings->version, subtype);
		f->detail[f->n_detail++] = name ? name : "unknown";
	}
	return f->n_detail > 0;
}

int classify_target(const struct classify_bindings *bindings,
		    const struct pgv_target_event *event, struct finding *out)
{
	static const struct {
		const char *rule;
		const char *command;
	} kinds[] = {
		[PGV_TARGET_TRUNCATE] = { "event_table_truncated", "TRUNCATE" },
		[PGV_TARGET_DROP] = { "event_table_dropped", "DROP" },
		[PGV_TARGET_ALTER] = { "event_table_weakened", "ALTER TABLE" },
		[PGV_TARGET_RENAME] = { "event_table_renamed", "ALTER TABLE RENAME" },
	};
	int n = 0;
	__u32 i;

	if (event->kind < PGV_TARGET_TRUNCATE || event->kind > PGV_TARGET_RENAME)
		return 0;
	for (i = 0; i < event->n_relids && i < PGV_TARGETS_MAX; i++) {
		struct finding *f = &out[n];

		if (!bindings->immutable(bindings->arg, event->relids[i]))
			continue;
		memset(f, 0, sizeof(*f));
		if (event->kind == PGV_TARGET_ALTER &&
		    !alter_finding(bindings, event, f))
			continue;
		f->invariant = INV_EVENT_IMMUTABILITY;
		f->rule = kinds[event->kind].rule;
		f->command = kinds[event->kind].command;
		f->relid = event->relids[i];
		n++;
	}
	return n;
}
