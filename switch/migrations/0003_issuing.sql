-- Issuing: institutions, BIN ranges, products, cards and their accounts, merchants, terminals, hot and
-- black lists, and the PAN vault's keys. Read by switchd's card directory through memory caches, which
-- every change invalidates through NOTIFY switch_directory '<table>:<key>' (triggers at the end).
--
-- No clear PAN anywhere: a card is found by pan_hash (HMAC-SHA256 under the vault's hash key) and its
-- number kept only in pan_ciphertext (AES-256-GCM under the vault's data key). first6/last4 are what
-- PCI DSS allows to display. Keys appear only under the LMK (or, for the vault keys, under a ZEK that is
-- itself under the LMK).

CREATE TABLE institutions (
    institution_id  serial PRIMARY KEY,
    code            text NOT NULL UNIQUE CHECK (code ~ '^[A-Z0-9_]{1,32}$'),
    name            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Which PAN prefixes belong to whom: 'on_us' (cards we issue) or a network name. Ranges are compared as
-- equal-length digit prefixes; the highest priority wins when ranges overlap.
CREATE TABLE bin_ranges (
    bin_range_id    serial PRIMARY KEY,
    low_prefix      text NOT NULL CHECK (low_prefix ~ '^[0-9]{6,12}$'),
    high_prefix     text NOT NULL CHECK (high_prefix ~ '^[0-9]{6,12}$'),
    owner           text NOT NULL CHECK (owner ~ '^[a-z0-9_]{1,32}$'),
    institution_id  integer REFERENCES institutions,
    priority        integer NOT NULL DEFAULT 0,
    CONSTRAINT bin_ranges_same_length CHECK (length(low_prefix) = length(high_prefix)),
    CONSTRAINT bin_ranges_ordered CHECK (low_prefix <= high_prefix),
    CONSTRAINT bin_ranges_on_us_has_institution CHECK (owner <> 'on_us' OR institution_id IS NOT NULL)
);

CREATE TABLE products (
    product_id                  serial PRIMARY KEY,
    institution_id              integer NOT NULL REFERENCES institutions,
    name                        text NOT NULL UNIQUE,
    kind                        text NOT NULL CHECK (kind IN ('debit', 'prepaid')),
    pin_method                  text NOT NULL CHECK (pin_method IN ('pvv', 'ibm3624')),
    -- Transaction type values (switch.domain.transactions.TransactionType) the product allows.
    allowed_transactions        text[] NOT NULL,
    -- Limits by transaction type value, minor units of `currency` (counts for daily_count_max).
    per_transaction_amount_max  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(per_transaction_amount_max) = 'object'),
    daily_amount_max            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(daily_amount_max) = 'object'),
    daily_count_max             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(daily_count_max) = 'object'),
    currency                    smallint NOT NULL CHECK (currency BETWEEN 1 AND 999),
    pin_tries_max               smallint NOT NULL DEFAULT 3 CHECK (pin_tries_max BETWEEN 1 AND 9),
    pvk_under_lmk               text NOT NULL DEFAULT '' CHECK (pvk_under_lmk ~ '^[UTXYZ]?[0-9A-F]*$'),
    cvk_under_lmk               text NOT NULL DEFAULT '' CHECK (cvk_under_lmk ~ '^[UTXYZ]?[0-9A-F]*$'),
    hold_expiry_s               integer NOT NULL DEFAULT 604800 CHECK (hold_expiry_s > 0),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cards (
    card_id                 bigserial PRIMARY KEY,
    pan_hash                bytea NOT NULL UNIQUE CHECK (length(pan_hash) = 32),
    pan_ciphertext          bytea NOT NULL,
    first6                  char(6) NOT NULL CHECK (first6 ~ '^[0-9]{6}$'),
    last4                   char(4) NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    pan_length              smallint NOT NULL CHECK (pan_length BETWEEN 12 AND 19),
    expiry_yymm             char(4) NOT NULL CHECK (expiry_yymm ~ '^[0-9]{2}(0[1-9]|1[0-2])$'),
    status                  text NOT NULL
        CHECK (status IN ('active', 'inactive', 'blocked', 'lost', 'stolen', 'closed')),
    product_id              integer NOT NULL REFERENCES products,
    pvki                    smallint NOT NULL DEFAULT 1 CHECK (pvki BETWEEN 0 AND 9),
    -- PVV (4 digits) or IBM 3624 offset, per the product's pin_method.
    pin_verification_value  text NOT NULL DEFAULT '' CHECK (pin_verification_value ~ '^[0-9]{0,12}$'),
    pin_tries               smallint NOT NULL DEFAULT 0 CHECK (pin_tries >= 0),
    activation_date         date,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cards_product ON cards (product_id);

-- A card's accounts are ledger accounts (same ids). `position` orders them: the first answers to "00".
CREATE TABLE card_accounts (
    card_id         bigint NOT NULL REFERENCES cards ON DELETE CASCADE,
    account_id      bigint NOT NULL REFERENCES ledger_accounts (id),
    account_type    char(2) NOT NULL CHECK (account_type IN ('10', '20', '30', '60')),
    position        smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (card_id, account_type)
);
CREATE INDEX card_accounts_account ON card_accounts (account_id);

CREATE TABLE merchants (
    merchant_id             char(15) PRIMARY KEY,
    name                    text NOT NULL,
    settlement_account_id   bigint NOT NULL REFERENCES ledger_accounts (id),
    category_code           char(4) NOT NULL DEFAULT '5999' CHECK (category_code ~ '^[0-9]{4}$'),
    active                  boolean NOT NULL DEFAULT true
);

CREATE TABLE terminals (
    terminal_id             char(8) PRIMARY KEY,
    merchant_id             char(15) NOT NULL REFERENCES merchants,
    kind                    text NOT NULL CHECK (kind IN ('pos', 'atm')),
    active                  boolean NOT NULL DEFAULT true,
    -- Empty: any transaction its kind allows.
    allowed_transactions    text[] NOT NULL DEFAULT '{}',
    tmk_under_lmk           text NOT NULL DEFAULT '' CHECK (tmk_under_lmk ~ '^[UTXYZ]?[0-9A-F]*$'),
    tpk_under_lmk           text NOT NULL DEFAULT '' CHECK (tpk_under_lmk ~ '^[UTXYZ]?[0-9A-F]*$'),
    tak_under_lmk           text NOT NULL DEFAULT '' CHECK (tak_under_lmk ~ '^[UTXYZ]?[0-9A-F]*$'),
    mac_required            boolean NOT NULL DEFAULT false,
    keys_changed_at         timestamptz
);
CREATE INDEX terminals_merchant ON terminals (merchant_id);

-- Cards reported lost/stolen/compromised: by PAN hash (the card need not be ours). first6/last4 only to
-- let an operator recognise the entry.
CREATE TABLE hot_list (
    pan_hash        bytea PRIMARY KEY CHECK (length(pan_hash) = 32),
    first6          char(6) NOT NULL,
    last4           char(4) NOT NULL,
    reason          text NOT NULL,
    response_code   char(2) NOT NULL CHECK (response_code IN ('04', '62')),
    added_at        timestamptz NOT NULL DEFAULT now()
);

-- Barred PANs (value = hex of the PAN hash), BIN prefixes, terminal ids and merchant ids.
CREATE TABLE black_list (
    kind        text NOT NULL CHECK (kind IN ('pan', 'bin', 'terminal', 'merchant')),
    value       text NOT NULL,
    display     text NOT NULL,  -- masked PAN for kind pan; the value otherwise
    reason      text NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, value),
    CONSTRAINT black_list_value_shape CHECK (
        (kind = 'pan' AND value ~ '^[0-9a-f]{64}$')
        OR (kind = 'bin' AND value ~ '^[0-9]{1,12}$')
        OR (kind = 'terminal' AND length(value) = 8)
        OR (kind = 'merchant' AND length(value) = 15)
    )
);

-- The PAN vault's keys ('pan_data': AES-256-GCM data key; 'pan_hash': HMAC key). Each is encrypted by
-- the HSM (M0, TDES-CBC, `iv`) under a ZEK; the ZEK is stored under the LMK. `check_value` (first 8
-- bytes of HMAC-SHA256(key, 'cardswitch-vault-check'), hex) tells a wrong LMK or ZEK at load.
CREATE TABLE vault_keys (
    name            text PRIMARY KEY CHECK (name IN ('pan_data', 'pan_hash')),
    zek_under_lmk   text NOT NULL CHECK (zek_under_lmk ~ '^[UTXYZ]?[0-9A-F]+$'),
    iv              bytea NOT NULL CHECK (length(iv) = 8),
    cryptogram      bytea NOT NULL CHECK (length(cryptogram) = 32),
    check_value     text NOT NULL CHECK (check_value ~ '^[0-9a-f]{16}$'),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Change notification for the card directory caches: payload '<table>:<key>'.
CREATE FUNCTION switch_directory_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_data jsonb := to_jsonb(COALESCE(NEW, OLD));
    old_data jsonb := CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) ELSE NULL END;
    key_text text := row_data ->> TG_ARGV[0];
BEGIN
    PERFORM pg_notify('switch_directory', TG_TABLE_NAME || ':' || COALESCE(key_text, ''));
    -- A key column that changed (a card moved to another id, say) invalidates the old key too.
    IF old_data IS NOT NULL AND old_data ->> TG_ARGV[0] IS DISTINCT FROM key_text THEN
        PERFORM pg_notify('switch_directory', TG_TABLE_NAME || ':' || COALESCE(old_data ->> TG_ARGV[0], ''));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER products_notify AFTER INSERT OR UPDATE OR DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION switch_directory_notify('product_id');
CREATE TRIGGER cards_notify AFTER INSERT OR UPDATE OR DELETE ON cards
    FOR EACH ROW EXECUTE FUNCTION switch_directory_notify('card_id');
CREATE TRIGGER card_accounts_notify AFTER INSERT OR UPDATE OR DELETE ON card_accounts
    FOR EACH ROW EXECUTE FUNCTION switch_directory_notify('card_id');
CREATE TRIGGER merchants_notify AFTER INSERT OR UPDATE OR DELETE ON merchants
    FOR EACH ROW EXECUTE FUNCTION switch_directory_notify('merchant_id');
CREATE TRIGGER terminals_notify AFTER INSERT OR UPDATE OR DELETE ON terminals
    FOR EACH ROW EXECUTE FUNCTION switch_directory_notify('terminal_id');
CREATE TRIGGER hot_list_notify AFTER INSERT OR UPDATE OR DELETE ON hot_list
    FOR EACH ROW EXECUTE FUNCTION switch_directory_notify('pan_hash');
CREATE TRIGGER black_list_notify AFTER INSERT OR UPDATE OR DELETE ON black_list
    FOR EACH ROW EXECUTE FUNCTION switch_directory_notify('kind');
CREATE TRIGGER bin_ranges_notify AFTER INSERT OR UPDATE OR DELETE ON bin_ranges
    FOR EACH ROW EXECUTE FUNCTION switch_directory_notify('bin_range_id');
