-- The card ledger: accounts with pending/posted totals, transfers, usage-limit counters, and the two
-- functions that change them. The rules are those of switch/domain/ledger_model.py (the reference
-- model; read its docstring for every decision), in the same order of checks.
--
-- Why a function: one round trip applies a whole batch of transfers (group commit), and all checks run
-- next to the data. Why this lock order: several switchd processes write concurrently, so every writer
-- takes its locks in one global order and two batches can never wait on each other in a cycle:
--   1. transaction-level advisory locks on the hashes of the batch's transfer ids, ascending
--      (two batches inserting the same ids in different orders would otherwise deadlock on the
--      primary key);
--   2. the accounts the batch names, ascending id (SELECT ... FOR UPDATE): every write to an account,
--      and to a pending or reversed transfer between those accounts, happens under these locks;
--   3. the usage counters, ascending key (created first if missing, so a new counter is locked too).
-- Amounts are bigint minor units, currencies ISO 4217 numeric smallint; no floats anywhere.

CREATE TABLE ledger_accounts (
    id                              bigint PRIMARY KEY CHECK (id > 0),
    currency                        smallint NOT NULL CHECK (currency BETWEEN 1 AND 999),
    debits_must_not_exceed_credits  boolean NOT NULL,
    overdraft_limit                 bigint NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0),
    debits_pending                  bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    debits_posted                   bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_pending                 bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    credits_posted                  bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    created_at                      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_accounts_overdraft_needs_limit
        CHECK (debits_must_not_exceed_credits OR overdraft_limit = 0),
    -- The line a debit or prepaid account never crosses, whatever the concurrency.
    CONSTRAINT ledger_accounts_debits_within_credits
        CHECK (NOT debits_must_not_exceed_credits
               OR debits_posted + debits_pending <= credits_posted + overdraft_limit)
);

-- Only successful transfers are stored (a failed one leaves nothing behind).
CREATE TABLE ledger_transfers (
    id                 text COLLATE "C" PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    kind               text NOT NULL CHECK (kind IN ('posted', 'pending', 'post_pending', 'void_pending')),
    debit_account_id   bigint NOT NULL REFERENCES ledger_accounts (id),
    credit_account_id  bigint NOT NULL REFERENCES ledger_accounts (id),
    amount             bigint NOT NULL CHECK (amount > 0),
    currency           smallint NOT NULL CHECK (currency BETWEEN 1 AND 999),
    pending_id         text COLLATE "C" REFERENCES ledger_transfers (id),
    expires_at         timestamptz,
    reverses_id        text COLLATE "C" REFERENCES ledger_transfers (id),
    limit_key          text COLLATE "C",
    limit_amount_max   bigint CHECK (limit_amount_max >= 0),
    limit_count_max    bigint CHECK (limit_count_max >= 0),
    reference          text NOT NULL DEFAULT '' CHECK (length(reference) <= 256),
    -- PENDING transfers only: pending -> posted | voided | expired, exactly once.
    state              text CHECK (state IN ('pending', 'posted', 'voided', 'expired')),
    resolved_at        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_transfers_two_accounts CHECK (debit_account_id <> credit_account_id),
    CONSTRAINT ledger_transfers_pending_id_by_kind
        CHECK ((pending_id IS NOT NULL) = (kind IN ('post_pending', 'void_pending'))),
    CONSTRAINT ledger_transfers_expires_at_by_kind CHECK (expires_at IS NULL OR kind = 'pending'),
    CONSTRAINT ledger_transfers_reverses_id_by_kind CHECK (reverses_id IS NULL OR kind = 'posted'),
    CONSTRAINT ledger_transfers_limit_by_kind
        CHECK (limit_key IS NULL OR kind = 'pending' OR (kind = 'posted' AND reverses_id IS NULL)),
    CONSTRAINT ledger_transfers_limit_needs_key
        CHECK (limit_key IS NOT NULL OR (limit_amount_max IS NULL AND limit_count_max IS NULL)),
    CONSTRAINT ledger_transfers_state_by_kind CHECK ((state IS NOT NULL) = (kind = 'pending')),
    CONSTRAINT ledger_transfers_resolved_when_done
        CHECK ((resolved_at IS NOT NULL) = (state IS NOT NULL AND state <> 'pending'))
);

-- At most one post or void per pending transfer, at most one reversal per original: the database
-- itself refuses a second one, whatever the code above it does.
CREATE UNIQUE INDEX ledger_transfers_one_resolution ON ledger_transfers (pending_id)
    WHERE pending_id IS NOT NULL;
CREATE UNIQUE INDEX ledger_transfers_one_reversal ON ledger_transfers (reverses_id)
    WHERE reverses_id IS NOT NULL;
-- The expiry sweep's scan, earliest first.
CREATE INDEX ledger_transfers_expiring ON ledger_transfers (expires_at, id)
    WHERE state = 'pending' AND expires_at IS NOT NULL;
CREATE INDEX ledger_transfers_debit_account ON ledger_transfers (debit_account_id);
CREATE INDEX ledger_transfers_credit_account ON ledger_transfers (credit_account_id);

-- Usage-limit counters (daily amount and count per card and transaction type, named by the caller).
-- The period is part of the key; old keys are plain history.
CREATE TABLE ledger_usage (
    limit_key    text COLLATE "C" PRIMARY KEY CHECK (length(limit_key) BETWEEN 1 AND 128),
    amount_used  bigint NOT NULL DEFAULT 0 CHECK (amount_used >= 0),
    count_used   bigint NOT NULL DEFAULT 0 CHECK (count_used >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now()
);


-- Apply a batch of transfers in order, each on its own: returns one result code per transfer
-- (TransferResult values). The arrays are parallel, one element per transfer. A failed transfer changes
-- nothing and the following ones still run: every check happens before any write of that transfer.
-- Balances, counters and the new transfers are kept in local arrays while the batch runs and written
-- once at the end (row by row, the inserts cost most of a batch).
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
-- A session caches the plans of these statements, often made while the tables were nearly empty, when
-- a sequential scan looked cheapest; as the tables grow such a plan turns each batch into full scans.
-- Every lookup here has an index: make the planner use it whatever the statistics said at the time.
SET enable_seqscan = off
AS $$
DECLARE
    n integer := coalesce(array_length(p_id, 1), 0);
    results text[] := '{}';
    r text;
    i integer;
    d integer;          -- index of the debit account in the acc_* arrays
    c integer;          -- index of the credit account
    u integer;          -- index of a usage counter in the use_* arrays
    amt bigint;
    held bigint;
    give_amount bigint;
    give_count bigint;
    j integer;
    pos integer;
    old ledger_transfers%ROWTYPE;
    ref ledger_transfers%ROWTYPE;
    ref_found boolean;
    ref_new integer;
    new_pending_state text;
    existing text[];
    -- The batch's successful transfers, inserted at the end: id, input position, state if pending,
    -- and what it reverses.
    new_ids text[] := '{}';
    ok_idx integer[] := '{}';
    new_state text[] := '{}';
    new_reverses text[] := '{}';
    lock_keys bigint[];
    acc_ids bigint[];
    acc_id bigint[];
    acc_currency smallint[];
    acc_limited boolean[];
    acc_overdraft bigint[];
    acc_dpend bigint[];
    acc_dpost bigint[];
    acc_cpend bigint[];
    acc_cpost bigint[];
    use_keys text[];
    new_keys text[];
    use_key text[];
    use_amount bigint[];
    use_count bigint[];
BEGIN
    IF n = 0 THEN
        RETURN results;
    END IF;
    IF coalesce(array_length(p_kind, 1), 0) <> n OR coalesce(array_length(p_debit, 1), 0) <> n
       OR coalesce(array_length(p_credit, 1), 0) <> n OR coalesce(array_length(p_amount, 1), 0) <> n
       OR coalesce(array_length(p_currency, 1), 0) <> n OR coalesce(array_length(p_pending_id, 1), 0) <> n
       OR coalesce(array_length(p_expires_at, 1), 0) <> n OR coalesce(array_length(p_reverses_id, 1), 0) <> n
       OR coalesce(array_length(p_limit_key, 1), 0) <> n
       OR coalesce(array_length(p_limit_amount_max, 1), 0) <> n
       OR coalesce(array_length(p_limit_count_max, 1), 0) <> n
       OR coalesce(array_length(p_reference, 1), 0) <> n THEN
        RAISE EXCEPTION 'ledger_apply_transfers: the arrays must all have % elements', n;
    END IF;

    -- 1. Transfer ids, by ascending hash.
    SELECT array_agg(DISTINCT hashtextextended(x, 0) ORDER BY hashtextextended(x, 0))
      INTO lock_keys FROM unnest(p_id) AS x;
    PERFORM pg_advisory_xact_lock(k) FROM unnest(lock_keys) AS k;

    -- 2. Accounts, ascending id; then their current totals into local arrays.
    SELECT array_agg(DISTINCT a ORDER BY a) INTO acc_ids FROM unnest(p_debit || p_credit) AS a;
    SELECT array_agg(s.id ORDER BY s.id), array_agg(s.currency ORDER BY s.id),
           array_agg(s.debits_must_not_exceed_credits ORDER BY s.id),
           array_agg(s.overdraft_limit ORDER BY s.id),
           array_agg(s.debits_pending ORDER BY s.id), array_agg(s.debits_posted ORDER BY s.id),
           array_agg(s.credits_pending ORDER BY s.id), array_agg(s.credits_posted ORDER BY s.id)
      INTO acc_id, acc_currency, acc_limited, acc_overdraft, acc_dpend, acc_dpost, acc_cpend, acc_cpost
      FROM (SELECT * FROM ledger_accounts WHERE id = ANY (acc_ids) ORDER BY id FOR UPDATE) AS s;
    acc_id := coalesce(acc_id, '{}');

    -- 3. Usage counters: the batch's own keys and those of the holds and originals it may give back
    -- to. Read after the account locks: whoever created those transfers held the same accounts.
    SELECT array_agg(DISTINCT k ORDER BY k) INTO use_keys FROM (
        SELECT unnest(p_limit_key) AS k
        UNION ALL
        SELECT t.limit_key FROM ledger_transfers AS t
         WHERE t.id = ANY (p_pending_id || p_reverses_id) AND t.limit_key IS NOT NULL
    ) AS keys WHERE k IS NOT NULL;
    use_key := '{}';
    IF use_keys IS NOT NULL THEN
        WITH inserted AS (
            INSERT INTO ledger_usage (limit_key) SELECT unnest(use_keys)
            ON CONFLICT (limit_key) DO NOTHING RETURNING limit_key
        ) SELECT array_agg(limit_key) INTO new_keys FROM inserted;
        SELECT array_agg(s.limit_key ORDER BY s.limit_key), array_agg(s.amount_used ORDER BY s.limit_key),
               array_agg(s.count_used ORDER BY s.limit_key)
          INTO use_key, use_amount, use_count
          FROM (SELECT * FROM ledger_usage WHERE limit_key = ANY (use_keys)
                ORDER BY limit_key FOR UPDATE) AS s;
    END IF;

    -- Which ids exist already (a retry is rare: only those rows are read whole).
    SELECT array_agg(t.id) INTO existing FROM ledger_transfers AS t WHERE t.id = ANY (p_id);
    existing := coalesce(existing, '{}');

    FOR i IN 1 .. n LOOP
        r := NULL;
        amt := p_amount[i];
        give_amount := 0;
        give_count := 0;
        j := array_position(new_ids, p_id[i]);
        IF j IS NOT NULL THEN
            -- Created earlier in this batch.
            pos := ok_idx[j];
            IF (p_kind[pos], p_debit[pos], p_credit[pos], p_amount[pos], p_currency[pos], p_pending_id[pos],
                p_expires_at[pos], p_reverses_id[pos], p_limit_key[pos], p_limit_amount_max[pos],
                p_limit_count_max[pos], p_reference[pos])
               IS NOT DISTINCT FROM
               (p_kind[i], p_debit[i], p_credit[i], amt, p_currency[i], p_pending_id[i], p_expires_at[i],
                p_reverses_id[i], p_limit_key[i], p_limit_amount_max[i], p_limit_count_max[i],
                p_reference[i]) THEN
                r := 'exists';
            ELSE
                r := 'exists_with_different_fields';
            END IF;
        ELSIF array_position(existing, p_id[i]) IS NOT NULL THEN
            SELECT * INTO old FROM ledger_transfers WHERE id = p_id[i];
            IF (old.kind, old.debit_account_id, old.credit_account_id, old.amount, old.currency,
                old.pending_id, old.expires_at, old.reverses_id, old.limit_key, old.limit_amount_max,
                old.limit_count_max, old.reference)
               IS NOT DISTINCT FROM
               (p_kind[i], p_debit[i], p_credit[i], amt, p_currency[i], p_pending_id[i], p_expires_at[i],
                p_reverses_id[i], p_limit_key[i], p_limit_amount_max[i], p_limit_count_max[i],
                p_reference[i]) THEN
                r := 'exists';
            ELSE
                r := 'exists_with_different_fields';
            END IF;
        ELSIF amt <= 0 THEN
            r := 'amount_must_be_positive';
        ELSIF p_debit[i] = p_credit[i] THEN
            r := 'same_account';
        END IF;

        IF r IS NULL THEN
            d := array_position(acc_id, p_debit[i]);
            c := array_position(acc_id, p_credit[i]);
            IF d IS NULL OR c IS NULL THEN
                r := 'account_not_found';
            ELSIF acc_currency[d] <> p_currency[i] OR acc_currency[c] <> p_currency[i] THEN
                r := 'currency_mismatch';
            END IF;
        END IF;

        -- The transfer a POST_PENDING, VOID_PENDING or reversal refers to: stored, or made earlier in
        -- this batch (then ref_new is its position in new_ids).
        ref_new := NULL;
        IF r IS NULL AND coalesce(p_pending_id[i], p_reverses_id[i]) IS NOT NULL THEN
            SELECT * INTO ref FROM ledger_transfers WHERE id = coalesce(p_pending_id[i], p_reverses_id[i]);
            ref_found := FOUND;
            IF NOT ref_found THEN
                ref_new := array_position(new_ids, coalesce(p_pending_id[i], p_reverses_id[i]));
                IF ref_new IS NOT NULL THEN
                    pos := ok_idx[ref_new];
                    ref := NULL;
                    ref.id := p_id[pos];
                    ref.kind := p_kind[pos];
                    ref.debit_account_id := p_debit[pos];
                    ref.credit_account_id := p_credit[pos];
                    ref.amount := p_amount[pos];
                    ref.reverses_id := p_reverses_id[pos];
                    ref.limit_key := p_limit_key[pos];
                    ref.state := new_state[ref_new];
                    ref_found := true;
                END IF;
            END IF;
        END IF;

        IF r IS NULL AND p_kind[i] IN ('post_pending', 'void_pending') THEN
            IF NOT ref_found OR ref.kind <> 'pending' OR ref.debit_account_id <> p_debit[i]
               OR ref.credit_account_id <> p_credit[i] THEN
                r := 'pending_not_found';
            ELSIF ref.state = 'posted' THEN
                r := 'pending_already_posted';
            ELSIF ref.state = 'voided' THEN
                r := 'pending_already_voided';
            ELSIF ref.state = 'expired' THEN
                r := 'pending_expired';
            ELSIF amt > ref.amount THEN
                r := 'exceeds_pending_amount';
            ELSE
                held := ref.amount;
                acc_dpend[d] := acc_dpend[d] - held;
                acc_cpend[c] := acc_cpend[c] - held;
                IF p_kind[i] = 'post_pending' THEN
                    acc_dpost[d] := acc_dpost[d] + amt;
                    acc_cpost[c] := acc_cpost[c] + amt;
                    give_amount := held - amt;   -- the released rest; the count stays
                    new_pending_state := 'posted';
                ELSE
                    give_amount := held;
                    give_count := 1;
                    new_pending_state := 'voided';
                END IF;
                IF ref_new IS NOT NULL THEN
                    new_state[ref_new] := new_pending_state;
                ELSE
                    UPDATE ledger_transfers SET state = new_pending_state, resolved_at = now()
                     WHERE id = ref.id;
                END IF;
                IF ref.limit_key IS NOT NULL AND (give_amount <> 0 OR give_count <> 0) THEN
                    u := array_position(use_key, ref.limit_key);
                    IF u IS NULL THEN
                        RAISE EXCEPTION 'ledger_apply_transfers: usage counter % was not locked', ref.limit_key;
                    END IF;
                    use_amount[u] := use_amount[u] - give_amount;
                    use_count[u] := use_count[u] - give_count;
                END IF;
                r := 'ok';
            END IF;
        ELSIF r IS NULL THEN
            -- POSTED or PENDING.
            IF p_reverses_id[i] IS NOT NULL THEN
                IF NOT ref_found OR ref.kind <> 'posted' OR ref.reverses_id IS NOT NULL THEN
                    r := 'reversed_not_found';
                ELSIF array_position(new_reverses, ref.id) IS NOT NULL
                      OR EXISTS (SELECT 1 FROM ledger_transfers WHERE reverses_id = ref.id) THEN
                    r := 'already_reversed';
                ELSIF p_debit[i] <> ref.credit_account_id OR p_credit[i] <> ref.debit_account_id THEN
                    r := 'reversal_accounts_mismatch';
                ELSIF amt > ref.amount THEN
                    r := 'exceeds_reversed_amount';
                END IF;
            END IF;
            IF r IS NULL AND acc_limited[d]
               AND acc_dpost[d] + acc_dpend[d] + amt > acc_cpost[d] + acc_overdraft[d] THEN
                r := 'exceeds_credits';
            END IF;
            IF r IS NULL AND p_limit_key[i] IS NOT NULL THEN
                u := array_position(use_key, p_limit_key[i]);
                IF p_limit_amount_max[i] IS NOT NULL AND use_amount[u] + amt > p_limit_amount_max[i] THEN
                    r := 'exceeds_amount_limit';
                ELSIF p_limit_count_max[i] IS NOT NULL AND use_count[u] + 1 > p_limit_count_max[i] THEN
                    r := 'exceeds_count_limit';
                ELSE
                    use_amount[u] := use_amount[u] + amt;
                    use_count[u] := use_count[u] + 1;
                END IF;
            END IF;
            IF r IS NULL THEN
                IF p_kind[i] = 'pending' THEN
                    acc_dpend[d] := acc_dpend[d] + amt;
                    acc_cpend[c] := acc_cpend[c] + amt;
                ELSE
                    acc_dpost[d] := acc_dpost[d] + amt;
                    acc_cpost[c] := acc_cpost[c] + amt;
                    IF p_reverses_id[i] IS NOT NULL AND ref.limit_key IS NOT NULL THEN
                        u := array_position(use_key, ref.limit_key);
                        IF u IS NULL THEN
                            RAISE EXCEPTION 'ledger_apply_transfers: usage counter % was not locked',
                                ref.limit_key;
                        END IF;
                        use_amount[u] := use_amount[u] - amt;
                        IF amt = ref.amount THEN
                            use_count[u] := use_count[u] - 1;
                        END IF;
                    END IF;
                END IF;
                r := 'ok';
            END IF;
        END IF;

        IF r = 'ok' THEN
            new_ids := array_append(new_ids, p_id[i]);
            ok_idx := array_append(ok_idx, i);
            new_state := array_append(new_state, CASE WHEN p_kind[i] = 'pending' THEN 'pending' END);
            new_reverses := array_append(new_reverses, p_reverses_id[i]);
        END IF;
        results := array_append(results, r);
    END LOOP;

    -- The batch's new transfers in one statement: row by row, inserts cost most of the batch.
    INSERT INTO ledger_transfers (
        id, kind, debit_account_id, credit_account_id, amount, currency, pending_id, expires_at,
        reverses_id, limit_key, limit_amount_max, limit_count_max, reference, state, resolved_at
    )
    SELECT p_id[s.k], p_kind[s.k], p_debit[s.k], p_credit[s.k], p_amount[s.k], p_currency[s.k],
           p_pending_id[s.k], p_expires_at[s.k], p_reverses_id[s.k], p_limit_key[s.k],
           p_limit_amount_max[s.k], p_limit_count_max[s.k], p_reference[s.k], s.state,
           CASE WHEN s.state <> 'pending' THEN now() END
      FROM unnest(ok_idx, new_state) AS s (k, state);

    -- Write back what changed; the table's CHECK constraints see every final balance.
    UPDATE ledger_accounts AS a
       SET debits_pending = s.dpend, debits_posted = s.dpost,
           credits_pending = s.cpend, credits_posted = s.cpost
      FROM unnest(acc_id, acc_dpend, acc_dpost, acc_cpend, acc_cpost) AS s (id, dpend, dpost, cpend, cpost)
     WHERE a.id = s.id
       AND (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
           IS DISTINCT FROM (s.dpend, s.dpost, s.cpend, s.cpost);
    IF cardinality(use_key) > 0 THEN
        UPDATE ledger_usage AS g
           SET amount_used = s.amount, count_used = s.cnt, updated_at = now()
          FROM unnest(use_key, use_amount, use_count) AS s (k, amount, cnt)
         WHERE g.limit_key = s.k AND (g.amount_used, g.count_used) IS DISTINCT FROM (s.amount, s.cnt);
        -- Counters created only to be locked, and never used, are not kept.
        DELETE FROM ledger_usage
         WHERE limit_key = ANY (coalesce(new_keys, '{}')) AND amount_used = 0 AND count_used = 0;
    END IF;
    RETURN results;
END;
$$;


-- Release holds whose expires_at <= p_now (earliest first, then id; at most p_limit): the pending
-- amount leaves both accounts' pending totals and its usage (amount and count) is given back.
-- Returns how many were released. Same lock order as ledger_apply_transfers (accounts, then counters).
CREATE FUNCTION ledger_expire_pending(p_now timestamptz, p_limit integer) RETURNS integer
LANGUAGE plpgsql
SET enable_seqscan = off  -- as above: cached plans must not become full scans as tables grow
AS $$
DECLARE
    due text[];
    released integer;
BEGIN
    SELECT array_agg(id ORDER BY expires_at, id) INTO due FROM (
        SELECT id, expires_at FROM ledger_transfers
         WHERE state = 'pending' AND expires_at IS NOT NULL AND expires_at <= p_now
         ORDER BY expires_at, id LIMIT greatest(p_limit, 0)
    ) AS s;
    IF due IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM 1 FROM ledger_accounts
      WHERE id IN (SELECT debit_account_id FROM ledger_transfers WHERE id = ANY (due)
                   UNION SELECT credit_account_id FROM ledger_transfers WHERE id = ANY (due))
      ORDER BY id FOR UPDATE;
    PERFORM 1 FROM ledger_usage
      WHERE limit_key IN (SELECT limit_key FROM ledger_transfers WHERE id = ANY (due))
      ORDER BY limit_key FOR UPDATE;
    -- Holds posted or voided while we waited for the locks are no longer 'pending': skipped.
    WITH expired AS (
        UPDATE ledger_transfers SET state = 'expired', resolved_at = now()
         WHERE id = ANY (due) AND state = 'pending'
        RETURNING debit_account_id, credit_account_id, amount, limit_key
    ), moves AS (
        SELECT m.id, sum(m.dpend)::bigint AS dpend, sum(m.cpend)::bigint AS cpend FROM (
            SELECT debit_account_id AS id, amount AS dpend, 0::bigint AS cpend FROM expired
            UNION ALL
            SELECT credit_account_id, 0::bigint, amount FROM expired
        ) AS m GROUP BY m.id
    ), accounts AS (
        UPDATE ledger_accounts AS a
           SET debits_pending = a.debits_pending - moves.dpend,
               credits_pending = a.credits_pending - moves.cpend
          FROM moves WHERE a.id = moves.id
    ), counters AS (
        UPDATE ledger_usage AS g
           SET amount_used = g.amount_used - s.amount, count_used = g.count_used - s.cnt,
               updated_at = now()
          FROM (SELECT limit_key, sum(amount)::bigint AS amount, count(*) AS cnt FROM expired
                 WHERE limit_key IS NOT NULL GROUP BY limit_key) AS s
         WHERE g.limit_key = s.limit_key
    )
    SELECT count(*) INTO released FROM expired;
    RETURN released;
END;
$$;
