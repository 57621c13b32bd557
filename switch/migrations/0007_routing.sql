-- Routing (docs/networks.md "Routing"): the interbank networks, the BIN ranges each owns and at what
-- priority, the operator's route rules and the stand-in rules. Our own cards' ranges stay in the issuing
-- table bin_ranges (owner 'on_us'); routing reads those rows too and routes them on-us. Rows of
-- bin_ranges with another owner are not read by routing: network ranges live here, where a foreign key
-- makes an unknown network impossible.
--
-- switchd holds all of this in memory (switch/adapters/postgres/routes.py, semantics in
-- switch/domain/routing.py) and reloads it on NOTIFY switch_routes '<table>' (statement triggers at the
-- end). An operator's change (switchctl routes|standin) then waits for every live listener to confirm it
-- reloaded, with sync tokens as for the card directory (migration 0006): route_listeners and
-- route_change_token below.
--
-- Prefixes: digit strings, both ends of a range the same length, compared in the C collation (equal-
-- length digit strings then order like numbers). Amounts are integer minor units of the row's currency.

CREATE TABLE networks (
    name         text PRIMARY KEY CHECK (name ~ '^[a-z0-9_]{1,32}$' AND name NOT IN ('on_us', 'none')),
    description  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Which PAN prefixes a network's cards have. Where ranges of several networks hold a PAN, the highest
-- priority wins and the others are its fallbacks (then the more specific range, then the name).
CREATE TABLE network_bin_ranges (
    range_id     serial PRIMARY KEY,
    network      text NOT NULL REFERENCES networks ON UPDATE CASCADE,
    low_prefix   text NOT NULL CHECK (low_prefix ~ '^[0-9]{6,12}$'),
    high_prefix  text NOT NULL CHECK (high_prefix ~ '^[0-9]{6,12}$'),
    priority     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT network_bin_ranges_same_length CHECK (length(low_prefix) = length(high_prefix)),
    CONSTRAINT network_bin_ranges_ordered CHECK (low_prefix COLLATE "C" <= high_prefix COLLATE "C"),
    CONSTRAINT network_bin_ranges_once UNIQUE (network, low_prefix, high_prefix)
);

-- Operator rules on one network for the cards of a prefix range ('' to '': every card):
--   force    the network is the only candidate;   exclude  the network is never a candidate;
--   limit    the network only for amounts in [amount_min, amount_max] of `currency`;
--   fee      the network costs fee_fixed + amount * fee_bps / 10000 (`currency`); the cheapest wins.
CREATE TABLE route_rules (
    rule_id      serial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('force', 'exclude', 'limit', 'fee')),
    network      text NOT NULL REFERENCES networks ON UPDATE CASCADE,
    low_prefix   text NOT NULL DEFAULT '' CHECK (low_prefix ~ '^[0-9]{0,12}$'),
    high_prefix  text NOT NULL DEFAULT '' CHECK (high_prefix ~ '^[0-9]{0,12}$'),
    currency     smallint CHECK (currency BETWEEN 1 AND 999),
    amount_min   bigint CHECK (amount_min >= 0),
    amount_max   bigint CHECK (amount_max >= 0),
    fee_fixed    bigint NOT NULL DEFAULT 0 CHECK (fee_fixed >= 0),
    fee_bps      integer NOT NULL DEFAULT 0 CHECK (fee_bps BETWEEN 0 AND 10000),
    note         text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT route_rules_same_length CHECK (length(low_prefix) = length(high_prefix)),
    CONSTRAINT route_rules_ordered CHECK (low_prefix COLLATE "C" <= high_prefix COLLATE "C"),
    CONSTRAINT route_rules_limit_shape CHECK (
        CASE WHEN kind = 'limit'
            THEN currency IS NOT NULL
                AND (amount_min IS NOT NULL OR amount_max IS NOT NULL)
                AND (amount_min IS NULL OR amount_max IS NULL OR amount_min <= amount_max)
            ELSE amount_min IS NULL AND amount_max IS NULL
        END
    ),
    CONSTRAINT route_rules_fee_shape CHECK (
        CASE WHEN kind = 'fee' THEN currency IS NOT NULL ELSE fee_fixed = 0 AND fee_bps = 0 END
    )
);

-- When a network is down or late, the switch may approve a card of the prefix range itself, within these
-- amounts per transaction and per card per day (the ledger's limit counters enforce the daily ones).
-- One rule per network, range and currency: `switchctl standin set` replaces it.
CREATE TABLE standin_rules (
    standin_id                  serial PRIMARY KEY,
    network                     text NOT NULL REFERENCES networks ON UPDATE CASCADE,
    low_prefix                  text NOT NULL DEFAULT '' CHECK (low_prefix ~ '^[0-9]{0,12}$'),
    high_prefix                 text NOT NULL DEFAULT '' CHECK (high_prefix ~ '^[0-9]{0,12}$'),
    currency                    smallint NOT NULL CHECK (currency BETWEEN 1 AND 999),
    per_transaction_amount_max  bigint NOT NULL CHECK (per_transaction_amount_max > 0),
    daily_amount_max            bigint NOT NULL CHECK (daily_amount_max > 0),
    daily_count_max             integer NOT NULL CHECK (daily_count_max > 0),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT standin_rules_same_length CHECK (length(low_prefix) = length(high_prefix)),
    CONSTRAINT standin_rules_ordered CHECK (low_prefix COLLATE "C" <= high_prefix COLLATE "C"),
    CONSTRAINT standin_rules_daily_covers_one CHECK (per_transaction_amount_max <= daily_amount_max),
    CONSTRAINT standin_rules_once UNIQUE (network, low_prefix, high_prefix, currency)
);

-- Operator changes hold for the very next request on every switchd: after its change commits, the writer
-- sends NOTIFY switch_routes 'sync:<token>' and waits until every live listener below has acknowledged a
-- token at least as high (notifications arrive in commit order: by then the listener has dropped its
-- table). Same scheme as directory_listeners (0006), kept apart so neither waits for the other's listeners.
CREATE SEQUENCE route_change_token;

CREATE TABLE route_listeners (
    listener_id  text PRIMARY KEY,
    acked_token  bigint NOT NULL,
    seen_at      timestamptz NOT NULL DEFAULT now()  -- heartbeat: stale rows are not waited for
);

-- Any change to what routing reads: the whole table is reloaded, so the table name is enough, and one
-- notification per statement (not per row) keeps a bulk load cheap.
CREATE FUNCTION switch_routes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switch_routes', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER networks_routes_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON networks
    FOR EACH STATEMENT EXECUTE FUNCTION switch_routes_notify();
CREATE TRIGGER network_bin_ranges_routes_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON network_bin_ranges
    FOR EACH STATEMENT EXECUTE FUNCTION switch_routes_notify();
CREATE TRIGGER route_rules_routes_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON route_rules
    FOR EACH STATEMENT EXECUTE FUNCTION switch_routes_notify();
CREATE TRIGGER standin_rules_routes_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON standin_rules
    FOR EACH STATEMENT EXECUTE FUNCTION switch_routes_notify();
-- Our own ranges (issuing, 0003) decide what is on-us.
CREATE TRIGGER bin_ranges_routes_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON bin_ranges
    FOR EACH STATEMENT EXECUTE FUNCTION switch_routes_notify();
