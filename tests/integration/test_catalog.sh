# The catalog connection in a changing world: the watched server restarts
# under it, DDL comes from backends that exit at once. Each test runs its
# own 'pgvigil run' against one bank server.

setup_file()
{
	pgv_bank_start
}

# connect_catalog OUT: a statement, so that the monitor opens its catalog
# connection now; waits until it has.
connect_catalog()
{
	local i
	pgv_psql -d bank -c "UPDATE sentinel SET balance = 1"
	for i in $(seq 1 100); do
		grep -q public.sentinel "$1" && return 0
		sleep 0.1
	done
	echo "no record of the sentinel: is the monitor alive?" >&2
	return 1
}

restart_server()
{
	runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w restart \
		>/dev/null
	PGV_POSTMASTER=$(head -1 "$PGDATA/postmaster.pid")
}

# wait_records OUT COUNT JQ-SELECT: until OUT holds COUNT matching records
# (or 10 s).
wait_records()
{
	local i
	for i in $(seq 1 100); do
		[ "$(count_records "$(cat "$1")" "$3")" -ge "$2" ] && return 0
		sleep 0.1
	done
}

alter_allowed()
{
	pgv_psql -d bank -c "ALTER FUNCTION postings_apply(text, text, bigint, boolean) $1"
}

# After a restart the catalog connection is dead: it must be opened again,
# so that new tables are bound and allowed functions are compared.
test_catalog_is_read_again_after_the_server_restarts()
{
	local out=$PGV_TMP/restart.out r
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out" --unmasked	# statements told apart by their values
	connect_catalog "$out"
	restart_server
	pgv_psql -d bank -c "CREATE TABLE newx_domain_events (id int)" \
		-c "INSERT INTO newx_domain_events VALUES (1)" \
		-c "DELETE FROM newx_domain_events"
	alter_allowed "SET work_mem = '7777kB'"
	wait_records "$out" 3 'true'
	sleep 0.5
	pgv_stop_monitor
	r=$(cat "$out")
	printf '%s\n' "$r" | jq -c '[.rule, .statement, .session.pid]'
	assert_eq "$(count_records "$r" '.rule == "event_deleted"')" 1 \
		"event_deleted records"
	assert_eq "$(fields "$r" 'select(.rule == "event_deleted") | .relation' | sort -u)" \
		public.newx_domain_events relation
	[ "$(count_records "$r" '.rule == "allowed_function_redefined" and (.statement | test("7777kB"))')" -ge 1 ] ||
		{ echo "no allowed_function_redefined for the ALTER" >&2; return 1; }
	assert_eq "$(count_records "$r" '.invariant == "monitor"')" 0 \
		"monitor records"
	pgv_psql -d bank -c "DROP TABLE newx_domain_events"
}

# A catalog that stays unreachable after the restart (the monitor's TCP
# connections are refused) is reported, not a silence: for the DDL that
# could not be read, and for a delete from the table it created.
test_catalog_unreachable_after_restart_is_reported()
{
	local out=$PGV_TMP/refused.out hba=$PGDATA/pg_hba.conf r pid
	sed "s/host=[^ ]*/host=127.0.0.1/" "$PGV_TMP/policy.yaml" >"$PGV_TMP/tcp.yaml"
	pgv_start_monitor "$PGV_TMP/tcp.yaml" "$out"
	connect_catalog "$out"
	cp "$hba" "$PGV_TMP/pg_hba.saved"
	{ echo "host all all 127.0.0.1/32 reject"; cat "$PGV_TMP/pg_hba.saved"; } >"$hba"
	restart_server
	pgv_psql -d bank -c "CREATE TABLE newy_domain_events (id int)" \
		-c "INSERT INTO newy_domain_events VALUES (1)"
	pid=$(pgv_psql -d bank -At -c "SELECT pg_backend_pid()" \
		-c "DELETE FROM newy_domain_events")
	wait_records "$out" 2 '.rule == "statement_not_classified"'
	pgv_stop_monitor
	cp "$PGV_TMP/pg_hba.saved" "$hba"
	restart_server
	pgv_psql -d bank -c "DROP TABLE newy_domain_events"
	r=$(cat "$out")
	assert_eq "$(count_records "$r" ".rule == \"statement_not_classified\" and .detail.pid == $pid")" \
		1 "statement_not_classified for the delete"
	[ "$(count_records "$r" '.rule == "statement_not_classified"')" -ge 2 ] ||
		{ echo "no statement_not_classified for the DDL: $r" >&2; return 1; }
}

# DDL from backends that exit right after it, in quick succession: each
# change of an allowed function is its own record, the first ones after the
# monitor starts (before it has read any catalog) included. '\c' makes the
# second backend commit a few milliseconds after the first one exits.
test_back_to_back_redefinitions_are_each_reported()
{
	local out=$PGV_TMP/quick.out k r idle
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out" --unmasked
	for k in 1 2 3; do
		alter_allowed "SET work_mem = '6${k}01kB'"
		alter_allowed "SET work_mem = '6${k}02kB'"
		sleep 1
	done
	# a backend idle after its DDL, another one's DDL a moment later: one
	# read of the catalog sees both
	{ echo "ALTER FUNCTION postings_apply(text, text, bigint, boolean) SET work_mem = '6401kB';"
	  sleep 1; } | pgv_psql -d bank &
	idle=$!
	sleep 0.1
	alter_allowed "SET work_mem = '6402kB'"
	wait "$idle"
	pgv_psql -d bank \
		-c "ALTER FUNCTION postings_apply(text, text, bigint, boolean) SECURITY DEFINER" \
		-c '\c bank' \
		-c "ALTER FUNCTION postings_apply(text, text, bigint, boolean) SET application_name = 'x'" \
		-c '\c bank' \
		-c "ALTER FUNCTION postings_apply(text, text, bigint, boolean) SECURITY INVOKER"
	wait_records "$out" 11 'true'
	sleep 0.5
	pgv_stop_monitor
	r=$(cat "$out")
	printf '%s\n' "$r" | jq -c '[.rule, .statement, .session.pid]'
	# each change once; a second record for one of them (a commit racing
	# the read) is a false alarm the monitor may give, a missing one is not
	assert_eq "$(fields "$r" '.statement' | grep -o "6[0-9]0[12]kB\|SECURITY [A-Z]*\|application_name" | sort -u | tr '\n' ' ')" \
		"6101kB 6102kB 6201kB 6202kB 6301kB 6302kB 6401kB 6402kB SECURITY DEFINER SECURITY INVOKER application_name " \
		"statements"
	assert_eq "$(count_records "$r" '.invariant == "monitor"')" 0 \
		"monitor records"
	pgv_psql -d bank -c "ALTER FUNCTION postings_apply(text, text, bigint, boolean) RESET ALL"
}
