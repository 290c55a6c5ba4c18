/*
 * Known-answer vectors of hash scheme v1 for tests/unit/test_ledger_hash.c,
 * computed by PostgreSQL + pgcrypto: psql -f sql/reference_ledger.sql, then
 * psql -f this file. Prints one hash per vector.
 */
CREATE TEMP TABLE v(vec int, account text, currency text, amount bigint);
INSERT INTO v VALUES
 (1, 'alice', 'EUR', 100), (1, 'bob', 'EUR', -100),
 (2, 'Zürich', 'CHF', -250), (2, '東京', 'JPY', 1000), (2, 'Zürich', 'CHF', 250),
 (2, '東京', 'JPY', -1000), (2, 'Zoo', 'CHF', 0), (2, 'abc', 'USD', 5),
 (2, 'ab', 'USD', -5), (2, 'ab', 'EUR', 7), (2, 'ab', 'EUR', -7),
 (3, repeat('x', 300), 'USD', 9223372036854775807),
 (3, '', 'USD', -9223372036854775808), (3, 'x', 'USD', -1);
CREATE TEMP TABLE ids(vec int, event_id uuid, prev bytea);
INSERT INTO ids VALUES
 (1, '00000000-0000-0000-0000-000000000001', ledger_zero_hash()),
 (3, 'ffffffff-0000-4000-8000-0123456789ab',
  decode('0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20', 'hex')),
 (4, '6ba7b810-9dad-11d1-80b4-00c04fd430c8', ledger_zero_hash());
CREATE TEMP TABLE out(vec int, h bytea);
CREATE FUNCTION pg_temp.vh(p_vec int, p_id uuid, p_prev bytea) RETURNS bytea LANGUAGE sql AS $$
 SELECT ledger_hash_v1(p_prev, uuid_send(p_id) || int4send(count(v.*)::int)
   || coalesce(string_agg(ledger_posting_bytes(v.account, v.currency, v.amount), ''::bytea
      ORDER BY convert_to(v.account, 'UTF8'), convert_to(v.currency, 'UTF8'), v.amount), ''::bytea))
 FROM (SELECT 1) one LEFT JOIN v ON v.vec = p_vec $$;
INSERT INTO out SELECT 1, pg_temp.vh(1, event_id, prev) FROM ids WHERE vec = 1;
/* vector 2 chains onto vector 1 */
INSERT INTO out SELECT 2, pg_temp.vh(2, '6ba7b810-9dad-11d1-80b4-00c04fd430c8', h) FROM out WHERE vec = 1;
INSERT INTO out SELECT 3, pg_temp.vh(3, event_id, prev) FROM ids WHERE vec = 3;
/* vector 4: no postings */
INSERT INTO out SELECT 4, pg_temp.vh(4, event_id, prev) FROM ids WHERE vec = 4;
SELECT vec, encode(h, 'hex') FROM out ORDER BY vec;
