# A server whose binary is replaced on disk while it runs (a package upgrade
# without a restart): the probes must attach to the inode the postmaster
# maps, through /proc/PID/exe, or they would see nothing from it.

setup_file()
{
	# a private copy of the server installation, so its files can be
	# replaced; the shared files stay where the copy expects them
	COPY=$(mktemp -d /tmp/pgvigil-copy.XXXXXX)
	mkdir -p "$COPY/usr/lib/postgresql"
	cp -a "/usr/lib/postgresql/$PG_MAJOR" "$COPY/usr/lib/postgresql/"
	ln -s /usr/share "$COPY/usr/share"
	chmod -R a+rX "$COPY"
	pgv_bank_start "$COPY/usr/lib/postgresql/$PG_MAJOR/bin"
}

teardown_file()
{
	rm -rf "$COPY"
}

test_binary_replaced_on_disk_is_still_watched()
{
	local bin=$COPY/usr/lib/postgresql/$PG_MAJOR/bin/postgres out=$PGV_TMP/feed.out
	# the "upgrade": new files at the old paths, new inodes
	cp "$bin" "$bin.new" && mv -f "$bin.new" "$bin"
	readlink "/proc/$PGV_POSTMASTER/exe" | grep -q deleted
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$out"
	pgv_psql -d bank -c "UPDATE accounts SET balance = 1 WHERE account = 'bob'"
	pgv_psql -d bank -c "SELECT adjust_plpgsql('bob', 1)" >/dev/null
	sleep 0.5
	pgv_stop_monitor
	assert_eq "$(jq -r .rule "$out" | sort -u)" balance_write_outside_allowed_function rule
	assert_eq "$(jq -c . "$out" | grep -c .)" 2 "record count"
	assert_eq "$(jq -r '.function_stack | join(",")' "$out" | tail -1)" public.adjust_plpgsql stack
}
