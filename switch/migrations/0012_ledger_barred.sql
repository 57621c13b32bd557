-- Originals that came after their own reversal. A reversal that finds no original (never received yet,
-- or still being answered by another switchd process) bars the original's transfer id
-- (`ledger_bar_transfer`); should the original still come, `ledger_apply_transfers` refuses it with
-- 'barred' instead of taking money that the terminal or the network has already reversed. The rules are
-- those of switch/domain/ledger_model.py (`LedgerModel.bar`, the check after "the id exists").

CREATE TABLE ledger_barred_transfers (
    id         text COLLATE "C" PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    barred_at  timestamptz NOT NULL DEFAULT now()
);

-- Bar `p_id` unless a transfer with that id exists: true when it is barred (now or before), false when
-- the transfer exists (the caller reverses it instead). It takes the transaction-level advisory lock that
-- ledger_apply_transfers takes for the same id, so a batch applying that id and this call come one after
-- the other: either the batch committed the transfer first (false), or the batch sees the bar (barred).
CREATE FUNCTION ledger_bar_transfer(p_id text) RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    IF p_id IS NULL OR length(p_id) NOT BETWEEN 1 AND 64 THEN
        RAISE EXCEPTION 'ledger_bar_transfer: a transfer id is 1 to 64 characters';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(p_id, 0));
    IF EXISTS (SELECT 1 FROM ledger_transfers WHERE id = p_id) THEN
        RETURN false;
    END IF;
    INSERT INTO ledger_barred_transfers (id) VALUES (p_id) ON CONFLICT (id) DO NOTHING;
    RETURN true;
END;
$$;

-- The batch function of 0002 keeps its body under another name; ledger_apply_transfers is now the same
-- call with the bar check in front: barred ids get 'barred' and are left out, the others are applied as
-- before, in order, and the results merged back in the input order.
ALTER FUNCTION ledger_apply_transfers(
    text[], text[], bigint[], bigint[], bigint[], smallint[], text[], timestamptz[], text[], text[],
    bigint[], bigint[], text[]
) RENAME TO ledger_apply_unbarred_transfers;

CREATE FUNCTION ledger_apply_transfers(
    p_id text[],
    p_kind text[],
    p_debit bigint[],
    p_credit bigint[],
    p_amount bigint[],
    p_currency smallint[],
    p_pending_id text[],
    p_expires_at timestamptz[],
    p_reverses_id text[],
    p_limit_key text[],
    p_limit_amount_max bigint[],
    p_limit_count_max bigint[],
    p_reference text[]
) RETURNS text[]
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    n integer := coalesce(array_length(p_id, 1), 0);
    barred text[];
    keep integer[];
    applied text[];
    results text[] := '{}';
    j integer := 0;
BEGIN
    IF n = 0 THEN
        RETURN results;
    END IF;
    -- The batch's ids locked first, in the order the batch function locks them (it takes them again,
    -- which a session may): no bar can come between this look and the batch's writes.
    PERFORM pg_advisory_xact_lock(k)
       FROM (SELECT DISTINCT hashtextextended(x, 0) AS k FROM unnest(p_id) AS x ORDER BY 1) AS s;
    SELECT array_agg(b.id) INTO barred FROM ledger_barred_transfers AS b WHERE b.id = ANY (p_id);
    IF barred IS NULL THEN
        RETURN ledger_apply_unbarred_transfers(
            p_id, p_kind, p_debit, p_credit, p_amount, p_currency, p_pending_id, p_expires_at,
            p_reverses_id, p_limit_key, p_limit_amount_max, p_limit_count_max, p_reference);
    END IF;
    IF EXISTS (
        SELECT 1 FROM unnest(ARRAY[
            array_length(p_kind, 1), array_length(p_debit, 1), array_length(p_credit, 1),
            array_length(p_amount, 1), array_length(p_currency, 1), array_length(p_pending_id, 1),
            array_length(p_expires_at, 1), array_length(p_reverses_id, 1), array_length(p_limit_key, 1),
            array_length(p_limit_amount_max, 1), array_length(p_limit_count_max, 1),
            array_length(p_reference, 1)]) AS l
        WHERE l IS DISTINCT FROM n
    ) THEN
        RAISE EXCEPTION 'ledger_apply_transfers: the arrays must all have % elements', n;
    END IF;
    SELECT array_agg(i ORDER BY i) INTO keep
      FROM generate_subscripts(p_id, 1) AS i WHERE NOT (p_id[i] = ANY (barred));
    IF keep IS NOT NULL THEN
        applied := ledger_apply_unbarred_transfers(
            ARRAY(SELECT p_id[k] FROM unnest(keep) WITH ORDINALITY AS u (k, o) ORDER BY o),
            ARRAY(SELECT p_kind[k] FROM unnest(keep) WITH ORDINALITY AS u (k, o) ORDER BY o),
            ARRAY(SELECT p_debit[k] FROM unnest(keep) WITH ORDINALITY AS u (k, o) ORDER BY o),
            ARRAY(SELECT p_credit[k] FROM unnest(keep) WITH ORDINALITY AS u (k, o) ORDER BY o),
            ARRAY(SELECT p_amount[k] FROM unnest(keep) WITH ORDINALITY AS u (k, o) ORDER BY o),
            ARRAY(SELECT p_currency[k] FROM unnest(keep) WITH ORDINALITY AS u (k, o) ORDER BY o),
            ARRAY(SELECT p_pending_id[k] FROM unnest(keep) WITH ORDINALITY AS u (k, o) ORDER BY o),
            ARRAY(SELECT p_expires_at[k] FROM unnest(keep) WITH ORDINALITY AS u (k, o) ORDER BY o),
            ARRAY(SELECT p_reverses_id[k] FROM unnest(keep) WITH ORDINALITY AS u (k, o) ORDER BY o),
            ARRAY(SELECT p_limit_key[k] FROM unnest(keep) WITH ORDINALITY AS u (k, o) ORDER BY o),
            ARRAY(SELECT p_limit_amount_max[k] FROM unnest(keep) WITH ORDINALITY AS u (k, o) ORDER BY o),
            ARRAY(SELECT p_limit_count_max[k] FROM unnest(keep) WITH ORDINALITY AS u (k, o) ORDER BY o),
            ARRAY(SELECT p_reference[k] FROM unnest(keep) WITH ORDINALITY AS u (k, o) ORDER BY o));
    END IF;
    FOR i IN 1 .. n LOOP
        IF p_id[i] = ANY (barred) THEN
            results := results || 'barred'::text;
        ELSE
            j := j + 1;
            results := results || applied[j];
        END IF;
    END LOOP;
    RETURN results;
END;
$$;
