"""netsim's HTTP control API over real TCP: status, faults, balances, and the errors it answers."""

from __future__ import annotations

import pytest
import trio

from simulators.netsim import Faults
from tests.integration.netsim.support import card, connected, http, running_netsim


async def test_status_reports_network_key_faults_and_counters():
    """If GET /status is asked after some traffic, then it names the network, its key index and counts the messages."""
    async with running_netsim("cups") as netsim, connected(netsim) as member:
        await member.ready()
        await member.request(member.financial(card("cups", 40), pin="1234"))
        status, body = await http(netsim, "GET", "/status")
        assert status == 200
        assert (body["network"], body["dialect"]) == ("cups", "cups")
        assert body["key"]["index"] == 1
        assert body["faults"]["latency_ms"] == 0
        assert body["counters"]["in_0200"] == 1
        assert body["counters"]["out_0210"] == 1
        assert body["counters"]["approved"] == 1
        [connection] = body["link"]["connections"]
        assert connection["signed_on"] is True


async def test_put_faults_changes_only_the_keys_given():
    """If PUT /faults sends a subset of keys, then those change and the others keep their values."""
    async with running_netsim("visa", faults=Faults(latency_ms=5)) as netsim:
        status, body = await http(netsim, "PUT", "/faults", {"late_share": 0.25, "late_ms": 100})
        assert status == 200
        assert (body["faults"]["late_share"], body["faults"]["late_ms"], body["faults"]["latency_ms"]) == (
            0.25,
            100,
            5,
        )


BAD_FAULTS: dict[str, tuple[dict[str, object], str]] = {
    "unknown key": ({"latency": 5}, "unknown fault key"),
    "share above 1": ({"no_answer_share": 1.5}, "no_answer_share"),
    "negative latency": ({"latency_ms": -1}, "latency_ms"),
    "boolean as a number": ({"latency_ms": True}, "latency_ms"),
    "text share": ({"late_share": "half"}, "late_share"),
    "approval as decline code": ({"decline_code": "00"}, "decline_code"),
    "drop after zero": ({"drop_after": 0}, "drop_after"),
    "flag as number": ({"stale_key": 1}, "stale_key"),
}


@pytest.mark.parametrize("case", sorted(BAD_FAULTS))
async def test_bad_fault_setting_is_400_naming_the_key_and_changes_nothing(case):
    """If PUT /faults holds a bad key or value, then netsim answers 400 naming it and no fault changes."""
    body, named = BAD_FAULTS[case]
    async with running_netsim("visa") as netsim:
        status, answer = await http(netsim, "PUT", "/faults", {"duplicate_share": 0.5, **body})
        assert status == 400
        assert named in answer["error"]
        assert netsim.faults.duplicate_share == 0.0


@pytest.mark.parametrize("path", ["/faults", "/originate"])
async def test_invalid_json_is_400(path):
    """If a body is not JSON, then netsim answers 400 saying so."""
    async with running_netsim("visa") as netsim:
        method = "PUT" if path == "/faults" else "POST"
        status, body = await http(netsim, method, path, raw=b'{"latency_ms": ')
        assert status == 400
        assert "not valid JSON" in body["error"]


async def test_json_that_is_not_an_object_is_400():
    """If a body is JSON but not an object, then netsim answers 400."""
    async with running_netsim("visa") as netsim:
        status, body = await http(netsim, "PUT", "/faults", [1, 2])
        assert (status, body["error"]) == (400, "body must be a JSON object")


BAD_ORIGINATE = {
    "unknown key": {"amount": 5},
    "count zero": {"count": 0},
    "count too large": {"count": 100_000},
    "pan with letters": {"pan": "4111x"},
    "pin too short": {"pin": "12"},
    "mti not supported": {"mti": "0800"},
    "0420 without original": {"mti": "0420"},
    "original on a 0200": {"original_stan": "000001"},
    "negative amount": {"amount_minor": -1},
    "type unknown": {"type": "transfer"},
    "timeout zero": {"timeout_s": 0},
}


@pytest.mark.parametrize("case", sorted(BAD_ORIGINATE))
async def test_bad_originate_body_is_400(case):
    """If POST /originate has a bad key or value, then netsim answers 400 before looking at the link."""
    async with running_netsim("visa") as netsim:
        status, body = await http(netsim, "POST", "/originate", BAD_ORIGINATE[case])
        assert status == 400, body
        assert body["error"]


async def test_error_messages_do_not_repeat_a_card_number():
    """If a bad originate body holds a card number, then the 400's message does not contain it."""
    pan = "4761739001010010"
    async with running_netsim("visa") as netsim:
        status, body = await http(netsim, "POST", "/originate", {"pan": pan + "9999"})
        assert status == 400
        assert "pan" in body["error"]
        assert pan[:10] not in body["error"]


async def test_unknown_path_is_404_and_wrong_method_405():
    """If a path is unknown, then netsim answers 404; a known path with another method gets 405."""
    async with running_netsim("visa") as netsim:
        assert (await http(netsim, "GET", "/nothing"))[0] == 404
        assert (await http(netsim, "POST", "/status"))[0] == 405
        assert (await http(netsim, "GET", "/faults"))[0] == 405


async def test_balance_of_a_card_the_network_does_not_issue_is_400():
    """If POST /balance names a card outside the network's base, then netsim answers 400."""
    async with running_netsim("shetab") as netsim:
        status, body = await http(netsim, "POST", "/balance", {"pan": card("visa", 1)})
        assert status == 400
        assert "card base" in body["error"]


async def test_incomplete_request_times_out_without_blocking_others():
    """If a client sends half a request, then other control requests are still answered."""
    async with running_netsim("visa") as netsim:
        assert netsim.ready is not None
        stream = await trio.open_tcp_stream("127.0.0.1", netsim.ready.control_port)
        async with stream:
            await stream.send_all(b"GET /status HTTP/1.1\r\n")
            assert (await http(netsim, "GET", "/status"))[0] == 200
