"""netsim's fault modes over real TCP: latency, no answer, late, duplicate, decline, reject, link drops.

Faults are set with PUT /faults while netsim runs (the start flags go through the same rules, see
tests/unit/netsim/test_cli_flags.py). Delays are a few hundred milliseconds so the file stays fast.
"""

from __future__ import annotations

import pytest
import trio

from specs.demo_networks import NETWORK_OPENING_BALANCE
from switch.iso.headers import CupsHeader, VisaHeader
from tests.integration.netsim.support import NETWORKS, balance, card, connected, http, running_netsim

PIN = "1234"


async def set_faults(netsim, **faults) -> None:
    status, body = await http(netsim, "PUT", "/faults", faults)
    assert status == 200, body


@pytest.mark.parametrize("name", NETWORKS)
async def test_latency_delays_every_answer(name):
    """If latency_ms is set, then an answer comes no sooner than that after its request."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        await set_faults(netsim, latency_ms=200)
        started = trio.current_time()
        response = await member.request(member.financial(card(name), pin=PIN))
        assert response.get(39) == "00"
        assert trio.current_time() - started >= 0.2


@pytest.mark.parametrize("name", NETWORKS)
async def test_no_answer_applies_the_request_but_sends_nothing(name):
    """If no_answer_share is 1, then the request is applied (the card is debited) and no answer comes."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        await set_faults(netsim, no_answer_share=1.0)
        pan = card(name, 32)
        original = member.financial(pan, amount_minor=600, pin=PIN)
        await member.send(original)
        assert await member.maybe_packet(0.3) is None
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE - 600
        await set_faults(netsim, no_answer_share=0.0)
        assert (await member.request(member.reversal(original))).get(39) == "00"
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE


@pytest.mark.parametrize("name", NETWORKS)
async def test_late_answer_comes_after_late_ms_and_does_not_hold_up_the_next(name):
    """If one answer is late, then it comes after late_ms, and a request sent meanwhile is answered first."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        await set_faults(netsim, late_share=1.0, late_ms=400)
        late = member.financial(card(name, 33), pin=PIN)
        started = trio.current_time()
        await member.send(late)
        await set_faults(netsim, late_share=0.0)
        prompt = member.financial(card(name, 34), pin=PIN)
        await member.send(prompt)
        first = await member.next_packet()
        second = await member.next_packet()
        assert (first.message[11], second.message[11]) == (prompt[11], late[11])
        assert trio.current_time() - started >= 0.4


@pytest.mark.parametrize("name", NETWORKS)
async def test_duplicate_sends_the_answer_twice(name):
    """If duplicate_share is 1, then the same answer arrives twice and the card is debited once."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        await set_faults(netsim, duplicate_share=1.0)
        pan = card(name, 35)
        request = member.financial(pan, amount_minor=300, pin=PIN)
        await member.send(request)
        first = await member.next_packet()
        second = await member.next_packet()
        assert first.message == second.message
        assert first.message.get(39) == "00"
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE - 300


@pytest.mark.parametrize("name", NETWORKS)
async def test_injected_decline_uses_decline_code_and_moves_nothing(name):
    """If decline_share is 1 with decline_code 62, then netsim answers 62 and the card keeps its balance."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        await set_faults(netsim, decline_share=1.0, decline_code="62")
        pan = card(name, 36)
        assert (await member.request(member.financial(pan, pin=PIN))).get(39) == "62"
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE


async def test_visa_reject_returns_the_request_under_a_reject_header():
    """If reject_share is 1 on Visa, then the request comes back under a 26-byte reject header with the original header."""
    async with running_netsim("visa") as netsim, connected(netsim) as member:
        await member.ready()
        await set_faults(netsim, reject_share=1.0)
        pan = card("visa", 37)
        request = member.financial(pan, pin=PIN)
        await member.send(request)
        packet = await member.next_packet()
        assert isinstance(packet.header, VisaHeader)
        assert packet.header.reject_code == "0001"
        assert packet.original_header == member.header
        assert packet.message.mti == "0200"
        assert packet.message[11] == request[11]
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE


async def test_cups_reject_sets_the_header_reject_code():
    """If reject_share is 1 on CUPS, then the request comes back with reject code 00001 in its header, unapplied."""
    async with running_netsim("cups") as netsim, connected(netsim) as member:
        await member.ready()
        await set_faults(netsim, reject_share=1.0)
        pan = card("cups", 38)
        await member.send(member.financial(pan, pin=PIN))
        packet = await member.next_packet()
        assert isinstance(packet.header, CupsHeader)
        assert packet.header.reject_code == "00001"
        assert packet.message.mti == "0200"
        assert await balance(netsim, pan) == NETWORK_OPENING_BALANCE


async def test_shetab_has_no_header_to_reject_with():
    """If reject_share is set on Shetab, then PUT /faults answers 400 and the faults stay as they were."""
    async with running_netsim("shetab") as netsim:
        status, body = await http(netsim, "PUT", "/faults", {"reject_share": 0.5, "latency_ms": 10})
        assert status == 400
        assert "header" in body["error"]
        assert netsim.faults.latency_ms == 0


@pytest.mark.parametrize("name", NETWORKS)
async def test_drop_after_closes_the_connection_after_n_messages(name):
    """If drop_after is 3, then netsim answers the third message on a connection and then closes it."""
    async with running_netsim(name) as netsim:
        await set_faults(netsim, drop_after=3)
        async with connected(netsim) as member:
            await member.ready()
            response = await member.request(member.management_message("echo"))
            assert response.get(39) == "00"
            with trio.fail_after(2):
                await member.closed.wait()
        _, body = await http(netsim, "GET", "/status")
        assert body["link"]["connections"] == []
        assert body["counters"]["drops"] == 1


@pytest.mark.parametrize("name", NETWORKS)
async def test_post_drop_closes_the_link_and_the_member_can_sign_on_again(name):
    """If POST /drop is called, then the member's connection closes and a new connection can sign on."""
    async with running_netsim(name) as netsim:
        async with connected(netsim) as member:
            await member.ready()
            status, body = await http(netsim, "POST", "/drop")
            assert (status, body) == (200, {"dropped": 1})
            with trio.fail_after(2):
                await member.closed.wait()
        async with connected(netsim) as member:
            assert (await member.sign_on()).get(39) == "00"
            assert (await http(netsim, "GET", "/status"))[1]["link"]["up"] is True
