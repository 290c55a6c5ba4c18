/* Unit tests of the classification rules, with bindings made up in-line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "classify.h"

#define ACCOUNTS 16384
#define EVENTS 16390
#define ALLOWED_FN 17000
#define OTHER_FN 17001
#define BALANCE_ATTNUM 3

static struct catalog_balance accounts_balance = {
	.relid = ACCOUNTS, .n_columns = 1, .attnums = { BALANCE_ATTNUM },
	.names = { "balance" },
};

static const struct catalog_balance *balance(void *arg, uint32_t relid)
{
	(void)arg;
	return relid == ACCOUNTS ? &accounts_balance : NULL;
}

static bool allowed(void *arg, uint32_t oid)
{
	(void)arg;
	return oid == ALLOWED_FN;
}

static bool immutable(void *arg, uint32_t relid)
{
	(void)arg;
	return relid == EVENTS;
}

static struct classify_bindings bindings(void)
{
	struct classify_bindings b = { balance, allowed, immutable, NULL,
				       pglayout_find(15) };

	return b;
}

static void set_column(struct pgv_result_rel *rel, int attnum)
{
	unsigned int member = attnum + pglayout_find(15)->layout->attr_offset;

	rel->updated_cols[member / 64] |= 1ULL << (member % 64);
}

static struct pgv_exec_event update_of(uint32_t relid, int attnum)
{
	struct pgv_exec_event event;

	memset(&event, 0, sizeof(event));
	event.operation = 2;	/* UPDATE */
	event.n_result_rels = 1;
	event.rels[0].relid = relid;
	event.rels[0].required_perms = ACL_UPDATE_BIT;
	set_column(&event.rels[0], attnum);
	return event;
}

static void classify_exec__balance_update__is_monetary(void **state)
{
	struct pgv_exec_event event = update_of(ACCOUNTS, BALANCE_ATTNUM);
	struct classify_bindings b = bindings();
	struct finding found[CLASSIFY_FINDINGS_MAX];

	(void)state;
	assert_int_equal(classify_exec(&b, &event, found), 1);
	assert_int_equal(found[0].invariant, INV_MONETARY);
	assert_string_equal(found[0].columns[0], "balance");
	assert_string_equal(found[0].command, "UPDATE");
}

static void classify_exec__allowed_function_anywhere_on_stack__passes(void **state)
{
	struct pgv_exec_event event = update_of(ACCOUNTS, BALANCE_ATTNUM);
	struct classify_bindings b = bindings();
	struct finding found[CLASSIFY_FINDINGS_MAX];

	(void)state;
	event.hdr.stack_len = 3;
	event.hdr.stack[0] = OTHER_FN;
	event.hdr.stack[1] = ALLOWED_FN;
	event.hdr.stack[2] = OTHER_FN;
	assert_int_equal(classify_exec(&b, &event, found), 0);
	/* beyond stack_len is not on the stack */
	event.hdr.stack_len = 1;
	assert_int_equal(classify_exec(&b, &event, found), 1);
}

static void classify_exec__trigger_inside_allowed_function__is_flagged(void **state)
{
	struct pgv_exec_event event = update_of(ACCOUNTS, BALANCE_ATTNUM);
	struct classify_bindings b = bindings();
	struct finding found[CLASSIFY_FINDINGS_MAX];

	(void)state;
	event.hdr.stack_len = 3;
	event.hdr.stack[0] = ALLOWED_FN;
	event.hdr.stack[1] = OTHER_FN;	/* a trigger its write fired */
	event.hdr.stack[2] = OTHER_FN;	/* a helper that trigger called */
	event.hdr.trigger_mask = 1u << 1;
	assert_int_equal(classify_exec(&b, &event, found), 1);
	/* a plain helper called by the allowed function is its own code */
	event.hdr.trigger_mask = 0;
	assert_int_equal(classify_exec(&b, &event, found), 0);
	/* an allowed function called from inside the trigger is fine */
	event.hdr.trigger_mask = 1u << 1;
	event.hdr.stack[2] = ALLOWED_FN;
	assert_int_equal(classify_exec(&b, &event, found), 0);
}

static void classify_exec__child_reached_through_parent__left_to_parent(void **state)
{
	struct pgv_exec_event event = update_of(ACCOUNTS, BALANCE_ATTNUM);
	struct classify_bindings b = bindings();
	struct finding found[CLASSIFY_FINDINGS_MAX];

	(void)state;
	event.rels[0].required_perms = 0;
	assert_int_equal(classify_exec(&b, &event, found), 0);
}

static void classify_exec__other_column__passes(void **state)
{
	struct pgv_exec_event event = update_of(ACCOUNTS, BALANCE_ATTNUM + 1);
	struct classify_bindings b = bindings();
	struct finding found[CLASSIFY_FINDINGS_MAX];

	(void)state;
	assert_int_equal(classify_exec(&b, &event, found), 0);
}

static void classify_exec__upsert__is_named_as_such(void **state)
{
	struct pgv_exec_event event = update_of(ACCOUNTS, BALANCE_ATTNUM);
	struct classify_bindings b = bindings();
	struct finding found[CLASSIFY_FINDINGS_MAX];

	(void)state;
	event.operation = 3;	/* INSERT */
	event.rels[0].required_perms = ACL_INSERT_BIT | ACL_UPDATE_BIT;
	assert_int_equal(classify_exec(&b, &event, found), 1);
	assert_string_equal(found[0].command, "INSERT ON CONFLICT DO UPDATE");
}

static void classify_exec__event_delete_in_cte__is_immutability(void **state)
{
	struct pgv_exec_event event;
	struct classify_bindings b = bindings();
	struct finding found[CLASSIFY_FINDINGS_MAX];

	(void)state;
	memset(&event, 0, sizeof(event));
	event.operation = 1;	/* SELECT over a data-modifying CTE */
	event.n_result_rels = 1;
	event.rels[0].relid = EVENTS;
	event.rels[0].required_perms = ACL_DELETE_BIT;
	assert_int_equal(classify_exec(&b, &event, found), 1);
	assert_int_equal(found[0].invariant, INV_EVENT_IMMUTABILITY);
	assert_string_equal(found[0].rule, "event_deleted");
	assert_string_equal(found[0].command, "DELETE");
	/* an insert into an event table is legal */
	event.rels[0].required_perms = ACL_INSERT_BIT;
	assert_int_equal(classify_exec(&b, &event, found), 0);
}

static void classify_target__alter__flags_only_weakening(void **state)
{
	const struct pglayout_version *v = pglayout_find(15);
	struct classify_bindings b = bindings();
	struct finding found[CLASSIFY_FINDINGS_MAX];
	struct pgv_target_event event;
	unsigned int i, add_constraint = ~0u, disable_trig = ~0u;

	(void)state;
	for (i = 0; i < v->n_alter_names; i++) {
		if (v->alter_names[i] && !strcmp(v->alter_names[i], "AddConstraint"))
			add_constraint = i;
		if (v->alter_names[i] && !strcmp(v->alter_names[i], "DisableTrig"))
			disable_trig = i;
	}
	memset(&event, 0, sizeof(event));
	event.kind = PGV_TARGET_ALTER;
	event.n_relids = 1;
	event.relids[0] = EVENTS;
	event.n_alter_cmds = 1;
	event.alter_cmds[0] = add_constraint;
	assert_int_equal(classify_target(&b, &event, found), 0);
	event.n_alter_cmds = 2;
	event.alter_cmds[1] = disable_trig;
	assert_int_equal(classify_target(&b, &event, found), 1);
	assert_string_equal(found[0].detail[0], "DisableTrig");
	/* unknown subcommand types count as weakening */
	event.n_alter_cmds = 1;
	event.alter_cmds[0] = 9999;
	assert_int_equal(classify_target(&b, &event, found), 1);
	/* other tables are none of this invariant's business */
	event.relids[0] = ACCOUNTS;
	assert_int_equal(classify_target(&b, &event, found), 0);
}

static void classify_target__truncate__names_each_event_table(void **state)
{
	struct classify_bindings b = bindings();
	struct finding found[CLASSIFY_FINDINGS_MAX];
	struct pgv_target_event event;

	(void)state;
	memset(&event, 0, sizeof(event));
	event.kind = PGV_TARGET_TRUNCATE;
	event.n_relids = 3;
	event.relids[0] = ACCOUNTS;
	event.relids[1] = EVENTS;
	event.relids[2] = EVENTS;
	assert_int_equal(classify_target(&b, &event, found), 2);
	assert_string_equal(found[0].rule, "event_table_truncated");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(classify_exec__balance_update__is_monetary),
		cmocka_unit_test(classify_exec__allowed_function_anywhere_on_stack__passes),
		cmocka_unit_test(classify_exec__other_column__passes),
		cmocka_unit_test(classify_exec__trigger_inside_allowed_function__is_flagged),
		cmocka_unit_test(classify_exec__child_reached_through_parent__left_to_parent),
		cmocka_unit_test(classify_exec__upsert__is_named_as_such),
		cmocka_unit_test(classify_exec__event_delete_in_cte__is_immutability),
		cmocka_unit_test(classify_target__alter__flags_only_weakening),
		cmocka_unit_test(classify_target__truncate__names_each_event_table),
	};

	return cmocka_run_group_tests_name("classify", tests, NULL, NULL);
}
