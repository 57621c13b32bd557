"""Interbank faults across a restart of switchd: reversals still in store-and-forward when switchd stops
are delivered by the switchd started again on the same database, once, for every network; and zone keys
renewed on a live link.

One set of processes for the module (three netsims, switchd); a restart test stops the module's switchd
(SIGTERM: it must drain and exit 0) and starts another on its database, which the later tests use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from simulators.messages import demo_card
from tests.e2e.interbank import (
    NETWORK_NAMES,
    Books,
    FixtureBody,
    Netsim,
    counter_deltas,
    currency_of,
    network_card,
    reset_faults,
    restart_switchd,
    start_interbank,
    terminal_for,
    transact_during,
    wait_counter,
    wait_until_linked,
)
from tests.e2e.support import Switchd, assert_no_card_data_logged, connect, purchase, sql
from tests.fixtures.pg import PgServer

DEADLINE_MS = 1500
KEY_EXCHANGE_INTERVAL_S = 2.0


def module_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for name in NETWORK_NAMES:
        settings[f"SWITCH_NETWORKS_{name.upper()}_DEADLINE_MS"] = str(DEADLINE_MS)
        settings[f"SWITCH_NETWORKS_{name.upper()}_KEY_EXCHANGE_INTERVAL_S"] = str(KEY_EXCHANGE_INTERVAL_S)
    return settings


@dataclass
class World:
    """The module's processes; `restart` replaces `switchd` with a new process on the same database."""

    switchd: Switchd
    netsims: dict[str, Netsim]
    var_dir: Path
    stack: ExitStack
    stopped: list[Switchd] = field(default_factory=list)

    async def restart(self) -> None:
        old = self.switchd
        self.switchd = await restart_switchd(self.stack, old, self.var_dir, self.netsims, **module_settings())
        self.stopped.append(old)


@pytest.fixture(scope="module")
def world(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    var_dir = tmp_path_factory.mktemp("interbank-restart")
    with ExitStack() as stack:
        switchd, netsims = stack.enter_context(
            FixtureBody(start_interbank(pg_server, var_dir, **module_settings()))
        )
        yield World(switchd=switchd, netsims=netsims, var_dir=var_dir, stack=stack)


@pytest.fixture
async def linked(world: World) -> AsyncIterator[World]:
    await wait_until_linked(world.netsims, switchd=world.switchd)
    try:
        yield world
    finally:
        await reset_faults(world.netsims)


async def undelivered_reversals(switchd: Switchd) -> dict[str, dict[str, Any]]:
    """Network -> its reversal still in store-and-forward (queued or in flight)."""
    rows = await sql(
        switchd.dsn,
        "SELECT network, state, attempts, mti FROM saf_queue WHERE kind = 'reversal' "
        "AND state IN ('queued', 'in_flight')",
    )
    return {r["network"]: dict(r) for r in rows}


async def reversal_states(switchd: Switchd) -> dict[str, tuple[str, int]]:
    """Network -> (state, attempts) of its reversals, for the module's newest entry of each network."""
    rows = await sql(
        switchd.dsn,
        "SELECT DISTINCT ON (network) network, state, attempts FROM saf_queue WHERE kind = 'reversal' "
        "ORDER BY network, entry_id DESC",
    )
    return {r["network"]: (r["state"], r["attempts"]) for r in rows}


async def time_out_purchases(world: World, index: int, *, then: dict[str, object], drop: bool) -> None:
    """A purchase on every network at once that netsim never answers (it is applied there): once netsim
    has it, its faults become `then` (and the link is dropped if `drop`). Each terminal gets 91."""
    codes: dict[str, str | None] = {}

    async def one(name: str) -> None:
        sim = world.netsims[name]
        before = (await sim.status())["counters"].get("no_answer", 0)
        await sim.faults(no_answer_share=1)

        async def once_netsim_has_it() -> None:
            await wait_counter(sim, "no_answer", before + 1)
            await sim.faults(**then)
            if drop:
                await sim.drop()

        card = demo_card(network_card(name, index))
        async with connect(world.switchd, terminal_for(name)) as terminal:
            result = await transact_during(terminal, purchase(1900), card, once_netsim_has_it)
        codes[name] = result.response_code

    async with trio.open_nursery() as nursery:
        for name in NETWORK_NAMES:
            nursery.start_soon(one, name)
    assert codes == dict.fromkeys(NETWORK_NAMES, "91")


async def test_zone_keys_are_renewed_on_a_live_link(linked):
    """If key_exchange_interval_s passes while a link is up, then the switch asks the network for a new
    ZPK on that same connection (no new sign-on) and installs it."""
    world = linked
    before = {name: await sim.status() for name, sim in world.netsims.items()}
    for name, sim in world.netsims.items():
        after = await wait_counter(
            sim,
            "key_exchanges",
            before[name]["counters"]["key_exchanges"] + 1,
            timeout_s=KEY_EXCHANGE_INTERVAL_S * 5,
        )
        assert counter_deltas(before[name], after, "sign_ons") == {"sign_ons": 0}, name
        assert after["key"]["index"] != before[name]["key"]["index"], name
    await wait_until_linked(world.netsims, switchd=world.switchd)  # and the switch installed them


async def test_reversals_never_sent_before_a_restart_are_delivered_once_after_it(linked):
    """If the links fail while purchases wait (their reversals queued) and cannot carry anything until
    switchd stops, then the switchd started again on the same database delivers each network its
    reversal once: every cardholder has the money back and the books agree."""
    world = linked
    sims = world.netsims
    pans = {name: network_card(name, 201) for name in NETWORK_NAMES}
    books = {name: await Books.open(world.switchd, sim, currency_of(name)) for name, sim in sims.items()}
    balances = {name: await sim.balance(pans[name], currency_of(name)) for name, sim in sims.items()}
    before = {name: await sim.status() for name, sim in sims.items()}
    # netsim closes each connection after the sign-on: the reversals cannot get through.
    await time_out_purchases(world, 201, then={"no_answer_share": 0, "drop_after": 1}, drop=True)
    # Queued before the terminals heard 91.
    assert sorted(await undelivered_reversals(world.switchd)) == sorted(NETWORK_NAMES)
    await world.restart()  # the reversals wait in the database meanwhile
    await reset_faults(sims)
    for name, sim in sims.items():
        await books[name].assert_agree(moved=0)
        deltas = counter_deltas(before[name], await sim.status(), "reversal_applied", "reversal_repeat")
        assert deltas == {"reversal_applied": 1, "reversal_repeat": 0}, name
        assert await sim.balance(pans[name], currency_of(name)) == balances[name], name
    assert {n: s for n, (s, _) in (await reversal_states(world.switchd)).items()} == dict.fromkeys(
        NETWORK_NAMES, "acknowledged"
    )


async def test_reversals_unacknowledged_at_a_restart_are_repeated_and_applied_once(linked):
    """If a network applies the reversal of a timed-out purchase but its acknowledgement is lost, and
    switchd stops before a repeat is acknowledged, then the switchd started again repeats it (0421) until
    acknowledged, and the network applies it once: cardholders have their money back, the books agree."""
    world = linked
    sims = world.netsims
    pans = {name: network_card(name, 202) for name in NETWORK_NAMES}
    books = {name: await Books.open(world.switchd, sim, currency_of(name)) for name, sim in sims.items()}
    balances = {name: await sim.balance(pans[name], currency_of(name)) for name, sim in sims.items()}
    before = {name: await sim.status() for name, sim in sims.items()}
    # netsim keeps answering nothing: the reversals reach it after the deadline, unacknowledged.
    await time_out_purchases(world, 202, then={}, drop=False)
    for name, sim in sims.items():
        await wait_counter(sim, "reversal_applied", before[name]["counters"].get("reversal_applied", 0) + 1)
    await world.restart()
    await reset_faults(sims)
    for name, sim in sims.items():
        await books[name].assert_agree(moved=0)
        after = await sim.status()
        deltas = counter_deltas(before[name], after, "reversal_applied", "in_0420")
        assert deltas == {"reversal_applied": 1, "in_0420": 1}, name
        assert counter_deltas(before[name], after, "reversal_repeat")["reversal_repeat"] >= 1, name
        assert await sim.balance(pans[name], currency_of(name)) == balances[name], name
    states = await reversal_states(world.switchd)
    assert all(state == "acknowledged" and attempts >= 2 for state, attempts in states.values()), states


def test_no_card_data_in_the_output_of_either_switchd(world):
    """If switchd ran before and after its restarts, then neither process printed the card data the
    terminals sent."""
    processes = [*world.stopped, world.switchd]
    sent = [message for process in processes for message in process.sent]
    for process in processes:
        process.sent = sent  # a terminal records what it sent on the process it talked to
        assert_no_card_data_logged(process)
