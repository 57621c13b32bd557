"""Interbank faults end to end, per network: real `netsim` processes whose fault modes a test changes
while they run (PUT /faults, POST /drop), a real `switchd run --demo` linked to them, terminals over TCP.

What the issue asks of every fault: the terminal's answer, what reached the network (netsim's counters),
and, once store-and-forward has drained, both sides' books (the switch's settlement account for the
network and netsim's /position moved by the same amount) and the cardholder's balance. Restarts of
switchd and the key grace period have modules of their own (test_interbank_faults_restart.py,
test_interbank_faults_keys.py).

One set of processes for the module, with a short deadline and echo interval. Each test uses cards of
its own and leaves netsim without faults, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import trio

from simulators.messages import TransactionRequest, TxnType, demo_card
from switch.pipeline.forward import network_settlement_account_id
from tests.e2e.interbank import (
    NETWORK_NAMES,
    Books,
    Netsim,
    counter_deltas,
    currency_of,
    journal_route,
    last_saf_entry_id,
    network_card,
    our_available,
    our_card,
    reset_faults,
    saf_entries_since,
    settlement_debit_balance,
    start_interbank,
    terminal_for,
    transact_during,
    wait_counter,
    wait_saf_drained,
    wait_switch_link,
    wait_until_linked,
)
from tests.e2e.support import (
    Switchd,
    assert_no_card_data_logged,
    connect,
    metrics_text,
    original_of,
    purchase,
    switchctl_runner,
    wait_for_log,
)
from tests.fixtures.pg import PgServer, rows_locked

per_network = pytest.mark.parametrize("name", NETWORK_NAMES)
DEADLINE_MS = 1500
LATE_MS = 2500  # a late answer comes this long after the request: past the deadline
ECHO_IDLE_S = 1.0
STANDIN_MAX = 5_000  # the demo stand-in rules: 50.00 per transaction, 100.00 and 3 per card per day
STANDIN_DAILY_MAX = 10_000
STANDIN_DAILY_COUNT = 3


@pytest.fixture(scope="module")
def interbank(
    pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Switchd, dict[str, Netsim]]]:
    settings: dict[str, str] = {}
    for name in NETWORK_NAMES:
        settings[f"SWITCH_NETWORKS_{name.upper()}_DEADLINE_MS"] = str(DEADLINE_MS)
        settings[f"SWITCH_NETWORKS_{name.upper()}_ECHO_IDLE_S"] = str(ECHO_IDLE_S)
    yield from start_interbank(pg_server, tmp_path_factory.mktemp("interbank-faults"), **settings)


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


def no_pin(amount: int) -> TransactionRequest:
    """A purchase without PIN: the only kind stand-in may approve."""
    return purchase(amount, pin=None)


async def metric_value(switchd: Switchd, prefix: str) -> float:
    """The value of the one sample line of /metrics that starts with `prefix` (0 if there is none)."""
    for line in (await metrics_text(switchd)).splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@asynccontextmanager
async def link_down(switchd: Switchd, sim: Netsim) -> AsyncIterator[None]:
    """The network's link down for the block: netsim answers nothing in time (sign-ons included) and
    drops the connection, so the switch cannot sign on; afterwards it answers again and the link is up."""
    await sim.faults(latency_ms=60_000)
    await sim.drop()
    await wait_switch_link(switchd, sim.name, up=False)
    try:
        yield
    finally:
        await sim.faults(latency_ms=0)
        await wait_switch_link(switchd, sim.name, up=True)


# -- timeouts -------------------------------------------------------------------------------------------------


@per_network
async def test_timeout_is_91_and_one_reversal_is_applied_on_the_network(linked, name):
    """If the network never answers a purchase, then the terminal gets 91 at the deadline and exactly one
    0420 reaches the network, which gives its cardholder the money back; the books agree."""
    switchd, netsims = linked
    sim, pan, currency = netsims[name], network_card(name, 101), currency_of(name)
    books = await Books.open(switchd, sim, currency)
    balance = await sim.balance(pan, currency)
    before, queued = await sim.status(), await last_saf_entry_id(switchd)
    await sim.faults(no_answer_share=1)

    async def once_netsim_has_it() -> None:
        await wait_counter(sim, "no_answer", before["counters"].get("no_answer", 0) + 1)
        await sim.faults(no_answer_share=0)  # the purchase stays unanswered; the reversal is answered

    async with connect(switchd, terminal_for(name)) as terminal:
        result = await transact_during(terminal, purchase(2100), demo_card(pan), once_netsim_has_it)
    assert result.response_code == "91"
    assert result.latency_ms >= DEADLINE_MS * 0.9
    await books.assert_agree(moved=0)
    deltas = counter_deltas(before, await sim.status(), "in_0420", "in_0421", "reversal_applied")
    assert deltas == {"in_0420": 1, "in_0421": 0, "reversal_applied": 1}
    assert await sim.balance(pan, currency) == balance
    [entry] = await saf_entries_since(switchd, queued, name)
    assert (entry["kind"], entry["state"], entry["attempts"]) == ("reversal", "acknowledged", 1)


@per_network
async def test_late_approval_after_the_timeout_is_reversed(linked, name):
    """If the network's approval arrives after the deadline, then the terminal has had 91, the late
    approval finds its reversal queued already, and the network is left with one reversal applied and
    its cardholder's money back."""
    switchd, netsims = linked
    sim, pan, currency = netsims[name], network_card(name, 102), currency_of(name)
    books = await Books.open(switchd, sim, currency)
    balance = await sim.balance(pan, currency)
    before = await sim.status()
    await sim.faults(late_share=1, late_ms=LATE_MS)

    async def once_netsim_has_it() -> None:
        await wait_counter(sim, "late", before["counters"].get("late", 0) + 1)
        await sim.faults(late_share=0)  # only the purchase is late

    async with connect(switchd, terminal_for(name)) as terminal:
        result = await transact_during(terminal, purchase(2200), demo_card(pan), once_netsim_has_it)
    assert result.response_code == "91"
    line = await wait_for_log(
        switchd,
        lambda e: (
            e.get("event") == "late network approval reversed"
            and e.get("network") == name
            and e.get("rrn") == result.rrn
        ),
    )
    assert line["reversal_queued_now"] is False  # the timeout had queued it: one reversal, not two
    await books.assert_agree(moved=0)
    deltas = counter_deltas(before, await sim.status(), "approved", "in_0420", "in_0421", "reversal_applied")
    assert deltas == {"approved": 1, "in_0420": 1, "in_0421": 0, "reversal_applied": 1}
    assert await sim.balance(pan, currency) == balance


@per_network
async def test_reversal_that_overtakes_its_forwarded_purchase_reaches_the_network(linked, name):
    """If the terminal reverses a purchase the network has not answered yet, then the reversal is answered
    after the purchase and then reaches the network, which gives its cardholder the money back; it is not
    acknowledged as one of an unknown original while the network then keeps the money. The books agree."""
    switchd, netsims = linked
    sim, pan, currency = netsims[name], network_card(name, 106), currency_of(name)
    books = await Books.open(switchd, sim, currency)
    balance = await sim.balance(pan, currency)
    before = await sim.status()
    await sim.faults(latency_ms=600)  # well within the deadline: the purchase is approved
    card = demo_card(pan)
    answers: dict[str, str | None] = {}
    async with connect(switchd, terminal_for(name)) as terminal:
        sale = terminal.build(purchase(2600), card)
        original = original_of(sale)

        async def purchase_then_answer() -> None:
            answers["purchase"] = (await terminal.send(sale))[39]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(purchase_then_answer)
            await wait_counter(sim, "in_0200", before["counters"].get("in_0200", 0) + 1)
            reversal = await terminal.transact(TransactionRequest(TxnType.REVERSAL, original=original), card)
            answers["reversal"] = reversal.response_code
            assert "purchase" in answers  # the reversal was answered after its purchase
    assert answers == {"purchase": "00", "reversal": "00"}
    await books.assert_agree(moved=0)
    deltas = counter_deltas(before, await sim.status(), "approved", "in_0420", "reversal_applied")
    assert deltas == {"approved": 1, "in_0420": 1, "reversal_applied": 1}
    assert await sim.balance(pan, currency) == balance


@per_network
async def test_purchase_that_comes_after_its_reversal_is_declined_and_reversed_at_the_network(linked, name):
    """If the terminal's reversal reaches the switch before its purchase, then the reversal is 00; the
    purchase, when it comes, is approved by the network but refused by the switch's ledger (its id was
    barred by the reversal): the terminal gets 05 and the network one 0420 that gives its cardholder the
    money back. The books agree."""
    switchd, netsims = linked
    sim, pan, currency = netsims[name], network_card(name, 107), currency_of(name)
    books = await Books.open(switchd, sim, currency)
    balance = await sim.balance(pan, currency)
    before = await sim.status()
    card = demo_card(pan)
    async with connect(switchd, terminal_for(name)) as terminal:
        sale = terminal.build(purchase(2700), card)
        original = original_of(sale)
        reversal = await terminal.transact(TransactionRequest(TxnType.REVERSAL, original=original), card)
        assert reversal.response_code == "00"
        assert (await terminal.send(sale))[39] == "05"
    await books.assert_agree(moved=0)
    deltas = counter_deltas(before, await sim.status(), "approved", "in_0420", "reversal_applied")
    assert deltas == {"approved": 1, "in_0420": 1, "reversal_applied": 1}
    assert await sim.balance(pan, currency) == balance


# -- the link -----------------------------------------------------------------------------------------------


@per_network
async def test_link_drop_is_followed_by_reconnect_and_a_new_sign_on(linked, name):
    """If the network drops the link, then the switch reconnects and signs on again (netsim counts one
    more sign-on), and the next purchase is approved and booked on both sides."""
    switchd, netsims = linked
    sim, pan, currency = netsims[name], network_card(name, 103), currency_of(name)
    books = await Books.open(switchd, sim, currency)
    before = await sim.status()
    reconnects = await metric_value(switchd, f'switch_network_reconnects_total{{network="{name}"}}')
    assert await sim.drop() >= 1
    await wait_counter(sim, "sign_ons", before["counters"]["sign_ons"] + 1)
    await wait_until_linked({name: sim}, switchd=switchd)
    await wait_switch_link(switchd, name, up=True)
    async with connect(switchd, terminal_for(name)) as terminal:
        assert (await terminal.transact(purchase(2300), demo_card(pan))).approved
    await books.assert_agree(moved=2300)
    assert await metric_value(switchd, f'switch_network_reconnects_total{{network="{name}"}}') > reconnects


@per_network
async def test_link_drop_while_a_purchase_waits_is_91_at_once_and_reversed(linked, name):
    """If the link drops while a purchase waits for its answer, then the terminal gets 91 without waiting
    for the deadline, and the reversal reaches the network once the link is back."""
    switchd, netsims = linked
    sim, pan, currency = netsims[name], network_card(name, 104), currency_of(name)
    books = await Books.open(switchd, sim, currency)
    balance = await sim.balance(pan, currency)
    before = await sim.status()
    await sim.faults(no_answer_share=1)

    async def drop_once_netsim_has_it() -> None:
        await wait_counter(sim, "no_answer", before["counters"].get("no_answer", 0) + 1)
        await sim.faults(no_answer_share=0)
        await sim.drop()

    async with connect(switchd, terminal_for(name)) as terminal:
        result = await transact_during(terminal, purchase(2400), demo_card(pan), drop_once_netsim_has_it)
    assert result.response_code == "91"
    assert result.latency_ms < DEADLINE_MS
    await books.assert_agree(moved=0)
    deltas = counter_deltas(before, await sim.status(), "in_0420", "reversal_applied")
    assert deltas == {"in_0420": 1, "reversal_applied": 1}
    assert await sim.balance(pan, currency) == balance


@per_network
async def test_idle_link_is_kept_alive_by_echoes(linked, name):
    """If the link carries nothing for echo_idle_s, then the switch sends an echo (0800, 301), netsim
    answers it, and the link stays up."""
    switchd, netsims = linked
    sim = netsims[name]
    before = await sim.status()
    after = await wait_counter(
        sim, "echoes", before["counters"].get("echoes", 0) + 1, timeout_s=ECHO_IDLE_S * 5
    )
    assert after["link"]["up"]
    assert counter_deltas(before, after, "sign_ons") == {"sign_ons": 0}  # the same connection
    await wait_switch_link(switchd, name, up=True)


# -- stand-in -----------------------------------------------------------------------------------------------


@per_network
async def test_standin_when_the_network_is_late_then_reversal_and_advice(linked, name):
    """If the network does not answer a purchase without PIN within the stand-in limits, then the switch
    approves it itself (route <network>:standin), and the network gets the reversal of what it was sent,
    then the advice: its cardholder pays once, and the books agree."""
    switchd, netsims = linked
    sim, pan, currency = netsims[name], network_card(name, 105), currency_of(name)
    books = await Books.open(switchd, sim, currency)
    balance = await sim.balance(pan, currency)
    before, queued = await sim.status(), await last_saf_entry_id(switchd)
    await sim.faults(no_answer_share=1)

    async def once_netsim_has_it() -> None:
        await wait_counter(sim, "no_answer", before["counters"].get("no_answer", 0) + 1)
        await sim.faults(no_answer_share=0)

    async with connect(switchd, terminal_for(name)) as terminal:
        result = await transact_during(terminal, no_pin(3000), demo_card(pan), once_netsim_has_it)
    assert result.approved and result.auth_code, result
    assert await journal_route(switchd, result.rrn) == f"{name}:standin"
    await books.assert_agree(moved=3000)
    entries = await saf_entries_since(switchd, queued, name)
    assert [(e["kind"], e["mti"], e["state"]) for e in entries] == [
        ("reversal", "0420", "acknowledged"),
        ("advice", "0220", "acknowledged"),
    ]
    deltas = counter_deltas(before, await sim.status(), "reversal_applied", "advice_applied")
    assert deltas == {"reversal_applied": 1, "advice_applied": 1}
    assert await sim.balance(pan, currency) == balance - 3000


async def test_standin_while_the_link_is_down_advice_delivered_when_back(linked):
    """If the link is down, then a purchase without PIN within the limits is approved by stand-in with
    nothing sent, and its advice reaches the network once the link is back (Visa)."""
    switchd, netsims = linked
    sim, pan, currency = netsims["visa"], network_card("visa", 106), currency_of("visa")
    books = await Books.open(switchd, sim, currency)
    balance = await sim.balance(pan, currency)
    before, queued = await sim.status(), await last_saf_entry_id(switchd)
    async with link_down(switchd, sim):
        async with connect(switchd, terminal_for("visa")) as terminal:
            result = await terminal.transact(no_pin(4000), demo_card(pan))
        assert result.approved, result
        [entry] = await saf_entries_since(switchd, queued, "visa")
        assert (entry["kind"], entry["state"]) == ("advice", "queued")
    assert await journal_route(switchd, result.rrn) == "visa:standin"
    await books.assert_agree(moved=4000)
    deltas = counter_deltas(before, await sim.status(), "in_0200", "in_0220", "advice_applied")
    assert deltas == {"in_0200": 0, "in_0220": 1, "advice_applied": 1}
    assert await sim.balance(pan, currency) == balance - 4000


async def test_standin_daily_amount_per_card_refuses_beyond_it(linked):
    """If stand-ins for one card reach the daily amount (100.00), then the next is refused 91, while
    another card is still stood in for; the network gets the advices of the approved ones only (Visa)."""
    switchd, netsims = linked
    sim, currency = netsims["visa"], currency_of("visa")
    card, other = demo_card(network_card("visa", 107)), demo_card(network_card("visa", 108))
    books = await Books.open(switchd, sim, currency)
    async with link_down(switchd, sim), connect(switchd, terminal_for("visa")) as terminal:
        codes = [(await terminal.transact(no_pin(STANDIN_MAX), card)).response_code for _ in range(2)]
        codes.append((await terminal.transact(no_pin(100), card)).response_code)
        codes.append((await terminal.transact(no_pin(100), other)).response_code)
    assert codes == ["00", "00", "91", "00"]
    await books.assert_agree(moved=STANDIN_DAILY_MAX + 100)


async def test_standin_daily_count_per_card_refuses_beyond_it(linked):
    """If a card has had three stand-ins today, then the fourth is refused 91 however small (Visa)."""
    switchd, netsims = linked
    sim, currency = netsims["visa"], currency_of("visa")
    card = demo_card(network_card("visa", 109))
    books = await Books.open(switchd, sim, currency)
    async with link_down(switchd, sim), connect(switchd, terminal_for("visa")) as terminal:
        codes = [
            (await terminal.transact(no_pin(500), card)).response_code for _ in range(STANDIN_DAILY_COUNT + 1)
        ]
    assert codes == ["00"] * STANDIN_DAILY_COUNT + ["91"]
    await books.assert_agree(moved=500 * STANDIN_DAILY_COUNT)


async def test_no_standin_above_the_per_transaction_maximum_or_with_a_pin(linked):
    """If the link is down, then a purchase above 50.00 or one with a PIN is refused 91, not stood in
    for, and nothing is queued for the network (Visa)."""
    switchd, netsims = linked
    pan = network_card("visa", 110)
    queued = await last_saf_entry_id(switchd)
    async with link_down(switchd, netsims["visa"]), connect(switchd, terminal_for("visa")) as terminal:
        above = await terminal.transact(no_pin(STANDIN_MAX + 1), demo_card(pan))
        with_pin = await terminal.transact(purchase(1000), demo_card(pan))
    assert (above.response_code, with_pin.response_code) == ("91", "91")
    assert await saf_entries_since(switchd, queued, "visa") == []


# -- routes -------------------------------------------------------------------------------------------------


async def test_route_change_takes_effect_without_restart(linked, monkeypatch, capsys, tmp_path):
    """If an operator excludes Visa for a card range, then its next purchase is 15 and Visa sees nothing;
    forced to CUPS it goes there; once the rules are removed it is Visa's again, all without a restart."""
    switchd, netsims = linked
    switchctl = switchctl_runner(switchd, monkeypatch, capsys, tmp_path)
    pan = network_card("visa", 111)
    scope = pan[:12]  # this card's neighbours only: the other tests' cards keep their route
    card = demo_card(pan)
    visa_before, cups_before = await netsims["visa"].status(), await netsims["cups"].status()
    rules: list[str] = []
    try:
        async with connect(switchd, terminal_for("visa")) as terminal:
            first = await terminal.transact(purchase(1100), card)
            out = await switchctl("routes", "add", "exclude", "visa", "--bins", scope, "--note", "e2e")
            rules += re.findall(r"rule #(\d+)", out)
            excluded = await terminal.transact(purchase(1100), card)
            out = await switchctl("routes", "add", "force", "cups", "--bins", scope, "--note", "e2e")
            rules += re.findall(r"rule #(\d+)", out)
            forced = await terminal.transact(purchase(1100), card)
            for rule in rules:
                await switchctl("routes", "remove", "rule", rule)
            rules.clear()
            again = await terminal.transact(purchase(1100), card)
    finally:
        for rule in rules:
            await switchctl("routes", "remove", "rule", rule)
    assert [r.response_code for r in (first, excluded, forced, again)] == ["00", "15", "14", "00"]
    assert [await journal_route(switchd, r.rrn) for r in (first, forced, again)] == ["visa", "cups", "visa"]
    visa = counter_deltas(visa_before, await netsims["visa"].status(), "in_0200")
    cups = counter_deltas(cups_before, await netsims["cups"].status(), "in_0200")
    assert (visa, cups) == ({"in_0200": 2}, {"in_0200": 1})  # CUPS does not issue the card: 14


# -- issuer side: what the first module does not cover ---------------------------------------------------------


@per_network
async def test_network_preauthorization_holds_and_its_reversal_releases(linked, name):
    """If a network's acquirer pre-authorizes on our card (0100), then the amount is held on our
    cardholder's account, and its reversal releases the hold; no posted money moves on either side."""
    switchd, netsims = linked
    sim, pan = netsims[name], our_card(name, 41)
    books = await Books.open(switchd, sim, currency_of(name))
    before = await our_available(switchd, pan)
    [held] = await sim.originate(pan=pan, mti="0100", amount_minor=6100)
    assert held["approved"] and held["response_mti"] == "0110", held
    assert await our_available(switchd, pan) == before - 6100
    [reversal] = await sim.originate(mti="0420", original_stan=held["stan"])
    assert reversal["response_code"] == "00"
    assert await our_available(switchd, pan) == before
    await books.assert_agree(moved=0)


@per_network
async def test_network_partial_reversal_gives_back_what_was_not_done(linked, name):
    """If a network's acquirer reverses a purchase of 50.00 down to 20.00 (field 95), then our cardholder
    pays 20.00, and both books say we owe the network 20.00."""
    switchd, netsims = linked
    sim, pan = netsims[name], our_card(name, 42)
    books = await Books.open(switchd, sim, currency_of(name))
    before = await our_available(switchd, pan)
    [result] = await sim.originate(pan=pan, amount_minor=5000, reverse=True, actual_amount_minor=2000)
    assert result["approved"] and result["reversal"]["response_code"] == "00", result
    assert await our_available(switchd, pan) == before - 2000
    await books.assert_agree(moved=-2000)


@per_network
async def test_network_refund_credits_our_cardholder(linked, name):
    """If a network's acquirer refunds to our card, then our cardholder gets the money and the network
    owes it to us: both books move by the refund."""
    switchd, netsims = linked
    sim, pan = netsims[name], our_card(name, 43)
    books = await Books.open(switchd, sim, currency_of(name))
    before = await our_available(switchd, pan)
    [result] = await sim.originate(pan=pan, type="refund", amount_minor=1500)
    assert result["approved"], result
    assert await our_available(switchd, pan) == before + 1500
    await books.assert_agree(moved=1500)


@per_network
async def test_network_advice_is_booked_on_our_cardholder(linked, name):
    """If a network advises an approval it made for our card (0220: it stood in for us), then the switch
    acknowledges it (0230), debits our cardholder without asking for a PIN, and both books move by it."""
    switchd, netsims = linked
    sim, pan = netsims[name], our_card(name, 45)
    books = await Books.open(switchd, sim, currency_of(name))
    before = await our_available(switchd, pan)
    [advice] = await sim.originate(pan=pan, mti="0220", amount_minor=3400)
    assert (advice["response_mti"], advice["response_code"], advice["pin_key_index"]) == ("0230", "00", None)
    assert await our_available(switchd, pan) == before - 3400
    assert await journal_route(switchd, advice["rrn"], mti="0220") == f"issuer:{name}"
    await books.assert_agree(moved=-3400)


@per_network
async def test_network_reversal_of_its_advice_gives_the_money_back(linked, name):
    """If a network reverses its advice (0420 naming the 0220 in field 90), then our cardholder has the
    money back and neither book holds it."""
    switchd, netsims = linked
    sim, pan = netsims[name], our_card(name, 46)
    books = await Books.open(switchd, sim, currency_of(name))
    before = await our_available(switchd, pan)
    [advice] = await sim.originate(pan=pan, mti="0220", amount_minor=3500, reverse=True)
    assert advice["approved"] and advice["reversal"]["response_code"] == "00", advice
    assert await our_available(switchd, pan) == before
    await books.assert_agree(moved=0)


@per_network
async def test_network_reversal_repeats_are_applied_once(linked, name):
    """If a network's acquirer gives up waiting for our answer to its reversal and repeats it (0421),
    then our cardholder gets the money back once, and a later reversal of it changes nothing."""
    switchd, netsims = linked
    sim, pan = netsims[name], our_card(name, 44)
    books = await Books.open(switchd, sim, currency_of(name))
    before = await our_available(switchd, pan)
    status = await sim.status()
    [sale] = await sim.originate(pan=pan, amount_minor=2700)
    assert sale["approved"], sale
    # The network's settlement account row is held by another transaction, so the switch cannot book the
    # reversal yet: netsim's 0420 times out on its side, and it repeats it as 0421 (three attempts at
    # most, 0.3 s each). (Waiting 1 ms for a quick answer instead was not enough on a busy machine.)
    settlement_row = "SELECT id FROM ledger_accounts WHERE id = $1 FOR UPDATE"
    settlement_id = network_settlement_account_id(name, currency_of(name))
    async with rows_locked(switchd.dsn, settlement_row, settlement_id):
        await sim.originate(mti="0420", original_stan=sale["stan"], timeout_s=0.3)
    sent = counter_deltas(status, await sim.status(), "out_0420", "out_0421")
    assert sent["out_0420"] == 1 and sent["out_0421"] >= 1, sent
    # Once every attempt has its answer (late or not), the money is back, once.
    answers = sum(sent.values()) + sum(status["counters"].get(k, 0) for k in ("in_0430", "in_0431"))
    with trio.fail_after(10):
        while True:
            counters = (await sim.status())["counters"]
            if counters.get("in_0430", 0) + counters.get("in_0431", 0) >= answers:
                break
            await trio.sleep(0.02)
    assert await our_available(switchd, pan) == before
    [patient] = await sim.originate(mti="0420", original_stan=sale["stan"])
    assert patient["response_code"] == "00"
    assert await our_available(switchd, pan) == before
    await books.assert_agree(moved=0)


# -- the whole books, last ---------------------------------------------------------------------------------


@per_network
async def test_after_every_fault_the_books_agree(linked, name):
    """If every fault scenario of the module has run, then the switch's settlement account for the network
    equals netsim's position (in the currency the module traded in)."""
    switchd, netsims = linked
    await wait_saf_drained(switchd)
    currency = currency_of(name)
    assert await settlement_debit_balance(switchd, name, currency) == await netsims[name].position(currency)


def test_no_card_data_in_switchd_log(interbank):
    """If the module's faults ran, then no PAN, track 2 or PIN block a terminal sent is in switchd's output,
    nor the card numbers of ours the networks brought."""
    switchd, _ = interbank
    assert_no_card_data_logged(switchd)
    text = "".join(switchd.output.lines)
    brought = [our_card(name, index) for name in NETWORK_NAMES for index in range(41, 47)]
    assert not [pan[:6] for pan in brought if pan in text]
