# Bad input and a changing world: clear messages and exit status 2 for what
# cannot work, and reports rather than silence for what the monitor cannot
# see.

setup_file()
{
	pgv_bank_start
}

# expect_exit STATUS PATTERN CMD...: CMD exits STATUS and says PATTERN.
expect_exit()
{
	local status=$1 pattern=$2 rc=0
	shift 2
	"$@" >"$PGV_TMP/out" 2>"$PGV_TMP/err" </dev/null || rc=$?
	assert_eq "$rc" "$status" "exit status of '$*'"
	[ -z "$pattern" ] || grep -q -- "$pattern" "$PGV_TMP/err" ||
		{ echo "stderr lacks '$pattern':" >&2; cat "$PGV_TMP/err" >&2; return 1; }
}

test_malformed_policy_names_file_and_line()
{
	printf 'database:\n  dsn: x\nmonetary:\n  balance_columns: [accounts]\n' >"$PGV_TMP/bad.yaml"
	expect_exit 2 "bad.yaml:4: bad name 'accounts'" \
		"$PGV_BIN" run --policy "$PGV_TMP/bad.yaml" --pg-pid "$PGV_POSTMASTER"
	printf 'database:\n  dsn: "x\n' >"$PGV_TMP/bad.yaml"
	expect_exit 2 "bad.yaml:" "$PGV_BIN" run --policy "$PGV_TMP/bad.yaml"
}

test_usage_errors_exit_2()
{
	expect_exit 2 "run needs --policy" "$PGV_BIN" run
	expect_exit 2 "bad --pg-pid" "$PGV_BIN" run --policy x --pg-pid abc
	expect_exit 2 "unknown command 'frobnicate'" "$PGV_BIN" frobnicate
	expect_exit 0 "" "$PGV_BIN" run --help
	grep -q -- "--pg-pid" "$PGV_TMP/out"
}

test_pid_that_is_not_a_postmaster_is_refused()
{
	expect_exit 2 "is not a PostgreSQL postmaster" \
		"$PGV_BIN" run --policy "$PGV_TMP/policy.yaml" --pg-pid $$
	expect_exit 2 "no process 999999999" \
		"$PGV_BIN" run --policy "$PGV_TMP/policy.yaml" --pg-pid 999999999
}

test_unknown_server_version_is_refused_not_guessed()
{
	local dir=$PGV_TMP/fake pid
	mkdir -p "$dir"
	echo 99 >"$dir/PG_VERSION"
	(cd "$dir" && exec sleep 30) &
	pid=$!
	echo "$pid" >"$dir/postmaster.pid"
	expect_exit 2 "PostgreSQL 99 at pid $pid .* is not supported (supported: 15)" \
		"$PGV_BIN" run --policy "$PGV_TMP/policy.yaml" --pg-pid "$pid"
	kill "$pid"
}

test_without_bpf_privileges_the_missing_capability_is_named()
{
	expect_exit 2 "CAP_BPF" runuser -u nobody -- \
		"$PGV_BIN" run --policy "$PGV_TMP/policy.yaml" --pg-pid "$PGV_POSTMASTER"
}

test_unreachable_catalog_is_reported_as_a_monitor_record()
{
	local out=$PGV_TMP/unreachable.out
	sed "s/port=$PGPORT/port=1/" "$PGV_TMP/policy.yaml" >"$PGV_TMP/unreachable.yaml"
	pgv_start_monitor "$PGV_TMP/unreachable.yaml" "$out"
	pgv_psql -d bank -c "UPDATE accounts SET balance = 1"
	sleep 0.5
	pgv_stop_monitor
	assert_eq "$(jq -r 'select(.invariant == "monitor") | .rule' "$out")" \
		statement_not_classified rule
	grep -q "cannot connect to database 'bank'" "$out.err"
}

test_restarted_postmaster_is_attached_again()
{
	local out=$PGV_TMP/restart.out old=$PGV_POSTMASTER i
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out"
	runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w restart \
		>/dev/null
	PGV_POSTMASTER=$(head -1 "$PGDATA/postmaster.pid")
	[ "$PGV_POSTMASTER" != "$old" ]
	# at once: the first statements of the new server must not be missed
	pgv_psql -d bank -c "UPDATE accounts SET balance = 3 WHERE account = 'bob'"
	for i in $(seq 1 100); do
		grep -q balance_write "$out" && break
		sleep 0.1
	done
	grep -q "watching postmaster $PGV_POSTMASTER" "$out.err"
	pgv_stop_monitor
	assert_eq "$(jq -r 'select(.invariant != "monitor") | .rule' "$out")" \
		balance_write_outside_allowed_function rule
	assert_eq "$(jq -r 'select(.invariant == "monitor") | .rule' "$out")" "" \
		"monitor records"
}

test_journal_that_is_not_a_regular_file_is_refused_and_left_alone()
{
	# a private node of the null device: a regression must not take the
	# host's /dev/null down with it
	mknod -m 666 "$PGV_TMP/null" c 1 3
	expect_exit 2 "is not a regular file" timeout 10 \
		"$PGV_BIN" run --policy "$PGV_TMP/policy.yaml" --feed "$PGV_TMP/null" \
		--pg-pid "$PGV_POSTMASTER" --pid-file "$PGV_TMP/x.pid"
	assert_eq "$(stat -c %a "$PGV_TMP/null")" 666 "mode of the device node"
}

test_two_daemons_cannot_share_a_journal()
{
	local out=$PGV_TMP/first.out
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out" --feed "$PGV_TMP/shared.jsonl"
	expect_exit 2 "is in use by another process" timeout 10 \
		"$PGV_BIN" run --policy "$PGV_TMP/policy.yaml" \
		--feed "$PGV_TMP/shared.jsonl" --pg-pid "$PGV_POSTMASTER" \
		--pid-file "$PGV_TMP/y.pid"
	pgv_stop_monitor
}

# A full disk: records wait, numbered, until the journal takes writes
# again; none is printed before it is on disk, none is lost, no line is
# torn, no id is used twice.
test_full_disk_loses_no_record_and_tears_no_line()
{
	local small=$PGV_TMP/small out=$PGV_TMP/disk.out i
	mkdir -p "$small"
	mount -t tmpfs -o size=64k tmpfs "$small"
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out" --feed "$small/journal"
	dd if=/dev/zero of="$small/fill" bs=1k count=100 2>/dev/null || true
	for i in $(seq 1 10); do
		pgv_psql -d bank -c "UPDATE accounts SET balance = $i WHERE account = 'bob'"
	done
	sleep 1
	assert_eq "$(grep -c . "$out" || true)" 0 "records printed before they are on disk"
	grep -q "cannot write the journal" "$out.err"
	rm -f "$small/fill"
	for i in $(seq 1 50); do
		[ "$(grep -c . "$out" || true)" -ge 10 ] && break
		sleep 0.1
	done
	pgv_stop_monitor
	assert_eq "$(jq -r .id "$small/journal" | tr '\n' ' ')" "1 2 3 4 5 6 7 8 9 10 " "journal ids"
	assert_eq "$(jq -r .id "$out" | tr '\n' ' ')" "1 2 3 4 5 6 7 8 9 10 " "printed ids"
	umount "$small"
}

# A transaction open longer than --hold-ms: its violation goes out as
# in_progress, and its outcome follows in a record naming it by id.
test_long_transaction_is_sent_early_and_its_outcome_follows()
{
	local out=$PGV_TMP/long.out id
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out" --hold-ms 300
	pgv_psql -d bank -c "BEGIN; UPDATE accounts SET balance = 8 WHERE account = 'bob'; SELECT pg_sleep(1.5); COMMIT" >/dev/null
	sleep 0.5
	pgv_stop_monitor
	assert_eq "$(jq -r 'select(.invariant == "monetary") | .transaction.outcome' "$out")" \
		in_progress "first outcome"
	id=$(jq -r 'select(.invariant == "monetary") | .id' "$out")
	assert_eq "$(jq -c 'select(.rule == "transaction_outcome") | .detail' "$out")" \
		"{\"ids\":[$id],\"outcome\":\"committed\"}" "late outcome"
}
