# Wire capture against a real server: what the client sent (its statement
# and bound values) reaches the violation record, over plain TCP, over TLS
# (a self-signed certificate made here, sslmode=require) and over the unix
# socket, masked by default and as sent with --unmasked; the parser survives
# bytes that are not the protocol and a connection cut mid-message.

PGBENCH_SCRIPT_DELTA=1234
PGBENCH_SCRIPT_AID=42

setup_file()
{
	CERT_DIR=$(mktemp -d /tmp/pgvigil-cert.XXXXXX)
	openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
		-keyout "$CERT_DIR/server.key" -out "$CERT_DIR/server.crt" \
		>/dev/null 2>&1 || { echo "openssl failed" >&2; return 1; }
	chown -R postgres: "$CERT_DIR"
	chmod 600 "$CERT_DIR/server.key"
	chmod 755 "$CERT_DIR"
	pgv_cluster_start ssl=on "ssl_cert_file=$CERT_DIR/server.crt" \
		"ssl_key_file=$CERT_DIR/server.key" log_connections=on
	pgv_psql -d postgres -c "CREATE DATABASE bench" &&
	pgbench -i -q -s 1 bench >/dev/null 2>&1 &&
	write_policy on "$PGV_TMP/policy.yaml" &&
	write_policy off "$PGV_TMP/policy-off.yaml" &&
	cat >"$PGV_TMP/update.sql" <<SCRIPT
\set aid $PGBENCH_SCRIPT_AID
\set delta $PGBENCH_SCRIPT_DELTA
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SCRIPT
}

teardown_file()
{
	rm -rf "$CERT_DIR"
}

# write_policy on|off FILE
write_policy()
{
	cat >"$2" <<POLICY
database:
  dsn: "host=$PGHOST port=$PGPORT user=postgres dbname=bench"
monetary:
  balance_columns: [public.pgbench_accounts.abalance]
  allowed_functions: []
capture:
  wire: $1
POLICY
}

# pgbench_extended SSLMODE OUT [pgvigil args...]: two transactions of the
# script through the extended protocol over TCP, under a monitor.
pgbench_extended()
{
	local sslmode=$1 out=$2
	shift 2
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out" "$@"
	pgbench -n -M extended -t 2 -f "$PGV_TMP/update.sql" \
		"host=127.0.0.1 port=$PGPORT dbname=bench sslmode=$sslmode application_name=wire-$sslmode" \
		>"$PGV_TMP/pgbench.log" 2>&1 ||
		{ cat "$PGV_TMP/pgbench.log" >&2; return 1; }
	pgv_stop_monitor
	cat "$out"
}

expect_client_statement()
{
	local r=$1
	assert_eq "$(count_records "$r" '.invariant == "monetary"')" 2 "monetary records"
	assert_eq "$(count_records "$r" '.invariant == "monitor"')" 0 "monitor records"
	assert_eq "$(fields "$r" .client_protocol | sort -u)" extended protocol
	assert_eq "$(fields "$r" .client_statement | sort -u)" \
		'UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;' \
		client_statement
	assert_eq "$(fields "$r" '.bind_formats | join(",")' | sort -u)" text,text formats
	fields "$r" .session.client | grep -q '^127\.0\.0\.1:[0-9]*$' ||
		{ echo "no client address in $r" >&2; return 1; }
}

test_extended_protocol_over_tls_shows_client_statement_and_masked_values()
{
	local r
	r=$(pgbench_extended require "$PGV_TMP/tls.out")
	expect_client_statement "$r"
	assert_eq "$(fields "$r" '.bind_values | join(",")' | sort -u)" '?,?' values
	assert_eq "$(fields "$r" .bind_values_masking | sort -u)" replaced masking
	assert_eq "$(fields "$r" .client_statement_masking | sort -u)" normalized \
		statement masking
	assert_eq "$(fields "$r" .session.startup.ssl_requested | sort -u)" true ssl
	assert_eq "$(fields "$r" .session.startup.application_name | sort -u)" \
		wire-require application_name
	if grep -q "$PGBENCH_SCRIPT_DELTA" <<<"$r"; then
		echo "a bound value leaked into a masked record" >&2
		return 1
	fi
	# the server's own word that the connection was encrypted
	grep 'application_name=wire-require' "$PGV_TMP/server.log" |
		grep -q 'SSL enabled' ||
		{ echo "the pgbench connection did not use TLS" >&2; return 1; }
}

test_extended_protocol_over_tls_unmasked_shows_bound_values()
{
	local r
	r=$(pgbench_extended require "$PGV_TMP/tls-unmasked.out" --unmasked)
	expect_client_statement "$r"
	assert_eq "$(fields "$r" '.bind_values | join(",")' | sort -u)" \
		"$PGBENCH_SCRIPT_DELTA,$PGBENCH_SCRIPT_AID" values
	assert_eq "$(fields "$r" 'has("bind_values_masking")' | sort -u)" false masking
}

test_extended_protocol_over_plain_tcp_unmasked_shows_bound_values()
{
	local r
	r=$(pgbench_extended disable "$PGV_TMP/plain.out" --unmasked)
	expect_client_statement "$r"
	assert_eq "$(fields "$r" '.bind_values | join(",")' | sort -u)" \
		"$PGBENCH_SCRIPT_DELTA,$PGBENCH_SCRIPT_AID" values
	assert_eq "$(fields "$r" .session.startup.ssl_requested | sort -u)" false ssl
}

test_simple_protocol_over_unix_socket_shows_client_text_masked()
{
	local out=$PGV_TMP/simple.out r
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out"
	pgv_psql -d bench -c "BEGIN; UPDATE pgbench_accounts SET abalance = 99 WHERE aid = 7; COMMIT"
	pgv_stop_monitor
	r=$(cat "$out")
	assert_eq "$(count_records "$r")" 1 records
	assert_eq "$(fields "$r" .client_protocol)" simple protocol
	assert_eq "$(fields "$r" .client_statement)" \
		'BEGIN; UPDATE pgbench_accounts SET abalance = $1 WHERE aid = $2; COMMIT' \
		client_statement
	assert_eq "$(fields "$r" 'has("bind_values")')" false bind_values
}

test_long_client_statement_is_kept_cut_and_marked()
{
	local out=$PGV_TMP/long.out r sql
	sql="UPDATE pgbench_accounts SET abalance = 5 WHERE aid IN ($(seq -s, 1 5000))"
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out" --unmasked
	pgv_psql -d bench -c "$sql"
	pgv_stop_monitor
	r=$(head -1 "$out")
	assert_eq "$(fields "$r" .client_statement_truncated)" true truncated
	assert_eq "$(fields "$r" .client_statement_length)" "${#sql}" length
	assert_eq "$(fields "$r" '.client_statement | length')" 16384 kept
}

test_capture_off_records_carry_no_client_fields()
{
	local out=$PGV_TMP/off.out r on off
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out"
	pgv_stop_monitor
	on=$(grep -o '"probes":[0-9]*' "$out.err" | cut -d: -f2)
	pgv_start_monitor "$PGV_TMP/policy-off.yaml" "$out"
	off=$(grep -o '"probes":[0-9]*' "$out.err" | cut -d: -f2)
	# secure_read's entry and return probes are not attached at all
	assert_eq "$off" $((on - 2)) "probes attached with capture off"
	pgbench -n -M extended -t 1 -f "$PGV_TMP/update.sql" \
		"host=127.0.0.1 port=$PGPORT dbname=bench" >/dev/null 2>&1
	pgv_stop_monitor
	r=$(cat "$out")
	assert_eq "$(count_records "$r")" 1 records
	assert_eq "$(fields "$r" 'has("client_statement") or has("bind_values")')" \
		false "client fields"
}

# Bytes that are not the protocol, and a connection cut in the middle of a
# message: the monitor goes on, and the next client is parsed.
test_garbage_and_a_connection_cut_mid_message_leave_the_monitor_working()
{
	local out=$PGV_TMP/garbage.out r
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out" --unmasked
	printf '\x01\x02\x03 not the protocol at all\r\n' \
		>/dev/tcp/127.0.0.1/"$PGPORT" 2>/dev/null || true
	# a startup packet, then half a Query, then the connection is closed
	(
		exec 3<>/dev/tcp/127.0.0.1/"$PGPORT"
		printf '\x00\x00\x00\x26\x00\x03\x00\x00user\x00postgres\x00database\x00bench\x00\x00' >&3
		sleep 0.3
		printf 'Q\x00\x00\x01\x00UPDATE pgbench_acc' >&3
		sleep 0.3
		exec 3>&-
	) || true
	pgbench -n -M extended -t 1 -f "$PGV_TMP/update.sql" \
		"host=127.0.0.1 port=$PGPORT dbname=bench" >/dev/null 2>&1
	pgv_stop_monitor
	r=$(cat "$out")
	assert_eq "$(count_records "$r" '.invariant == "monetary"')" 1 records
	assert_eq "$(fields "$r" 'select(.invariant == "monetary") | .bind_values | join(",")')" \
		"$PGBENCH_SCRIPT_DELTA,$PGBENCH_SCRIPT_AID" values
	kill -0 "$PGV_POSTMASTER"
}

# dump_of KEYFILE|"" OUT: a violation through pgbench -M extended with dumps
# on; prints the dump as JSON lines.
dump_of()
{
	local key=$1 out=$2 dir=$PGV_TMP/dumps-$RANDOM policy=$PGV_TMP/policy-dump.yaml f i
	cp "$PGV_TMP/policy.yaml" "$policy"
	printf 'dump:\n  directory: %s\n' "$dir" >>"$policy"
	[ -z "$key" ] || printf '  key_file: %s\n' "$key" >>"$policy"
	pgv_start_monitor "$policy" "$out"
	pgbench -n -M extended -t 1 -f "$PGV_TMP/update.sql" \
		"host=127.0.0.1 port=$PGPORT dbname=bench sslmode=require" >/dev/null 2>&1
	for i in $(seq 1 100); do
		f=$(ls "$dir"/* 2>/dev/null | head -1)
		[ -n "$f" ] && break
		sleep 0.1
	done
	pgv_stop_monitor
	[ -n "$f" ] || { echo "no dump in '$dir'" >&2; return 1; }
	"$PGV_BIN" dump show "$f" --json ${key:+--key-file "$key"}
}

test_unencrypted_dump_masks_client_statement_and_leaves_values_out()
{
	local d
	d=$(dump_of "" "$PGV_TMP/dump-masked.out")
	grep -q '"client_statement":"UPDATE pgbench_accounts SET abalance = abalance + \$1 WHERE aid = \$2' \
		<<<"$d" || { echo "no client_statement in the dump: $d" >&2; return 1; }
	if grep -q '"bind_values":\["1234"' <<<"$d"; then
		echo "bind values in an unencrypted dump" >&2
		return 1
	fi
}

test_encrypted_dump_keeps_client_statement_and_values()
{
	local key=$PGV_TMP/dump.key d
	openssl rand -hex 32 >"$key"
	chmod 600 "$key"
	d=$(dump_of "$key" "$PGV_TMP/dump-encrypted.out")
	grep -q "\"bind_values\":\\[\"$PGBENCH_SCRIPT_DELTA\",\"$PGBENCH_SCRIPT_AID\"\\]" <<<"$d" ||
		{ echo "no bind values in the encrypted dump: $d" >&2; return 1; }
}
