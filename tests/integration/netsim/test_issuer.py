"""netsim as issuer over real TCP, per network: approvals and their ledger effect, each decline,
reversals, advices, pre-authorizations, and PIN blocks under the previous key within and after grace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from simulators.netsim.issuer import code_for, response_codes
from specs.demo_networks import NETWORK_OPENING_BALANCE, NETWORK_SPECIAL_CARDS
from tests.integration.netsim.support import NETWORKS, Clock, balance, card, connected, http, running_netsim

PIN = "1234"


def special(name: str, which: str) -> str:
    bin_index, number = NETWORK_SPECIAL_CARDS[which]
    return card(name, number, bin_index=bin_index)


async def position(netsim, currency: int | None = None) -> dict[str, int]:
    status, body = await http(netsim, "GET", "/position")
    assert status == 200
    code = f"{currency if currency is not None else netsim.network.currencies[0]:03d}"
    return body["currencies"].get(code, {"net_minor": 0})


@pytest.mark.parametrize("name", NETWORKS)
async def test_approval_debits_the_card_and_the_network_owes_the_member(name):
    """If a purchase with the right PIN is approved, then it carries an auth code, the card is debited and net_minor rises."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        pan = card(name, 7)
        response = await member.request(member.financial(pan, amount_minor=2500, pin=PIN))
        assert response.get(39) == "00"
        assert response.mti == "0210"
        assert len(response.get(38) or "") == 6
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE - 2500
        held = await position(netsim)
        assert (held["net_minor"], held["as_issuer_minor"]) == (2500, 2500)


@pytest.mark.parametrize("name", NETWORKS)
async def test_track2_only_request_is_approved(name):
    """If the member forwards track 2 (and for CUPS field 2 beside it), then netsim finds the card and approves."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        response = await member.request(member.financial(card(name, 8), track=True, pin=PIN))
        assert response.get(39) == "00"


@pytest.mark.parametrize("name", NETWORKS)
async def test_balance_inquiry_answers_field_54_and_moves_nothing(name):
    """If the member asks a balance, then netsim approves with ledger and available balances in field 54."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        pan = card(name, 9)
        response = await member.request(member.financial(pan, processing="310000", amount_minor=0, pin=PIN))
        assert response.get(39) == "00"
        ccy = f"{netsim.network.currencies[0]:03d}"
        group = f"{ccy}C{NETWORK_OPENING_BALANCE:012d}"
        assert response.get(54) == f"0001{group}0002{group}"
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE


DECLINES: dict[str, tuple[Callable[[str], str], dict[str, Any], str]] = {
    "unknown card": (lambda n: card(n, 999_999), {}, "14"),
    "not a network BIN": (lambda n: "4111111111111111", {}, "14"),
    "lost": (lambda n: special(n, "lost"), {}, "41"),
    "stolen": (lambda n: special(n, "stolen"), {}, "43"),
    "expired": (lambda n: special(n, "expired"), {"expiry": "2001"}, "54"),
    "insufficient funds": (lambda n: special(n, "insufficient_funds"), {}, "51"),
    "wrong PIN": (lambda n: card(n, 10), {"pin": "9999"}, "55"),
    "other PIN card with 1234": (lambda n: special(n, "other_pin"), {}, "55"),
    "amount over balance": (lambda n: card(n, 11), {"amount_minor": NETWORK_OPENING_BALANCE + 1}, "51"),
    "unsupported processing code": (lambda n: card(n, 12), {"processing": "400000"}, "12"),
    "zero amount": (lambda n: card(n, 13), {"amount_minor": 0}, "13"),
}


@pytest.mark.parametrize("case", sorted(DECLINES))
@pytest.mark.parametrize("name", NETWORKS)
async def test_each_decline_has_its_code_and_moves_no_money(name, case):
    """If a request fails one of the issuer's checks, then netsim answers that check's code and the position stays 0."""
    make_pan, options, code = DECLINES[case]
    arguments: dict[str, Any] = {"pin": PIN, **options}
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        response = await member.request(member.financial(make_pan(name), **arguments))
        assert response.get(39) == code
        assert 38 not in response
        assert (await position(netsim))["net_minor"] == 0


@pytest.mark.parametrize("name", ["visa", "cups"])
async def test_currency_the_network_does_not_carry_is_57(name):
    """If the request's currency is not one of the network's, then netsim declines 57."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        response = await member.request(member.financial(card(name), currency=364, pin=PIN))
        assert response.get(39) == "57"


async def test_shetab_currency_other_than_rial_is_a_format_error():
    """If a Shetab request is not in rials, then netsim answers 30, as the dialect fixes field 49 to 364."""
    async with running_netsim("shetab") as netsim, connected(netsim) as member:
        await member.ready()
        response = await member.request(member.financial(card("shetab"), currency=840, pin=PIN))
        assert response.get(39) == "30"


@pytest.mark.parametrize("name", NETWORKS)
async def test_missing_mandatory_field_is_30(name):
    """If a request lacks a field the dialect requires, then netsim answers 30 and applies nothing."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        request = member.financial(card(name), pin=PIN)
        response = await member.request(request.with_fields({41: None}))
        assert response.get(39) == "30"
        assert (await position(netsim))["net_minor"] == 0


async def test_three_wrong_pins_then_75_even_with_the_right_pin():
    """If the PIN is wrong three times in a row, then the next request is 75 whatever the PIN."""
    async with running_netsim("visa") as netsim, connected(netsim) as member:
        await member.ready()
        pan = card("visa", 14)
        codes = [(await member.request(member.financial(pan, pin="0000"))).get(39) for _ in range(3)]
        assert codes == ["55", "55", "55"]
        assert (await member.request(member.financial(pan, pin=PIN))).get(39) == "75"


async def test_unknown_key_index_in_field_53_is_63():
    """If field 53 names a key index netsim never issued, then the PIN is a security violation (63)."""
    async with running_netsim("visa") as netsim, connected(netsim) as member:
        await member.ready()
        request = member.financial(card("visa", 15), pin=PIN)
        response = await member.request(request.with_fields({53: "2001010700000000"}))
        assert response.get(39) == "63"


@pytest.mark.parametrize("name", NETWORKS)
async def test_pin_under_the_previous_key_verifies_within_the_grace_period(name):
    """If a PIN block arrives under the previous ZPK before its grace ends, then netsim verifies it and approves."""
    clock = Clock()
    async with (
        running_netsim(name, monotonic=clock, key_grace_s=300.0) as netsim,
        connected(netsim) as member,
    ):
        await member.ready()
        old = member.current_key
        await member.key_exchange()
        clock.advance(299.0)
        response = await member.request(member.financial(card(name, 16), pin=PIN, key=old))
        assert response.get(39) == "00"


@pytest.mark.parametrize("name", NETWORKS)
async def test_pin_under_the_previous_key_after_the_grace_period_is_63(name):
    """If a PIN block arrives under the previous ZPK after its grace, then netsim answers 63; the current key still works."""
    clock = Clock()
    async with (
        running_netsim(name, monotonic=clock, key_grace_s=300.0) as netsim,
        connected(netsim) as member,
    ):
        await member.ready()
        old = member.current_key
        await member.key_exchange()
        clock.advance(301.0)
        assert (await member.request(member.financial(card(name, 17), pin=PIN, key=old))).get(39) == "63"
        assert (await member.request(member.financial(card(name, 17), pin=PIN))).get(39) == "00"


@pytest.mark.parametrize("name", NETWORKS)
async def test_repeated_request_gets_the_first_answer_and_applies_once(name):
    """If the member sends the same request twice (same identity), then netsim answers the same and debits once."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        pan = card(name, 18)
        request = member.financial(pan, amount_minor=700, pin=PIN)
        first = await member.request(request)
        again = await member.request(request)
        assert first == again
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE - 700


@pytest.mark.parametrize("name", NETWORKS)
async def test_reversal_restores_the_balance_and_its_repeat_changes_nothing(name):
    """If the member reverses an approval, then the card gets the amount back once, a 0421 repeat is acked 00 and changes nothing."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        pan = card(name, 19)
        original = member.financial(pan, amount_minor=1500, pin=PIN)
        assert (await member.request(original)).get(39) == "00"
        first = member.reversal(original)
        answer = await member.request(first)
        assert (answer.mti, answer.get(39)) == ("0430", "00")
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE
        repeat = await member.request(member.reversal(original, mti="0421", same_stan_as=first))
        assert (repeat.mti, repeat.get(39)) == ("0430", "00")
        other = await member.request(member.reversal(original))
        assert other.get(39) == "00"
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE
        assert (await position(netsim))["net_minor"] == 0


@pytest.mark.parametrize("name", NETWORKS)
async def test_partial_reversal_gives_back_the_difference_of_field_95(name):
    """If a reversal carries field 95 with the amount really dispensed, then only the rest goes back to the card."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        pan = card(name, 20)
        original = member.financial(pan, amount_minor=10_000, processing="010000", pin=PIN)
        assert (await member.request(original)).get(39) == "00"
        assert (await member.request(member.reversal(original, actual_minor=4000))).get(39) == "00"
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE - 4000
        assert (await position(netsim))["net_minor"] == 4000


@pytest.mark.parametrize("name", NETWORKS)
async def test_reversal_of_an_unknown_original_is_acked_and_the_late_original_declined(name):
    """If a reversal names an original netsim never saw, then it is acked 00 and that original, arriving later, is not applied."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        pan = card(name, 21)
        original = member.financial(pan, amount_minor=900, pin=PIN)
        assert (await member.request(member.reversal(original))).get(39) == "00"
        late = await member.request(original)
        assert late.get(39) == code_for(response_codes(name), "do_not_honor")
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE


@pytest.mark.parametrize("name", NETWORKS)
async def test_advice_is_applied_once(name):
    """If the member sends a 0220 advice and then its 0221 repeat, then netsim acks both with 0230 00 and debits once."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        pan = card(name, 22)
        advice = member.financial(pan, mti="0220", amount_minor=1200)
        answer = await member.request(advice)
        assert (answer.mti, answer.get(39)) == ("0230", "00")
        repeat = await member.request(advice.with_fields(mti="0221"))
        assert (repeat.mti, repeat.get(39)) == ("0230", "00")
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE - 1200
        assert (await position(netsim))["net_minor"] == 1200


async def test_advice_is_applied_even_beyond_the_balance():
    """If an advice exceeds the card's balance, then it is applied all the same: the member already approved it."""
    async with running_netsim("visa") as netsim, connected(netsim) as member:
        await member.ready()
        pan = special("visa", "insufficient_funds")
        assert (await member.request(member.financial(pan, mti="0220", amount_minor=300))).get(39) == "00"
        assert await balance(netsim, pan) == -300


@pytest.mark.parametrize("name", NETWORKS)
async def test_preauthorization_holds_funds_outside_the_net_position_until_reversed(name):
    """If a 0100 is approved, then the available balance drops by a hold, net_minor stays 0, and a reversal releases it."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        pan = card(name, 23)
        preauth = member.financial(pan, mti="0100", amount_minor=5000, pin=PIN)
        answer = await member.request(preauth)
        assert (answer.mti, answer.get(39)) == ("0110", "00")
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE - 5000
        held = await position(netsim)
        assert (held["net_minor"], held["issuer_holds_minor"]) == (0, 5000)
        assert (await member.request(member.reversal(preauth))).get(39) == "00"
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE
        assert (await position(netsim))["issuer_holds_minor"] == 0


async def test_refund_credits_the_card_and_lowers_the_position():
    """If a refund is approved, then the card is credited and net_minor goes negative by its amount."""
    async with running_netsim("cups") as netsim, connected(netsim) as member:
        await member.ready()
        pan = card("cups", 24)
        assert (await member.request(member.financial(pan, processing="200000", amount_minor=800))).get(
            39
        ) == "00"
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE + 800
        assert (await position(netsim))["net_minor"] == -800
