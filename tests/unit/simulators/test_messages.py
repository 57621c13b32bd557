"""Terminal message building per docs/transactions.md: fields, amounts, PIN blocks, MACs, key exchange."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hsm.crypto.des import kcv_tdes, tdes_ecb_encrypt
from hsm.crypto.mac import iso9797_mac
from hsm.crypto.pinblock import decrypt_pin_block
from simulators.messages import (
    Card,
    KeyExchangeError,
    Keys,
    Original,
    SimulatorError,
    TerminalIdentity,
    TransactionRequest,
    TxnType,
    add_mac,
    build_request,
    demo_card,
    format_amount,
    parse_additional_amounts,
    parse_amount,
    parse_key_exchange,
)
from simulators.terminal import CODEC
from specs import demo
from switch.iso.message import Message

TMK = bytes.fromhex(demo.DEMO_TMK_HEX)
TPK = bytes.fromhex("0123456789ABCDEF0123456789ABCDEF")
TAK = bytes.fromhex("89ABCDEF0123456789ABCDEF01234567")
KEYS = Keys(tpk=TPK, tak=TAK, tpk_kcv=kcv_tdes(TPK), tak_kcv=kcv_tdes(TAK))
IDENTITY = TerminalIdentity(terminal_id="POS00001", merchant_id="DEMOMERCHANT001")
CARD = demo_card()
NOW = datetime(2026, 11, 23, 19, 35, 0, tzinfo=UTC)
ORIGINAL = Original(
    processing_code="010000",
    amount_minor=10000,
    mti="0200",
    stan="000123",
    transmission="1123193000",
    rrn="633019000001",
)


def build(request: TransactionRequest, *, entry_mode: str = "021", keys: Keys | None = KEYS) -> Message:
    return build_request(
        request,
        identity=IDENTITY,
        card=CARD,
        stan="000042",
        now_utc=NOW,
        local_now=NOW.replace(tzinfo=None),
        entry_mode=entry_mode,
        keys=keys,
    )


@pytest.mark.parametrize(
    ("text", "minor"), [("12.34", 1234), ("12", 1200), ("0.5", 50), (".05", 5), ("1_000.00", 100000)]
)
def test_amount_text_becomes_minor_units(text, minor):
    """If an amount is given as decimal text, then it becomes exact integer minor units."""
    assert parse_amount(text) == minor


@pytest.mark.parametrize("text", ["", "-1", "1.234", "1e3", "abc", "1.2.3", "1000000000000"])
def test_bad_amount_text_is_refused(text):
    """If an amount is malformed, negative, too precise or too big, then a clear SimulatorError is raised."""
    with pytest.raises(SimulatorError, match="amount"):
        parse_amount(text)


def test_format_amount_round_trips():
    """If minor units are formatted, then the decimal text parses back to the same value."""
    assert format_amount(123456) == "1234.56" and parse_amount(format_amount(7)) == 7


def test_purchase_fields_follow_the_contract():
    """If a magstripe purchase is built, then it is 0200 000000 with track 2, times, entry mode and currency."""
    msg = build(TransactionRequest(TxnType.PURCHASE, amount_minor=1234))
    assert msg.mti == "0200"
    assert {n: msg[n] for n in (3, 4, 7, 11, 12, 13, 22, 25, 41, 42, 49)} == {
        3: "000000",
        4: "000000001234",
        7: "1123193500",
        11: "000042",
        12: "193500",
        13: "1123",
        22: "021",
        25: "00",
        41: "POS00001",
        42: "DEMOMERCHANT001",
        49: "840",
    }
    assert msg[35].startswith(f"{CARD.pan}=3012201") and 2 not in msg and 52 not in msg


def test_manual_entry_sends_pan_and_expiry_not_track2():
    """If the card is keyed in, then fields 2 and 14 are sent and field 35 is not."""
    msg = build(TransactionRequest(TxnType.PURCHASE, amount_minor=1), entry_mode="012")
    assert (msg[2], msg[14], msg[22]) == (CARD.pan, "3012", "012") and 35 not in msg


def test_chip_track2_carries_the_icvv():
    """If the card is read from the chip, then the track 2 CVV is the iCVV (service code 999), not the stripe's."""
    stripe = build(TransactionRequest(TxnType.PURCHASE, amount_minor=1))[35]
    chip = build(TransactionRequest(TxnType.PURCHASE, amount_minor=1), entry_mode="051")[35]
    assert stripe[:-3] == chip[:-3] and stripe[-3:] != chip[-3:]


@pytest.mark.parametrize(
    ("request_", "mti", "code"),
    [
        (TransactionRequest(TxnType.CASHBACK, amount_minor=1000, cashback_minor=500), "0200", "090000"),
        (TransactionRequest(TxnType.REFUND, amount_minor=1000), "0200", "200000"),
        (TransactionRequest(TxnType.PREAUTH, amount_minor=1000), "0100", "000000"),
        (TransactionRequest(TxnType.BALANCE, from_account="10"), "0200", "311000"),
        (TransactionRequest(TxnType.BALANCE, use_0100_balance=True), "0100", "310000"),
        (TransactionRequest(TxnType.WITHDRAWAL, amount_minor=1000), "0200", "010000"),
        (
            TransactionRequest(TxnType.TRANSFER, amount_minor=1, from_account="10", to_account="20"),
            "0200",
            "401020",
        ),
        (TransactionRequest(TxnType.LOAD, amount_minor=1), "0200", "210000"),
        (TransactionRequest(TxnType.LOAD, amount_minor=1, funded=True), "0200", "280000"),
        (TransactionRequest(TxnType.VOID, original=ORIGINAL), "0200", "020000"),
        (TransactionRequest(TxnType.COMPLETION, amount_minor=1, original=ORIGINAL), "0220", "000000"),
        (TransactionRequest(TxnType.CANCEL, original=ORIGINAL), "0400", "010000"),
        (TransactionRequest(TxnType.REVERSAL, original=ORIGINAL), "0400", "010000"),
        (TransactionRequest(TxnType.REVERSAL, original=ORIGINAL, repeat=True), "0401", "010000"),
        (TransactionRequest(TxnType.REVERSAL, original=ORIGINAL, advice=True), "0420", "010000"),
    ],
)
def test_each_transaction_has_its_mti_and_processing_code(request_, mti, code):
    """If a transaction type is built, then its MTI and field 3 are the contract's."""
    msg = build(request_)
    assert (msg.mti, msg[3]) == (mti, code)
    CODEC.validate(msg)  # the dialect's mandatory fields are all there


def test_cashback_total_and_field54():
    """If a cashback is built, then field 4 is the total and field 54 carries the cashback amount (type 40)."""
    msg = build(TransactionRequest(TxnType.CASHBACK, amount_minor=1000, cashback_minor=500))
    assert msg[4] == "000000001500" and msg[54] == "0040840C000000000500"


def test_completion_as_0200_sets_condition_code_06():
    """If a completion is sent as 0200, then field 25 is 06 and the pre-auth is named by field 90 alone."""
    msg = build(
        TransactionRequest(TxnType.COMPLETION, amount_minor=5, original=ORIGINAL, use_0200_completion=True)
    )
    assert (msg.mti, msg[25], msg.get(37)) == ("0200", "06", None)
    assert msg[90] == "0200" + "000123" + "1123193000" + "0" * 22


def test_partial_reversal_carries_field_95_and_the_original_amount():
    """If a reversal has an actual amount, then 4 is the original amount and 95 the actual amount twice + zeros."""
    msg = build(TransactionRequest(TxnType.REVERSAL, original=ORIGINAL, actual_amount_minor=4000))
    assert msg[4] == "000000010000" and msg[95] == "000000004000000000004000" + "0" * 18


def test_reversal_without_original_identity_is_refused():
    """If a reversal knows only the original's RRN, then building it fails: it needs field 90."""
    original = Original(processing_code="000000", amount_minor=1, rrn="633019000001")
    with pytest.raises(SimulatorError, match="MTI, STAN"):
        build(TransactionRequest(TxnType.REVERSAL, original=original))


def test_pin_block_is_format_0_under_the_tpk():
    """If a PIN is given, then field 52 decrypts under the TPK to that PIN bound to the card's PAN."""
    msg = build(TransactionRequest(TxnType.WITHDRAWAL, amount_minor=100, pin="1234"))
    assert decrypt_pin_block(bytes.fromhex(msg[52]), CARD.pan, 0, TPK) == "1234"


def test_pin_change_carries_old_and_new_pin_blocks():
    """If a PIN change is built, then 52 holds the old PIN and 120 the new one, both format 0 under the TPK."""
    msg = build(TransactionRequest(TxnType.PIN_CHANGE, pin="1234", new_pin="4321"))
    assert msg[3] == "920000"
    assert decrypt_pin_block(bytes.fromhex(msg[120]), CARD.pan, 0, TPK) == "4321"


def test_pin_without_keys_is_a_clear_error():
    """If a PIN is asked for before a successful key exchange, then building fails saying so."""
    with pytest.raises(SimulatorError, match="key exchange"):
        build(TransactionRequest(TxnType.BALANCE, pin="1234"), keys=None)


def test_mac_verifies_the_way_the_switch_checks_it():
    """If a request is MACed, then iso9797_mac alg 3 over the encoded message minus its last 8 bytes equals 64."""
    msg = add_mac(CODEC, build(TransactionRequest(TxnType.PURCHASE, amount_minor=1)), TAK)
    body = CODEC.encode_message(msg)
    assert body[-8:] == bytes.fromhex(msg[64])
    assert iso9797_mac(TAK, body[:-8], 3, 1) == body[-8:]


def test_network_management_is_0800_with_field_70():
    """If an echo is built, then it is 0800 with 70=301, 7, 11, 41, 42 and no card data."""
    msg = build(TransactionRequest(TxnType.ECHO))
    assert msg.mti == "0800" and msg[70] == "301" and msg.numbers == (7, 11, 41, 42, 70)


def field48(tpk: bytes, tak: bytes, tpk_kcv: str | None = None) -> str:
    return (
        f"TPK{tdes_ecb_encrypt(TMK, tpk).hex().upper()}{tpk_kcv or kcv_tdes(tpk)}"
        f"TAK{tdes_ecb_encrypt(TMK, tak).hex().upper()}{kcv_tdes(tak)}"
    )


def test_key_exchange_unwraps_keys_under_the_tmk():
    """If field 48 carries TPK and TAK under the TMK with right KCVs, then the clear keys come out."""
    keys = parse_key_exchange(field48(TPK, TAK), TMK)
    assert (keys.tpk, keys.tak) == (TPK, TAK)
    assert "tpk=" not in repr(keys) and TPK.hex() not in repr(keys).lower()


def test_key_exchange_with_a_wrong_kcv_is_refused():
    """If a key's check value does not match, then KeyExchangeError names the key and the KCV problem."""
    with pytest.raises(KeyExchangeError, match="TPK does not match its check value"):
        parse_key_exchange(field48(TPK, TAK, tpk_kcv="000000"), TMK)


@pytest.mark.parametrize("value", [None, "TPK", "X" * 84])
def test_key_exchange_with_a_malformed_field48_is_refused(value):
    """If field 48 is missing, short or mislabelled, then KeyExchangeError is raised."""
    with pytest.raises(KeyExchangeError):
        parse_key_exchange(value, TMK)


def test_balances_from_field54_are_signed():
    """If field 54 has a credit and a debit group, then they parse as positive and negative amounts."""
    groups = parse_additional_amounts("0001840C0000000010000002840D000000000500")
    assert [(g.amount_type, g.amount_minor) for g in groups] == [("01", 1000), ("02", -500)]


def test_card_repr_is_masked():
    """If a card is printed, then only its masked PAN shows."""
    text = repr(CARD)
    assert CARD.pan not in text and CARD.masked_pan in text


def test_special_demo_card_names_resolve():
    """If a special card name is given, then the card is that demo PAN."""
    assert demo_card("lost").pan == demo.demo_pan(demo.DEBIT_BIN, 991)


def test_bad_card_number_is_refused():
    """If the PAN is not 12-19 digits, then a SimulatorError is raised without repeating it."""
    with pytest.raises(SimulatorError, match="card number") as info:
        Card(pan="12ab", expiry_yymm="3012")
    assert "12ab" not in str(info.value)


def test_void_by_rrn_alone_sends_field_37():
    """If only the original's RRN is known, then a void names it in field 37 and sends no field 90."""
    original = Original(processing_code="000000", amount_minor=500, rrn="633019000001")
    msg = build(TransactionRequest(TxnType.VOID, original=original))
    assert (msg[37], msg.get(90), msg[4]) == ("633019000001", None, "000000000500")
