/*
 * Supported server layouts. To support a new major version, generate its
 * row with tools/gen-pglayout and add it to 'versions'.
 */
#include <stddef.h>
#include <string.h>

#include "pglayout.h"

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
