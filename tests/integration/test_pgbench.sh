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

# run_pgbench MODE [monitor args...]: start the monitor, run pgbench, stop;
# prints the figures
run_pgbench()
{
	local mode=$1 tag=$1
	shift
	[ $# -gt 0 ] && tag=$mode-${1#--}	# a journal of its own per setting
	local out=$PGV_TMP/feed-$tag.out journal=$PGV_TMP/journal-$tag
	# with the journal and its default fsync policy: the full write path
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out" --feed "$journal" "$@"
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
	assert_eq "$(wc -l <"$journal")" "$(wc -l <"$out")" "journal lines"
}

test_pgbench_simple_protocol_yields_exactly_three_records_per_transaction()
{
	run_pgbench simple
}

test_pgbench_prepared_protocol_yields_exactly_three_records_per_transaction()
{
	run_pgbench prepared
}

test_pgbench_with_skip_reads_yields_exactly_three_records_per_transaction()
{
	run_pgbench simple --skip-reads
}

# Filtered reads must leave no gap the monitor would report as lost events,
# and a read-only workload must then send next to nothing.
test_select_only_with_skip_reads_sends_no_statement()
{
	local out=$PGV_TMP/feed-select.out events
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out" --skip-reads
	pgbench -n -S -c 4 -t 250 bench >"$PGV_TMP/pgbench.log" 2>&1 ||
		{ cat "$PGV_TMP/pgbench.log" >&2; return 1; }
	pgv_stop_monitor
	assert_eq "$(grep -c . "$out" || true)" 0 "records"
	events=$(jq -r 'select(.event == "stats") | .statements' "$out.err")
	echo "figure: pgbench -S -c 4 -t 250 with --skip-reads: $events statements sent"
	[ "$events" -lt 100 ] || { echo "expected reads skipped, got $events statements" >&2; return 1; }
}
