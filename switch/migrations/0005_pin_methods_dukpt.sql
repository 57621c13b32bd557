-- PIN verification by IBM 3624 offset (per product) and DUKPT PIN pads (per terminal).
--
-- A card's IBM offset lives where its PVV would: cards.pin_verification_value (digits, no F padding). The
-- product holds what the HSM needs besides the PVK to recompute the natural PIN.

ALTER TABLE products
    -- 16 decimal digits, one per hex nibble of the encrypted validation data.
    ADD COLUMN decimalization_table text NOT NULL DEFAULT ''
        CHECK (decimalization_table ~ '^([0-9]{16})?$'),
    -- PIN validation data as the HSM takes it: 12 hex digits, or 11 and one 'N' that the HSM replaces
    -- with the last 5 digits of the account number (payShield's convention).
    ADD COLUMN pin_validation_data text NOT NULL DEFAULT ''
        CHECK (pin_validation_data ~ '^([0-9A-F]{12}|[0-9A-F]*N[0-9A-F]*)?$' AND length(pin_validation_data) IN (0, 12)),
    -- How many PIN digits the offset checks (the rightmost ones).
    ADD COLUMN pin_check_length smallint NOT NULL DEFAULT 4 CHECK (pin_check_length BETWEEN 4 AND 12),
    ADD CONSTRAINT products_ibm3624_parameters CHECK (
        pin_method <> 'ibm3624' OR (decimalization_table <> '' AND pin_validation_data <> '' AND pvk_under_lmk <> '')
    );

-- A DUKPT key set: one base derivation key (under the LMK) and the key set identifier that starts every
-- KSN derived from it (the KSN's leftmost 10 hex digits). A BDK "per terminal" is a key set of one.
CREATE TABLE dukpt_key_sets (
    key_set_id      char(10) PRIMARY KEY CHECK (key_set_id ~ '^[0-9A-F]{10}$'),
    description     text NOT NULL DEFAULT '',
    bdk_under_lmk   text NOT NULL CHECK (bdk_under_lmk ~ '^[UTXYZ]?[0-9A-F]+$'),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- A terminal with a DUKPT PIN pad names its key set and the PIN pad's device id (the 19 KSN bits after the
-- key set identifier). Its PIN blocks are then under DUKPT, not under its TPK; its MACs stay on the TAK.
ALTER TABLE terminals
    ADD COLUMN dukpt_key_set_id char(10) REFERENCES dukpt_key_sets,
    ADD COLUMN dukpt_device_id integer CHECK (dukpt_device_id BETWEEN 0 AND 524287),
    ADD CONSTRAINT terminals_dukpt_complete CHECK ((dukpt_key_set_id IS NULL) = (dukpt_device_id IS NULL));
-- Two terminals with one PIN pad identity could answer for each other's KSNs.
CREATE UNIQUE INDEX terminals_dukpt_device ON terminals (dukpt_key_set_id, dukpt_device_id)
    WHERE dukpt_key_set_id IS NOT NULL;

CREATE TRIGGER dukpt_key_sets_notify AFTER INSERT OR UPDATE OR DELETE ON dukpt_key_sets
    FOR EACH ROW EXECUTE FUNCTION switch_directory_notify('key_set_id');
