-- Store-and-forward: reversals and advices that must reach an interbank network, however long it takes
-- (docs/networks.md "Timeouts and store-and-forward"; rules in switch/domain/saf.py). Rows stay after
-- delivery as the record of what was sent, acknowledged, expired or purged.
--
-- Card data: `fields` holds the first attempt's fields WITHOUT 2 (PAN), 35, 36, 45 (tracks), 52 (PIN
-- block) and 55 (ICC data); the CHECK below refuses them even from plain SQL. The PAN is kept only
-- encrypted by the PAN vault (AES-GCM), with first 6 and last 4 for display.

CREATE TABLE saf_queue (
    entry_id           bigserial PRIMARY KEY,  -- queue order: entries of one network go out in this order
    network            text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('reversal', 'advice')),
    idempotency_key    text NOT NULL UNIQUE,   -- the identity of what it reverses or advises
    mti                text NOT NULL CHECK (mti IN ('0420', '0220')),  -- of the first attempt
    fields             jsonb NOT NULL CHECK (
        jsonb_typeof(fields) = 'object' AND NOT (fields ?| ARRAY['2', '35', '36', '45', '52', '55'])
    ),
    pan_encrypted      bytea,
    pan_first6         text NOT NULL DEFAULT '',
    pan_last4          text NOT NULL DEFAULT '',
    pan_length         smallint NOT NULL DEFAULT 0,
    state              text NOT NULL DEFAULT 'queued'
                       CHECK (state IN ('queued', 'in_flight', 'acknowledged', 'expired', 'purged')),
    created_at         timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    attempts           integer NOT NULL DEFAULT 0,  -- times sent on the link (not counting "could not send")
    next_attempt_at    timestamptz NOT NULL,
    last_attempt_at    timestamptz,
    -- Fields 11 and 7 the link gave the first attempt: every repeat (0421/0221) carries them again.
    stan               text,
    transmission       text,
    last_response_code text,
    -- The worker sending it: no other worker claims it until lease_until has passed.
    leased_by          text,
    lease_until        timestamptz,
    finished_at        timestamptz,
    purge_reason       text,
    CHECK ((stan IS NULL) = (transmission IS NULL))
);

-- The worker's query: the oldest undelivered entry of one network. Partial, so delivered rows piling up
-- do not slow it down. The predicate must match the worker's SQL literally (switch/adapters/postgres/saf.py).
CREATE INDEX saf_queue_undelivered ON saf_queue (network, entry_id) WHERE state IN ('in_flight', 'queued');
-- `switchctl saf list` of finished entries, newest first.
CREATE INDEX saf_queue_network_created ON saf_queue (network, created_at);
