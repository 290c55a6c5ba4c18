/*
 * Supported server layouts. To support a new major version, generate its
 * row with tools/gen-pglayout and add it to 'versions'.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "pglayout.h"
#include "pgvigil/events.h"

#include "pglayout_pg15.inc"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const struct pglayout_version versions[] = {
	{ &pglayout_pg15, pglayout_pg15_alter_names,
	  COUNT(pglayout_pg15_alter_names), pglayout_pg15_utility_tags },
};

/* Subcommands that cannot weaken an append-only table. */
static const char *const harmless_alters[] = {
	"AddColumn", "AddColumnRecurse", "AddIndex", "AddConstraint",
	"AddConstraintRecurse", "ValidateConstraint",
	"ValidateConstraintRecurse", "AddIndexConstraint", "SetNotNull",
	"CheckNotNull", "SetStatistics", "EnableTrig", "EnableAlwaysTrig",
	"EnableTrigAll", "EnableTrigUser", "EnableRule", "EnableAlwaysRule",
	"ClusterOn", "EnableRowSecurity", "ForceRowSecurity",
};

const struct pglayout_version *pglayout_find(unsigned int major)
{
	size_t i;

	for (i = 0; i < COUNT(versions); i++)
		if (versions[i].layout->major == major)
			return &versions[i];
	return NULL;
}

struct window_field {
	const char *name;
	unsigned int offset;
	unsigned int width;
};

static int check_window(const char *what, unsigned int size, unsigned int cap,
			const struct window_field *fields, size_t n, char *err,
			size_t len)
{
	unsigned int read = size < cap ? size : cap;
	size_t i;

	for (i = 0; i < n; i++) {
		if (fields[i].offset + fields[i].width <= read)
			continue;
		snprintf(err, len, "%s.%s at offset %u (%u bytes) lies beyond "
			 "the %u bytes the probes read of it", what,
			 fields[i].name, fields[i].offset, fields[i].width,
			 read);
		return -EINVAL;
	}
	return 0;
}

#define FIELD(l, member, width) { #member, (l)->member, width }

int pglayout_check(const struct pg_layout *l, char *err, size_t len)
{
	const struct window_field qd[] = {
		FIELD(l, qd_operation, 4),
		FIELD(l, qd_plannedstmt, 8),
		FIELD(l, qd_source_text, 8),
	};
	const struct window_field ps[] = {
		FIELD(l, ps_has_modifying_cte, 1),
		FIELD(l, ps_rtable, 8),
		FIELD(l, ps_result_relations, 8),
		FIELD(l, ps_utility_stmt, 8),
		FIELD(l, ps_stmt_location, 4),
		FIELD(l, ps_stmt_len, 4),
	};
	const struct window_field rte[] = {
		FIELD(l, rte_rtekind, 4),
		FIELD(l, rte_relid, 4),
		FIELD(l, rte_relkind, 1),
		FIELD(l, rte_required_perms, 4),
		FIELD(l, rte_inserted_cols, 8),
		FIELD(l, rte_updated_cols, 8),
	};
	/* a List is read with its first inline cell at least */
	const struct window_field list[] = {
		FIELD(l, list_length, 4),
		FIELD(l, list_elements, 8),
		FIELD(l, list_initial_elements, 8),
	};
	const struct window_field bms[] = {
		FIELD(l, bms_nwords, 4),
		FIELD(l, bms_words, 8 * PGV_BMS_HEAD_WORDS),
	};
	int ret;

	ret = check_window("QueryDesc", l->qd_size, PGV_WIN_QD, qd,
			   COUNT(qd), err, len);
	if (!ret)
		ret = check_window("PlannedStmt", l->ps_size, PGV_WIN_PS, ps,
				   COUNT(ps), err, len);
	if (!ret)
		ret = check_window("RangeTblEntry", l->rte_size, PGV_WIN_RTE,
				   rte, COUNT(rte), err, len);
	if (!ret)
		ret = check_window("List", PGV_WIN_LIST, PGV_WIN_LIST, list,
				   COUNT(list), err, len);
	if (!ret)
		ret = check_window("Bitmapset", PGV_WIN_BMS, PGV_WIN_BMS, bms,
				   COUNT(bms), err, len);
	return ret;
}

const char *pglayout_supported(void)
{
	return "15";
}

const char *pglayout_alter_name(const struct pglayout_version *version,
				unsigned int subtype)
{
	if (subtype >= version->n_alter_names)
		return NULL;
	return version->alter_names[subtype];
}

const char *pglayout_tag_name(const struct pglayout_version *version, int tag)
{
	const struct pglayout_tag *t;

	for (t = version->utility_tags; t->name; t++)
		if (t->tag == tag)
			return t->name;
	return NULL;
}

int pglayout_tag_number(const struct pglayout_version *version,
		       const char *name)
{
	const struct pglayout_tag *t;

	for (t = version->utility_tags; t->name; t++)
		if (!strcmp(t->name, name))
			return t->tag;
	return -ENOENT;
}

bool pglayout_alter_is_harmless(const struct pglayout_version *version,
				unsigned int subtype)
{
	const char *name = pglayout_alter_name(version, subtype);
	size_t i;

	if (!name)
		return false;
	for (i = 0; i < COUNT(harmless_alters); i++)
		if (!strcmp(name, harmless_alters[i]))
			return true;
	return false;
}
