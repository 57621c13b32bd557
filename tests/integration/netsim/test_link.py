"""netsim's link over real TCP, per network: sign-on, echo, sign-off, headers, key exchange, its faults."""

from __future__ import annotations

import pytest

from hsm.crypto.des import kcv_tdes
from simulators.netsim.keys import KeyExchangeError, parse_field48
from switch.iso.headers import CupsHeader, VisaHeader
from tests.integration.netsim.support import NETWORKS, Clock, card, connected, http, running_netsim

pytestmark = pytest.mark.parametrize("name", NETWORKS)


async def test_sign_on_is_answered_00_and_the_link_is_up(name):
    """If the member signs on, then netsim answers the dialect's management response with 00 and reports the link up."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        response = await member.sign_on()
        assert response.mti == {"visa": "0810", "cups": "0830", "shetab": "0810"}[name]
        assert response.get(39) == "00"
        assert response.get(70) == "001"
        assert response.get(11) == "000001"
        status, body = await http(netsim, "GET", "/status")
        assert status == 200
        assert body["link"]["up"] is True
        assert body["counters"]["sign_ons"] == 1


async def test_echo_is_answered_00(name):
    """If the member sends an echo, then netsim answers 00 with the echo's STAN and field 70."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        echo = member.management_message("echo")
        response = await member.request(echo)
        assert (response.get(39), response.get(70), response.get(11)) == ("00", "301", echo[11])


async def test_financial_request_before_sign_on_is_refused_with_91(name):
    """If a financial request arrives on a connection that has not signed on, then netsim answers 91 and applies nothing."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        response = await member.request(member.financial(card(name)))
        assert response.get(39) == "91"
        _, body = await http(netsim, "GET", "/position")
        assert body["currencies"] == {}


async def test_after_sign_off_financial_requests_are_refused_again(name):
    """If the member signs off, then netsim answers 00 and refuses the next financial request with 91."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.ready()
        assert (await member.request(member.management_message("sign_off"))).get(39) == "00"
        response = await member.request(member.financial(card(name), pin="1234"))
        assert response.get(39) == "91"


async def test_reply_headers_swap_the_addresses(name):
    """If the member sends with its header, then netsim's answer swaps source and destination (Visa stations, CUPS IDs)."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.send(member.management_message("sign_on"))
        packet = await member.next_packet()
        sent = member.header
        if sent is None:
            assert packet.header is None
            return
        assert isinstance(packet.header, (VisaHeader, CupsHeader))
        assert (packet.header.destination_id, packet.header.source_id) == (
            sent.source_id,
            sent.destination_id,
        )


async def test_key_exchange_answers_a_zpk_whose_check_value_verifies(name):
    """If the member asks for a key exchange, then field 48 holds index 01 and a ZPK under the ZMK matching its KCV."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.sign_on()
        response = await member.key_exchange()
        assert response.get(39) == "00"
        zone_key = parse_field48(response.get(48), member.zmk)
        assert zone_key.index == 1
        assert kcv_tdes(zone_key.key, 6) == response[48][-6:]
        _, body = await http(netsim, "GET", "/status")
        assert body["key"]["index"] == 1
        assert body["key"]["kcv"] == zone_key.kcv


async def test_each_key_exchange_brings_a_new_key_under_the_next_index(name):
    """If the member exchanges keys twice, then the second key has index 02 and differs from the first."""
    async with running_netsim(name) as netsim, connected(netsim) as member:
        await member.sign_on()
        first = parse_field48((await member.key_exchange()).get(48), member.zmk)
        second = parse_field48((await member.key_exchange()).get(48), member.zmk)
        assert (first.index, second.index) == (1, 2)
        assert first.key != second.key


async def test_keep_key_repeats_the_key_until_rekey(name):
    """If netsim runs with keep_key, then exchanges repeat the current key until POST /rekey asks for a new one."""
    async with running_netsim(name, keep_key=True) as netsim, connected(netsim) as member:
        await member.sign_on()
        first = parse_field48((await member.key_exchange()).get(48), member.zmk)
        again = parse_field48((await member.key_exchange()).get(48), member.zmk)
        assert (again.index, again.key) == (first.index, first.key)
        status, body = await http(netsim, "POST", "/rekey")
        assert (status, body) == (200, {"rekey_pending": True})
        new = parse_field48((await member.key_exchange()).get(48), member.zmk)
        assert new.index == 2


async def test_bad_kcv_answer_fails_verification_once_and_keeps_the_old_key(name):
    """If bad_kcv is set, then the next key exchange's check value is wrong, netsim keeps its old key, and the fault clears."""
    clock = Clock()
    async with running_netsim(name, monotonic=clock, key_grace_s=0.0) as netsim, connected(netsim) as member:
        await member.ready()
        old = member.current_key
        assert (await http(netsim, "PUT", "/faults", {"bad_kcv": True}))[0] == 200
        response = await member.request(member.management_message("key_exchange"))
        assert response.get(39) == "00"
        with pytest.raises(KeyExchangeError):
            parse_field48(response.get(48), member.zmk)
        clock.advance(1.0)
        # Grace 0: only the current key verifies, and it is still the old one.
        approved = await member.request(member.financial(card(name), pin="1234", key=old))
        assert approved.get(39) == "00"
        _, body = await http(netsim, "GET", "/status")
        assert body["faults"]["bad_kcv"] is False
        assert body["key"]["index"] == 1
        assert body["counters"]["bad_kcv_sent"] == 1
