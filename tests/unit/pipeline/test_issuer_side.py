"""The issuer side: a network's requests for our cards through the Authorizer, against the small real world
of world.py (the ledger's reference model, an in-memory card directory, the software HSM with the test LMK)
and zone PIN keys in memory. No database, no sockets."""

from __future__ import annotations

import dataclasses
import io
import logging
from datetime import timedelta

import pytest
import structlog
import trio
import trio.testing

from hsm.crypto.des import kcv_tdes, with_odd_parity
from hsm.crypto.pinblock import encrypt_pin_block
from hsm.keys import ZPK
from specs import visa
from switch.domain.ledger_types import LedgerAccount, Transfer, TransferKind, TransferResult
from switch.domain.model import CardStatus
from switch.domain.results import Result
from switch.domain.translation import NetworkKeySet, NetworkProfile, ZoneKey, field53
from switch.iso.codec import Codec
from switch.iso.message import Message
from switch.logs import configure_logging
from switch.pipeline.forward import network_settlement_account_id
from switch.pipeline.issuer import (
    IssuerNetwork,
    advice_recovery_id,
    advice_rrn,
    advice_suspense_account,
    advice_suspense_account_id,
    advice_suspense_card,
    advice_suspense_reference,
    issuer_response_codes,
    network_transfer_id,
    parse_network_original,
    recovery_account,
)
from switch.pipeline.network_keys import NetworkKeys
from tests.unit.pipeline.test_forward import MemoryKeyStore
from tests.unit.pipeline.world import (
    CARDHOLDER,
    FUNDING,
    NOW,
    PAN,
    PIN,
    SAVINGS,
    GatedPostings,
    ModelLedger,
    World,
)

VISA = Codec("visa")
SETTLEMENT = network_settlement_account_id("visa", 840)
SUSPENSE = advice_suspense_account_id("visa", 840)
ZPK_CURRENT = with_odd_parity(bytes.fromhex("11223344556677888877665544332211"))
ZPK_PREVIOUS = with_odd_parity(bytes.fromhex("0123456789ABCDEF0F1E2D3C4B5A6978"))
GRACE_S = 300


class IssuerRig:
    """The World's authorizer serving Visa's requests, with a current (index 7) and previous (6) ZPK."""

    def __init__(self, *, suspense: bool = True) -> None:
        self.world = World()
        self.store = MemoryKeyStore()
        self.store.keys["visa"] = NetworkKeySet(
            current=self._key(7, ZPK_CURRENT, NOW),
            previous=self._key(6, ZPK_PREVIOUS, NOW - timedelta(hours=1)),
        )
        self.keys = NetworkKeys(
            profile=NetworkProfile(name="visa", dialect="visa", acquirer_id="990001", network_id="400001"),
            hsm=self.world.hsm,
            store=self.store,
            clock=self.world.clock,
            key_grace_s=GRACE_S,
            deadline_s=2,
        )
        self.network = IssuerNetwork(
            name="visa",
            keys=self.keys,
            settlement_accounts={840: SETTLEMENT},
            suspense_accounts={840: SUSPENSE} if suspense else {},
            respond=lambda request, code: VISA.response(request, response_code=code),
            response_codes=issuer_response_codes(visa.RESPONSE_CODES),
        )
        self.stan = 100

    def _key(self, index: int, clear: bytes, installed: object) -> ZoneKey:
        return ZoneKey(
            index=index,
            under_lmk=self.world.vault.wrap(clear, ZPK, "U"),
            check_value=kcv_tdes(clear),
            installed_at=installed,  # type: ignore[arg-type]
        )

    async def open(self, amount: int = 100_000) -> None:
        await self.world.fund(amount)
        await self.world.ledger.create_accounts(
            [
                LedgerAccount(account_id=SETTLEMENT, currency=840),
                LedgerAccount(account_id=SUSPENSE, currency=840),
            ]
        )

    def request(
        self,
        mti: str = "0200",
        processing: str = "000000",
        amount: int = 1000,
        *,
        pin: str | None = PIN,
        key_index: int | None = 7,
        zpk: bytes = ZPK_CURRENT,
        stan: str | None = None,
        extra: dict[int, str] | None = None,
    ) -> Message:
        """A request as Visa's acquirer sends it: track 2 (D separator), field 32 the network's ID."""
        if stan is None:
            self.stan += 1
            stan = f"{self.stan:06d}"
        track = self.world.track2().replace("=", "D")
        fields = {
            3: processing,
            4: f"{amount:012d}",
            7: "1123193500",
            11: stan,
            18: "5999",
            22: "0210",
            25: "00",
            32: "400001",
            35: track,
            37: f"63271900{stan[-4:]}",
            41: "VISA0001",
            42: "NETSIMVISA00000",
            49: "840",
            100: "990001",
        }
        if pin is not None:
            fields[52] = encrypt_pin_block(pin, PAN, 0, zpk).hex().upper()
            if key_index is not None:
                fields[53] = field53(key_index)
        fields.update(extra or {})
        return Message(mti, fields)

    def reversal(self, original: Message, *, mti: str = "0420", actual: int | None = None) -> Message:
        self.stan += 1
        fields = {n: v for n, v in original.items() if n in (2, 3, 4, 32, 37, 41, 42, 49, 100)}
        fields[2] = PAN
        fields[7] = "1123193600"
        fields[11] = f"{self.stan:06d}"
        fields[90] = f"{original.mti}{original[11]}{original[7]}{'400001':0>11}{'0' * 11}"
        if actual is not None:
            fields[95] = f"{actual:012d}" * 2 + "0" * 18
        return Message(mti, fields)

    async def send(self, request: Message) -> Message:
        outcome = await self.world.authorizer.handle_network(self.network, request)
        assert outcome.response is not None
        return outcome.response

    async def settlement(self) -> int:
        """Credits minus debits posted on Visa's settlement account (what we owe Visa)."""
        b = (await self.world.ledger.balances([SETTLEMENT]))[SETTLEMENT]
        return b.credits_posted - b.debits_posted

    async def top_up(self, amount: int) -> None:
        """Funds for the cardholder (from the world's funding account)."""
        top_up = Transfer(
            transfer_id=f"top-up:{amount}",
            kind=TransferKind.POSTED,
            debit_account_id=FUNDING,
            credit_account_id=CARDHOLDER,
            amount=amount,
            currency=840,
        )
        assert await self.world.ledger.create_transfers([top_up]) == [TransferResult.OK]

    async def suspense(self) -> int:
        """Debits minus credits posted on Visa's advice suspense account (what cardholders owe us)."""
        b = (await self.world.ledger.balances([SUSPENSE]))[SUSPENSE]
        return b.debits_posted - b.credits_posted


@pytest.fixture
async def rig() -> IssuerRig:
    r = IssuerRig()
    await r.open()
    return r


# -- pure helpers -------------------------------------------------------------------------------------------


def test_issuer_codes_are_the_first_code_listed_for_each_result():
    """If a result has several codes in the network's table, then the issuer side answers the first."""
    codes = issuer_response_codes({"00": "approved", "01": "do_not_honor", "05": "do_not_honor"})
    assert codes[Result.APPROVED] == "00" and codes[Result.DO_NOT_HONOR] == "01"


def test_a_result_the_table_lacks_is_answered_with_its_fallback_or_do_not_honor():
    """If the table has no code for a result, then its fallback's code is used, else do-not-honor's."""
    codes = issuer_response_codes(visa.RESPONSE_CODES)
    assert codes[Result.UNSUPPORTED_CURRENCY] == "12"
    assert codes[Result.NO_SUCH_ISSUER] == "15"
    assert issuer_response_codes({"00": "approved"})[Result.EXPIRED_CARD] == "05"


def test_network_transfer_id_pads_the_acquirer_as_field_90_does():
    """If field 32 is shorter than 11 digits, then the id holds it zero-filled, as a reversal names it."""
    original = parse_network_original("0200" + "000123" + "1123193500" + "00000400001" + "0" * 11)
    assert original is not None
    by_request = network_transfer_id("visa", acquirer="400001", transmission="1123193500", stan="000123")
    by_reversal = network_transfer_id(
        "visa", acquirer=original.acquirer, transmission=original.transmission, stan=original.stan
    )
    assert by_request == by_reversal


def test_suspense_reference_names_its_card_and_no_other_reference_does():
    """If a reference is an advice's suspense booking, then its card id is read back; else None."""
    assert advice_suspense_card(advice_suspense_reference("632719001234", 42)) == 42
    assert advice_suspense_card("advice:rrn:632719001234") is None
    assert advice_suspense_card("rrn:632719001234:suspense:card:42") is None


def test_suspense_reference_names_the_account_the_advice_was_for():
    """If a suspense booking names the card's account, then it is read back with the card and the RRN;
    a booking made before accounts were named reads None, and the recovery then takes the card's first
    account in the currency, as it does when the named one is no longer the card's."""
    reference = advice_suspense_reference("632719001234", 42, 1002)
    assert (advice_suspense_card(reference), advice_suspense_account(reference)) == (42, 1002)
    assert advice_rrn(reference) == "632719001234"
    assert advice_suspense_account(advice_suspense_reference("632719001234", 42)) is None
    assert advice_suspense_account("rrn:1:account:5:suspense:card:42") is None
    card = World().card
    assert recovery_account(card, 840, SAVINGS).account_id == SAVINGS
    assert recovery_account(card, 840, None).account_id == CARDHOLDER
    assert recovery_account(card, 840, 999_999).account_id == CARDHOLDER
    assert recovery_account(card, 978, SAVINGS) is None


def test_suspense_accounts_are_apart_from_settlement_accounts():
    """If the ids of a network's two accounts are derived, then they differ and stay within a bigint."""
    for network in ("visa", "cups", "shetab"):
        for currency in (1, 364, 840, 999):
            suspense = advice_suspense_account_id(network, currency)
            assert suspense != network_settlement_account_id(network, currency)
            assert suspense < 2**63
    with pytest.raises(ValueError):
        advice_suspense_account_id("visa", 0)


def test_malformed_field_90_is_none():
    """If field 90 is not 42 digits, then it names no original."""
    assert parse_network_original("0200000123") is None
    assert parse_network_original(None) is None


# -- authorizations -------------------------------------------------------------------------------------------


async def test_network_purchase_debits_the_cardholder_and_credits_the_network(rig):
    """If Visa sends a purchase with the right PIN under its current ZPK, then it is approved with 38, in
    Visa's response form, and the money goes from the cardholder to Visa's settlement account."""
    response = await rig.send(rig.request(amount=2500))
    assert response.mti == "0210" and response[39] == "00" and response.get(38)
    assert response[32] == "400001"
    assert await rig.world.available() == 100_000 - 2500
    assert await rig.settlement() == 2500


async def test_outcome_route_names_the_network(rig):
    """If a network's request is answered, then the outcome's route is issuer:<network>."""
    outcome = await rig.world.authorizer.handle_network(rig.network, rig.request())
    assert outcome.route == "issuer:visa" and outcome.result is Result.APPROVED


async def test_wrong_pin_is_55_and_counts_a_try(rig):
    """If the PIN under the ZPK is wrong, then 55 and the card's PIN try counter goes up."""
    response = await rig.send(rig.request(pin="9999"))
    assert response[39] == "55"
    assert rig.world.directory.cards[PAN].pin_tries == 1


async def test_previous_zpk_is_accepted_within_its_grace(rig):
    """If the PIN block is under the previous ZPK and the exchange was within the grace period, then
    it verifies."""
    rig.world.clock.current = NOW + timedelta(seconds=GRACE_S - 1)
    response = await rig.send(rig.request(key_index=6, zpk=ZPK_PREVIOUS))
    assert response[39] == "00"


async def test_previous_zpk_after_its_grace_is_63_and_no_try_is_counted(rig):
    """If the PIN block is under the previous ZPK after the grace period, then 63, and it is not counted
    as a wrong PIN."""
    rig.world.clock.current = NOW + timedelta(seconds=GRACE_S + 1)
    response = await rig.send(rig.request(key_index=6, zpk=ZPK_PREVIOUS))
    assert response[39] == "63"
    assert rig.world.directory.cards[PAN].pin_tries == 0


async def test_unknown_key_index_is_63(rig):
    """If field 53 names a key index the switch does not hold, then 63."""
    assert (await rig.send(rig.request(key_index=9)))[39] == "63"


async def test_lost_card_is_41(rig):
    """If the card is reported lost, then the network gets 41."""
    rig.world.directory.cards[PAN] = dataclasses.replace(rig.world.card, status=CardStatus.LOST)
    assert (await rig.send(rig.request()))[39] == "41"


async def test_track2_with_a_wrong_cvv_is_59(rig):
    """If the track 2 the network sends carries a CVV our keys did not make, then 59."""
    track = rig.world.track2().replace("=", "D")
    cloned = track[:-3] + ("000" if track[-3:] != "000" else "111")
    assert (await rig.send(rig.request(extra={35: cloned})))[39] == "59"


async def test_card_we_never_issued_is_14(rig):
    """If the card is not ours, then 14."""
    other = "9900010000000027"
    response = await rig.send(rig.request(pin=None, extra={35: f"{other}D30122011000000000"}))
    assert response[39] == "14"


async def test_amount_above_the_balance_is_51(rig):
    """If the purchase exceeds the cardholder's available balance, then 51 and nothing moves."""
    response = await rig.send(rig.request(amount=100_001))
    assert response[39] == "51"
    assert await rig.settlement() == 0


async def test_withdrawal_above_the_product_limit_is_61(rig):
    """If a network's withdrawal exceeds the product's per-transaction maximum, then 61."""
    response = await rig.send(rig.request(processing="010000", amount=50_001, extra={18: "6011"}))
    assert response[39] == "61"


async def test_withdrawal_at_a_network_atm_needs_a_pin(rig):
    """If a withdrawal at the network's ATM (MCC 6011) has no PIN block, then 55."""
    response = await rig.send(rig.request(processing="010000", pin=None, extra={18: "6011"}))
    assert response[39] == "55"


async def test_currency_not_the_cards_is_answered_with_the_networks_code(rig):
    """If the currency is not the card's, then the network's code for it (Visa's table: 12)."""
    rig.network = dataclasses.replace(rig.network, settlement_accounts={840: SETTLEMENT, 978: SETTLEMENT + 1})
    assert (await rig.send(rig.request(extra={49: "978"})))[39] == "12"


async def test_currency_the_network_does_not_settle_is_refused(rig):
    """If the network has no settlement account in the request's currency, then it is refused and
    nothing moves."""
    response = await rig.send(rig.request(extra={49: "978"}))
    assert response[39] == "12"
    assert await rig.world.available() == 100_000


async def test_transfer_from_a_network_is_not_served(rig):
    """If a network asks for a transfer between accounts, then 12: the contract has no such message."""
    assert (await rig.send(rig.request(processing="401020")))[39] == "12"


async def test_balance_inquiry_answers_balances(rig):
    """If a network asks for the balance with the PIN, then 54 carries ledger and available balances."""
    response = await rig.send(rig.request(processing="310000", amount=0))
    assert response[39] == "00" and response.get(54)


async def test_repeat_of_a_request_gets_the_first_answer_and_moves_money_once(rig):
    """If the network repeats a request (same MTI, 32, 7 and 11), then the same answer, applied once."""
    request = rig.request(amount=700)
    first = await rig.send(request)
    second = await rig.send(request)
    assert first[38] == second[38]
    assert await rig.settlement() == 700


async def test_preauthorization_holds_the_amount(rig):
    """If the network sends a 0100 pre-authorization, then the amount is held, not posted."""
    response = await rig.send(rig.request(mti="0100", amount=900))
    assert response.mti == "0110" and response[39] == "00"
    assert await rig.world.available() == 100_000 - 900
    assert await rig.settlement() == 0


# -- reversals and advices ------------------------------------------------------------------------------------


async def test_network_reversal_gives_the_money_back(rig):
    """If the network reverses an approved purchase (field 90 names it), then the money comes back."""
    original = rig.request(amount=1200)
    assert (await rig.send(original))[39] == "00"
    response = await rig.send(rig.reversal(original))
    assert response.mti == "0430" and response[39] == "00"
    assert await rig.world.available() == 100_000
    assert await rig.settlement() == 0


async def test_repeated_network_reversal_changes_nothing(rig):
    """If the reversal comes again as 0421, then it is acknowledged and the money moves once."""
    original = rig.request(amount=1200)
    await rig.send(original)
    reversal = rig.reversal(original)
    await rig.send(reversal)
    repeat = reversal.with_fields({}, mti="0421")
    assert (await rig.send(repeat))[39] == "00"
    assert await rig.world.available() == 100_000


async def test_reversal_of_an_unknown_original_is_acknowledged(rig):
    """If a reversal names an original the switch never saw, then 00 and nothing moves."""
    never = rig.request(amount=1200)
    assert (await rig.send(rig.reversal(never)))[39] == "00"
    assert await rig.world.available() == 100_000


async def test_partial_network_reversal_gives_back_the_difference(rig):
    """If the reversal carries field 95 (actual amount 400 of 1000), then 600 comes back."""
    original = rig.request(amount=1000)
    await rig.send(original)
    await rig.send(rig.reversal(original, actual=400))
    assert await rig.world.available() == 100_000 - 400


async def test_reversal_of_a_preauthorization_releases_the_hold(rig):
    """If the network reverses its 0100, then the hold is released."""
    original = rig.request(mti="0100", amount=900)
    await rig.send(original)
    await rig.send(rig.reversal(original))
    assert await rig.world.available() == 100_000


async def test_advice_is_booked_once(rig):
    """If the network advises a purchase it approved for us (0220, then its 0221 repeat), then the
    cardholder is debited once and both are acknowledged."""
    advice = rig.request(mti="0220", amount=800, pin=None)
    first = await rig.send(advice)
    repeat = await rig.send(advice.with_fields({}, mti="0221"))
    assert first.mti == "0230" and first[39] == "00" and repeat[39] == "00"
    assert await rig.world.available() == 100_000 - 800
    assert await rig.settlement() == 800


async def test_advice_beyond_the_funds_is_booked_to_suspense_and_acknowledged(rig):
    """If an advice exceeds the cardholder's funds, then it is acknowledged with 00 and booked from the
    advice suspense account to Visa's settlement account; the cardholder's balance is not touched."""
    response = await rig.send(rig.request(mti="0220", amount=200_000, pin=None))
    assert response.mti == "0230" and response[39] == "00"
    assert await rig.world.available() == 100_000
    assert await rig.settlement() == 200_000
    assert await rig.suspense() == 200_000


async def test_repeat_of_an_advice_booked_to_suspense_books_nothing_more(rig):
    """If the advice booked to suspense comes again as 0221, then it is acknowledged and booked once."""
    advice = rig.request(mti="0220", amount=200_000, pin=None)
    await rig.send(advice)
    assert (await rig.send(advice.with_fields({}, mti="0221")))[39] == "00"
    assert await rig.settlement() == 200_000 and await rig.suspense() == 200_000


async def test_repeat_of_an_advice_booked_to_suspense_stays_there_when_funds_came_meanwhile(rig):
    """If the cardholder's account could cover the advice by the time its 0221 comes, then the repeat still
    changes nothing: the advice is booked once, in suspense."""
    advice = rig.request(mti="0220", amount=150_000, pin=None)
    await rig.send(advice)
    await rig.top_up(100_000)
    assert (await rig.send(advice.with_fields({}, mti="0221")))[39] == "00"
    assert await rig.world.available() == 200_000
    assert await rig.settlement() == 150_000 and await rig.suspense() == 150_000


async def test_reversal_of_an_advice_booked_to_suspense_gives_it_back_from_suspense(rig):
    """If the network reverses an advice that went to suspense (field 2 the cardholder's PAN), then
    suspense and settlement are back to nothing and the cardholder is untouched."""
    advice = rig.request(mti="0220", amount=200_000, pin=None)
    await rig.send(advice)
    assert (await rig.send(rig.reversal(advice)))[39] == "00"
    assert await rig.settlement() == 0 and await rig.suspense() == 0
    assert await rig.world.available() == 100_000


async def _book_to_suspense_and_recover(rig: IssuerRig, amount: int = 150_000) -> Message:
    """An advice of `amount` booked to suspense, then funds, then the cardholder's payment of it (as
    `switchctl suspense recover` posts it)."""
    advice = rig.request(mti="0220", amount=amount, pin=None)
    await rig.send(advice)
    await rig.top_up(amount)
    advice_id = network_transfer_id("visa", acquirer="400001", transmission=advice[7], stan=advice[11])
    payment = Transfer(
        transfer_id=advice_recovery_id(advice_id),
        kind=TransferKind.POSTED,
        debit_account_id=CARDHOLDER,
        credit_account_id=SUSPENSE,
        amount=amount,
        currency=840,
    )
    assert await rig.world.ledger.create_transfers([payment]) == [TransferResult.OK]
    assert await rig.suspense() == 0 and await rig.world.available() == 100_000
    return advice


async def test_reversal_of_an_advice_the_cardholder_paid_gives_the_payment_back(rig):
    """If the cardholder paid an advice booked to suspense and the network then reverses the advice, then
    the payment goes back to the cardholder, suspense stays square, and a repeat gives nothing again."""
    advice = await _book_to_suspense_and_recover(rig)
    reversal = rig.reversal(advice)
    assert (await rig.send(reversal))[39] == "00"
    assert await rig.world.available() == 250_000
    assert await rig.suspense() == 0 and await rig.settlement() == 0
    assert (await rig.send(reversal.with_fields({}, mti="0421")))[39] == "00"
    assert await rig.world.available() == 250_000 and await rig.suspense() == 0


async def test_partial_reversal_of_a_paid_advice_gives_back_its_part(rig):
    """If the network reverses part of a paid advice (field 95: 100,000 of 150,000 stands), then 50,000
    goes back to the cardholder and to the network's side alike."""
    advice = await _book_to_suspense_and_recover(rig)
    await rig.send(rig.reversal(advice, actual=100_000))
    assert await rig.world.available() == 150_000
    assert await rig.suspense() == 0 and await rig.settlement() == 100_000


async def test_payment_committed_after_the_reversal_looked_is_still_given_back(rig):
    """If the cardholder's payment of the advice commits between the reversal's look and its batch (the
    look saw no payment), then the batch gives the payment back all the same."""
    advice = await _book_to_suspense_and_recover(rig)
    ledger = rig.world.ledger
    hidden = advice_recovery_id(
        network_transfer_id("visa", acquirer="400001", transmission=advice[7], stan=advice[11])
    )

    async def lookup_before_the_payment(ids):
        return {k: v for k, v in (await ModelLedger.lookup_transfers(ledger, ids)).items() if k != hidden}

    ledger.lookup_transfers = lookup_before_the_payment
    assert (await rig.send(rig.reversal(advice)))[39] == "00"
    assert await rig.world.available() == 250_000 and await rig.suspense() == 0


async def test_a_paid_advice_for_the_checking_account_is_given_back_to_that_account(rig):
    """If an advice for the card's checking account (field 3: from 20) goes to suspense, then its booking
    names that account; when the cardholder paid it from there and the payment commits after a network
    reversal looked, the reversal gives it back to that account (not to the card's first one)."""
    advice = rig.request(mti="0220", processing="002000", amount=5_000, pin=None)
    assert (await rig.send(advice))[39] == "00"
    advice_id = network_transfer_id("visa", acquirer="400001", transmission=advice[7], stan=advice[11])
    booked = (await rig.world.ledger.lookup_transfers([advice_id]))[advice_id]
    assert advice_suspense_account(booked.reference) == SAVINGS
    ledger = rig.world.ledger
    funds = Transfer(
        transfer_id="top-up:savings", kind=TransferKind.POSTED, debit_account_id=FUNDING,
        credit_account_id=SAVINGS, amount=5_000, currency=840,
    )  # fmt: skip
    payment = Transfer(
        transfer_id=advice_recovery_id(advice_id), kind=TransferKind.POSTED, debit_account_id=SAVINGS,
        credit_account_id=SUSPENSE, amount=5_000, currency=840,
    )  # fmt: skip
    assert await ledger.create_transfers([funds, payment]) == [TransferResult.OK, TransferResult.OK]

    async def lookup_before_the_payment(ids):
        found = await ModelLedger.lookup_transfers(ledger, ids)
        return {k: v for k, v in found.items() if k != payment.transfer_id}

    ledger.lookup_transfers = lookup_before_the_payment
    with structlog.testing.capture_logs() as logs:
        assert (await rig.send(rig.reversal(advice)))[39] == "00"
    assert not [e for e in logs if e["event"] == "advice recovery not given back"]
    assert await rig.world.available(SAVINGS) == 5_000 and await rig.suspense() == 0


async def test_advice_beyond_the_funds_without_a_suspense_account_is_answered_with_its_code():
    """If the network has no suspense account in the advice's currency, then an advice that exceeds the
    cardholder's funds is not booked and its 0230 says 51."""
    rig = IssuerRig(suspense=False)
    await rig.open()
    response = await rig.send(rig.request(mti="0220", amount=200_000, pin=None))
    assert response[39] == "51"
    assert await rig.settlement() == 0


async def test_advice_with_different_fields_under_a_taken_id_is_not_booked_to_suspense(rig):
    """If an advice reuses the identity (32, 7, 11) of a booked one with another amount, then it is
    refused as a duplicate and nothing more is booked, in suspense or anywhere."""
    advice = rig.request(mti="0220", amount=800, pin=None)
    await rig.send(advice)
    other = advice.with_fields({4: f"{900:012d}"}, mti="0221")
    assert (await rig.send(other))[39] != "00"
    assert await rig.settlement() == 800 and await rig.suspense() == 0


async def test_issuer_side_logs_no_card_data(rig):
    """If requests, a reversal, an advice booked to suspense and a refused advice are served, then no log
    line holds the PAN, the track or the PIN block."""
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        original = rig.request(amount=1000)
        await rig.send(original)
        await rig.send(rig.reversal(original))
        await rig.send(rig.request(mti="0220", amount=200_000, pin=None))
        unbooked = IssuerRig(suspense=False)
        await unbooked.open()
        await unbooked.send(unbooked.request(mti="0220", amount=200_000, pin=None))
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    text = stream.getvalue()
    assert "network advice booked to suspense" in text and "network advice not booked" in text
    assert PAN not in text and original[52] not in text and original[35] not in text


async def test_network_reversal_while_its_original_is_being_posted_reverses_it(rig):
    """If the network's reversal arrives while its original is still waiting for the ledger, then it
    waits for the original and gives the money back (not acknowledged as one of an unknown original)."""
    gated = GatedPostings(rig.world)
    original = rig.request(amount=1200)
    answers: dict[str, str] = {}

    async def send(name: str, request: Message) -> None:
        answers[name] = (await rig.send(request))[39]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send, "original", original)
        await gated.waiting.wait()
        nursery.start_soon(send, "reversal", rig.reversal(original))
        await trio.testing.wait_all_tasks_blocked()
        assert "reversal" not in answers
        gated.gate.set()
    assert answers == {"original": "00", "reversal": "00"}
    assert await rig.world.available() == 100_000
    assert await rig.settlement() == 0


async def test_network_original_after_its_reversal_is_refused(rig):
    """If the network's reversal comes before its original, then the original is declined (do not honor,
    in the network's code) and takes nothing from the cardholder."""
    original = rig.request(amount=1200)
    assert (await rig.send(rig.reversal(original)))[39] == "00"
    response = await rig.send(original)
    assert response[39] == "01"  # the first code of Visa's table for do-not-honor
    assert await rig.world.available() == 100_000
    assert await rig.settlement() == 0
