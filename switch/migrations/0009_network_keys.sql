-- Interbank, acquirer side: each network's zone keys, and the forwarded transactions a terminal may still
-- reverse (docs/networks.md "Key exchange and PIN blocks", "Messages the switch sends"). Read and written
-- by switch/adapters/postgres/network_keys.py.
--
-- Keys appear only under the LMK. One row per network: its zone master key (configured by an operator or
-- the demo seed) and the working ZPKs that key exchanges brought, the current one and the one before it
-- (still accepted for key_grace_s after the exchange). Several switchd processes exchange keys on their
-- own links; an install locks the row and keeps the network's newest key current whatever order the
-- exchanges finish in (switch.domain.translation.NetworkKeySet.installed).

CREATE TABLE network_keys (
    network                 text PRIMARY KEY CHECK (network ~ '^[a-z0-9_]{1,32}$'),
    zmk_under_lmk           text NOT NULL DEFAULT '' CHECK (zmk_under_lmk ~ '^([UTXYZ]?[0-9A-F]+)?$'),
    zmk_check_value         text NOT NULL DEFAULT '' CHECK (zmk_check_value ~ '^[0-9A-F]{0,16}$'),
    current_index           smallint CHECK (current_index BETWEEN 1 AND 99),
    current_zpk_under_lmk   text CHECK (current_zpk_under_lmk ~ '^[UTXYZ]?[0-9A-F]+$'),
    current_check_value     text CHECK (current_check_value ~ '^[0-9A-F]{6}$'),
    current_installed_at    timestamptz,
    previous_index          smallint CHECK (previous_index BETWEEN 1 AND 99),
    previous_zpk_under_lmk  text CHECK (previous_zpk_under_lmk ~ '^[UTXYZ]?[0-9A-F]+$'),
    previous_check_value    text CHECK (previous_check_value ~ '^[0-9A-F]{6}$'),
    previous_installed_at   timestamptz,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT network_keys_current_whole CHECK (
        num_nulls(current_index, current_zpk_under_lmk, current_check_value, current_installed_at) IN (0, 4)
    ),
    CONSTRAINT network_keys_previous_whole CHECK (
        num_nulls(previous_index, previous_zpk_under_lmk, previous_check_value, previous_installed_at) IN (0, 4)
    ),
    CONSTRAINT network_keys_previous_needs_current CHECK (previous_index IS NULL OR current_index IS NOT NULL)
);

-- A forwarded transaction that moved money (a network approval, or a stand-in approval): what the network
-- holds, as it was sent (the request with the STAN and field 7 the link gave it, or the stand-in advice),
-- so that a terminal's reversal can name it in field 90 of the network 0420. Written before the terminal
-- hears the answer. No card data: the CHECK refuses PAN, tracks, PIN block, its key name and ICC data even
-- from plain SQL; the terminal's reversal brings the card, and the 0420 goes to saf_queue, which keeps the
-- PAN encrypted. Rows are not purged yet (a retention job comes with settlement).
CREATE TABLE forwarded_transactions (
    transfer_id   text COLLATE "C" PRIMARY KEY CHECK (length(transfer_id) BETWEEN 1 AND 64),
    network       text NOT NULL CHECK (network ~ '^[a-z0-9_]{1,32}$'),
    route         text NOT NULL,
    mti           text NOT NULL CHECK (mti ~ '^[0-9]{4}$'),
    stan          text CHECK (stan ~ '^[0-9]{6}$'),
    transmission  text CHECK (transmission ~ '^[0-9]{10}$'),
    fields        jsonb NOT NULL CHECK (
        jsonb_typeof(fields) = 'object' AND NOT (fields ?| ARRAY['2', '35', '36', '45', '52', '53', '55'])
    ),
    pan_masked    text NOT NULL CHECK (pan_masked !~ '[0-9]{7}'),
    amount        bigint NOT NULL CHECK (amount >= 0),
    currency      smallint NOT NULL CHECK (currency BETWEEN 1 AND 999),
    auth_code     text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL
);
CREATE INDEX forwarded_transactions_created ON forwarded_transactions (created_at);
