# Hash integrity: 'pgvigil verify' against a real server. A template
# database holds the reference ledger (300 events: synthetic ones and some
# made by postings_apply, account names outside ASCII included); each test
# copies it, tampers with its copy, and checks that exactly the tampered
# events are named, with one thread and several, and with range boundaries
# on the tampered events.

setup_file()
{
	pgv_cluster_start || return 1
	pgv_psql -d postgres -c "CREATE DATABASE ledger_tpl" &&
	pgv_psql -d ledger_tpl -f "$PGV_ROOT/sql/reference_ledger.sql" \
		-f "$PGV_ROOT/sql/synthetic_ledger.sql" \
		-c "SELECT ledger_synthesize(280)" >/dev/null &&
	pgv_psql -d ledger_tpl >/dev/null <<'SQL'
INSERT INTO accounts (account, currency) VALUES
	('Zürich Kasse', 'CHF'), ('東京 口座', 'CHF'), ('💶 wallet', 'CHF'),
	('naïve café', 'CHF');
SELECT postings_apply(gen_random_uuid(), 'transfer',
	jsonb_build_array(
		jsonb_build_object('account', (ARRAY['Zürich Kasse', '東京 口座'])[1 + i % 2],
				   'currency', 'CHF', 'amount', 100 + i),
		jsonb_build_object('account', '💶 wallet', 'currency', 'CHF',
				   'amount', -60),
		jsonb_build_object('account', 'naïve café', 'currency', 'CHF',
				   'amount', -40 - i)))
FROM generate_series(1, 20) i;
SQL
}

teardown_file()
{
	pgv_cluster_stop
}

# new_db NAME: a copy of the template, and its policy in $PGV_TMP/NAME.yaml
new_db()
{
	pgv_psql -d postgres -c "CREATE DATABASE $1 TEMPLATE ledger_tpl"
	cat >"$PGV_TMP/$1.yaml" <<YAML
database:
  dsn: "host=$PGHOST port=$PGPORT dbname=$1 user=postgres"
hash_integrity:
  events_table: public.ledger_events
  postings_table: public.postings
YAML
}

# verify NAME [args]: findings as sorted "rule seq" lines in $OUT; status in $RC
verify()
{
	local db=$1
	shift
	RC=0
	"$PGV_BIN" verify --policy "$PGV_TMP/$db.yaml" "$@" >"$PGV_TMP/out.json" \
		2>"$PGV_TMP/err.txt" || RC=$?
	OUT=$(jq -r '"\(.rule) \(.seq)"' "$PGV_TMP/out.json" | sort)
}

# expect NAME "rule seq;rule seq..." : the same findings with 1 thread and
# 3, whole ranges and ranges of the sizes given after the findings
expect()
{
	local db=$1 want size threads
	want=$(echo "$2" | tr ';' '\n' | sort)
	shift 2
	for size in 0 "$@"; do
		for threads in 1 3; do
			if [ "$size" -eq 0 ]; then
				verify "$db" --threads "$threads"
			else
				verify "$db" --threads "$threads" --range-size "$size"
			fi
			if [ "$OUT" != "$want" ] || [ "$RC" -ne 1 ]; then
				echo "threads $threads range $size: status $RC, findings:"
				echo "$OUT"
				echo "expected:"
				echo "$want"
				cat "$PGV_TMP/err.txt"
				return 1
			fi
		done
	done
}

sql()
{
	local db=$1
	shift
	pgv_psql -d "$db" -c "$*" >/dev/null
}

# Rename one posting of event SEQ: balanced still, but not what was hashed.
change_posting()
{
	sql "$1" "UPDATE postings SET account = account || ' (edited)'
		  WHERE ctid = (SELECT min(ctid) FROM postings WHERE event_seq = $2)"
}

test_clean_ledger_passes()
{
	new_db clean
	verify clean --threads 1
	[ "$RC" -eq 0 ] && [ -z "$OUT" ]
	verify clean --threads 4 --range-size 7
	[ "$RC" -eq 0 ] && [ -z "$OUT" ]
	grep -q 'verified 300 events' "$PGV_TMP/err.txt"
}

test_changed_posting_is_named()
{
	new_db changed
	change_posting changed 50
	change_posting changed 290	# a non-ASCII postings_apply event
	expect changed "hash_mismatch 50;hash_mismatch 290" 50 49 1
}

test_deleted_event_is_named()
{
	new_db deleted
	sql deleted "DELETE FROM postings WHERE event_seq IN (101, 102, 200);
		     DELETE FROM ledger_events WHERE seq IN (101, 102, 200)"
	expect deleted "missing_seq 101;missing_seq 200" 100 101 1
	verify deleted --range-size 101
	jq -e 'select(.seq == 101) | .seq_last == 102' "$PGV_TMP/out.json"
}

test_event_rewritten_with_own_hash_is_named()
{
	new_db rewritten
	change_posting rewritten 150
	sql rewritten "UPDATE ledger_events
		       SET postings_hash = ledger_hash_v1(prev_hash, ledger_event_body(150))
		       WHERE seq = 150"
	expect rewritten "chain_break 150" 150 149 1
}

test_unbalanced_set_with_chain_rehashed_is_named()
{
	new_db unbalanced
	sql unbalanced "UPDATE postings SET amount = amount + 1
			WHERE ctid = (SELECT min(ctid) FROM postings WHERE event_seq = 200);
			SELECT ledger_rehash_from(200)"
	expect unbalanced "unbalanced_postings 200" 200 199 1
}

test_event_without_postings_is_named()
{
	new_db bare
	sql bare "DELETE FROM postings WHERE event_seq = 1"
	expect bare "event_without_postings 1;hash_mismatch 1" 1 2
}

test_duplicate_seq_is_named()
{
	new_db dup
	# an exact copy: which of the two rows comes first is the server's choice
	sql dup "ALTER TABLE ledger_events DROP CONSTRAINT ledger_events_pkey CASCADE;
		 ALTER TABLE ledger_events DROP CONSTRAINT ledger_events_event_id_key;
		 INSERT INTO ledger_events SELECT * FROM ledger_events WHERE seq = 77"
	expect dup "duplicate_seq 77" 77 5
}

test_many_tamperings_across_boundaries_are_named_exactly()
{
	new_db many
	change_posting many 10
	sql many "DELETE FROM postings WHERE event_seq = 20;
		  DELETE FROM ledger_events WHERE seq = 20"
	change_posting many 30
	sql many "UPDATE ledger_events
		  SET postings_hash = ledger_hash_v1(prev_hash, ledger_event_body(30))
		  WHERE seq = 30"
	expect many "hash_mismatch 10;missing_seq 20;chain_break 30" 10 20 30 3 1
}

test_full_rehash_is_caught_by_checkpoints()
{
	new_db signed
	openssl genpkey -algorithm ed25519 -out "$PGV_TMP/ck.pem"
	openssl pkey -in "$PGV_TMP/ck.pem" -pubout -out "$PGV_TMP/ck.pub"
	cat >>"$PGV_TMP/signed.yaml" <<YAML
  checkpoint_file: $PGV_TMP/signed.checkpoints
  checkpoint_key: $PGV_TMP/ck.pem
YAML
	verify signed
	[ "$RC" -eq 0 ]
	sql signed "SELECT ledger_synthesize(50)"
	verify signed --threads 2
	[ "$RC" -eq 0 ]
	[ "$(cut -d' ' -f1 "$PGV_TMP/signed.checkpoints" | tr '\n' ' ')" = "300 350 " ]
	"$PGV_BIN" checkpoint verify "$PGV_TMP/signed.checkpoints" --key "$PGV_TMP/ck.pub"

	change_posting signed 320
	sql signed "SELECT ledger_rehash_from(320)"
	expect signed "checkpoint_mismatch 350" 320 10
	# the rewrite left no checkpoint behind
	[ "$(wc -l <"$PGV_TMP/signed.checkpoints")" -eq 2 ]

	sed -i '1s/^300 /299 /' "$PGV_TMP/signed.checkpoints"
	local rc=0
	"$PGV_BIN" checkpoint verify "$PGV_TMP/signed.checkpoints" \
		--policy "$PGV_TMP/signed.yaml" || rc=$?
	[ "$rc" -eq 1 ]
}

test_truncated_head_is_caught_by_checkpoints()
{
	new_db truncated
	openssl genpkey -algorithm ed25519 -out "$PGV_TMP/ck2.pem"
	cat >>"$PGV_TMP/truncated.yaml" <<YAML
  checkpoint_file: $PGV_TMP/truncated.checkpoints
  checkpoint_key: $PGV_TMP/ck2.pem
YAML
	verify truncated
	[ "$RC" -eq 0 ]
	sql truncated "DELETE FROM postings WHERE event_seq >= 299;
		       DELETE FROM ledger_events WHERE seq >= 299"
	expect truncated "checkpoint_mismatch 300" 100
}

test_follow_verifies_kicked_events_within_a_second()
{
	new_db follow
	mkfifo "$PGV_TMP/kick"
	"$PGV_BIN" verify --policy "$PGV_TMP/follow.yaml" --follow \
		<"$PGV_TMP/kick" >"$PGV_TMP/follow.json" 2>"$PGV_TMP/follow.err" &
	local pid=$! i
	exec 7>"$PGV_TMP/kick"
	for i in $(seq 1 100); do
		grep -q '"sweeps":1' "$PGV_TMP/follow.err" && break
		sleep 0.05
	done
	grep -q '"head_seq":300' "$PGV_TMP/follow.err"
	sql follow "SELECT postings_apply(gen_random_uuid(), 'transfer',
		'[{\"account\": \"naïve café\", \"currency\": \"CHF\", \"amount\": 5},
		  {\"account\": \"💶 wallet\", \"currency\": \"CHF\", \"amount\": -5}]');
		INSERT INTO ledger_events (seq, event_id, kind, prev_hash, postings_hash)
		SELECT 302, gen_random_uuid(), 'forged', postings_hash, postings_hash
		FROM ledger_events WHERE seq = 301;
		INSERT INTO postings VALUES (302, 'naïve café', 'CHF', 1),
					    (302, '💶 wallet', 'CHF', -1)"
	echo kick >&7
	for i in $(seq 1 20); do
		grep -q '"head_seq":302' "$PGV_TMP/follow.err" && break
		sleep 0.05
	done
	exec 7>&-
	wait "$pid" || true
	grep -q '"head_seq":302' "$PGV_TMP/follow.err"
	grep -q '"incremental_runs":1' "$PGV_TMP/follow.err"
	[ "$(jq -r '"\(.rule) \(.seq)"' "$PGV_TMP/follow.json")" = "hash_mismatch 302" ]
}

test_errors_exit_2_with_a_message()
{
	new_db broken
	local rc=0
	sed "s/port=$PGPORT/port=1/" "$PGV_TMP/broken.yaml" >"$PGV_TMP/down.yaml"
	"$PGV_BIN" verify --policy "$PGV_TMP/down.yaml" 2>"$PGV_TMP/err.txt" || rc=$?
	[ "$rc" -eq 2 ] && grep -q 'cannot connect to the database' "$PGV_TMP/err.txt"

	rc=0
	sed 's/public.postings/public.nope/' "$PGV_TMP/broken.yaml" >"$PGV_TMP/nope.yaml"
	"$PGV_BIN" verify --policy "$PGV_TMP/nope.yaml" 2>"$PGV_TMP/err.txt" || rc=$?
	[ "$rc" -eq 2 ] && grep -q "cannot read 'public.nope'" "$PGV_TMP/err.txt"

	rc=0
	printf '  columns:\n    prev_hash: previous\n' >>"$PGV_TMP/broken.yaml"
	"$PGV_BIN" verify --policy "$PGV_TMP/broken.yaml" 2>"$PGV_TMP/err.txt" || rc=$?
	[ "$rc" -eq 2 ] && grep -q 'column "previous" does not exist' "$PGV_TMP/err.txt"
}

# 'pgvigil run' with hash_integrity: a committed insert into the events
# table, seen by the probes, wakes the verifier, which names a forged event
# within a second or so.
test_run_verifies_events_the_probes_see_committed()
{
	local out=$PGV_TMP/run.out seq i
	new_db live
	pgv_start_monitor "$PGV_TMP/live.yaml" "$out"
	# past the sweep at start (300 events: milliseconds); no sweep follows,
	# so only the probes' wake-up can find what comes next
	sleep 1
	seq=$(psql -X -qAt -d live -c "SELECT max(seq) + 1 FROM ledger_events")
	psql -X -q -d live -c "INSERT INTO ledger_events (seq, event_id, kind, prev_hash, postings_hash)
		SELECT $seq, gen_random_uuid(), 'forged', decode(repeat('00', 32), 'hex'),
		       decode(repeat('ab', 32), 'hex')"
	for i in $(seq 1 50); do
		grep -q '"hash_integrity"' "$out" && break
		sleep 0.1
	done
	pgv_stop_monitor
	jq -r 'select(.invariant == "hash_integrity") | .seq' "$out" | sort -u | grep -qx "$seq" ||
		{ echo "no finding for seq $seq:" >&2; cat "$out" >&2; return 1; }
}
