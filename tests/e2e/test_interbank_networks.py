"""Interbank end to end, per network (Visa, CUPS, Shetab): real `netsim` processes, a real `switchd run
--demo` linked to them, terminals over TCP, the networks' own acquirers through netsim's control API.

One set of processes for the module. Each test uses cards of its own (netsim's by index, ours by index),
so the tests do not depend on each other's order; the position test compares the whole books.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import trio

from simulators.messages import Card, Original, TransactionRequest, TxnType, demo_card
from simulators.terminal import Result
from specs import demo
from specs.demo_networks import NETWORK_SPECIAL_CARDS
from switch.cli.switchctl import main as switchctl_main
from tests.e2e.interbank import (
    NETWORK_NAMES,
    Books,
    Netsim,
    currency_of,
    healthz_text,
    journal_route,
    network_card,
    our_available,
    our_card,
    settlement_debit_balance,
    start_interbank,
    suspense_debit_balance,
    terminal_for,
    wait_saf_drained,
    wait_until_linked,
)
from tests.e2e.support import (
    Switchd,
    Terminal,
    assert_no_card_data_logged,
    connect,
    log_events,
    metrics_text,
    switchctl_runner,
    wait_for_log,
)
from tests.fixtures.pg import PgServer

per_network = pytest.mark.parametrize("name", NETWORK_NAMES)


@pytest.fixture(scope="module")
def interbank(
    pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Switchd, dict[str, Netsim]]]:
    yield from start_interbank(pg_server, tmp_path_factory.mktemp("interbank"))


@pytest.fixture
async def linked(interbank: tuple[Switchd, dict[str, Netsim]]) -> tuple[Switchd, dict[str, Netsim]]:
    switchd, netsims = interbank
    await wait_until_linked(netsims)
    return switchd, netsims


def purchase(amount: int, pin: str | None = demo.DEMO_PIN) -> TransactionRequest:
    return TransactionRequest(TxnType.PURCHASE, amount_minor=amount, pin=pin)


# -- links ------------------------------------------------------------------------------------------------


@per_network
async def test_link_signs_on_and_exchanges_keys(linked, name):
    """If switchd runs beside a network, then it is signed on there, holds a ZPK the network issued, and
    says so in /healthz and its metrics."""
    switchd, netsims = linked
    status = await netsims[name].status()
    assert any(c["signed_on"] for c in status["link"]["connections"])
    assert status["counters"]["key_exchanges"] >= 1
    assert f"{name} up" in await healthz_text(switchd)
    text = await metrics_text(switchd)
    assert (
        f'switch_network_link_up{{endpoint="127.0.0.1:{netsims[name].link_port}",network="{name}"}} 1.0'
        in text
    )
    assert f'switch_network_key_exchanges_total{{network="{name}",outcome="installed"}}' in text


# -- acquirer side ------------------------------------------------------------------------------------------


@per_network
async def test_foreign_card_purchase_with_pin_is_approved_by_its_network(linked, name):
    """If a terminal of ours sells to a card of the network with its PIN, then the network approves it,
    debits its cardholder, and the journal names the network as the route."""
    switchd, netsims = linked
    pan = network_card(name, 20)
    currency = currency_of(name)
    before = await netsims[name].balance(pan, currency)
    async with connect(switchd, terminal_for(name)) as terminal:
        result = await terminal.transact(purchase(1500), demo_card(pan))
    assert result.response_code == "00", result
    assert result.auth_code and result.auth_code.startswith(name[0].upper()) and result.rrn
    assert await netsims[name].balance(pan, currency) == before - 1500
    line = await wait_for_log(
        switchd, lambda e: e.get("event") == "transaction" and e.get("rrn") == result.rrn
    )
    assert line["route"] == name
    assert await journal_route(switchd, result.rrn) == name


@per_network
async def test_foreign_card_wrong_pin_is_55(linked, name):
    """If the PIN is wrong, then the network says so after the PIN block's translation to its ZPK: 55."""
    switchd, _ = linked
    async with connect(switchd, terminal_for(name)) as terminal:
        result = await terminal.transact(purchase(1000, pin="9999"), demo_card(network_card(name, 21)))
    assert result.response_code == "55"


@per_network
async def test_network_decline_is_mapped_to_the_terminal_code(linked, name):
    """If the network declines for lack of funds, then the terminal gets 51."""
    switchd, _ = linked
    bin_index, index = NETWORK_SPECIAL_CARDS["insufficient_funds"]
    card = demo_card(network_card(name, index, bin_index=bin_index))
    async with connect(switchd, terminal_for(name)) as terminal:
        result = await terminal.transact(purchase(1000), card)
    assert result.response_code == "51"


@per_network
async def test_terminal_reversal_of_a_forwarded_purchase_reaches_the_network(linked, name):
    """If a terminal reverses a forwarded purchase, then it is acknowledged at once and the network's
    0420 (PAN in field 2, from the queue's encrypted copy) gives the cardholder the money back."""
    switchd, netsims = linked
    pan = network_card(name, 22)
    currency = currency_of(name)
    before = await netsims[name].balance(pan, currency)
    card = demo_card(pan)
    async with connect(switchd, terminal_for(name)) as terminal:
        sale = await terminal.transact(purchase(2500), card)
        assert sale.response_code == "00", sale
        reversal = await terminal.transact(
            TransactionRequest(TxnType.REVERSAL, amount_minor=2500, original=sale.original()), card
        )
    assert reversal.response_code == "00"
    await wait_saf_drained(switchd)
    assert await netsims[name].balance(pan, currency) == before


@per_network
async def test_completion_of_a_forwarded_preauth_reaches_the_network(linked, name):
    """If a terminal completes a forwarded 50.00 pre-authorization for 30.00, then it is answered 00 with
    the network's auth code, and the network's 0220 (through store-and-forward) releases the hold and
    takes 30.00 from its cardholder; both sides' books moved by 30.00."""
    switchd, netsims = linked
    sim, pan, currency = netsims[name], network_card(name, 25), currency_of(name)
    books = await Books.open(switchd, sim, currency)
    before = await sim.balance(pan, currency)
    card = demo_card(pan)
    async with connect(switchd, terminal_for(name)) as terminal:
        held = await terminal.transact(TransactionRequest(TxnType.PREAUTH, amount_minor=5000), card)
        assert held.response_code == "00", held
        assert await sim.balance(pan, currency) == before - 5000  # held at the network
        completion = await terminal.transact(
            TransactionRequest(TxnType.COMPLETION, amount_minor=3000, original=held.original()), card
        )
    assert (completion.response_code, completion.auth_code) == ("00", held.auth_code)
    await books.assert_agree(moved=3000)
    assert await sim.balance(pan, currency) == before - 3000
    assert await journal_route(switchd, completion.rrn, mti="0220") == name


async def _preauth_reduced(terminal: Terminal, card: Card) -> Result:
    """A pre-authorization of 50.00, then its partial reversal to 30.00 (field 95), both answered 00."""
    held = await terminal.transact(TransactionRequest(TxnType.PREAUTH, amount_minor=5000), card)
    assert held.response_code == "00", held
    partial = await terminal.transact(
        TransactionRequest(
            TxnType.REVERSAL, amount_minor=5000, original=held.original(), actual_amount_minor=3000
        ),
        card,
    )
    assert partial.response_code == "00", partial
    return held


@per_network
async def test_partial_reversal_of_a_forwarded_preauth_reduces_the_hold_on_both_sides(linked, name):
    """If a terminal reverses a forwarded 50.00 pre-authorization partially (95: 30.00), then the network
    holds only 30.00 once the 0420 is delivered, a completion for 30.01 is refused (13), one for 30.00 is
    answered 00 and takes 30.00 from the network's cardholder; both sides' books moved by 30.00."""
    switchd, netsims = linked
    sim, pan, currency = netsims[name], network_card(name, 29), currency_of(name)
    books = await Books.open(switchd, sim, currency)
    before = await sim.balance(pan, currency)
    card = demo_card(pan)
    async with connect(switchd, terminal_for(name)) as terminal:
        held = await _preauth_reduced(terminal, card)
        await wait_saf_drained(switchd)
        assert await sim.balance(pan, currency) == before - 3000
        too_much = await terminal.transact(
            TransactionRequest(TxnType.COMPLETION, amount_minor=3001, original=held.original()), card
        )
        completion = await terminal.transact(
            TransactionRequest(TxnType.COMPLETION, amount_minor=3000, original=held.original()), card
        )
    assert (too_much.response_code, completion.response_code) == ("13", "00")
    await books.assert_agree(moved=3000)
    assert await sim.balance(pan, currency) == before - 3000


@per_network
async def test_full_reversal_after_a_partial_one_releases_a_forwarded_preauth_on_both_sides(linked, name):
    """If a forwarded pre-authorization reduced by a partial reversal is then reversed whole, then the
    network releases the rest too (a second 0420 of its own), nothing is held on either side and a
    completion is refused."""
    switchd, netsims = linked
    sim, pan, currency = netsims[name], network_card(name, 30), currency_of(name)
    books = await Books.open(switchd, sim, currency)
    before = await sim.balance(pan, currency)
    card = demo_card(pan)
    async with connect(switchd, terminal_for(name)) as terminal:
        held = await _preauth_reduced(terminal, card)
        cancel = await terminal.transact(
            TransactionRequest(TxnType.REVERSAL, amount_minor=5000, original=held.original()), card
        )
        assert cancel.response_code == "00", cancel
        await wait_saf_drained(switchd)
        assert await sim.balance(pan, currency) == before
        completion = await terminal.transact(
            TransactionRequest(TxnType.COMPLETION, amount_minor=3000, original=held.original()), card
        )
    assert completion.response_code != "00"
    await books.assert_agree(moved=0)
    assert await sim.balance(pan, currency) == before


@per_network
async def test_reversal_of_a_forwarded_completion_reaches_the_network(linked, name):
    """If a terminal reverses its completion of a forwarded pre-authorization, then it is answered 00 and
    the network's 0420 of the 0220 gives its cardholder the money back; both sides' books are as before."""
    switchd, netsims = linked
    sim, pan, currency = netsims[name], network_card(name, 27), currency_of(name)
    books = await Books.open(switchd, sim, currency)
    before = await sim.balance(pan, currency)
    card = demo_card(pan)
    async with connect(switchd, terminal_for(name)) as terminal:
        held = await terminal.transact(TransactionRequest(TxnType.PREAUTH, amount_minor=4000), card)
        completion = await terminal.transact(
            TransactionRequest(TxnType.COMPLETION, amount_minor=4000, original=held.original()), card
        )
        assert (held.response_code, completion.response_code) == ("00", "00")
        reversal = await terminal.transact(
            TransactionRequest(TxnType.REVERSAL, amount_minor=4000, original=completion.original()), card
        )
    assert reversal.response_code == "00"
    await books.assert_agree(moved=0)
    assert await sim.balance(pan, currency) == before


@per_network
async def test_void_of_a_forwarded_purchase_gives_the_money_back_at_the_network(linked, name):
    """If a terminal voids a forwarded purchase, then it is answered 00 and the network's 0420 gives its
    cardholder the money back; both sides' books are as before the purchase, and stay so when the
    terminal then reverses its void (00, logged as without effect)."""
    switchd, netsims = linked
    sim, pan, currency = netsims[name], network_card(name, 26), currency_of(name)
    books = await Books.open(switchd, sim, currency)
    before = await sim.balance(pan, currency)
    card = demo_card(pan)
    async with connect(switchd, terminal_for(name)) as terminal:
        sale = await terminal.transact(purchase(2000), card)
        assert sale.response_code == "00", sale
        void = await terminal.transact(
            TransactionRequest(TxnType.VOID, amount_minor=2000, original=sale.original()), card
        )
        assert void.response_code == "00"
        await books.assert_agree(moved=0)
        assert await sim.balance(pan, currency) == before
        # The void went to the network as a reversal, which cannot be undone there: its reversal is
        # acknowledged without effect, and an operator is told.
        undo = await terminal.transact(
            TransactionRequest(TxnType.REVERSAL, amount_minor=2000, original=void.original()), card
        )
    assert undo.response_code == "00"
    await wait_for_log(
        switchd,
        lambda e: (
            e.get("event", "").startswith("reversal of a forwarded void has no effect")
            and e.get("network") == name
        ),
    )
    await books.assert_agree(moved=0)
    assert await sim.balance(pan, currency) == before


@per_network
async def test_void_of_a_forwarded_purchase_by_its_rrn_alone(linked, name):
    """If a terminal voids a forwarded purchase naming only its RRN (field 37, as `pos-sim void --rrn`
    does), then the purchase is found by that RRN and given back at the network."""
    switchd, netsims = linked
    sim, pan, currency = netsims[name], network_card(name, 28), currency_of(name)
    books = await Books.open(switchd, sim, currency)
    before = await sim.balance(pan, currency)
    card = demo_card(pan)
    async with connect(switchd, terminal_for(name)) as terminal:
        sale = await terminal.transact(purchase(1900), card)
        assert sale.response_code == "00" and sale.rrn
        by_rrn = Original(processing_code="000000", amount_minor=1900, rrn=sale.rrn)
        void = await terminal.transact(
            TransactionRequest(TxnType.VOID, amount_minor=1900, original=by_rrn), card
        )
    assert void.response_code == "00"
    assert void.request is not None and 90 not in void.request
    await books.assert_agree(moved=0)
    assert await sim.balance(pan, currency) == before


@per_network
async def test_card_of_no_known_issuer_is_15(linked, name):
    """If no network's BIN range holds a card, then the terminal gets 15 and nothing is sent."""
    switchd, netsims = linked
    sent_before = (await netsims[name].status())["counters"].get("in_0200", 0)
    async with connect(switchd, terminal_for(name)) as terminal:
        result = await terminal.transact(purchase(1000), demo_card(demo.demo_pan("555555", 7)))
    assert result.response_code == "15"
    assert (await netsims[name].status())["counters"].get("in_0200", 0) == sent_before


# -- issuer side ----------------------------------------------------------------------------------------------


@per_network
async def test_network_purchase_for_our_card_is_approved_on_our_ledger(linked, name):
    """If a network's acquirer buys with one of our cards and its PIN, then we approve it in the network's
    dialect with an auth code, debit our cardholder and journal it as issuer:<network>."""
    switchd, netsims = linked
    pan = our_card(name, 31)
    before = await our_available(switchd, pan)
    [result] = await netsims[name].originate(pan=pan, amount_minor=4200)
    assert result["approved"] and result["response_code"] == "00", result
    assert result["auth_code"]
    assert await our_available(switchd, pan) == before - 4200
    line = await wait_for_log(
        switchd, lambda e: e.get("event") == "transaction" and e.get("rrn") == result["rrn"]
    )
    assert line["route"] == f"issuer:{name}" and line["pan"] == f"{pan[:6]}******{pan[-4:]}"
    assert await journal_route(switchd, result["rrn"]) == f"issuer:{name}"


@per_network
async def test_network_purchase_with_a_wrong_pin_is_declined_in_its_code(linked, name):
    """If a network's acquirer sends a wrong PIN under the network's ZPK, then we answer 55."""
    _, netsims = linked
    [result] = await netsims[name].originate(pan=our_card(name, 32), amount_minor=1000, pin="9999")
    assert result["response_code"] == "55"


@per_network
async def test_network_reversal_for_our_card_gives_the_money_back(linked, name):
    """If a network's acquirer reverses its approved purchase (0420 naming it in field 90), then our
    cardholder has the money back, and a repeat of the reversal changes nothing."""
    switchd, netsims = linked
    pan = our_card(name, 33)
    before = await our_available(switchd, pan)
    [result] = await netsims[name].originate(pan=pan, amount_minor=3100, reverse=True)
    assert result["approved"], result
    assert result["reversal"]["response_code"] == "00"
    assert await our_available(switchd, pan) == before
    [again] = await netsims[name].originate(mti="0420", original_stan=result["stan"])
    assert again["response_code"] == "00"
    assert await our_available(switchd, pan) == before


@per_network
async def test_network_advice_beyond_our_cardholders_funds_is_booked_to_suspense(
    linked, name, monkeypatch, capsys, tmp_path
):
    """If a network advises an approval it made for our card beyond the card's funds (its stand-in), then
    we acknowledge it with 00 and book it from the network's advice suspense account, the cardholder's
    balance untouched; we owe the network its amount (our settlement account and netsim's position move
    alike), and a reversal of the advice gives it back from suspense."""
    switchd, netsims = linked
    currency = currency_of(name)
    pan = our_card(name, 36)
    before = await our_available(switchd, pan)
    owed_before = await settlement_debit_balance(switchd, name, currency)
    position_before = await netsims[name].position(currency)
    amount = before + 5000
    [advice] = await netsims[name].originate(pan=pan, amount_minor=amount, mti="0220", pin=None)
    assert advice["response_mti"].endswith("230") and advice["response_code"] == "00", advice
    assert await our_available(switchd, pan) == before
    assert await suspense_debit_balance(switchd, name, currency) == amount
    owed = await settlement_debit_balance(switchd, name, currency) - owed_before
    assert owed == -amount == await netsims[name].position(currency) - position_before
    await wait_for_log(
        switchd,
        lambda e: e.get("event") == "network advice booked to suspense" and e.get("rrn") == advice["rrn"],
    )
    [reversal] = await netsims[name].originate(mti="0420", original_stan=advice["stan"])
    assert reversal["response_code"] == "00", reversal
    assert await suspense_debit_balance(switchd, name, currency) == 0
    assert await settlement_debit_balance(switchd, name, currency) == owed_before
    assert await our_available(switchd, pan) == before
    switchctl = switchctl_runner(switchd, monkeypatch, capsys, tmp_path)
    listed = [
        json.loads(line) for line in (await switchctl("suspense", "list", "--all", "--json")).splitlines()
    ]
    [item] = [i for i in listed if i["rrn"] == advice["rrn"]]
    assert (item["owed"], item["reversed"], item["recovered"]) == (0, amount, 0)
    nothing = await trio.to_thread.run_sync(switchctl_main, ["suspense", "recover", item["advice_id"]])
    assert nothing == 1 and "nothing owed" in capsys.readouterr().err


@per_network
async def test_advice_in_suspense_is_recovered_by_switchctl_and_its_reversal_pays_the_cardholder_back(
    linked, name, monkeypatch, capsys, tmp_path
):
    """If an advice booked to suspense is listed by `switchctl suspense list`, then `recover` is refused
    while the cardholder's account cannot pay it, takes it once it can (the suspense account is square),
    and the network's later reversal of the advice gives the cardholder the payment back."""
    switchd, netsims = linked
    currency = currency_of(name)
    pan = our_card(name, 37)
    before = await our_available(switchd, pan)
    amount = before + 5000
    [advice] = await netsims[name].originate(pan=pan, amount_minor=amount, mti="0220", pin=None)
    assert advice["response_code"] == "00", advice
    switchctl = switchctl_runner(switchd, monkeypatch, capsys, tmp_path)
    [item] = [
        json.loads(line)
        for line in (await switchctl("suspense", "list", "--json")).splitlines()
        if json.loads(line)["rrn"] == advice["rrn"]
    ]
    assert item["owed"] == amount and item["network"] == name and item["card"] == f"{pan[:6]}******{pan[-4:]}"
    refused = await trio.to_thread.run_sync(switchctl_main, ["suspense", "recover", item["advice_id"]])
    assert refused == 1 and "cannot cover it yet" in capsys.readouterr().err
    [refund] = await netsims[name].originate(pan=pan, amount_minor=6000, type="refund", pin=None)
    assert refund["response_code"] == "00", refund
    assert "recovered" in await switchctl("suspense", "recover", item["advice_id"])
    again = await trio.to_thread.run_sync(switchctl_main, ["suspense", "recover", item["advice_id"]])
    assert again == 1 and "already recovered" in capsys.readouterr().err
    unknown = await trio.to_thread.run_sync(switchctl_main, ["suspense", "recover", "iss:nope:0:0:0"])
    assert unknown == 1 and "no advice booked to suspense" in capsys.readouterr().err
    assert await our_available(switchd, pan) == before + 6000 - amount
    assert await suspense_debit_balance(switchd, name, currency) == 0
    assert advice["rrn"] not in await switchctl("suspense", "list")
    [reversal] = await netsims[name].originate(mti="0420", original_stan=advice["stan"])
    assert reversal["response_code"] == "00", reversal
    assert await our_available(switchd, pan) == before + 6000
    assert await suspense_debit_balance(switchd, name, currency) == 0
    assert advice["rrn"] in await switchctl("suspense", "list", "--all")


# -- the books ----------------------------------------------------------------------------------------------------


@per_network
async def test_settlement_account_equals_the_network_position(linked, name):
    """If both sides have traded (acquired and issued, with a reversal), then the switch's settlement
    account for the network equals netsim's position once store-and-forward has drained."""
    switchd, netsims = linked
    currency = currency_of(name)
    async with connect(switchd, terminal_for(name)) as terminal:
        assert (await terminal.transact(purchase(777), demo_card(network_card(name, 24)))).approved
    await netsims[name].originate(pan=our_card(name, 34), amount_minor=555)
    await netsims[name].originate(pan=our_card(name, 35), amount_minor=333, reverse=True)
    await wait_saf_drained(switchd)
    assert await settlement_debit_balance(switchd, name, currency) == await netsims[name].position(currency)


def test_no_card_data_in_switchd_log(interbank):
    """If the module's transactions ran, then no PAN, track 2 or PIN block is in switchd's output: neither
    what our terminals sent nor our own cards that the networks brought."""
    switchd, _ = interbank
    assert_no_card_data_logged(switchd)
    text = "".join(switchd.output.lines)
    brought = [our_card(name, index) for name in NETWORK_NAMES for index in range(31, 38)]
    assert not [pan[:6] for pan in brought if pan in text]


# -- last: stops the module's switchd -----------------------------------------------------------------------


async def test_sigterm_signs_off_every_network_and_exits_0(linked):
    """If switchd gets SIGTERM, then it signs off from every network after their pending requests and
    exits 0."""
    switchd, netsims = linked
    before = {name: (await sim.status())["counters"].get("sign_offs", 0) for name, sim in netsims.items()}
    proc = switchd.output.proc
    proc.terminate()
    assert await trio.to_thread.run_sync(lambda: proc.wait(timeout=30)) == 0
    for name, sim in netsims.items():
        assert (await sim.status())["counters"].get("sign_offs", 0) == before[name] + 1, name
    events = [e.get("event") for e in log_events(switchd)]
    assert events.index("link signed off") > events.index("draining")
