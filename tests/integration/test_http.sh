# The HTTP side of 'pgvigil run' against a real server and real probes:
# /metrics through promtool and a real Prometheus (loopback, temporary
# storage, bounded waits), credentials refused, the feed client resuming
# across a daemon restart, and a SIGKILL that loses nothing printed.
# Each test starts and stops its own monitor; everything listens on
# 127.0.0.1 on ports picked at random.

setup_file()
{
	pgv_bank_start &&
	(umask 077 && echo "integration-token-$RANDOM$RANDOM" >"$PGV_TMP/token") &&
	printf 'http:\n  token_file: %s\njournal:\n  max_bytes: 4096\n  keep: 50\n' \
		"$PGV_TMP/token" >>"$PGV_TMP/policy.yaml"
}

# start_http: a monitor with a journal and an HTTP port, stopped when the
# test's subshell exits
start_http()
{
	HTTP_PORT=$(pgv_free_port)
	OUT=$PGV_TMP/out.$HTTP_PORT
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$OUT" --feed "$PGV_TMP/journal" \
		--listen "127.0.0.1:$HTTP_PORT"
	trap cleanup EXIT
}

# errexit holds inside traps too: every step may fail quietly
cleanup()
{
	pgv_stop_monitor >/dev/null 2>&1 || true
	[ -z "${CLEANUP_PIDS:-}" ] || kill $CLEANUP_PIDS 2>/dev/null || true
}

http_get()
{
	curl -s -m 5 -H "Authorization: Bearer $(cat "$PGV_TMP/token")" \
		"http://127.0.0.1:$HTTP_PORT$1"
}

# violate N: N direct balance writes, each a monetary violation
violate()
{
	local i
	for i in $(seq 1 "$1"); do
		pgv_psql -d bank -c "UPDATE accounts SET balance = balance + 1 WHERE account = 'alice'"
	done
}

# wait_lines FILE N: bounded wait for FILE to hold at least N records
wait_lines()
{
	local i
	for i in $(seq 1 200); do
		[ "$(grep -c '^{' "$1" 2>/dev/null)" -ge "$2" ] && return 0
		sleep 0.05
	done
	echo "expected $2 records in $1, got $(grep -c '^{' "$1")" >&2
	return 1
}

test_metrics_pass_promtool_and_count_what_happened()
{
	start_http
	violate 2
	wait_lines "$OUT" 2
	sleep 1.2	# the daemon mirrors its totals once a second
	http_get /metrics >"$PGV_TMP/metrics.txt"
	promtool check metrics <"$PGV_TMP/metrics.txt"
	grep -q '^pgvigil_build_info{version=' "$PGV_TMP/metrics.txt"
	grep -Eq '^pgvigil_violations_total\{invariant="monetary",rule="balance_write_outside_allowed_function"\} [2-9]' \
		"$PGV_TMP/metrics.txt"
	grep -Eq '^pgvigil_statements_captured_total\{command="UPDATE"\} [1-9]' \
		"$PGV_TMP/metrics.txt"
	grep -Eq '^pgvigil_probes_attached\{postmaster="'"$PGV_POSTMASTER"'",probe="all"\} [1-9]' \
		"$PGV_TMP/metrics.txt"
	grep -Eq '^pgvigil_classification_seconds_count [1-9]' "$PGV_TMP/metrics.txt"
	assert_eq "$(http_get /readyz)" ready readyz
	assert_eq "$(http_get /healthz)" ok healthz
}

test_requests_without_the_token_are_refused()
{
	start_http
	assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -m 5 \
		"http://127.0.0.1:$HTTP_PORT/metrics")" 401 "no token"
	assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -m 5 \
		-H 'Authorization: Bearer wrong' \
		"http://127.0.0.1:$HTTP_PORT/feed")" 403 "wrong token"
	! "$PGV_BIN" feed --listen "127.0.0.1:$HTTP_PORT" --since 0 2>/dev/null
}

test_a_non_loopback_listener_without_tls_is_refused()
{
	local rc=0
	"$PGV_BIN" run --policy "$PGV_TMP/policy.yaml" --pg-pid "$PGV_POSTMASTER" \
		--listen "0.0.0.0:$(pgv_free_port)" >/dev/null 2>"$PGV_TMP/exposed.err" || rc=$?
	assert_eq "$rc" 2 "exit status"
	grep -q 'tls_cert' "$PGV_TMP/exposed.err"
}

# a real Prometheus scrapes /metrics with the token; a value is read back
test_prometheus_scrapes_metrics()
{
	local prom_port dir value i
	start_http
	violate 1
	wait_lines "$OUT" 1
	prom_port=$(pgv_free_port)
	dir=$PGV_TMP/prometheus
	mkdir -p "$dir/data"
	cat >"$dir/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: pgvigil
    authorization:
      type: Bearer
      credentials_file: $PGV_TMP/token
    static_configs:
      - targets: ['127.0.0.1:$HTTP_PORT']
EOF
	promtool check config "$dir/prometheus.yml" >/dev/null
	prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
		--web.listen-address="127.0.0.1:$prom_port" >"$dir/log" 2>&1 &
	CLEANUP_PIDS=$!
	value=
	for i in $(seq 1 120); do
		value=$(curl -s -m 2 "http://127.0.0.1:$prom_port/api/v1/query" \
			--data-urlencode 'query=sum(pgvigil_violations_total{invariant="monetary"})' |
			jq -r '.data.result[0].value[1] // empty' 2>/dev/null) || true
		[ -n "$value" ] && break
		sleep 0.5
	done
	kill "$CLEANUP_PIDS"
	wait "$CLEANUP_PIDS" 2>/dev/null || true
	[ -n "$value" ] || { tail -5 "$dir/log" >&2; echo "prometheus read back nothing" >&2; return 1; }
	[ "$value" -ge 1 ]
}

# the client follows across a restart of the daemon: every id once, in order
test_feed_client_resumes_across_daemon_restart()
{
	local first last client ids want
	start_http
	first=$("$PGV_BIN" feed --listen "127.0.0.1:$HTTP_PORT" \
		--token-file "$PGV_TMP/token" --since 0 | tail -1 | jq .id)
	first=${first:-0}
	"$PGV_BIN" feed --listen "127.0.0.1:$HTTP_PORT" --token-file "$PGV_TMP/token" \
		--since "$first" --follow >"$PGV_TMP/client.out" 2>"$PGV_TMP/client.err" &
	client=$!
	CLEANUP_PIDS=$client
	violate 3
	wait_lines "$PGV_TMP/client.out" 3
	pgv_stop_monitor
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$OUT.2" --feed "$PGV_TMP/journal" \
		--listen "127.0.0.1:$HTTP_PORT"
	violate 3
	wait_lines "$PGV_TMP/client.out" 6
	kill "$client"
	ids=$(jq -r .id "$PGV_TMP/client.out" | tr '\n' ' ')
	want=$(seq $((first + 1)) $((first + 6)) | tr '\n' ' ')
	assert_eq "$ids" "$want" "ids seen by the client"
	last=$(cat "$PGV_TMP"/journal* | jq -s "map(.id) | max")
	assert_eq "$last" $((first + 6)) "last id in the journal"
}

# everything printed is in the journal; ids continue after the crash
test_sigkill_loses_no_printed_record()
{
	local printed journaled
	start_http
	violate 3
	wait_lines "$OUT" 3
	kill -KILL "$PGV_MONITOR"
	wait "$PGV_MONITOR" 2>/dev/null || true
	PGV_MONITOR=
	printed=$(jq -r .id "$OUT" | sort)
	journaled=$(cat "$PGV_TMP/journal"* | jq -r .id | sort)
	[ -n "$printed" ]
	[ -z "$(comm -23 <(echo "$printed") <(echo "$journaled"))" ] ||
		{ echo "printed but not journaled" >&2; return 1; }
	ls -l "$PGV_TMP"/journal* | awk '{print $1}' | sort -u | grep -qx -- '-rw-------'
	start_http
	violate 1
	wait_lines "$OUT" 1
	assert_eq "$(jq .id "$OUT")" $(( $(echo "$printed" | sort -n | tail -1) + 1 )) "next id"
}

# after the drop the daemon still reports, serves and reads drop counters
test_dropped_privileges_keep_reporting()
{
	HTTP_PORT=$(pgv_free_port)
	OUT=$PGV_TMP/out.$HTTP_PORT
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$OUT" --feed "$PGV_TMP/journal" \
		--listen "127.0.0.1:$HTTP_PORT" --drop-privileges
	trap cleanup EXIT
	assert_eq "$(awk '/^CapEff/ {print $2}' /proc/"$PGV_MONITOR"/status)" \
		0000000000000000 "effective capabilities"
	violate 1
	wait_lines "$OUT" 1
	sleep 1.2
	assert_eq "$(http_get /readyz)" ready readyz
	http_get /metrics | grep -q '^pgvigil_ringbuf_drops_total{cause="ringbuf_full"} 0'
	! grep -q '"level":"error"' "$OUT.err"
}
