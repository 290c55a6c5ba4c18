# The monitor against a real server: the evasion matrix of the monetary and
# event-immutability invariants, session context, transaction outcomes.
# One server and one 'pgvigil run' for the file; each test runs its SQL,
# then a sentinel write in another session, waits for the sentinel's record
# and looks at the records that came before it.

setup_file()
{
	pgv_bank_start &&
	OUT=$PGV_TMP/feed.out &&
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$OUT" --feed "$PGV_TMP/journal"
}

teardown_file()
{
	pgv_stop_monitor
}

expect_one_monetary()
{
	local r=$1
	assert_eq "$(count_records "$r")" 1 "record count"
	assert_eq "$(fields "$r" .invariant)" monetary invariant
	assert_eq "$(fields "$r" .rule)" balance_write_outside_allowed_function rule
	assert_eq "$(fields "$r" .relation)" public.accounts relation
	assert_eq "$(fields "$r" '.columns | join(",")')" balance columns
}

expect_none()
{
	assert_eq "$(count_records "$1")" 0 "record count"
}

test_direct_update_is_flagged()
{
	local r
	r=$(records_of "UPDATE accounts SET balance = balance + 5 WHERE account = 'alice'")
	expect_one_monetary "$r"
	assert_eq "$(fields "$r" .command)" UPDATE command
	assert_eq "$(fields "$r" .transaction.outcome)" committed outcome
	assert_eq "$(fields "$r" .statement)" \
		'UPDATE accounts SET balance = balance + $1 WHERE account = $2' statement
	assert_eq "$(fields "$r" .depth)" 0 depth
}

test_quoted_and_commented_identifiers_are_flagged()
{
	expect_one_monetary "$(records_of 'UPDATE "public" . /* c */ "accounts" SET /* x */ "balance" = 1 -- y')"
}

test_alias_is_flagged()
{
	expect_one_monetary "$(records_of "UPDATE accounts AS a SET balance = a.balance + 1 WHERE a.account = 'bob'")"
}

test_search_path_unqualified_name_is_flagged()
{
	expect_none "$(records_of "SET search_path = other, public; UPDATE accounts SET balance = 2")"
	expect_one_monetary "$(records_of "SET search_path = other, public; UPDATE public.accounts SET balance = 2")"
	expect_one_monetary "$(records_of "SET search_path = public, other; UPDATE accounts SET balance = 3")"
}

test_same_named_table_in_other_schema_is_not_flagged()
{
	expect_none "$(records_of "UPDATE other.accounts SET balance = 9; SET search_path = other; UPDATE accounts SET balance = 10")"
}

test_update_inside_cte_is_flagged()
{
	local r
	r=$(records_of "WITH x AS (UPDATE accounts SET balance = balance + 1 RETURNING account) SELECT count(*) FROM x")
	expect_one_monetary "$r"
	assert_eq "$(fields "$r" .command)" UPDATE command
}

test_delete_of_events_inside_cte_is_flagged()
{
	local r
	r=$(records_of "BEGIN; WITH d AS (DELETE FROM ledger_events WHERE seq = 2 RETURNING seq) SELECT count(*) FROM d; ROLLBACK")
	assert_eq "$(count_records "$r")" 1 "record count"
	assert_eq "$(fields "$r" .rule)" event_deleted rule
	assert_eq "$(fields "$r" .transaction.outcome)" rolled_back outcome
}

test_dynamic_sql_in_do_block_is_flagged()
{
	local r
	r=$(records_of "DO \$\$ BEGIN EXECUTE format('UPDATE %I SET balance = balance + 1', 'accounts'); END \$\$")
	expect_one_monetary "$r"
	assert_eq "$(fields "$r" '.function_stack | join(",")')" inline_code_block stack
	assert_eq "$(fields "$r" .depth)" 1 depth
}

test_dynamic_sql_in_function_is_flagged()
{
	local r
	r=$(records_of "SELECT adjust_dynamic('bob', 3)")
	expect_one_monetary "$r"
	assert_eq "$(fields "$r" '.function_stack | join(",")')" public.adjust_dynamic stack
}

test_prepare_execute_is_flagged()
{
	expect_one_monetary "$(records_of "PREPARE p(bigint) AS UPDATE accounts SET balance = balance + \$1 WHERE account = 'bob'; EXECUTE p(4)")"
}

test_pgbench_extended_and_prepared_protocols_are_flagged()
{
	local script=$PGV_TMP/update.sql before r mode
	echo "UPDATE accounts SET balance = balance + 1 WHERE account = 'alice';" >"$script"
	for mode in extended prepared; do
		before=$(wc -l <"$OUT")
		pgbench -n -M "$mode" -t 3 -f "$script" bank >/dev/null 2>&1
		r=$(sentinel_after "$before")
		assert_eq "$(count_records "$r" '.rule == "balance_write_outside_allowed_function"')" 3 "records with -M $mode"
	done
}

test_updatable_view_is_flagged()
{
	expect_one_monetary "$(records_of "UPDATE account_view SET balance = 77 WHERE account = 'bob'")"
}

test_trigger_writing_a_balance_is_flagged()
{
	local r
	r=$(records_of "INSERT INTO audit_log VALUES ('alice', 10)")
	expect_one_monetary "$r"
	assert_eq "$(fields "$r" '.function_stack | join(",")')" public.audit_applies stack
}

test_sql_and_plpgsql_wrappers_are_flagged()
{
	local r
	r=$(records_of "SELECT adjust_sql('bob', 1)")
	expect_one_monetary "$r"
	assert_eq "$(fields "$r" '.function_stack | join(",")')" public.adjust_sql stack
	r=$(records_of "SELECT adjust_plpgsql('bob', 1)")
	expect_one_monetary "$r"
	assert_eq "$(fields "$r" '.function_stack | join(",")')" public.adjust_plpgsql stack
}

test_upsert_is_flagged()
{
	local r
	r=$(records_of "INSERT INTO accounts VALUES ('alice', 'EUR', 0) ON CONFLICT (account) DO UPDATE SET balance = excluded.balance")
	expect_one_monetary "$r"
	assert_eq "$(fields "$r" .command)" "INSERT ON CONFLICT DO UPDATE" command
}

test_merge_is_flagged()
{
	expect_one_monetary "$(records_of "MERGE INTO accounts a USING (VALUES ('bob', 5)) v(account, amount) ON a.account = v.account WHEN MATCHED THEN UPDATE SET balance = a.balance + v.amount")"
}

test_rename_then_update_is_flagged()
{
	local r
	r=$(records_of "ALTER TABLE accounts RENAME TO accounts_renamed; UPDATE accounts_renamed SET balance = 1; ALTER TABLE accounts_renamed RENAME TO accounts")
	expect_one_monetary "$r"
	r=$(records_of "ALTER TABLE accounts RENAME TO accounts_moved")
	expect_none "$r"
	r=$(records_of "UPDATE accounts_moved SET balance = 2")
	pgv_psql -d bank -c "ALTER TABLE accounts_moved RENAME TO accounts"
	assert_eq "$(count_records "$r")" 1 "records after a committed rename"
	assert_eq "$(fields "$r" .relation)" public.accounts_moved relation
}

test_rolled_back_transaction_is_reported_with_outcome()
{
	local r
	r=$(records_of "BEGIN; UPDATE accounts SET balance = 0; ROLLBACK")
	expect_one_monetary "$r"
	assert_eq "$(fields "$r" .transaction.outcome)" rolled_back outcome
}

test_allowed_function_is_not_flagged_directly_through_wrappers_or_do()
{
	expect_none "$(records_of "SELECT postings_apply('alice', 'bob', 1)")"
	expect_none "$(records_of "SELECT transfer_sql('alice', 'bob', 1)")"
	expect_none "$(records_of "SELECT transfer_plpgsql('alice', 'bob', 1)")"
	expect_none "$(records_of "DO \$\$ BEGIN PERFORM postings_apply('bob', 'alice', 2); END \$\$")"
}

test_error_caught_inside_allowed_function_does_not_leave_it_on_the_stack()
{
	local r
	r=$(records_of "SELECT sneaky('bob')")
	expect_one_monetary "$r"
	assert_eq "$(fields "$r" '.function_stack | join(",")')" public.sneaky stack
}

test_string_literal_containing_update_is_not_flagged()
{
	expect_none "$(records_of "SELECT 'UPDATE accounts SET balance = 0'; UPDATE accounts SET note = 'UPDATE accounts SET balance = 1'")"
}

test_non_balance_column_is_not_flagged()
{
	expect_none "$(records_of "UPDATE accounts SET currency = 'EUR', note = 'x'")"
}

test_event_update_delete_truncate_are_flagged_and_insert_is_not()
{
	local r
	r=$(records_of "BEGIN; INSERT INTO ledger_events VALUES (100, 'ok'); UPDATE ledger_events SET kind = 'x' WHERE seq = 100; DELETE FROM card_domain_events WHERE id = 1; TRUNCATE ledger_events; ROLLBACK")
	assert_eq "$(fields "$r" .rule | tr '\n' ' ')" "event_updated event_deleted event_table_truncated " rules
	assert_eq "$(fields "$r" .relation | tr '\n' ' ')" "public.ledger_events public.card_domain_events public.ledger_events " relations
}

test_event_merge_update_is_flagged_and_merge_insert_is_not()
{
	local r
	r=$(records_of "BEGIN; MERGE INTO ledger_events e USING (VALUES (200, 'n')) v(seq, kind) ON e.seq = v.seq WHEN NOT MATCHED THEN INSERT VALUES (v.seq, v.kind); MERGE INTO ledger_events e USING (VALUES (1, 'n')) v(seq, kind) ON e.seq = v.seq WHEN MATCHED THEN DELETE; ROLLBACK")
	assert_eq "$(count_records "$r")" 1 "record count"
	assert_eq "$(fields "$r" .rule)" event_deleted rule
	assert_eq "$(fields "$r" .command)" MERGE command
}

test_weakening_alter_drop_and_rename_of_events_are_flagged()
{
	local r
	r=$(records_of "BEGIN; ALTER TABLE ledger_events ADD CONSTRAINT positive CHECK (seq > 0); ALTER TABLE ledger_events DISABLE TRIGGER ALL; ALTER TABLE ledger_events RENAME TO old_events; DROP TABLE card_domain_events; ROLLBACK")
	assert_eq "$(fields "$r" .rule | tr '\n' ' ')" "event_table_weakened event_table_renamed event_table_dropped " rules
	assert_eq "$(fields "$r" '.subcommands // [] | join(",")' | head -1)" DisableTrigAll subcommands
}

test_new_table_matching_a_pattern_is_protected_after_it_is_created()
{
	local r
	r=$(records_of "CREATE TABLE loan_domain_events (id int); INSERT INTO loan_domain_events VALUES (1)")
	expect_none "$r"
	r=$(records_of "DELETE FROM loan_domain_events")
	assert_eq "$(fields "$r" .rule)" event_deleted rule
	assert_eq "$(fields "$r" .relation)" public.loan_domain_events relation
}

test_session_context_of_a_one_statement_tcp_connection()
{
	local r
	r=$(PGAPPNAME=hit_and_run records_of "UPDATE accounts SET balance = 6 WHERE account = 'bob'" -h 127.0.0.1)
	expect_one_monetary "$r"
	assert_eq "$(fields "$r" .session.application)" hit_and_run application
	assert_eq "$(fields "$r" .session.user)" postgres user
	assert_eq "$(fields "$r" .session.database)" bank database
	assert_eq "$(fields "$r" .session.postmaster)" "$PGV_POSTMASTER" postmaster
	assert_eq "$(fields "$r" .session.comm)" postgres comm
	assert_eq "$(fields "$r" .session.os_uid)" "$(id -u postgres)" "OS user"
	fields "$r" .session.client | grep -Eq '^127\.0\.0\.1:[0-9]+$' ||
		{ echo "client: $(fields "$r" .session.client)" >&2; return 1; }
}

test_long_statement_is_marked_truncated_and_masked()
{
	local r pad
	pad=$(head -c 6000 /dev/zero | tr '\0' 'x')
	r=$(records_of "UPDATE accounts SET balance = 42, note = 'secret$pad' WHERE account = 'bob'")
	expect_one_monetary "$r"
	assert_eq "$(fields "$r" .statement_truncated)" true truncated
	[ "$(fields "$r" .statement_length)" -gt 6000 ] ||
		{ echo "length $(fields "$r" .statement_length)" >&2; return 1; }
	if fields "$r" .statement | grep -q secret; then
		echo "literal leaked: $(fields "$r" .statement | head -c 200)" >&2
		return 1
	fi
}

# sql_of_length N: an UPDATE of accounts' balance exactly N bytes long
sql_of_length()
{
	local head="UPDATE accounts SET balance = 42, note = '" tail="' WHERE account = 'bob'"
	printf '%s%s%s' "$head" "$(head -c $(($1 - ${#head} - ${#tail})) /dev/zero | tr '\0' 'x')" "$tail"
}

test_statement_of_exactly_the_captured_length_is_whole()
{
	local r
	# 4,095 bytes and the terminator fill the capture: whole, not cut
	r=$(records_of "$(sql_of_length 4095)")
	expect_one_monetary "$r"
	assert_eq "$(fields "$r" '.statement_truncated // false')" false truncated
	assert_eq "$(fields "$r" '.statement_length // "absent"')" absent length
	r=$(records_of "$(sql_of_length 4096)")
	expect_one_monetary "$r"
	assert_eq "$(fields "$r" .statement_truncated)" true truncated
	assert_eq "$(fields "$r" .statement_length)" 4096 length
}

test_z_feed_ids_are_contiguous_and_no_monitor_records()
{
	local ids
	ids=$(jq -r .id "$OUT")
	assert_eq "$(printf '%s\n' "$ids" | awk 'NR > 1 && $1 != prev + 1 { bad = 1 } { prev = $1 } END { print bad + 0 }')" 0 "gaps in ids"
	jq -c 'select(.invariant == "monitor" and .rule != "relations_not_classified")' "$OUT" >&2
	assert_eq "$(jq -c 'select(.invariant == "monitor" and .rule != "relations_not_classified")' "$OUT" | grep -c .)" 0 "monitor records"
}

# The commit probe fires before a transaction is visible to other sessions;
# a catalog re-read at that moment saw the old names (seen intermittently
# under load). Many renames in a row make that race likely to show.
test_catalog_follows_many_committed_renames()
{
	local i r name=accounts
	for i in $(seq 1 12); do
		psql -X -q -d bank -c "ALTER TABLE $name RENAME TO acc_$i" >/dev/null
		name=acc_$i
		r=$(records_of "UPDATE $name SET balance = $i WHERE account = 'bob'")
		assert_eq "$(fields "$r" .relation)" "public.$name" "relation after rename $i"
	done
	pgv_psql -d bank -c "ALTER TABLE $name RENAME TO accounts"
}

test_partitions_are_protected_through_the_parent_and_directly()
{
	local r
	r=$(records_of "UPDATE wallets SET balance = balance + 1")
	assert_eq "$(count_records "$r")" 1 "records through the parent"
	assert_eq "$(fields "$r" .relation)" public.wallets relation
	r=$(records_of "UPDATE wallets_usd SET balance = 5")
	assert_eq "$(count_records "$r")" 1 "records of a partition named directly"
	assert_eq "$(fields "$r" .relation)" public.wallets_usd relation
	assert_eq "$(fields "$r" '.columns | join(",")')" balance "columns (another attnum)"
	expect_none "$(records_of "UPDATE wallets_usd SET owner = 'carol'")"
	r=$(records_of "BEGIN; DELETE FROM part_domain_events; DELETE FROM pde_1; ROLLBACK")
	assert_eq "$(fields "$r" .rule | tr '\n' ' ')" "event_deleted event_deleted " rules
	assert_eq "$(fields "$r" .relation | tr '\n' ' ')" "public.part_domain_events public.pde_1 " relations
}

# Whoever can redefine the allowed function can move money through it.
test_redefining_the_allowed_function_is_reported()
{
	local r original
	original=$(sed -n '/^CREATE FUNCTION postings_apply/,/^END \$\$;/p' "$FIXTURES/bank.sql" |
		sed 's/^CREATE FUNCTION/CREATE OR REPLACE FUNCTION/')
	r=$(records_of "CREATE OR REPLACE FUNCTION postings_apply(src text, dst text, amount bigint, fail boolean DEFAULT false) RETURNS bigint LANGUAGE plpgsql AS \$\$ BEGIN UPDATE accounts SET balance = balance + amount WHERE account = dst; RETURN amount; END \$\$")
	assert_eq "$(count_records "$r")" 1 "records"
	assert_eq "$(fields "$r" .rule)" allowed_function_redefined rule
	assert_eq "$(fields "$r" .function)" public.postings_apply function
	r=$(records_of "ALTER FUNCTION postings_apply(text, text, bigint, boolean) SECURITY DEFINER")
	assert_eq "$(fields "$r" .rule)" allowed_function_redefined "rule after ALTER FUNCTION"
	r=$(records_of "$original")
	assert_eq "$(fields "$r" .rule)" allowed_function_redefined "rule after the restore"
	expect_none "$(records_of "CREATE FUNCTION unrelated() RETURNS int LANGUAGE sql AS 'SELECT 1'")"
}

# The probe keeps sixteen named write targets per statement; a statement
# that names more must not hide the ones after them.
test_statement_with_many_write_targets_is_not_a_blind_spot()
{
	local r i ctes="" tables=""
	for i in $(seq 1 17); do
		tables="$tables CREATE TABLE IF NOT EXISTS decoy_$i (x int);"
		ctes="${ctes}a$i AS (UPDATE decoy_$i SET x = 1 RETURNING 1), "
	done
	pgv_psql -d bank -c "$tables"
	r=$(records_of "WITH ${ctes}z AS (UPDATE accounts SET balance = balance + 1 WHERE account = 'alice' RETURNING 1) SELECT 1")
	assert_eq "$(fields "$r" .rule)" relations_not_classified rule
	assert_eq "$(fields "$r" .invariant)" monitor invariant
	r=$(records_of "WITH ${ctes%%a9 AS*}z AS (UPDATE accounts SET balance = balance + 1 WHERE account = 'alice' RETURNING 1) SELECT 1")
	expect_one_monetary "$r"
}

test_trigger_riding_on_the_allowed_function_is_flagged()
{
	local r
	pgv_psql -d bank -c "UPDATE piggy_switch SET armed = true"
	r=$(records_of "SELECT postings_apply('alice', 'bob', 1)")
	pgv_psql -d bank -c "UPDATE piggy_switch SET armed = false"
	assert_eq "$(count_records "$r")" 2 "records (one per posting's UPDATE)"
	assert_eq "$(fields "$r" '.function_stack | join(",")' | sort -u)" \
		public.postings_apply,public.piggy stack
	expect_none "$(records_of "SELECT postings_apply('bob', 'alice', 1)")"
}

test_renamed_balance_column_stays_protected_under_its_new_name()
{
	local r
	pgv_psql -d bank -c "ALTER TABLE accounts RENAME COLUMN balance TO amount_minor"
	r=$(records_of "UPDATE accounts SET amount_minor = 1 WHERE account = 'bob'")
	pgv_psql -d bank -c "ALTER TABLE accounts RENAME COLUMN amount_minor TO balance"
	assert_eq "$(count_records "$r")" 1 records
	assert_eq "$(fields "$r" '.columns | join(",")')" amount_minor columns
}

test_moving_an_event_table_to_another_schema_is_flagged()
{
	local r
	r=$(records_of "BEGIN; CREATE SCHEMA attic; ALTER TABLE ledger_events SET SCHEMA attic; ROLLBACK")
	assert_eq "$(fields "$r" .rule)" event_table_renamed rule
	assert_eq "$(fields "$r" .relation)" public.ledger_events relation
}

test_write_to_a_table_created_in_the_same_transaction_is_classified_at_commit()
{
	local r before i
	# classified once the catalog is read again after the commit, which
	# may come after the sentinel's record: wait for it by name
	before=$(wc -l <"$OUT")
	psql -X -q -d bank -c "BEGIN; CREATE TABLE fresh_domain_events (id int); INSERT INTO fresh_domain_events VALUES (1); DELETE FROM fresh_domain_events; COMMIT"
	for i in $(seq 1 100); do
		tail -n +"$((before + 1))" "$OUT" | grep -q fresh_domain_events && break
		sleep 0.05
	done
	r=$(sentinel_after "$before")
	assert_eq "$(fields "$r" .rule)" event_deleted rule
	assert_eq "$(fields "$r" .relation)" public.fresh_domain_events relation
	assert_eq "$(fields "$r" .transaction.outcome)" committed outcome
	expect_none "$(records_of "BEGIN; CREATE TABLE gone_domain_events (id int); DELETE FROM gone_domain_events; ROLLBACK")"
}
