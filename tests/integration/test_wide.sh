# Tables wider than a probe's first read of a column set: a Bitmapset word
# holds 64 columns, and the probe reads the first four with the set's
# header. A balance column further out must be seen all the same, or
# putting it there would hide every write to it.

setup_file()
{
	pgv_bank_start || return 1
	local cols
	cols=$(for i in $(seq 1 299); do printf 'c%d int, ' "$i"; done)
	pgv_psql -d bank -c "CREATE TABLE wide ($cols balance bigint)" &&
	pgv_psql -d bank -c "INSERT INTO wide (c1, balance) VALUES (1, 1)" &&
	sed -i 's|balance_columns: \[|balance_columns: [public.wide.balance, public.wide.c5, |' \
		"$PGV_TMP/policy.yaml" &&
	grep -q public.wide.balance "$PGV_TMP/policy.yaml"
}

test_balance_column_300_of_a_wide_table_is_flagged()
{
	local out=$PGV_TMP/wide.out
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out"
	pgv_psql -d bank -c "UPDATE wide SET balance = 7"
	pgv_psql -d bank -c "UPDATE wide SET c5 = 7"
	pgv_psql -d bank -c "UPDATE wide SET c250 = 7, c299 = 8"
	pgv_psql -d bank -c "UPDATE accounts SET balance = 3 WHERE account = 'bob'"
	pgv_stop_monitor
	assert_eq "$(jq -r 'select(.relation == "public.wide") | .columns | join(",")' "$out")" \
		"$(printf 'balance\nc5')" "columns flagged in public.wide"
	assert_eq "$(jq -r 'select(.invariant == "monitor") | .rule' "$out")" "" \
		"monitor records"
	assert_eq "$(jq -c 'select(.relation == "public.accounts")' "$out" | grep -c .)" 1 \
		"the record after them"
}

# A transaction that ran DDL keeps its writes to relations no rule binds
# yet, to classify them again at commit; past what it keeps, each further
# write is reported, not dropped in silence.
test_writes_past_what_a_ddl_transaction_keeps_are_reported()
{
	local out=$PGV_TMP/deferred.out sql i
	sql="BEGIN; CREATE TABLE scratch (id int);"
	for i in $(seq 1 34); do sql="$sql DELETE FROM scratch;"; done
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out"
	pgv_psql -d bank -c "$sql COMMIT"
	pgv_psql -d bank -c "UPDATE accounts SET balance = 3 WHERE account = 'bob'"
	pgv_stop_monitor
	assert_eq "$(jq -r 'select(.invariant == "monitor") | .rule' "$out" | sort | uniq -c | awk '{print $1, $2}')" \
		"2 relations_not_classified" "monitor records"
}
