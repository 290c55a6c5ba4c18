# Literal masking against a real server: a prepared statement's text, a
# utility statement's literals, and a statement cut at 4 KiB inside a
# comment. One server and one 'pgvigil run' for the file; records_of (lib.sh)
# waits for a sentinel record after each statement.

setup_file()
{
	pgv_bank_start &&
	OUT=$PGV_TMP/masking.out &&
	pgv_start_monitor "$PGV_TMP/policy.yaml" "$OUT"
}

teardown_file()
{
	pgv_stop_monitor
}

test_execute_record_carries_prepare_text_masked()
{
	local r
	r=$(records_of "PREPARE q2 AS UPDATE accounts SET balance = 777, note = 'secretnote' WHERE account = 'alice'" \
		-c "EXECUTE q2") || return 1
	assert_eq "$(count_records "$r")" 1 records || return 1
	assert_eq "$(fields "$r" .statement)" \
		'PREPARE q2 AS UPDATE accounts SET balance = ?, note = ? WHERE account = ?' \
		statement || return 1
	assert_eq "$(fields "$r" .statement_masking)" normalized masking
}

test_statement_cut_in_a_comment_shows_its_masked_head()
{
	local r pad
	pad=$(head -c 4100 /dev/zero | tr '\0' 'c')
	r=$(records_of "UPDATE accounts SET balance = 12 /* $pad */ WHERE account = 'alice'") || return 1
	assert_eq "$(count_records "$r")" 1 records || return 1
	assert_eq "$(fields "$r" .statement_truncated)" true truncated || return 1
	assert_eq "$(fields "$r" .statement_masking)" withheld masking || return 1
	fields "$r" .statement | grep -q '^UPDATE accounts SET balance = ? /\* ccc.*…$' ||
		{ echo "statement: $(fields "$r" .statement | head -c 200)" >&2; return 1; }
}
