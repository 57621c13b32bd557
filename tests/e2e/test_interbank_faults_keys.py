"""Zone key exchange end to end, per network, with the grace period in both directions: a PIN block under
the key before the last exchange is accepted for a while, then refused.

- Issuer side (the network's acquirer sends for our cards): netsim's `stale_key` fault puts its PIN
  blocks under its previous key; switchd accepts them for `key_grace_s` after it installed the new key.
- Acquirer side (switchd sends for the network's cards): the switch sends under its current key, so it
  is behind only while the answer to an exchange is on its way and the network has already made the new
  key current; netsim's answer latency stretches that moment, and netsim's `--key-grace-s` decides.

One set of processes for the module, with short grace periods on both sides and no periodic exchange
(a rekey is a link drop: the new sign-on exchanges keys).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
import trio

from simulators.messages import TerminalIdentity, demo_card
from specs import demo
from specs.demo_networks import network
from specs.visa import NETWORK_MANAGEMENT as VISA_MANAGEMENT
from switch.iso.codec import Codec, Packet
from switch.iso.headers import VisaHeader
from switch.iso.message import Message
from tests.e2e.interbank import (
    NETWORK_NAMES,
    Books,
    Netsim,
    currency_of,
    network_card,
    our_available,
    our_card,
    reset_faults,
    start_interbank,
    switch_key_index,
    terminal_for,
    wait_until_linked,
)
from tests.e2e.support import (
    Switchd,
    assert_no_card_data_logged,
    connect,
    metrics_text,
    pos,
    purchase,
    sql,
    wait_for_log,
)
from tests.fixtures.pg import PgServer

per_network = pytest.mark.parametrize("name", NETWORK_NAMES)
SWITCH_GRACE_S = 2.5  # switchd accepts the network's previous key this long after installing a new one
NETSIM_GRACE_S = 1.0  # netsim accepts the switch's previous key this long after making a new one current
ANSWER_LATENCY_MS = 2500  # longer than netsim's grace, shorter than the deadline
DEADLINE_MS = 4000


@pytest.fixture(scope="module")
def interbank(
    pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Switchd, dict[str, Netsim]]]:
    settings: dict[str, str] = {}
    for name in NETWORK_NAMES:
        settings[f"SWITCH_NETWORKS_{name.upper()}_KEY_GRACE_S"] = str(SWITCH_GRACE_S)
        settings[f"SWITCH_NETWORKS_{name.upper()}_KEY_EXCHANGE_INTERVAL_S"] = "0"
        settings[f"SWITCH_NETWORKS_{name.upper()}_DEADLINE_MS"] = str(DEADLINE_MS)
    yield from start_interbank(
        pg_server,
        tmp_path_factory.mktemp("interbank-keys"),
        "--key-grace-s",
        str(NETSIM_GRACE_S),
        **settings,
    )


@pytest.fixture
async def linked(
    interbank: tuple[Switchd, dict[str, Netsim]],
) -> AsyncIterator[tuple[Switchd, dict[str, Netsim]]]:
    switchd, netsims = interbank
    await wait_until_linked(netsims, switchd=switchd)
    try:
        yield switchd, netsims
    finally:
        await reset_faults(netsims)
        await wait_until_linked(netsims, switchd=switchd)


def second_terminal(name: str) -> TerminalIdentity:
    """Another terminal of the network's currency (two connections of one terminal share its keys)."""
    if currency_of(name) == demo.RIAL_CURRENCY:
        return TerminalIdentity(
            terminal_id=demo.RIAL_POS_TERMINALS[1],
            merchant_id=demo.RIAL_MERCHANT_ID,
            currency=demo.RIAL_CURRENCY,
        )
    return pos(45)


async def key_index(sim: Netsim) -> int:
    index = (await sim.status())["key"]["index"]
    assert index is not None
    return int(index)


async def wait_key_changed(sim: Netsim, old: int, timeout_s: float = 20) -> int:
    """Until netsim has made a key other than `old` current (it does so on the exchange's arrival)."""
    with trio.fail_after(timeout_s):
        while True:
            index = await key_index(sim)
            if index != old:
                return index
            await trio.sleep(0.02)


async def rekey(switchd: Switchd, sim: Netsim) -> int:
    """A key exchange now (the link dropped: the new sign-on exchanges keys), once both sides hold the new
    key; the index of the key before."""
    old = await key_index(sim)
    await sim.drop()
    await wait_key_changed(sim, old)
    await wait_until_linked({sim.name: sim}, switchd=switchd)
    return old


async def wait_switch_grace_over(switchd: Switchd, name: str) -> None:
    """Until key_grace_s has passed since the switch installed its current key for the network."""
    with trio.fail_after(SWITCH_GRACE_S + 10):
        while True:
            [row] = await sql(
                switchd.dsn,
                "SELECT now() - current_installed_at > make_interval(secs => $2) AS over "
                "FROM network_keys WHERE network = $1",
                name,
                SWITCH_GRACE_S + 0.1,
            )
            if row["over"]:
                return
            await trio.sleep(0.05)


async def wait_netsim_grace_over(sim: Netsim) -> None:
    """Until netsim no longer accepts its previous key."""
    with trio.fail_after(NETSIM_GRACE_S + 10):
        while True:
            if (await sim.status())["key"]["previous_accepted_for_s"] == 0:
                return
            await trio.sleep(0.02)


async def wait_metric_above(switchd: Switchd, sample: str, value: float, timeout_s: float = 20) -> None:
    with trio.fail_after(timeout_s):
        while True:
            if await metric_value(switchd, sample) > value:
                return
            await trio.sleep(0.05)


async def metric_value(switchd: Switchd, sample: str) -> float:
    for line in (await metrics_text(switchd)).splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- issuer side: the network's PIN blocks ----------------------------------------------------------------


@per_network
async def test_network_pin_under_the_previous_key_is_accepted_within_grace_then_refused(linked, name):
    """If the network's acquirer sends our cardholder's PIN under the key before the last exchange, then
    the switch verifies it within key_grace_s of the exchange, and answers 63 (nothing booked) after it;
    under the current key the card still works."""
    switchd, netsims = linked
    sim, pan = netsims[name], our_card(name, 11)
    before = await our_available(switchd, pan)
    old = await rekey(switchd, sim)
    await sim.faults(stale_key=True)
    [within] = await sim.originate(pan=pan, amount_minor=1200)
    await wait_switch_grace_over(switchd, name)
    [after] = await sim.originate(pan=pan, amount_minor=1300)
    await sim.faults(stale_key=False)
    [current] = await sim.originate(pan=pan, amount_minor=1400)
    assert [r["pin_key_index"] for r in (within, after)] == [old, old]
    assert [r["response_code"] for r in (within, after, current)] == ["00", "63", "00"]
    assert await our_available(switchd, pan) == before - 1200 - 1400


# -- acquirer side: the switch's PIN blocks ----------------------------------------------------------------


@per_network
async def test_switch_pin_under_the_previous_key_is_accepted_by_the_network_within_its_grace(linked, name):
    """If the network has made a new key current while its answer to the exchange is still on the way, then
    the switch's PIN blocks (still under the key before) are approved within the network's grace period
    and refused 63 after it; once the answer is in, the switch sends under the new key and is approved."""
    switchd, netsims = linked
    sim, currency = netsims[name], currency_of(name)
    card = demo_card(network_card(name, 51))
    books = await Books.open(switchd, sim, currency)
    codes: dict[str, str | None] = {}
    async with (
        connect(switchd, terminal_for(name)) as first,
        connect(switchd, second_terminal(name)) as second,
    ):
        old = await key_index(sim)
        await sim.faults(latency_ms=ANSWER_LATENCY_MS)  # every answer, the key exchange's too
        await sim.drop()

        async def buy(terminal, label: str) -> None:
            codes[label] = (await terminal.transact(purchase(1700), card)).response_code

        async with trio.open_nursery() as nursery:
            await wait_key_changed(sim, old)
            nursery.start_soon(buy, first, "within")
            await wait_netsim_grace_over(sim)
            assert await switch_key_index(switchd, name) == old  # its answer is still on the way
            nursery.start_soon(buy, second, "after")
        await sim.faults(latency_ms=0)
        await wait_until_linked({name: sim}, switchd=switchd)
        codes["new key"] = (await first.transact(purchase(1700), card)).response_code
    assert codes == {"within": "00", "after": "63", "new key": "00"}
    await books.assert_agree(moved=2 * 1700)


@per_network
async def test_key_exchange_with_a_wrong_check_value_keeps_the_old_key(linked, name):
    """If the network's key exchange answer has a wrong check value, then the switch does not use that key
    (counted as kcv_mismatch), both sides stay on the key before, and PIN purchases go on under it."""
    switchd, netsims = linked
    sim = netsims[name]
    old = await key_index(sim)
    sample = f'switch_network_key_exchanges_total{{network="{name}",outcome="kcv_mismatch"}}'
    mismatches = await metric_value(switchd, sample)
    await sim.faults(bad_kcv=True)
    await sim.drop()
    await wait_metric_above(switchd, sample, mismatches)
    assert (await key_index(sim), await switch_key_index(switchd, name)) == (old, old)
    async with connect(switchd, terminal_for(name)) as terminal:
        assert (await terminal.transact(purchase(1600), demo_card(network_card(name, 52)))).approved


async def rotate_key_as_another_member(sim: Netsim) -> None:
    """Sign on to Visa's netsim as another member and exchange keys there: netsim makes a new ZPK current
    (one per network), which the switch has not seen."""
    profile = network("visa")
    codec = Codec("visa")
    header = VisaHeader(destination_id=profile.station_id, source_id=profile.our_station_id)
    stream = await trio.open_tcp_stream("127.0.0.1", sim.link_port)
    async with stream:
        framer = codec.framer(frame_bytes_max=8192)
        for stan, code in (
            ("900001", VISA_MANAGEMENT["sign_on"]),
            ("900002", VISA_MANAGEMENT["key_exchange"]),
        ):
            now = datetime.now(UTC).strftime("%m%d%H%M%S")
            await stream.send_all(codec.encode_frame(Message("0800", {7: now, 11: stan, 70: code}), header))
            with trio.fail_after(10):
                while (payload := framer.next_frame()) is None:
                    framer.receive_data(await stream.receive_some(8192))
            packet = codec.decode_payload(payload)
            assert isinstance(packet, Packet) and packet.message.get(39) == "00"


async def test_network_refusing_our_key_brings_a_new_key_exchange(linked):
    """If the network's current key is one the switch does not have (another member's exchange made it
    current, and netsim's grace for ours is over), then a PIN purchase gets the network's 63, the switch
    exchanges keys at once because of it, and the next PIN purchase is approved under the new key."""
    switchd, netsims = linked
    sim = netsims["visa"]
    card = demo_card(network_card("visa", 53))
    old = await key_index(sim)
    await rotate_key_as_another_member(sim)
    await wait_key_changed(sim, old)
    await wait_netsim_grace_over(sim)
    sample = 'switch_network_key_exchanges_total{network="visa",outcome="installed"}'
    installed = await metric_value(switchd, sample)
    async with connect(switchd, terminal_for("visa")) as terminal:
        refused = await terminal.transact(purchase(1800), card)
        assert refused.response_code == "63"
        await wait_metric_above(switchd, sample, installed)
        assert (await terminal.transact(purchase(1800), card)).approved
    assert await switch_key_index(switchd, "visa") == await key_index(sim)
    await wait_for_log(switchd, lambda e: e.get("event") == "network refused our zone PIN key")


def test_no_card_data_in_switchd_log(interbank):
    """If the module's key scenarios ran, then no PAN, track 2 or PIN block a terminal sent is in switchd's
    output, nor our cards the networks brought."""
    switchd, _ = interbank
    assert_no_card_data_logged(switchd)
    text = "".join(switchd.output.lines)
    assert not [name for name in NETWORK_NAMES if our_card(name, 11) in text]
