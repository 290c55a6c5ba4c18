/*
 * The reference ledger of pgvigil (DESIGN.md, "The reference ledger and hash
 * scheme v1"): accounts, the hash-chained event log, postings, the one
 * function allowed to move money, and the domain event tables with their
 * projections. The demo, the tests and the benchmarks load this file into a
 * fresh database; the monitor's policies name these objects.
 */
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE accounts (
	account text PRIMARY KEY,
	/* three letters exactly: the hash takes the currency as 3 bytes */
	currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
	balance bigint NOT NULL DEFAULT 0		/* minor units */
);

CREATE TABLE ledger_events (
	seq bigint PRIMARY KEY CHECK (seq > 0),
	event_id uuid NOT NULL UNIQUE,
	kind text NOT NULL,
	occurred_at timestamptz NOT NULL DEFAULT now(),
	prev_hash bytea NOT NULL,
	postings_hash bytea NOT NULL
);

CREATE TABLE postings (
	event_seq bigint NOT NULL REFERENCES ledger_events (seq),
	account text NOT NULL,
	currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
	amount bigint NOT NULL
);
/* the verifier streams postings in event order, range by range */
CREATE INDEX postings_event_seq_idx ON postings (event_seq);

/*
 * Scheme v1, piece by piece. Byte strings compare bytewise in PostgreSQL
 * (memcmp, then the shorter first), which is the canonical posting order;
 * converting to UTF-8 bytea keeps collations out of it.
 */
CREATE FUNCTION ledger_posting_bytes(account text, currency text, amount bigint)
RETURNS bytea LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
/* u16 length: the low two bytes of an int4 (int2 would stop at 32767) */
RETURN substring(int4send(octet_length(convert_to(account, 'UTF8'))) FROM 3)
	|| convert_to(account, 'UTF8') || convert_to(currency, 'UTF8')
	|| int8send(amount);

/* postings_hash(n) from prev_hash(n) and body(n) = event_id ‖ u32 n ‖ postings */
CREATE FUNCTION ledger_hash_v1(prev_hash bytea, body bytea)
RETURNS bytea LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN digest(convert_to('pgvigil.postings.v1', 'UTF8') || prev_hash || body,
	      'sha256');

CREATE FUNCTION ledger_zero_hash()
RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN decode(repeat('00', 32), 'hex');

/*
 * The chain as an aggregate: used as a window over events ordered by seq it
 * yields each event's postings_hash in one pass (a loop in PL/pgSQL would
 * cost a statement per event). 'start' is the hash before the first row.
 */
CREATE FUNCTION ledger_chain_step(state bytea, start bytea, body bytea)
RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ledger_hash_v1(coalesce(state, start), body);

CREATE AGGREGATE ledger_chain(bytea, bytea) (
	sfunc = ledger_chain_step,
	stype = bytea
);

/* body(n) of an event as stored, for rehashing and for checks */
CREATE FUNCTION ledger_event_body(p_seq bigint)
RETURNS bytea LANGUAGE sql STABLE
RETURN (SELECT uuid_send(e.event_id) || int4send(count(p.*)::int)
	       || coalesce(string_agg(ledger_posting_bytes(p.account,
				p.currency::text, p.amount), ''::bytea
			    ORDER BY convert_to(p.account, 'UTF8'),
				     convert_to(p.currency::text, 'UTF8'),
				     p.amount), ''::bytea)
	FROM ledger_events e LEFT JOIN postings p ON p.event_seq = e.seq
	WHERE e.seq = p_seq GROUP BY e.event_id);

/*
 * The only writer of events and balances. 'postings' is a JSON array of
 * {"account": text, "currency": "EUR", "amount": minor units}; the set must
 * sum to zero per currency and name existing accounts of that currency.
 * Returns the new event's seq.
 */
CREATE FUNCTION postings_apply(event_id uuid, kind text, postings jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	v_seq bigint;
	v_prev bytea;
	v_body bytea;
	v_bad text;
	v_updated bigint;
	v_accounts bigint;
BEGIN
	IF jsonb_typeof(postings) IS DISTINCT FROM 'array'
	   OR jsonb_array_length(postings) < 2 THEN
		RAISE EXCEPTION 'a posting set is an array of at least two postings';
	END IF;
	/*
	 * The set is read from the JSON each time rather than through a temp
	 * table: no DDL or TRUNCATE in the monitored statement stream.
	 */
	SELECT coalesce(i.account, '(null)') INTO v_bad
	FROM jsonb_to_recordset(postings) AS i(account text, currency text, amount bigint)
	WHERE i.account IS NULL OR i.currency IS NULL OR i.amount IS NULL
	   OR octet_length(convert_to(i.account, 'UTF8')) > 65535
	LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'malformed posting for account %', v_bad;
	END IF;
	SELECT i.currency INTO v_bad
	FROM jsonb_to_recordset(postings) AS i(account text, currency text, amount bigint)
	GROUP BY i.currency HAVING sum(i.amount) <> 0 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'posting set does not balance in %', v_bad;
	END IF;

	/* one writer at a time: seq has no gaps, the chain no forks */
	PERFORM pg_advisory_xact_lock(hashtextextended('pgvigil.ledger_events', 0));
	SELECT e.seq, e.postings_hash INTO v_seq, v_prev
	FROM ledger_events e ORDER BY e.seq DESC LIMIT 1;
	v_seq := coalesce(v_seq, 0) + 1;
	v_prev := coalesce(v_prev, ledger_zero_hash());

	SELECT uuid_send(postings_apply.event_id) || int4send(count(*)::int)
	       || string_agg(ledger_posting_bytes(i.account, i.currency, i.amount),
			     ''::bytea ORDER BY convert_to(i.account, 'UTF8'),
					convert_to(i.currency, 'UTF8'), i.amount)
	INTO v_body
	FROM jsonb_to_recordset(postings) AS i(account text, currency text, amount bigint);

	INSERT INTO ledger_events (seq, event_id, kind, prev_hash, postings_hash)
	VALUES (v_seq, postings_apply.event_id, postings_apply.kind, v_prev,
		ledger_hash_v1(v_prev, v_body));
	INSERT INTO postings (event_seq, account, currency, amount)
		SELECT v_seq, i.account, i.currency, i.amount
		FROM jsonb_to_recordset(postings)
			AS i(account text, currency text, amount bigint);

	UPDATE accounts a SET balance = a.balance + d.delta
	FROM (SELECT i.account, i.currency, sum(i.amount) AS delta
	      FROM jsonb_to_recordset(postings)
			AS i(account text, currency text, amount bigint)
	      GROUP BY 1, 2) d
	WHERE a.account = d.account AND a.currency = d.currency;
	GET DIAGNOSTICS v_updated = ROW_COUNT;
	SELECT count(DISTINCT (i.account, i.currency)) INTO v_accounts
	FROM jsonb_to_recordset(postings) AS i(account text, currency text, amount bigint);
	IF v_updated <> v_accounts THEN
		RAISE EXCEPTION 'a posting names an unknown account or the wrong currency';
	END IF;
	RETURN v_seq;
END
$$;

/*
 * Domain events (append-only, like ledger_events) and the projections built
 * from them; the self-healing work rebuilds projections from their events.
 */
CREATE TABLE card_domain_events (
	seq bigserial PRIMARY KEY,
	event_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
	card_id text NOT NULL,
	kind text NOT NULL,		/* authorized, captured, released */
	payload jsonb NOT NULL DEFAULT '{}',
	occurred_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dispute_domain_events (
	seq bigserial PRIMARY KEY,
	event_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
	dispute_id text NOT NULL,
	kind text NOT NULL,		/* opened, evidence, won, lost */
	payload jsonb NOT NULL DEFAULT '{}',
	occurred_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE loan_domain_events (
	seq bigserial PRIMARY KEY,
	event_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
	loan_id text NOT NULL,
	kind text NOT NULL,		/* originated, repaid, written_off */
	payload jsonb NOT NULL DEFAULT '{}',
	occurred_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE card_auth_holds (
	auth_id text PRIMARY KEY,
	card_id text NOT NULL,
	currency char(3) NOT NULL,
	amount bigint NOT NULL,
	status text NOT NULL,		/* held, captured, released */
	last_event_seq bigint NOT NULL
);

CREATE TABLE disputes (
	dispute_id text PRIMARY KEY,
	card_id text NOT NULL,
	currency char(3) NOT NULL,
	amount bigint NOT NULL,
	status text NOT NULL,		/* open, won, lost */
	last_event_seq bigint NOT NULL
);

CREATE TABLE loan_positions (
	loan_id text PRIMARY KEY,
	borrower_account text NOT NULL,
	currency char(3) NOT NULL,
	principal bigint NOT NULL,
	outstanding bigint NOT NULL,
	last_event_seq bigint NOT NULL
);
