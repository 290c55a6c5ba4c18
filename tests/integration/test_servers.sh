# Two servers on one binary. Uprobes sit on the binary, so a monitor's
# probes fire in every server that runs it; with --pg-pid the backends of
# the other server must cost a lookup in the kernel, not a full probe and a
# record that user space throws away.

setup_file()
{
	pgv_bank_start || return 1
	OTHER=$PGV_TMP/other
	OTHER_PORT=$(pgv_free_port) || return 1
	runuser -u postgres -- "$PG_BIN/initdb" -D "$OTHER" -A trust -U postgres \
		--no-sync >"$PGV_TMP/other-initdb.log" 2>&1 &&
	runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$OTHER" -l "$PGV_TMP/other.log" \
		-o "-k $PGV_TMP -p $OTHER_PORT -c listen_addresses=''" -w start >/dev/null
}

teardown_file()
{
	runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$OTHER" -m immediate -w stop \
		>/dev/null 2>&1
}

# other_sql N: N statements, in one session, on the unwatched server
other_sql()
{
	local i
	for ((i = 0; i < $1; i++)); do echo "SELECT $i;"; done |
		pgv_psql -p "$OTHER_PORT" -d postgres >/dev/null
}

test_unwatched_server_on_the_same_binary_is_passed_over_in_the_kernel()
{
	local out=$PGV_TMP/servers.out ignored
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out"
	# the first records of the other server reach user space, which refuses
	# its postmaster; give it time to (more than one consume interval)
	other_sql 1
	sleep 0.5
	other_sql 500
	# the watched server is still watched
	pgv_psql -d bank -c "UPDATE accounts SET balance = 3 WHERE account = 'bob'"
	pgv_stop_monitor
	ignored=$(grep -h '"event":"stats"' "$out.err" | jq -r .ignored)
	# the catalog connection's own records are counted apart
	grep -h '"event":"stats"' "$out.err" | jq -e '.own | type == "number"' >/dev/null
	echo "figure: 501 statements on an unwatched server reached user space as $ignored records"
	[ "$ignored" -ge 1 ]
	[ "$ignored" -le 20 ] ||
		{ echo "expected at most 20 records from the unwatched server, got $ignored" >&2; return 1; }
	assert_eq "$(jq -r 'select(.invariant != "monitor") | .rule' "$out")" \
		balance_write_outside_allowed_function rule
	assert_eq "$(jq -r 'select(.invariant == "monitor") | .rule' "$out")" "" \
		"monitor records"
}
