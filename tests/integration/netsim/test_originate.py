"""POST /originate over real TCP: netsim as another bank's acquirer, the test's member answering as issuer.

The member's `answer` function is the switch's issuer side reduced to a rule: it checks what a real
issuer would (PIN under the ZPK field 53 names, track 2's CVV) and answers with a code the test picks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hsm.crypto.cvv import card_verification_value
from hsm.crypto.pinblock import decrypt_pin_block
from specs import demo
from switch.iso.codec import Codec
from switch.iso.message import Message
from switch.masking import mask_pan
from tests.integration.netsim.support import NETWORKS, Member, connected, http, running_netsim

FIRST_CARD = demo.demo_pan(demo.DEBIT_BIN, 1)


def issuer(
    member_ref: list[Member], *, code: str = "00", silent: Callable[[Message], bool] = lambda m: False
):
    """An answer function approving (or answering `code` to) every request netsim sends, unless `silent`."""
    counter = iter(range(1, 100_000))

    def answer(request: Message) -> Message | None:
        if silent(request):
            return None
        member = member_ref[0]
        updates = {38: f"Z{next(counter):05d}"} if code == "00" and request.mti[:2] != "04" else {}
        return member.codec.response(request, response_code=code, updates=updates)

    return answer


async def originate(netsim, **body) -> tuple[int, dict[str, Any]]:
    return await http(netsim, "POST", "/originate", body)


async def acquirer_position(netsim) -> dict[str, int]:
    _, body = await http(netsim, "GET", "/position")
    return body["currencies"].get("840", {"net_minor": 0, "as_acquirer_minor": 0})


def _currency(name: str) -> int:
    return 364 if name == "shetab" else 840


@pytest.mark.parametrize("name", NETWORKS)
async def test_originated_purchase_approved_by_the_member_is_owed_by_the_member(name):
    """If the member approves an originated purchase, then the result says so and net_minor falls by its amount."""
    ref: list[Member] = []
    async with running_netsim(name) as netsim, connected(netsim, answer=issuer(ref)) as member:
        ref.append(member)
        await member.ready()
        status, body = await originate(netsim, amount_minor=4200)
        assert status == 200, body
        [result] = body["results"]
        assert (result["approved"], result["response_code"], result["response_mti"]) == (True, "00", "0210")
        assert result["card"] == mask_pan(FIRST_CARD)
        assert result["auth_code"] == "Z00001"
        _, position = await http(netsim, "GET", "/position")
        held = position["currencies"][f"{_currency(name):03d}"]
        assert (held["as_acquirer_minor"], held["net_minor"]) == (4200, -4200)


@pytest.mark.parametrize("name", NETWORKS)
async def test_originated_request_names_the_network_and_the_member(name):
    """If netsim originates, then field 32 (and CUPS 33) is the network ID, 100 our acquirer ID, and the dialect's fields are all there."""
    ref: list[Member] = []
    async with running_netsim(name) as netsim, connected(netsim, answer=issuer(ref)) as member:
        ref.append(member)
        await member.ready()
        assert (await originate(netsim))[0] == 200
        [request] = member.requests
        assert request.mti == "0200"
        assert request.get(32) == netsim.network.network_id
        assert request.get(100) == netsim.network.acquirer_id
        if name == "cups":
            assert request.get(33) == netsim.network.network_id
        Codec(name).validate(request)


@pytest.mark.parametrize("name", NETWORKS)
async def test_originated_pin_block_is_under_the_zpk_field_53_names(name):
    """If netsim originates with the demo PIN, then field 52 decrypts to it under the ZPK of the index in field 53."""
    ref: list[Member] = []
    async with running_netsim(name) as netsim, connected(netsim, answer=issuer(ref)) as member:
        ref.append(member)
        await member.ready()
        await member.key_exchange()
        assert (await originate(netsim))[0] == 200
        [request] = member.requests
        index = int(request[53][6:8])
        assert index == 2
        pan = request.get(2) or request[35].replace("D", "=").split("=")[0]
        assert decrypt_pin_block(bytes.fromhex(request[52]), pan, 0, member.keys[index].key) == demo.DEMO_PIN


async def test_originated_track2_carries_the_cvv_the_card_bureau_wrote():
    """If netsim originates for a demo card, then its track 2 holds the CVV computed with the demo CVK."""
    ref: list[Member] = []
    async with running_netsim("shetab") as netsim, connected(netsim, answer=issuer(ref)) as member:
        ref.append(member)
        await member.ready()
        assert (await originate(netsim))[0] == 200
        track = member.requests[0][35]
        pan, rest = track.split("=")
        expiry, service = rest[:4], rest[4:7]
        expected = card_verification_value(bytes.fromhex(demo.DEMO_CVK_HEX), pan, expiry, service)
        assert (pan, rest[-3:]) == (FIRST_CARD, expected)


async def test_stale_key_fault_originates_under_the_previous_key():
    """If stale_key is set, then originated PIN blocks are under the previous ZPK and field 53 names its index."""
    ref: list[Member] = []
    async with running_netsim("visa") as netsim, connected(netsim, answer=issuer(ref)) as member:
        ref.append(member)
        await member.ready()
        await member.key_exchange()
        assert (await http(netsim, "PUT", "/faults", {"stale_key": True}))[0] == 200
        _, body = await originate(netsim)
        assert body["results"][0]["pin_key_index"] == 1
        request = member.requests[0]
        pan = request[35].split("D")[0]
        assert decrypt_pin_block(bytes.fromhex(request[52]), pan, 0, member.keys[1].key) == demo.DEMO_PIN


async def test_reverse_true_sends_a_reversal_and_the_position_returns_to_zero():
    """If the body asks reverse, then each approved request is followed by a 0420 naming it, and net_minor ends at 0."""
    ref: list[Member] = []
    async with running_netsim("visa") as netsim, connected(netsim, answer=issuer(ref)) as member:
        ref.append(member)
        await member.ready()
        _, body = await originate(netsim, amount_minor=1000, reverse=True)
        [result] = body["results"]
        assert result["reversal"]["response_code"] == "00"
        original, reversal = member.requests
        assert reversal.mti == "0420"
        assert reversal[90][:20] == original.mti + original[11] + original[7]
        assert (await acquirer_position(netsim))["net_minor"] == 0


async def test_unanswered_request_is_reversed_by_the_acquirer():
    """If the member does not answer in time, then the result is timed_out and netsim sends a 0420 for it."""
    ref: list[Member] = []
    silent = issuer(ref, silent=lambda m: m.mti == "0200")
    async with running_netsim("cups") as netsim, connected(netsim, answer=silent) as member:
        ref.append(member)
        await member.ready()
        _, body = await originate(netsim, timeout_s=0.3)
        [result] = body["results"]
        assert result["timed_out"] is True
        assert result["reversal"]["response_code"] == "00"
        assert [m.mti for m in member.requests] == ["0200", "0420"]
        assert (await acquirer_position(netsim))["net_minor"] == 0


async def test_unanswered_reversal_is_repeated_as_0421():
    """If the member answers neither the request nor its reversal, then netsim repeats the reversal as 0421 with the same STAN."""
    ref: list[Member] = []
    async with (
        running_netsim("visa") as netsim,
        connected(netsim, answer=issuer(ref, silent=lambda m: True)) as member,
    ):
        ref.append(member)
        await member.ready()
        _, body = await originate(netsim, timeout_s=0.1)
        assert body["results"][0]["reversal"]["timed_out"] is True
        mtis = [m.mti for m in member.requests]
        assert mtis == ["0200", "0420", "0421", "0421"]
        assert len({m[11] for m in member.requests[1:]}) == 1


async def test_advice_acknowledged_by_the_member_is_owed_by_the_member():
    """If the member acknowledges an originated 0220 advice, then no PIN went with it and net_minor falls
    by its amount, as for an approved purchase."""
    ref: list[Member] = []
    async with running_netsim("visa") as netsim, connected(netsim, answer=issuer(ref)) as member:
        ref.append(member)
        await member.ready()
        await member.key_exchange()
        status, body = await originate(netsim, mti="0220", amount_minor=3300)
        assert status == 200, body
        [result] = body["results"]
        assert (result["response_mti"], result["approved"], result["pin_key_index"]) == ("0230", True, None)
        [advice] = member.requests
        assert advice.mti == "0220" and 52 not in advice
        assert (await acquirer_position(netsim))["net_minor"] == -3300


async def test_unanswered_advice_is_repeated_as_0221_and_never_reversed():
    """If the member does not answer an advice, then netsim repeats it as 0221 with the same STAN and time,
    sends no reversal, and counts nothing in its position."""
    ref: list[Member] = []
    async with (
        running_netsim("visa") as netsim,
        connected(netsim, answer=issuer(ref, silent=lambda m: True)) as member,
    ):
        ref.append(member)
        await member.ready()
        _, body = await originate(netsim, mti="0220", timeout_s=0.1)
        [result] = body["results"]
        assert result["timed_out"] is True and "reversal" not in result
        assert [m.mti for m in member.requests] == ["0220", "0221", "0221"]
        assert len({(m[11], m[7]) for m in member.requests}) == 1
        assert (await acquirer_position(netsim))["net_minor"] == 0


async def test_0420_by_original_stan_reverses_an_earlier_request():
    """If the body asks mti 0420 with an earlier request's STAN, then netsim reverses that request once."""
    ref: list[Member] = []
    async with running_netsim("shetab") as netsim, connected(netsim, answer=issuer(ref)) as member:
        ref.append(member)
        await member.ready()
        _, body = await originate(netsim, amount_minor=5000)
        stan = body["results"][0]["stan"]
        status, body = await originate(netsim, mti="0420", original_stan=stan, actual_amount_minor=1000)
        assert status == 200
        assert body["results"][0]["response_code"] == "00"
        assert member.requests[1].mti == "0420"
        assert member.requests[1][95][:12] == "000000001000"
        _, position = await http(netsim, "GET", "/position")
        assert position["currencies"]["364"]["as_acquirer_minor"] == 1000


async def test_0420_of_an_unknown_original_stan_is_400():
    """If the body names an original STAN netsim did not originate, then it answers 400 and sends nothing."""
    ref: list[Member] = []
    async with running_netsim("visa") as netsim, connected(netsim, answer=issuer(ref)) as member:
        ref.append(member)
        await member.ready()
        status, body = await originate(netsim, mti="0420", original_stan="999999")
        assert status == 400
        assert "original_stan" in body["error"]
        assert member.requests == []


async def test_declined_by_the_member_moves_no_position():
    """If the member declines an originated request, then the result carries its code and net_minor stays 0."""
    ref: list[Member] = []
    async with running_netsim("visa") as netsim, connected(netsim, answer=issuer(ref, code="51")) as member:
        ref.append(member)
        await member.ready()
        _, body = await originate(netsim, count=2)
        assert [r["response_code"] for r in body["results"]] == ["51", "51"]
        assert len({r["stan"] for r in body["results"]}) == 2
        assert (await acquirer_position(netsim))["net_minor"] == 0


async def test_preauthorization_is_a_hold_outside_the_net_position():
    """If netsim originates a 0100 that the member approves, then it counts as an acquirer hold, not in net_minor."""
    ref: list[Member] = []
    async with running_netsim("visa") as netsim, connected(netsim, answer=issuer(ref)) as member:
        ref.append(member)
        await member.ready()
        _, body = await originate(netsim, mti="0100", amount_minor=2000)
        assert body["results"][0]["response_mti"] == "0110"
        held = await acquirer_position(netsim)
        assert (held["net_minor"], held["acquirer_holds_minor"]) == (0, 2000)


async def test_pin_before_any_key_exchange_is_409():
    """If no key exchange has happened, then originating with a PIN answers 409 and sends nothing."""
    ref: list[Member] = []
    async with running_netsim("cups") as netsim, connected(netsim, answer=issuer(ref)) as member:
        ref.append(member)
        await member.sign_on()
        status, body = await originate(netsim)
        assert status == 409
        assert "key exchange" in body["error"]
        assert member.requests == []


async def test_without_a_signed_on_member_originate_is_409():
    """If no member connection is signed on, then POST /originate answers 409."""
    async with running_netsim("visa") as netsim:
        status, body = await originate(netsim)
        assert status == 409
        assert "link is down" in body["error"]
