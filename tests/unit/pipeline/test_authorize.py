"""The authorization pipeline end to end over real parts without I/O: reference ledger, in-memory
directory, in-process HSM with the test LMK."""

from __future__ import annotations

import dataclasses
import gc

import pytest

from hsm.crypto.des import kcv_tdes, tdes_ecb_decrypt
from switch.domain.business_day import business_day
from switch.domain.ledger_types import TransferResult
from switch.domain.model import CardStatus, ListEntry, ListKind
from switch.domain.transactions import parse_additional_amounts
from tests.unit.pipeline.world import (
    CARDHOLDER,
    MERCHANT_ACCOUNT,
    PAN,
    SAVINGS,
    TMK_CLEAR,
    ModelLedger,
    World,
)


@pytest.fixture
async def world():
    w = World()
    await w.fund(100_000)
    return w


def original_data(request) -> str:
    return request.mti + request[11] + request[7] + "0" * 22


async def test_purchase_with_pin_is_approved_and_posted(world):
    """If a purchase with the right PIN arrives, then it is approved with an auth code and the money moves."""
    response = await world.send(world.request(amount=1234))
    assert response.mti == "0210"
    assert response[39] == "00"
    assert len(response[38]) == 6
    assert len(response[37]) == 12
    assert await world.available() == 100_000 - 1234
    assert await world.available(MERCHANT_ACCOUNT) == 1234


async def test_retransmission_gets_the_same_answer_once(world):
    """If the same purchase is sent twice, then the second gets the first's answer and no second debit."""
    request = world.request(amount=500)
    first = await world.send(request)
    second = await world.send(request)
    assert first.fields == second.fields
    assert await world.available() == 100_000 - 500


async def test_a_retransmission_gets_the_first_outcome_kept_as_plain_values(world):
    """If a purchase is sent again, then its outcome is the first one's (response, result, ids, amount),
    marked as a retransmission, and the remembered answer is nothing Python's cycle collector walks."""
    request = world.request(amount=500)
    first = await world.authorizer.handle(request)
    again = await world.authorizer.handle(request)
    assert (again.retransmission, first.retransmission) == (True, False)
    assert dataclasses.replace(again, retransmission=False, mac_tak=first.mac_tak) == first
    for _ in range(5):
        # A collection untracks a tuple whose contents are untracked already: one level of nesting each.
        gc.collect()
    assert not any(gc.is_tracked(kept) for kept in world.authorizer._recent.values())


async def test_same_identity_different_content_is_94(world):
    """If a request reuses terminal, STAN and time with another amount, then it is answered 94."""
    await world.send(world.request(amount=500, stan="000777"))
    response = await world.send(world.request(amount=900, stan="000777"))
    assert response[39] == "94"
    assert await world.available() == 100_000 - 500


async def test_retry_after_restart_is_not_applied_twice(world):
    """If the authorizer's memory is lost (restart), then the ledger's idempotency still applies it once."""
    request = world.request(amount=700)
    first = await world.send(request)
    world.authorizer._recent.clear()
    second = await world.send(request)
    assert (first[39], second[39]) == ("00", "00")
    assert first[38] == second[38]
    assert await world.available() == 100_000 - 700


async def test_wrong_pin_is_55_and_counted(world):
    """If the PIN is wrong, then the answer is 55 and the card's try counter goes up."""
    response = await world.send(world.request(pin="9999"))
    assert response[39] == "55"
    assert world.directory.cards[PAN].pin_tries == 1


async def test_pin_tries_exceeded_is_75_even_with_the_right_pin(world):
    """If the PIN was wrong three times, then even the right PIN gets 75."""
    for _ in range(2):
        assert (await world.send(world.request(pin="9999")))[39] == "55"
    assert (await world.send(world.request(pin="9999")))[39] == "75"
    assert (await world.send(world.request()))[39] == "75"


async def test_right_pin_resets_the_counter(world):
    """If a right PIN follows a wrong one, then the counter is back at zero."""
    await world.send(world.request(pin="9999"))
    assert (await world.send(world.request()))[39] == "00"
    assert world.directory.cards[PAN].pin_tries == 0


async def test_insufficient_funds_is_51(world):
    """If the amount exceeds the balance, then the answer is 51 and nothing moves."""
    response = await world.send(world.request(amount=150_000))
    assert response[39] == "51"
    assert await world.available() == 100_000


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (CardStatus.LOST, "41"),
        (CardStatus.STOLEN, "43"),
        (CardStatus.BLOCKED, "62"),
        (CardStatus.INACTIVE, "57"),
    ],
)
async def test_card_status_declines(world, status, code):
    """If the card is lost, stolen, blocked or not yet active, then the answer names it."""
    world.directory.cards[PAN] = dataclasses.replace(world.card, status=status)
    assert (await world.send(world.request()))[39] == code


async def test_expired_card_is_54(world):
    """If the card expired, then the answer is 54."""
    world.directory.cards[PAN] = dataclasses.replace(world.card, expiry_yymm="2510")
    response = await world.send(world.request(track2=world.track2(expiry="2510")))
    assert response[39] == "54"


async def test_hot_listed_card_is_picked_up(world):
    """If the card is on the hot list set to pick up, then the answer is 04."""
    world.directory.hot[PAN] = ListEntry(ListKind.HOT, "reported", "04")
    assert (await world.send(world.request()))[39] == "04"


async def test_unknown_card_and_bad_luhn_are_14(world):
    """If the PAN is unknown or fails Luhn, then the answer is 14."""
    unknown = "9900010000000027"
    assert (await world.send(world.request(track2=world.track2(pan=unknown))))[39] == "14"
    assert (await world.send(world.request(track2=f"{PAN[:-1]}8=30122011")))[39] == "14"


async def test_tampered_cvv_is_59(world):
    """If track 2's CVV does not match the card, then the answer is 59."""
    track2 = world.track2()
    tampered = track2[:-3] + ("000" if track2[-3:] != "000" else "111")
    assert (await world.send(world.request(track2=tampered)))[39] == "59"


async def test_unknown_terminal_and_merchant(world):
    """If the terminal is unknown the answer is 58; if the merchant does not match it, 03."""
    assert (await world.send(world.request(terminal="NOPE0001")))[39] == "58"
    assert (await world.send(world.request(extra={42: "OTHERMERCHANT01"})))[39] == "03"


async def test_product_disallows_transaction_is_57(world):
    """If the card product does not allow the transaction type, then the answer is 57."""
    product = dataclasses.replace(world.product, allowed_transactions=frozenset({"balance"}))
    world.directory.cards[PAN] = dataclasses.replace(world.card, product=product)
    assert (await world.send(world.request()))[39] == "57"


async def test_unsupported_currency_is_rejected(world):
    """If the currency is not the card's, then the request is declined without effect."""
    response = await world.send(world.request(extra={49: "978"}))
    assert response[39] == "12"
    assert await world.available() == 100_000


async def test_per_transaction_limit_is_61(world):
    """If a withdrawal exceeds the product's per-transaction maximum, then the answer is 61."""
    response = await world.send(world.request(processing_code="011000", amount=60_000, terminal="ATM00001"))
    assert response[39] == "61"


async def test_daily_count_limit_is_65(world):
    """If a fourth withdrawal on the same day exceeds the daily count, then the answer is 65."""
    for _ in range(3):
        assert (await world.send(world.request("0200", "011000", 1000, terminal="ATM00001")))[39] == "00"
    assert (await world.send(world.request("0200", "011000", 1000, terminal="ATM00001")))[39] == "65"


async def test_balance_inquiry_returns_field_54(world):
    """If an ATM balance inquiry with PIN arrives, then field 54 carries ledger and available balances."""
    response = await world.send(world.request("0200", "311000", None, terminal="ATM00001"))
    assert response[39] == "00"
    amounts = parse_additional_amounts(response[54])
    assert {(a.amount_type, a.amount) for a in amounts} == {("01", 100_000), ("02", 100_000)}


async def test_atm_balance_without_pin_is_55(world):
    """If an ATM transaction that needs a PIN has none, then the answer is 55."""
    response = await world.send(world.request("0200", "311000", None, terminal="ATM00001", pin=None))
    assert response[39] == "55"


async def test_reversal_gives_the_money_back_once(world):
    """If a purchase is reversed (and the reversal repeated), then the cardholder gets it back once."""
    purchase = world.request(amount=2000)
    await world.send(purchase)
    reversal = world.request("0400", "000000", 2000, extra={90: original_data(purchase)}, pin=None)
    assert (await world.send(reversal))[39] == "00"
    repeat = world.request("0401", "000000", 2000, extra={90: original_data(purchase)}, pin=None)
    assert (await world.send(repeat))[39] == "00"
    assert await world.available() == 100_000


async def test_partial_dispense_reversal_returns_the_difference(world):
    """If an ATM dispensed 40.00 of 100.00, then the reversal with field 95 returns 60.00."""
    withdrawal = world.request("0200", "011000", 10_000, terminal="ATM00001")
    assert (await world.send(withdrawal))[39] == "00"
    reversal = world.request(
        "0420",
        "011000",
        10_000,
        terminal="ATM00001",
        pin=None,
        extra={90: original_data(withdrawal), 95: f"{4000:012d}" + "0" * 30},
    )
    assert (await world.send(reversal))[39] == "00"
    assert await world.available() == 100_000 - 4000


async def test_reversal_of_unknown_original_is_acknowledged(world):
    """If a reversal names no known original, then it is acknowledged 00 with no effect."""
    reversal = world.request(
        "0400", "000000", 100, pin=None, extra={90: "0200" + "999999" + "1123000000" + "0" * 22}
    )
    assert (await world.send(reversal))[39] == "00"
    assert await world.available() == 100_000


async def test_preauth_then_partial_completion(world):
    """If a pre-auth of 50.00 is completed for 30.00, then 30.00 is posted and the rest released."""
    preauth = world.request("0100", "000000", 5000)
    assert (await world.send(preauth))[39] == "00"
    assert await world.available() == 100_000 - 5000
    completion = world.request("0220", "000000", 3000, pin=None, extra={90: original_data(preauth)})
    assert (await world.send(completion))[39] == "00"
    assert await world.available() == 100_000 - 3000


async def test_preauth_cancel_releases_the_hold(world):
    """If a pre-auth is reversed, then the hold is released."""
    preauth = world.request("0100", "000000", 5000)
    await world.send(preauth)
    cancel = world.request("0400", "000000", 5000, pin=None, extra={90: original_data(preauth)})
    assert (await world.send(cancel))[39] == "00"
    assert await world.available() == 100_000


def _partial_reversal(world, preauth, actual: int):
    return world.request(
        "0400",
        "000000",
        preauth_amount(preauth),
        pin=None,
        extra={90: original_data(preauth), 95: f"{actual:012d}" + "0" * 30},
    )


def preauth_amount(preauth) -> int:
    return int(preauth[4])


async def test_partial_reversal_of_a_preauth_reduces_the_hold_for_its_completion(world):
    """If a pre-auth of 50.00 is partially reversed to 30.00 (field 95), then only 30.00 stays held, its
    completion for 30.00 posts 30.00, and a completion for more than 30.00 is refused (13)."""
    preauth = world.request("0100", "000000", 5000)
    assert (await world.send(preauth))[39] == "00"
    assert (await world.send(_partial_reversal(world, preauth, 3000)))[39] == "00"
    assert await world.available() == 100_000 - 3000
    too_much = world.request("0220", "000000", 3500, pin=None, extra={90: original_data(preauth)})
    assert (await world.send(too_much))[39] == "13"
    completion = world.request("0220", "000000", 3000, pin=None, extra={90: original_data(preauth)})
    assert (await world.send(completion))[39] == "00"
    assert await world.available() == 100_000 - 3000
    assert (await world.send(completion.with_fields({}, mti="0221")))[39] == "00"
    assert await world.available() == 100_000 - 3000


async def test_reduced_hold_the_ledger_refuses_is_96_and_the_repeat_makes_it(world):
    """If the ledger refuses the reduced hold after voiding the original, then the reversal is answered 96
    (the hold is released whole, not held twice), and its repeat (0401) makes the reduced hold."""
    preauth = world.request("0100", "000000", 5000)
    await world.send(preauth)
    ledger = world.ledger

    async def refusing(transfers):
        if any(t.transfer_id.endswith(":reduced") for t in transfers):
            return [TransferResult.ACCOUNT_NOT_FOUND for _ in transfers]
        return await ModelLedger.create_transfers(ledger, transfers)

    ledger.create_transfers = refusing
    partial = _partial_reversal(world, preauth, 3000)
    assert (await world.send(partial))[39] == "96"
    assert await world.available() == 100_000
    del ledger.create_transfers
    assert (await world.send(partial.with_fields({}, mti="0401")))[39] == "00"
    assert await world.available() == 100_000 - 3000


async def test_repeated_partial_reversal_of_a_preauth_reduces_it_once(world):
    """If the partial reversal comes again (0401), or another partial one for another amount, then the hold
    stays reduced to the first one's amount."""
    preauth = world.request("0100", "000000", 5000)
    await world.send(preauth)
    partial = _partial_reversal(world, preauth, 3000)
    await world.send(partial)
    assert (await world.send(partial.with_fields({}, mti="0401")))[39] == "00"
    assert (await world.send(_partial_reversal(world, preauth, 1000)))[39] == "00"
    assert await world.available() == 100_000 - 3000


async def test_full_reversal_after_a_partial_one_releases_the_reduced_hold(world):
    """If a pre-auth reduced by a partial reversal is then reversed whole (cancelled), then nothing stays
    held."""
    preauth = world.request("0100", "000000", 5000)
    await world.send(preauth)
    await world.send(_partial_reversal(world, preauth, 3000))
    cancel = world.request("0400", "000000", 5000, pin=None, extra={90: original_data(preauth)})
    assert (await world.send(cancel))[39] == "00"
    assert await world.available() == 100_000
    completion = world.request("0220", "000000", 3000, pin=None, extra={90: original_data(preauth)})
    assert (await world.send(completion))[39] != "00"
    assert await world.available() == 100_000


async def test_partial_reversal_after_the_completion_changes_nothing(world):
    """If a pre-auth was completed, then a partial reversal of it is acknowledged and holds nothing anew."""
    preauth = world.request("0100", "000000", 5000)
    await world.send(preauth)
    completion = world.request("0220", "000000", 4000, pin=None, extra={90: original_data(preauth)})
    assert (await world.send(completion))[39] == "00"
    assert (await world.send(_partial_reversal(world, preauth, 3000)))[39] == "00"
    assert await world.available() == 100_000 - 4000


async def test_reversal_of_a_preauth_with_95_of_zero_or_of_all_of_it(world):
    """If a pre-auth's reversal says nothing was used (95 of zero), then the hold is released whole; if it
    says all of it was (95 of the whole amount), then the hold stays."""
    first = world.request("0100", "000000", 2000)
    assert (await world.send(first))[39] == "00"
    assert (await world.send(_partial_reversal(world, first, 0)))[39] == "00"
    assert await world.available() == 100_000
    second = world.request("0100", "000000", 2000)
    assert (await world.send(second))[39] == "00"
    assert (await world.send(_partial_reversal(world, second, 2000)))[39] == "00"
    assert await world.available() == 100_000 - 2000


async def test_void_of_a_purchase(world):
    """If a purchase is voided by field 90, then the money returns."""
    purchase = world.request(amount=2500)
    await world.send(purchase)
    void = world.request("0200", "020000", 2500, pin=None, extra={90: original_data(purchase)})
    assert (await world.send(void))[39] == "00"
    assert await world.available() == 100_000


async def test_refund_credits_the_cardholder(world):
    """If a refund arrives, then the cardholder is credited from the merchant without a PIN."""
    response = await world.send(world.request("0200", "200000", 800, pin=None))
    assert response[39] == "00"
    assert await world.available() == 100_000 + 800


async def test_transfer_between_own_accounts(world):
    """If an ATM transfer from savings to checking arrives, then it moves between the two accounts."""
    response = await world.send(world.request("0200", "401020", 1500, terminal="ATM00001"))
    assert response[39] == "00"
    assert await world.available(CARDHOLDER) == 100_000 - 1500
    assert (await world.ledger.balances([SAVINGS]))[SAVINGS].credits_posted == 1500


async def test_key_exchange_returns_keys_under_the_tmk(world):
    """If a terminal asks for a key exchange, then field 48 holds a TPK and TAK whose check values match."""
    request = world.request("0800", "000000", None, pin=None, extra={70: "101"})
    response = await world.send(request)
    assert response[39] == "00"
    f48 = response[48]
    assert f48[:3] == "TPK" and f48[41:44] == "TAK" and len(f48) == 82
    tpk = tdes_ecb_decrypt(TMK_CLEAR, bytes.fromhex(f48[3:35]))
    assert kcv_tdes(tpk) == f48[35:41]
    assert world.directory.terminals["POS00001"].tpk_under_lmk != ""


async def test_unknown_processing_code_is_12(world):
    """If the processing code is not one we know, then the answer is 12."""
    assert (await world.send(world.request(processing_code="770000")))[39] == "12"


async def test_zero_amount_is_13(world):
    """If the amount is zero, then the answer is 13."""
    assert (await world.send(world.request(amount=0)))[39] == "13"


async def test_mac_is_checked_for_a_macing_terminal(world):
    """If a terminal must MAC, then a right MAC is approved (and the answer is MACed), a wrong or missing one gets 63."""
    from hsm.crypto.mac import iso9797_mac
    from tests.unit.pipeline.world import CODEC, TAK_CLEAR

    world.directory.terminals["POS00001"] = dataclasses.replace(
        world.directory.terminals["POS00001"], mac_required=True
    )
    unsigned = world.request(amount=100, extra={64: "0" * 16})
    body = CODEC.encode_message(unsigned)[:-8]
    signed = unsigned.with_fields({64: iso9797_mac(TAK_CLEAR, body, 3, 1).hex().upper()})
    response = await world.send(signed)
    assert response[39] == "00"
    response_body = CODEC.encode_message(response)[:-8]
    assert response[64] == iso9797_mac(TAK_CLEAR, response_body, 3, 1).hex().upper()
    assert (await world.send(world.request(amount=100, extra={64: "0" * 16})))[39] == "63"
    assert (await world.send(world.request(amount=100)))[39] == "63"


async def test_pin_change_then_only_the_new_pin_works(world):
    """If an ATM PIN change with the right old PIN arrives, then the new PIN works and the old one is 55."""
    new_block = world.pin_block("4321")
    change = world.request("0200", "920000", None, terminal="ATM00001", extra={120: new_block})
    assert (await world.send(change))[39] == "00"
    new_pvv = world.directory.cards[PAN].pin_verification_value
    assert new_pvv != world.card.pin_verification_value
    # The stripe still carries the old PVV: verification uses the stored one.
    assert (await world.send(world.request(amount=100, pin="4321")))[39] == "00"
    assert (await world.send(world.request(amount=100, pin="1234")))[39] == "55"


async def test_pin_change_with_wrong_old_pin_is_55(world):
    """If the old PIN is wrong, then the PIN is not changed."""
    change = world.request(
        "0200", "920000", None, terminal="ATM00001", pin="9999", extra={120: world.pin_block("4321")}
    )
    assert (await world.send(change))[39] == "55"
    assert world.directory.cards[PAN].pin_verification_value == world.card.pin_verification_value


async def test_reversal_of_a_completion_gives_the_money_back_once(world):
    """If a completed pre-auth's completion is reversed (twice), then the cardholder gets it back once."""
    preauth = world.request("0100", "000000", 5000)
    await world.send(preauth)
    completion = world.request("0220", "000000", 3000, pin=None, extra={90: original_data(preauth)})
    assert (await world.send(completion))[39] == "00"
    for mti in ("0420", "0421"):
        reversal = world.request(mti, "000000", 3000, pin=None, extra={90: original_data(completion)})
        assert (await world.send(reversal))[39] == "00"
    assert await world.available() == 100_000


async def test_void_of_a_purchase_by_rrn(world):
    """If a purchase is voided by its RRN in field 37 (no field 90), then the money returns, once."""
    purchase = world.request(amount=2500)
    rrn = (await world.send(purchase))[37]
    void = world.request("0200", "020000", 2500, pin=None, extra={37: rrn})
    assert (await world.send(void))[39] == "00"
    assert await world.available() == 100_000
    again = world.request("0200", "020000", 2500, pin=None, extra={37: rrn})
    assert (await world.send(again))[39] == "25"  # already given back: nothing left to void
    assert await world.available() == 100_000


async def test_completion_of_a_preauth_by_rrn(world):
    """If a pre-auth is completed by its RRN in field 37, then the completed amount is posted."""
    preauth = world.request("0100", "000000", 5000)
    rrn = (await world.send(preauth))[37]
    completion = world.request("0220", "000000", 3000, pin=None, extra={37: rrn})
    assert (await world.send(completion))[39] == "00"
    assert await world.available() == 100_000 - 3000


async def test_completion_by_rrn_of_a_reduced_preauth_completes_the_reduced_hold(world):
    """If a pre-auth reduced by a partial reversal is completed by its RRN alone, then the reduced hold is
    the one found (not two candidates) and posted."""
    preauth = world.request("0100", "000000", 5000)
    rrn = (await world.send(preauth))[37]
    await world.send(_partial_reversal(world, preauth, 3000))
    completion = world.request("0220", "000000", 2500, pin=None, extra={37: rrn})
    assert (await world.send(completion))[39] == "00"
    assert await world.available() == 100_000 - 2500


async def test_void_by_an_rrn_of_another_terminal_is_not_found(world):
    """If a void names an RRN that only another terminal's purchase has, then it is 25 and nothing moves."""
    purchase = world.request(amount=2500)
    rrn = (await world.send(purchase))[37]
    void = world.request("0200", "020000", 2500, pin=None, terminal="ATM00001", extra={37: rrn})
    assert (await world.send(void))[39] == "25"
    assert await world.available() == 100_000 - 2500


@pytest.mark.parametrize(("zone", "second"), [("UTC", "61"), ("Asia/Tehran", "00")])
async def test_daily_limits_turn_at_the_banks_midnight(world, zone, second):
    """If two purchases of 15.00 under a daily maximum of 20.00 are sent at 20:00 and 21:00 UTC, then in
    UTC they share a day (the second is 61), while for a bank in Tehran (UTC+3:30) the second is on the
    next day (23:30 and 00:30 local) and is approved."""
    world.authorizer.business = business_day(zone)
    product = dataclasses.replace(world.product, daily_amount_max={"purchase": 2000})
    world.directory.cards[PAN] = dataclasses.replace(world.card, product=product)
    first = world.request(amount=1500, extra={7: "1123200000"})
    later = world.request(amount=1500, extra={7: "1123210000"})
    assert (await world.send(first))[39] == "00"
    assert (await world.send(later))[39] == second
