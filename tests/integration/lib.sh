# Integration test library, sourced by tests/integration/run and by the
# tools that need a throwaway server (demo, bench). Makes a real PostgreSQL
# cluster in a temporary directory, owned by the 'postgres' user, listening
# on a unix socket and a private loopback port.

PG_MAJOR=${PG_MAJOR:-15}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
PGV_ROOT=${PGV_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
PGV_BIN=${PGV_BIN:-$PGV_ROOT/pgvigil}

pgv_die()
{
	echo "error: $*" >&2
	exit 2
}

# A free loopback TCP port.
pgv_free_port()
{
	local port
	for port in $(shuf -i 20000-40000 -n 50); do
		if ! (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	return 1
}

# pgv_cluster_start [postgres -c options...]: sets PGV_TMP, PGDATA, PGHOST,
# PGPORT, PGUSER; the server runs as 'postgres'.
pgv_cluster_start()
{
	id postgres >/dev/null 2>&1 || pgv_die "no 'postgres' user: install postgresql-$PG_MAJOR"
	[ -x "$PG_BIN/initdb" ] || pgv_die "no PostgreSQL $PG_MAJOR in '$PG_BIN'"
	PGV_TMP=$(mktemp -d /tmp/pgvigil-test.XXXXXX)
	chmod 755 "$PGV_TMP"
	chown postgres: "$PGV_TMP"
	export PGDATA=$PGV_TMP/data PGHOST=$PGV_TMP PGUSER=postgres
	PGPORT=$(pgv_free_port) || pgv_die "no free port"
	export PGPORT
	runuser -u postgres -- "$PG_BIN/initdb" -D "$PGDATA" -A trust -U postgres \
		--no-sync >"$PGV_TMP/initdb.log" 2>&1 ||
		{ cat "$PGV_TMP/initdb.log" >&2; pgv_die "initdb failed"; }
	local opts="-k $PGV_TMP -p $PGPORT -c listen_addresses=127.0.0.1 -c fsync=off"
	local o
	for o in "$@"; do opts="$opts -c $o"; done
	runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PGV_TMP/server.log" \
		-o "$opts" -w start >/dev/null ||
		{ cat "$PGV_TMP/server.log" >&2; pgv_die "server did not start"; }
	PGV_POSTMASTER=$(head -1 "$PGDATA/postmaster.pid")
	export PGV_POSTMASTER
}

pgv_cluster_stop()
{
	[ -n "${PGDATA:-}" ] && [ -d "$PGDATA" ] &&
		runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate \
			-w stop >/dev/null 2>&1
	# a test may have mounted something there (a small file system)
	[ -n "${PGV_TMP:-}" ] && awk -v t="$PGV_TMP/" 'index($2, t) == 1 { print $2 }' \
		/proc/mounts | xargs -r umount 2>/dev/null
	[ -n "${PGV_TMP:-}" ] && rm -rf "$PGV_TMP"
	PGV_TMP=
	PGDATA=
}

pgv_psql()
{
	psql -X -q -v ON_ERROR_STOP=1 "$@"
}

# pgv_start_monitor POLICY OUT [args...]: starts 'pgvigil run' in the
# background with stdout to OUT and stderr to OUT.err; waits for "ready".
pgv_start_monitor()
{
	local policy=$1 out=$2
	shift 2
	# the postmaster as it is now: a test may have restarted the server
	PGV_POSTMASTER=$(head -1 "$PGDATA/postmaster.pid")
	# PGV_MONITOR_ARGS: run a whole suite with a setting (e.g. --skip-reads)
	# shellcheck disable=SC2086
	"$PGV_BIN" run --policy "$policy" --pg-pid "$PGV_POSTMASTER" \
		--pid-file "$out.pid" ${PGV_MONITOR_ARGS:-} "$@" \
		>"$out" 2>"$out.err" &
	PGV_MONITOR=$!
	local i
	for i in $(seq 1 200); do
		grep -q '"event":"ready"' "$out.err" 2>/dev/null && return 0
		if ! kill -0 "$PGV_MONITOR" 2>/dev/null; then
			cat "$out.err" >&2
			pgv_die "pgvigil exited before it was ready"
		fi
		sleep 0.05
	done
	cat "$out.err" >&2
	pgv_die "pgvigil was not ready within 10 s"
}

# pgv_stop_monitor: SIGTERM, wait for the drain; returns pgvigil's status.
pgv_stop_monitor()
{
	[ -n "${PGV_MONITOR:-}" ] || return 0
	kill -TERM "$PGV_MONITOR" 2>/dev/null
	local rc=0
	wait "$PGV_MONITOR" || rc=$?
	PGV_MONITOR=
	return $rc
}

# --- assertions for tests ---------------------------------------------------

# assert_eq ACTUAL EXPECTED [WHAT]
assert_eq()
{
	if [ "$1" != "$2" ]; then
		echo "expected ${3:-value} '$2', got '$1'" >&2
		return 1
	fi
}

# count_records RECORDS [JQ-SELECT]: how many JSON lines (matching).
count_records()
{
	local filter=${2:-true}
	[ -n "$1" ] || { echo 0; return; }
	printf '%s\n' "$1" | jq -c "select($filter)" | grep -c . || true
}

# fields RECORDS JQ: the value of JQ in each record, one per line.
fields()
{
	printf '%s\n' "$1" | jq -r "$2"
}

# records_of SQL [psql args...]: the records the SQL caused in database
# 'bank', read from $OUT once a sentinel write from another session has been
# reported after them (errors in the SQL are allowed: some statements are
# meant to fail).
records_of()
{
	local sql=$1 before
	shift
	before=$(wc -l <"$OUT")
	psql -X -q -d bank -c "$sql" "$@" >/dev/null 2>&1 || true
	sentinel_after "$before"
}

# sentinel_after LINE: write the sentinel, wait for its record, print the
# records after LINE that are not the sentinel's.
sentinel_after()
{
	local before=$1 i
	pgv_psql -d bank -c "UPDATE sentinel SET balance = 1" >/dev/null
	for i in $(seq 1 200); do
		tail -n +"$((before + 1))" "$OUT" |
			grep -q '"relation":"public.sentinel"' && break
		sleep 0.05
	done
	tail -n +"$((before + 1))" "$OUT" | grep -q '"relation":"public.sentinel"' ||
		{ echo "no sentinel record: is the monitor alive?" >&2; return 1; }
	tail -n +"$((before + 1))" "$OUT" | grep -v '"relation":"public.sentinel"' || true
}

# pgv_bank_start [PG_BIN]: a cluster holding the fixture bank (database
# 'bank') and its policy in $PGV_TMP/policy.yaml; FIXTURES names the folder.
FIXTURES=$PGV_ROOT/tests/integration/fixtures
pgv_bank_start()
{
	if [ -n "${1:-}" ]; then
		PG_BIN=$1 pgv_cluster_start || return 1
	else
		pgv_cluster_start || return 1
	fi
	pgv_psql -d postgres -c "CREATE DATABASE bank" &&
	pgv_psql -d bank -f "$FIXTURES/bank.sql" >/dev/null &&
	pgv_policy "$FIXTURES/bank-policy.yaml.in" "$PGV_TMP/policy.yaml" &&
	chmod 644 "$PGV_TMP/policy.yaml"
}

# pgv_policy TEMPLATE OUT: a policy from a template with @PGHOST@/@PGPORT@.
pgv_policy()
{
	sed "s|@PGHOST@|$PGHOST|g; s|@PGPORT@|$PGPORT|g" "$1" >"$2"
}
