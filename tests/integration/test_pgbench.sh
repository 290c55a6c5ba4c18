# Real input: pgbench's TPC-B against a policy naming pgbench's balance
# columns. Every transaction updates three balances outside any allowed
# function, so 'pgbench -c 4 -t N' must yield exactly 3 x 4 x N monetary
# records, and no record of the monitor's own (no drops, no gaps).

PGBENCH_TX=${PGBENCH_TX:-1000}

setup_file()
{
	pgv_cluster_start
	pgv_psql -d postgres -c "CREATE DATABASE bench" &&
	pgbench -i -q -s 1 bench >/dev/null 2>&1 &&
	cat >"$PGV_TMP/policy.yaml" <<POLICY
database:
  dsn: "host=$PGHOST port=$PGPORT user=postgres dbname=bench"
monetary:
  balance_columns:
    - public.pgbench_accounts.abalance
    - public.pgbench_tellers.tbalance
    - public.pgbench_branches.bbalance
  allowed_functions: []
POLICY
}

# run_pgbench MODE: start the monitor, run pgbench, stop; prints the figures
run_pgbench()
{
	local mode=$1 out=$PGV_TMP/feed-$1.out
	# with the journal and its default fsync policy: the full write path
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out" --feed "$PGV_TMP/journal-$mode"
	pgbench -n -c 4 -t "$PGBENCH_TX" -M "$mode" bench >"$PGV_TMP/pgbench.log" 2>&1 ||
		{ cat "$PGV_TMP/pgbench.log" >&2; return 1; }
	pgv_stop_monitor
	local monetary monitor
	monetary=$(jq -c 'select(.invariant == "monetary")' "$out" | grep -c . || true)
	monitor=$(jq -c 'select(.invariant == "monitor")' "$out" | grep -c . || true)
	echo "figure: pgbench -c 4 -t $PGBENCH_TX -M $mode: $monetary monetary records, $monitor monitor records ($(grep -o 'tps = [0-9.]*' "$PGV_TMP/pgbench.log" | head -1))"
	assert_eq "$monetary" $((3 * 4 * PGBENCH_TX)) "monetary records"
	assert_eq "$monitor" 0 "monitor records"
	assert_eq "$(jq -r '.transaction.outcome' "$out" | sort -u)" committed outcomes
	assert_eq "$(jq -r '.relation' "$out" | sort | uniq -c | awk '{print $1}' | sort -u)" \
		$((4 * PGBENCH_TX)) "records per table"
	assert_eq "$(wc -l <"$PGV_TMP/journal-$mode")" "$(wc -l <"$out")" "journal lines"
}

test_pgbench_simple_protocol_yields_exactly_three_records_per_transaction()
{
	run_pgbench simple
}

test_pgbench_prepared_protocol_yields_exactly_three_records_per_transaction()
{
	run_pgbench prepared
}
