/*
 * Synthetic ledger for tests and benchmarks, loaded after
 * reference_ledger.sql. ledger_synthesize(n) appends n events of 2 to 4
 * postings (one currency per event, balanced, some account names outside
 * ASCII) to the chain, set-based so that a million events take seconds
 * rather than a statement each. It is a bulk loader: it writes events and
 * balances itself, bypassing postings_apply, so run it before monitoring
 * starts, never under a policy that should stay quiet.
 */
CREATE FUNCTION ledger_synthesize(p_events bigint, p_accounts int DEFAULT 600)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	v_head bigint;
	v_start bytea;
BEGIN
	/* accounts once: a third per currency, every fifth with a non-ASCII name */
	INSERT INTO accounts (account, currency)
	SELECT CASE i % 5 WHEN 1 THEN 'Zürich-Ωmega-' || i
			  WHEN 3 THEN '東京-口座-' || i
			  ELSE 'acct-' || lpad(i::text, 6, '0') END,
	       (ARRAY['EUR', 'USD', 'JPY'])[1 + i % 3]
	FROM generate_series(0, p_accounts - 1) i
	ON CONFLICT DO NOTHING;

	CREATE TEMP TABLE synth_accounts ON COMMIT DROP AS
	SELECT currency::text AS currency,
	       (row_number() OVER (PARTITION BY currency ORDER BY account)) - 1 AS ix,
	       account,
	       count(*) OVER (PARTITION BY currency) AS n
	FROM accounts;
	CREATE INDEX ON synth_accounts (currency, ix);
	ANALYZE synth_accounts;

	SELECT e.seq, e.postings_hash INTO v_head, v_start
	FROM ledger_events e ORDER BY e.seq DESC LIMIT 1;
	v_head := coalesce(v_head, 0);
	v_start := coalesce(v_start, ledger_zero_hash());

	CREATE TEMP TABLE synth_events ON COMMIT DROP AS
	SELECT seq, gen_random_uuid() AS event_id,
	       2 + floor(random() * 3)::int AS k,
	       (ARRAY['EUR', 'USD', 'JPY'])[1 + floor(random() * 3)::int] AS currency
	FROM generate_series(v_head + 1, v_head + p_events) seq;

	/* k - 1 random amounts, the k-th balances them */
	CREATE TEMP TABLE synth_postings ON COMMIT DROP AS
	SELECT r.seq, a.account, r.currency,
	       coalesce(r.amount, -sum(r.amount) OVER (PARTITION BY r.seq))::bigint AS amount
	FROM (SELECT e.seq, e.currency,
		     CASE WHEN i < e.k THEN floor(random() * 2000001)::bigint - 1000000
		     END AS amount,
		     random() AS pick
	      FROM synth_events e, generate_series(1, e.k) i) r
	JOIN synth_accounts c0 ON c0.currency = r.currency AND c0.ix = 0
	JOIN synth_accounts a ON a.currency = r.currency
			     AND a.ix = floor(r.pick * c0.n)::bigint;

	INSERT INTO ledger_events (seq, event_id, kind, prev_hash, postings_hash)
	SELECT seq, event_id, 'synthetic',
	       coalesce(lag(h) OVER (ORDER BY seq), v_start), h
	FROM (SELECT b.seq, b.event_id,
		     ledger_chain(v_start, b.body) OVER (ORDER BY b.seq) AS h
	      FROM (SELECT e.seq, e.event_id,
			   uuid_send(e.event_id) || int4send(e.k)
			   || string_agg(ledger_posting_bytes(p.account, p.currency,
							      p.amount), ''::bytea
				ORDER BY convert_to(p.account, 'UTF8'),
					 convert_to(p.currency, 'UTF8'), p.amount)
			   AS body
		    FROM synth_events e JOIN synth_postings p ON p.seq = e.seq
		    GROUP BY e.seq, e.event_id, e.k) b) chained;

	INSERT INTO postings (event_seq, account, currency, amount)
	SELECT seq, account, currency, amount FROM synth_postings ORDER BY seq;

	UPDATE accounts a SET balance = a.balance + d.delta
	FROM (SELECT account, sum(amount) AS delta FROM synth_postings GROUP BY 1) d
	WHERE a.account = d.account;
	RETURN v_head + p_events;
END
$$;

/*
 * Rewrite history from p_seq on: every prev_hash and postings_hash from
 * there to the head is recomputed from the stored postings. This is what an
 * attacker with write access does to hide a change; tests use it to show
 * that only signed checkpoints catch it.
 */
CREATE FUNCTION ledger_rehash_from(p_seq bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	v_start bytea;
BEGIN
	SELECT e.postings_hash INTO v_start FROM ledger_events e
	WHERE e.seq < p_seq ORDER BY e.seq DESC LIMIT 1;
	v_start := coalesce(v_start, ledger_zero_hash());
	UPDATE ledger_events t
	SET prev_hash = c.prev_hash, postings_hash = c.h
	FROM (SELECT seq, h, coalesce(lag(h) OVER (ORDER BY seq), v_start) AS prev_hash
	      FROM (SELECT e.seq,
			   ledger_chain(v_start, ledger_event_body(e.seq))
				OVER (ORDER BY e.seq) AS h
		    FROM ledger_events e WHERE e.seq >= p_seq) x) c
	WHERE t.seq = c.seq;
END
$$;
