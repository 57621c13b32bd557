"""Translation of terminal requests to the networks' dialects and back (pure: no sockets, no database)."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from specs.demo import demo_pan
from switch.domain.model import Merchant, Terminal
from switch.domain.results import Result
from switch.domain.transactions import TransactionType, parse_card_data
from switch.domain.translation import (
    CARD_DATA_FIELDS,
    FORWARDABLE,
    AcquiredRequest,
    KeyExchangeError,
    NetworkKeySet,
    NetworkProfile,
    ZoneKey,
    advice_key,
    advice_stan,
    completion_advice,
    field53,
    key_exchange_request,
    network_answer,
    network_request,
    network_reversal,
    newer_key_index,
    original_data_elements,
    parse_field53,
    parse_key_exchange,
    reversal_key,
    standin_advice,
    with_pin_block,
    without_card_data,
)
from switch.iso.codec import Codec
from switch.iso.message import Message
from switch.masking import scrub_text

NETWORKS = ("visa", "cups", "shetab")
PROFILES = {
    "visa": NetworkProfile(name="visa", dialect="visa", acquirer_id="990001", network_id="400001"),
    "cups": NetworkProfile(
        name="cups",
        dialect="cups",
        acquirer_id="99000100001",
        forwarding_id="99000100001",
        network_id="00010000",
    ),
    "shetab": NetworkProfile(name="shetab", dialect="shetab", acquirer_id="990001", network_id="581672"),
}
CURRENCY = {"visa": 840, "cups": 156, "shetab": 364}
PANS = {"visa": demo_pan("476173", 7), "cups": demo_pan("622126", 7), "shetab": demo_pan("603799", 7)}
TERMINAL = Terminal(terminal_id="POS00001", merchant_id="DEMOMERCHANT001", kind="pos")
ATM = Terminal(terminal_id="ATM00001", merchant_id="DEMOMERCHANT001", kind="atm")
MERCHANT = Merchant("DEMOMERCHANT001", "Demo shop", 2, category_code="5411")
PROCESSING = {
    TransactionType.PURCHASE: ("0200", "000000"),
    TransactionType.CASHBACK: ("0200", "090000"),
    TransactionType.REFUND: ("0200", "200000"),
    TransactionType.WITHDRAWAL: ("0200", "010000"),
    TransactionType.BALANCE: ("0200", "310000"),
    TransactionType.PREAUTH: ("0100", "000000"),
}
SENT_AT = datetime(2026, 11, 23, 19, 35, 0, tzinfo=UTC)


def terminal_request(
    network: str = "visa",
    transaction: TransactionType = TransactionType.PURCHASE,
    *,
    track: bool = True,
    extra: dict[int, str] | None = None,
) -> Message:
    mti, code = PROCESSING[transaction]
    pan = PANS[network]
    fields: dict[int, str] = {
        3: code,
        7: "1123193500",
        11: "000042",
        12: "193500",
        13: "1123",
        22: "021" if track else "012",
        25: "00",
        41: "POS00001",
        42: "DEMOMERCHANT001",
        49: f"{CURRENCY[network]:03d}",
    }
    if transaction is not TransactionType.BALANCE:
        fields[4] = "000000001234"
    if transaction is TransactionType.CASHBACK:
        fields[54] = f"0040{CURRENCY[network]:03d}C000000000200"
    if track:
        fields[35] = f"{pan}=30122011234567890"
    else:
        fields[2], fields[14] = pan, "3012"
    fields.update(extra or {})
    return Message(mti, fields)


def acquired(
    network: str = "visa",
    transaction: TransactionType = TransactionType.PURCHASE,
    *,
    track: bool = True,
    terminal: Terminal = TERMINAL,
    merchant: Merchant = MERCHANT,
    extra: dict[int, str] | None = None,
) -> AcquiredRequest:
    request = terminal_request(network, transaction, track=track, extra=extra)
    card = parse_card_data(request.get(2), request.get(35), request.get(14))
    assert card is not None
    return AcquiredRequest(
        request=request,
        transaction=transaction,
        card=card,
        terminal=terminal,
        merchant=merchant,
        rrn="632719000042",
        amount=0 if transaction is TransactionType.BALANCE else 1234,
        currency=CURRENCY[network],
    )


def as_sent(message: Message, stan: str = "000777") -> Message:
    """What the link adds before sending: its STAN and field 7."""
    return message.with_fields({11: stan, 7: "1123193501"})


def round_trip(network: str, message: Message) -> Message:
    codec = Codec(network)
    return codec.decode_message(codec.encode_message(message))


# -- requests ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("transaction", sorted(FORWARDABLE))
def test_every_forwarded_request_meets_the_dialect(network, transaction):
    """If any forwardable request is built for any network and sent, then it passes the dialect's
    mandatory table and encodes and decodes to itself."""
    sent = as_sent(network_request(PROFILES[network], acquired(network, transaction)))
    Codec(network).validate(sent)
    assert round_trip(network, sent) == sent


@pytest.mark.parametrize("network", NETWORKS)
def test_a_manual_entry_request_meets_the_dialect(network):
    """If the card was keyed in, then the request carries 2 and 14, no 35, and passes the dialect."""
    sent = as_sent(network_request(PROFILES[network], acquired(network, track=False)))
    Codec(network).validate(sent)
    assert (sent[2], sent[14], 35 in sent) == (PANS[network], "3012", False)


def test_visa_track2_uses_the_d_separator():
    """If a track 2 with '=' goes to Visa, then it travels with 'D' (BCD has no '=')."""
    built = network_request(PROFILES["visa"], acquired("visa"))
    assert built[35] == f"{PANS['visa']}D30122011234567890"


@pytest.mark.parametrize("network", ["cups", "shetab"])
def test_ascii_dialects_keep_the_equals_separator(network):
    """If a track 2 goes to an ASCII network, then its '=' separator stays."""
    built = network_request(PROFILES[network], acquired(network))
    assert built[35] == f"{PANS[network]}=30122011234567890"


def test_cups_gets_the_pan_beside_the_track():
    """If a swiped card goes to CUPS, then field 2 carries the PAN too (its 0200 requires it)."""
    assert network_request(PROFILES["cups"], acquired("cups"))[2] == PANS["cups"]


def test_visa_gets_no_field_2_beside_the_track():
    """If a swiped card goes to Visa, then the PAN travels in track 2 only."""
    assert 2 not in network_request(PROFILES["visa"], acquired("visa"))


def test_visa_entry_mode_is_n4():
    """If the terminal's entry mode is 021, then Visa gets 0210 (its fourth position is unused, zero)."""
    assert network_request(PROFILES["visa"], acquired("visa"))[22] == "0210"


@pytest.mark.parametrize("network", ["cups", "shetab"])
def test_other_networks_keep_the_terminal_entry_mode(network):
    """If the terminal's entry mode is 021, then an n3 network gets it unchanged."""
    assert network_request(PROFILES[network], acquired(network))[22] == "021"


def test_institution_ids_come_from_the_network_profile():
    """If a request goes to CUPS, then 32, 33 and 100 are our acquirer, our forwarder and the network."""
    built = network_request(PROFILES["cups"], acquired("cups"))
    assert (built[32], built[33], built[100]) == ("99000100001", "99000100001", "00010000")


def test_field_33_only_where_the_dialect_requires_it():
    """If a request goes to Visa, then it carries no field 33 (only CUPS requires it)."""
    assert 33 not in network_request(PROFILES["visa"], acquired("visa"))


def test_merchant_fields_come_from_the_merchant_and_the_switch():
    """If a request is built, then 18 is the merchant's MCC, 37 the switch's RRN, 41/42 the acceptor."""
    built = network_request(PROFILES["shetab"], acquired("shetab"))
    assert (built[18], built[37], built[41], built[42]) == (
        "5411",
        "632719000042",
        "POS00001",
        "DEMOMERCHANT001",
    )


def test_merchant_name_is_padded_to_40():
    """If the merchant name is short, then field 43 is it padded with spaces to 40."""
    assert network_request(PROFILES["visa"], acquired("visa"))[43] == "Demo shop".ljust(40)


def test_long_merchant_name_is_cut_to_40():
    """If the merchant name is longer than 40, then field 43 keeps its first 40 characters."""
    merchant = Merchant("DEMOMERCHANT001", "A" * 30 + "B" * 30, 2)
    assert (
        network_request(PROFILES["shetab"], acquired("shetab", merchant=merchant))[43] == "A" * 30 + "B" * 10
    )


def test_chinese_merchant_name_is_cut_on_a_character_for_cups():
    """If a Chinese name longer than 40 GBK bytes goes to CUPS, then no character is split and it encodes."""
    merchant = Merchant("DEMOMERCHANT001", "x" + "银联测试商户" * 5, 2)
    built = network_request(PROFILES["cups"], acquired("cups", merchant=merchant))
    assert len(built[43].encode("gbk")) == 40
    assert built[43].startswith("x" + "银联测试商户" * 3 + "银")
    assert round_trip("cups", as_sent(built))[43] == built[43]


def test_chinese_merchant_name_becomes_question_marks_for_visa():
    """If a Chinese name goes to Visa (EBCDIC), then its characters become '?' and the message encodes."""
    merchant = Merchant("DEMOMERCHANT001", "银联 shop", 2)
    built = network_request(PROFILES["visa"], acquired("visa", merchant=merchant))
    assert built[43] == "?? shop".ljust(40)
    round_trip("visa", as_sent(built))


def test_balance_inquiry_carries_a_zero_amount():
    """If a balance inquiry (no field 4 from the terminal) is forwarded, then field 4 is zero."""
    assert network_request(PROFILES["visa"], acquired("visa", TransactionType.BALANCE))[4] == "0" * 12


def test_cashback_amount_travels_in_54():
    """If a purchase with cashback is forwarded, then its cashback amount (54) goes with it."""
    built = network_request(PROFILES["shetab"], acquired("shetab", TransactionType.CASHBACK))
    assert built[54] == "0040364C000000000200"


def test_missing_local_time_is_taken_from_field_7():
    """If the terminal sent no 12/13, then they come from its field 7 (CUPS requires them)."""
    request = acquired("cups", extra={}).request.with_fields({12: None, 13: None})
    card = parse_card_data(None, request[35], None)
    assert card is not None
    built = network_request(
        PROFILES["cups"],
        AcquiredRequest(
            request=request,
            transaction=TransactionType.PURCHASE,
            card=card,
            terminal=TERMINAL,
            merchant=MERCHANT,
            rrn="632719000042",
            amount=1234,
            currency=156,
        ),
    )
    assert (built[12], built[13]) == ("193500", "1123")


def test_cups_field_60_says_a_pos_with_a_stripe():
    """If a swiped POS request goes to CUPS, then 60 is reason 0000, stripe reader (2), terminal type 03."""
    sub = Codec("cups").subfields(network_request(PROFILES["cups"], acquired("cups")), 60)
    assert (sub["message_reason_code"], sub["terminal_read_capability"], sub["terminal_type"]) == (
        "0000",
        "2",
        "03",
    )


def test_cups_field_60_says_an_atm():
    """If an ATM's withdrawal goes to CUPS, then 60 names terminal type 01."""
    built = network_request(PROFILES["cups"], acquired("cups", TransactionType.WITHDRAWAL, terminal=ATM))
    assert Codec("cups").subfields(built, 60)["terminal_type"] == "01"


@pytest.mark.parametrize("network", ["visa", "shetab"])
def test_no_field_60_outside_cups(network):
    """If a request goes to a network without a field 60 layout, then it carries no 60."""
    assert 60 not in network_request(PROFILES[network], acquired(network))


def test_pin_fields_are_left_to_the_participant():
    """If a request is built, then it has no 7, 11, 52 or 53 (the link and the PIN translation add them)."""
    built = network_request(PROFILES["visa"], acquired("visa", extra={52: "0123456789ABCDEF"}))
    assert {7, 11, 52, 53}.isdisjoint(built.numbers)


def test_with_pin_block_names_the_key():
    """If a translated PIN block is added, then 52 holds it and 53 names the ZPK's index."""
    built = with_pin_block(
        Message("0200", {3: "000000"}), pin_block=bytes.fromhex("0123456789ABCDEF"), key_index=7
    )
    assert (built[52], built[53]) == ("0123456789ABCDEF", "2001010700000000")


def test_a_completion_is_not_forwarded():
    """If a completion is asked to be forwarded, then translation refuses it."""
    request = acquired("visa")
    with pytest.raises(ValueError, match="not forwarded"):
        network_request(
            PROFILES["visa"],
            AcquiredRequest(
                request=request.request,
                transaction=TransactionType.COMPLETION,
                card=request.card,
                terminal=TERMINAL,
                merchant=MERCHANT,
                rrn="1",
                amount=1,
                currency=840,
            ),
        )


# -- reversals and advices -----------------------------------------------------------------------------


@pytest.mark.parametrize("network", NETWORKS)
def test_reversal_of_a_sent_request_meets_the_dialect(network):
    """If the 0420 of a sent request is built and the link sends it, then it passes the dialect and encodes."""
    sent = as_sent(network_request(PROFILES[network], acquired(network)))
    reversal = as_sent(network_reversal(PROFILES[network], sent, reason="4021"), stan="000778")
    Codec(network).validate(reversal)
    assert round_trip(network, reversal) == reversal


def test_reversal_names_the_original_in_field_90():
    """If a CUPS request is reversed, then 90 is its MTI, STAN, field 7, then 32 and 33 zero-filled to 11."""
    sent = as_sent(network_request(PROFILES["cups"], acquired("cups")))
    reversal = network_reversal(PROFILES["cups"], sent, reason="4021")
    assert reversal[90] == "0200" + "000777" + "1123193501" + "99000100001" + "99000100001"


def test_field_90_zero_fills_short_institution_ids():
    """If the original had a 6-digit field 32 and no 33, then 90 holds 00000990001 and 11 zeros."""
    sent = as_sent(network_request(PROFILES["visa"], acquired("visa")))
    assert original_data_elements(sent)[20:] == "00000990001" + "0" * 11


def test_reversal_leaves_stan_and_time_to_the_link():
    """If a reversal is built, then it has no 7 or 11 of its own (the link gives it new ones)."""
    sent = as_sent(network_request(PROFILES["visa"], acquired("visa")))
    assert {7, 11}.isdisjoint(network_reversal(PROFILES["visa"], sent, reason="4021").numbers)


def test_reversal_carries_the_pan_in_field_2_and_no_track_or_pin():
    """If a swiped PIN request is reversed, then the 0420 has the PAN in field 2 and no 35, 52 or 53."""
    sent = as_sent(
        with_pin_block(network_request(PROFILES["visa"], acquired("visa")), pin_block=bytes(8), key_index=1)
    )
    reversal = network_reversal(PROFILES["visa"], sent, reason="4021")
    assert reversal[2] == PANS["visa"]
    assert {35, 52, 53}.isdisjoint(reversal.numbers)


def test_reversal_of_a_stored_copy_needs_the_pan():
    """If the original kept no card data, then its reversal needs the PAN given, else it is refused."""
    stored = without_card_data(as_sent(network_request(PROFILES["visa"], acquired("visa"))))
    with pytest.raises(ValueError, match="PAN"):
        network_reversal(PROFILES["visa"], stored, reason="4000")
    card = acquired("visa").card
    assert network_reversal(PROFILES["visa"], stored, reason="4000", pan=card.pan)[2] == PANS["visa"]


def test_cups_reversal_says_why_in_field_60():
    """If a CUPS request timed out, then its 0420's 60.1 is 4021 and the terminal's traits stay."""
    sent = as_sent(network_request(PROFILES["cups"], acquired("cups")))
    sub = Codec("cups").subfields(network_reversal(PROFILES["cups"], sent, reason="4021"), 60)
    assert (sub["message_reason_code"], sub["terminal_type"]) == ("4021", "03")


def test_partial_reversal_carries_the_actual_amount():
    """If only part was dispensed, then 95 starts with the actual amount."""
    sent = as_sent(network_request(PROFILES["shetab"], acquired("shetab")))
    reversal = network_reversal(PROFILES["shetab"], sent, reason="4000", replacement_amount=1000)
    assert reversal[95] == "000000001000" + "0" * 30


@pytest.mark.parametrize("network", NETWORKS)
def test_standin_advice_has_its_own_identity(network):
    """If a stand-in advice is built, then it is a 0220 with its own 11 and 7, 38, 39 = 00, and it encodes."""
    advice = standin_advice(
        PROFILES[network],
        acquired(network),
        stan="004321",
        transmitted=SENT_AT,
        auth_code="S12345",
        original=None,
    )
    assert (advice.mti, advice[11], advice[7], advice[38], advice[39]) == (
        "0220",
        "004321",
        "1123193500",
        "S12345",
        "00",
    )
    assert round_trip(network, advice) == advice


def test_standin_advice_names_the_timed_out_request():
    """If the request was sent and timed out, then the advice's 90 names it."""
    sent = as_sent(network_request(PROFILES["visa"], acquired("visa")))
    advice = standin_advice(
        PROFILES["visa"],
        acquired("visa"),
        stan="004321",
        transmitted=SENT_AT,
        auth_code="S12345",
        original=sent,
    )
    assert advice[90] == original_data_elements(sent)


def test_standin_advice_of_an_unsent_request_has_no_field_90():
    """If nothing was sent (the link was down), then the advice has no 90."""
    advice = standin_advice(
        PROFILES["visa"],
        acquired("visa"),
        stan="004321",
        transmitted=SENT_AT,
        auth_code="S12345",
        original=None,
    )
    assert 90 not in advice


def test_standin_advice_carries_the_pan_and_no_track_or_pin():
    """If a swiped request is stood in for, then its advice has the PAN in field 2 and no 35, 52 or 53."""
    advice = standin_advice(
        PROFILES["visa"],
        acquired("visa", extra={52: "0123456789ABCDEF"}),
        stan="004321",
        transmitted=SENT_AT,
        auth_code="S12345",
        original=None,
    )
    assert advice[2] == PANS["visa"]
    assert {35, 52, 53}.isdisjoint(advice.numbers)


@pytest.mark.parametrize(("original", "reason"), [(True, "1002"), (False, "1003")])
def test_cups_advice_says_why_in_field_60(original, reason):
    """If CUPS is told of a stand-in, then 60.1 says whether it timed out (1002) or was unreachable (1003)."""
    sent = as_sent(network_request(PROFILES["cups"], acquired("cups"))) if original else None
    advice = standin_advice(
        PROFILES["cups"],
        acquired("cups"),
        stan="004321",
        transmitted=SENT_AT,
        auth_code="S12345",
        original=sent,
    )
    assert Codec("cups").subfields(advice, 60)["message_reason_code"] == reason


def test_advice_stan_is_stable_and_never_zero():
    """If the advice STAN of a transfer is asked twice, then it is the same 6 digits, not 000000."""
    first = advice_stan("POS00001:1123193500:000042")
    assert first == advice_stan("POS00001:1123193500:000042")
    assert first.isdigit() and len(first) == 6 and first != "000000"


def test_reversal_key_names_the_request_without_card_data():
    """If a reversal key is made, then it names network, MTI, STAN, 7 and 32, and holds no PAN."""
    sent = as_sent(network_request(PROFILES["cups"], acquired("cups")))
    key = reversal_key("cups", sent)
    assert key == "rev:cups:0200:000777:1123193501:99000100001"
    assert scrub_text(key) == key


def test_advice_and_reversal_keys_differ():
    """If an advice and the reversal of that advice are keyed, then the keys differ."""
    advice = standin_advice(
        PROFILES["visa"],
        acquired("visa"),
        stan="004321",
        transmitted=SENT_AT,
        auth_code="S12345",
        original=None,
    )
    assert advice_key("visa", advice) != reversal_key("visa", advice)


def test_without_card_data_drops_every_card_field():
    """If a message is kept, then PAN, tracks, PIN block, its key name and ICC data are gone."""
    message = Message("0200", {n: "1" for n in CARD_DATA_FIELDS} | {3: "000000"})
    assert without_card_data(message).numbers == (3,)


# -- answers -------------------------------------------------------------------------------------------


def _codes(network: str) -> dict[str, str]:
    table: dict[str, str] = importlib.import_module(f"specs.{network}").RESPONSE_CODES
    return table


@pytest.mark.parametrize(("network", "code"), [(n, c) for n in NETWORKS for c in _codes(n)])
def test_every_network_code_maps_to_its_result(network, code):
    """If a network answers any code of its table, then the result is the one the table names."""
    response = Message("0210", {39: code, 38: "ABC123"})
    assert network_answer(network, response).result is Result(_codes(network)[code])


@pytest.mark.parametrize("network", NETWORKS)
def test_unknown_code_is_issuer_inoperative(network):
    """If a network answers a code its table lacks, then the result is issuer inoperative."""
    assert network_answer(network, Message("0210", {39: "Q9"})).result is Result.ISSUER_INOPERATIVE


def test_missing_code_is_issuer_inoperative():
    """If a network's answer has no field 39, then the result is issuer inoperative."""
    assert network_answer("visa", Message("0210", {3: "000000"})).result is Result.ISSUER_INOPERATIVE


def test_approval_brings_auth_code_and_balances():
    """If a network approves with 38 and a well-formed 54, then both come back for the terminal."""
    balances = "0001840C000000012345" + "0002840C000000010000"
    answer = network_answer("visa", Message("0210", {39: "00", 38: "A1B2C3", 54: balances}))
    assert (answer.result, answer.auth_code, answer.balances) == (Result.APPROVED, "A1B2C3", balances)


def test_malformed_balances_are_dropped():
    """If an approval's 54 is not the additional-amounts layout, then no balances come back."""
    assert network_answer("visa", Message("0210", {39: "00", 54: "garbage"})).balances == ""


def test_decline_brings_no_auth_code():
    """If a network declines with a 38 anyway, then no auth code comes back."""
    assert network_answer("cups", Message("0210", {39: "51", 38: "A1B2C3"})).auth_code == ""


# -- key exchange --------------------------------------------------------------------------------------


@pytest.mark.parametrize("network", NETWORKS)
def test_key_exchange_request_meets_the_dialect(network):
    """If a key exchange is asked of any network, then 70 = 101 and, once sent, it passes the dialect."""
    request = key_exchange_request(PROFILES[network])
    assert request[70] == "101"
    Codec(network).validate(as_sent(request))


def test_cups_key_exchange_is_an_0820_with_field_33():
    """If CUPS is asked for a key, then the request is 0820 with our forwarding ID in 33."""
    request = key_exchange_request(PROFILES["cups"])
    assert (request.mti, request[33]) == ("0820", "99000100001")


def test_field_48_is_parsed():
    """If field 48 is ZPK + 07 + 32 hex + 6 hex, then index, key and check value come out."""
    answer = parse_key_exchange("ZPK07" + "ab" * 16 + "3fa0f6")
    assert (answer.index, answer.key_under_zmk, answer.check_value) == (7, "AB" * 16, "3FA0F6")


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "KEY07" + "AB" * 16 + "3FA0F6",
        "ZPK00" + "AB" * 16 + "3FA0F6",
        "ZPK07" + "AB" * 15 + "3FA0F6",
        "ZPK07" + "G" * 32 + "3FA0F6",
    ],
)
def test_malformed_field_48_is_refused(value):
    """If field 48 is missing or not the contract's layout, then parsing refuses it."""
    with pytest.raises(KeyExchangeError):
        parse_key_exchange(value)


def test_field_48_error_does_not_show_the_key():
    """If field 48 is refused, then the error does not repeat its content."""
    with pytest.raises(KeyExchangeError) as caught:
        parse_key_exchange("ZPK07" + "AB" * 15 + "3FA0F6")
    assert "ABAB" not in str(caught.value)


@given(st.integers(1, 99))
def test_field53_round_trips(index):
    """If field 53 names a key index, then parsing it gives that index back."""
    assert parse_field53(field53(index)) == index


@pytest.mark.parametrize("value", [None, "", "2001010000000000", "0201010100000000", "20010101000000001"])
def test_foreign_field53_names_no_key(value):
    """If field 53 is absent, names index 00, or has another layout, then it names no key."""
    assert parse_field53(value) is None


@given(st.integers(1, 99), st.integers(1, 99))
def test_of_two_key_indices_exactly_one_is_newer(a, b):
    """If two different key indices are compared, then exactly one of them is the newer."""
    if a == b:
        assert not newer_key_index(a, b)
    else:
        assert newer_key_index(a, b) != newer_key_index(b, a)


def test_key_index_wraps_from_99_to_01():
    """If the network wrapped from 99 to 01, then 01 is the newer key."""
    assert newer_key_index(1, 99) and not newer_key_index(99, 1)


def key(index: int, kcv: str = "", at: datetime = SENT_AT) -> ZoneKey:
    return ZoneKey(
        index=index, under_lmk=f"U{index:032X}", check_value=kcv or f"{index:06X}", installed_at=at
    )


def test_first_key_becomes_current():
    """If a network has no key and one is installed, then it is current."""
    assert NetworkKeySet().installed(key(3)) == NetworkKeySet(current=key(3))


def test_newer_key_pushes_the_current_one_to_previous():
    """If a newer key is installed, then it is current and the old current is previous."""
    assert NetworkKeySet(current=key(3)).installed(key(4)) == NetworkKeySet(current=key(4), previous=key(3))


def test_same_key_again_changes_nothing():
    """If the current key is installed again, then nothing changes (its install time stays)."""
    keys = NetworkKeySet(current=key(3), previous=key(2))
    assert keys.installed(key(3, at=SENT_AT + timedelta(hours=1))) == keys


def test_older_key_finishing_late_does_not_become_current():
    """If another process's older key is installed after a newer one, then the newer stays current."""
    keys = NetworkKeySet(current=key(6), previous=key(4))
    assert keys.installed(key(5)) == NetworkKeySet(current=key(6), previous=key(5))


def test_same_index_with_another_key_is_newer():
    """If the index came round again with another key, then that key is current."""
    keys = NetworkKeySet(current=key(3, "AAAAAA"))
    assert keys.installed(key(3, "BBBBBB")).current == key(3, "BBBBBB")


def test_previous_key_is_accepted_within_grace():
    """If a PIN block names the previous key within the grace period, then that key decrypts it."""
    keys = NetworkKeySet(current=key(4), previous=key(3))
    assert keys.for_index(3, now=SENT_AT + timedelta(seconds=299), grace_s=300) == key(3)


def test_previous_key_is_refused_after_grace():
    """If a PIN block names the previous key after the grace period, then no key is given."""
    keys = NetworkKeySet(current=key(4), previous=key(3))
    assert keys.for_index(3, now=SENT_AT + timedelta(seconds=300), grace_s=300) is None


def test_unknown_key_index_gets_no_key():
    """If a PIN block names a key the switch does not hold, then no key is given."""
    assert NetworkKeySet(current=key(4), previous=key(3)).for_index(9, now=SENT_AT, grace_s=300) is None


def test_reprs_hide_keys_and_pans():
    """If a zone key or an acquired request is printed, then no key and no clear PAN show."""
    shown = repr(key(3)) + repr(acquired("visa"))
    assert f"{3:032X}" not in shown
    assert PANS["visa"] not in shown


@pytest.mark.parametrize("network", NETWORKS)
def test_completion_advice_names_the_preauth_and_meets_the_dialect(network):
    """If a pre-authorization as sent (kept without card data) is completed for part of it, then the 0220
    has its own 11 and 7, the completed amount, the PAN in 2, the pre-auth's 38, 90 naming it, no track
    or PIN data, and it encodes."""
    preauth = acquired(network, TransactionType.PREAUTH)
    stored = without_card_data(as_sent(network_request(PROFILES[network], preauth)))
    advice = completion_advice(
        stored, pan=preauth.card.pan, amount=1000, stan="004322", transmitted=SENT_AT, auth_code="A1B2C3"
    )
    assert (advice.mti, advice[11], advice[7], advice[4], advice[38]) == (
        "0220",
        "004322",
        "1123193500",
        "000000001000",
        "A1B2C3",
    )
    assert advice[2] == PANS[network] and advice[90] == original_data_elements(stored)
    assert {35, 52, 53, 55}.isdisjoint(advice.numbers)
    assert round_trip(network, advice) == advice


def test_completion_advice_is_for_a_preauth_and_at_most_its_amount():
    """If the message completed is not a 0100, or the amount is zero or above the hold, then it is refused."""
    preauth = acquired("visa", TransactionType.PREAUTH)
    sent = as_sent(network_request(PROFILES["visa"], preauth))
    sale = as_sent(network_request(PROFILES["visa"], acquired("visa")))
    pan = preauth.card.pan
    with pytest.raises(ValueError, match="pre-authorization"):
        completion_advice(sale, pan=pan, amount=100, stan="000001", transmitted=SENT_AT, auth_code="A1")
    for amount in (0, 1235):
        with pytest.raises(ValueError, match="held amount"):
            completion_advice(
                sent, pan=pan, amount=amount, stan="000001", transmitted=SENT_AT, auth_code="A1"
            )
