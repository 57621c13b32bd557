"""On-us transactions end to end: the terminal simulator's client over real TCP to switchd (in this
process), demo data seeded into a real PostgreSQL, the HSM in-process with the test LMK."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
import structlog
import trio

from simulators.messages import DukptPinPad, TerminalIdentity, TransactionRequest, TxnType, demo_card
from simulators.terminal import TerminalClient, open_terminal
from specs import demo
from switch.app import ReadyInfo
from switch.config import load_config
from switch.logs import configure_logging
from tests.fixtures.switch import serving

TMK = bytes.fromhex(demo.DEMO_TMK_HEX)
POS = TerminalIdentity(terminal_id=demo.POS_TERMINALS[0], merchant_id=demo.MERCHANT_ID)
ATM = TerminalIdentity(terminal_id=demo.ATM_TERMINALS[0], merchant_id=demo.ATM_MERCHANT_ID)
DKPOS = TerminalIdentity(terminal_id="DKPOS001", merchant_id=demo.MERCHANT_ID)
BDK = bytes.fromhex(demo.DEMO_BDK_HEX)


@asynccontextmanager
async def running_switch(database_url: str, var_dir: str) -> AsyncIterator[ReadyInfo]:
    config = load_config(
        None,
        environ={
            "SWITCH_DATABASE_URL": database_url,
            "SWITCH_TERMINAL_PORT": "0",
            "SWITCH_METRICS_PORT": "0",
            "SWITCH_SWITCH_VAR_DIR": var_dir,
        },
    )
    async with serving(config, demo=True) as info:
        yield info


@asynccontextmanager
async def terminal(
    info: ReadyInfo, identity: TerminalIdentity = POS, pin_pad: DukptPinPad | None = None
) -> AsyncIterator[TerminalClient]:
    assert info.terminal_address is not None
    host, port = info.terminal_address.rsplit(":", 1)
    async with open_terminal(
        host, int(port), identity=identity, tmk=TMK, timeout_s=10, pin_pad=pin_pad
    ) as client:
        assert (await client.sign_on()).approved
        assert (await client.key_exchange()).approved
        yield client


@pytest.fixture
def log_output():
    """Every log line of the test, as JSON, to check for card data."""
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    yield stream
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest.fixture
async def switch(database_url, tmp_path, log_output):
    async with running_switch(database_url, str(tmp_path)) as info:
        yield info


def purchase(amount: int, pin: str | None = demo.DEMO_PIN) -> TransactionRequest:
    return TransactionRequest(TxnType.PURCHASE, amount_minor=amount, pin=pin)


async def test_purchase_with_pin_is_approved_and_balance_drops(switch):
    """If a demo card buys for 12.34 with its PIN, then it is approved and the available balance drops."""
    card = demo_card()
    async with terminal(switch) as pos:
        before = await pos.transact(TransactionRequest(TxnType.BALANCE, pin=demo.DEMO_PIN), card)
        result = await pos.transact(purchase(1234), card)
        after = await pos.transact(TransactionRequest(TxnType.BALANCE, pin=demo.DEMO_PIN), card)
    assert result.response_code == "00" and result.auth_code and result.rrn
    available = {b.amount_type: b.amount_minor for b in before.balances}["02"]
    assert {b.amount_type: b.amount_minor for b in after.balances}["02"] == available - 1234


@pytest.mark.parametrize(
    ("special", "code"),
    [
        ("lost", "41"),
        ("stolen", "43"),
        ("blocked", "62"),
        ("expired", "54"),
        ("hotlisted", "04"),
        ("inactive", "57"),
    ],
)
async def test_special_cards_are_declined_with_their_code(switch, special, code):
    """If a special demo card is used, then the answer is the code its state calls for."""
    card = demo_card(special, expiry_yymm="2001" if special == "expired" else None)
    async with terminal(switch) as pos:
        result = await pos.transact(purchase(100), card)
    assert result.response_code == code


async def test_wrong_pin_then_right_pin(switch):
    """If a wrong PIN is entered, then 55; the right PIN afterwards is approved."""
    card = demo_card()
    async with terminal(switch) as pos:
        assert (await pos.transact(purchase(100, pin="0000"), card)).response_code == "55"
        assert (await pos.transact(purchase(100), card)).response_code == "00"


async def test_insufficient_funds(switch):
    """If the low-balance card buys for more than it holds, then the answer is 51."""
    async with terminal(switch) as pos:
        result = await pos.transact(purchase(1_000_000), demo_card("low_balance"))
    assert result.response_code == "51"


async def test_reversal_restores_the_balance(switch):
    """If a purchase is reversed, then the available balance is what it was."""
    card = demo_card(demo.demo_pan(demo.DEBIT_BIN, 7))
    async with terminal(switch) as pos:
        before = await pos.transact(TransactionRequest(TxnType.BALANCE, pin=demo.DEMO_PIN), card)
        bought = await pos.transact(purchase(5000), card)
        reversal = TransactionRequest(TxnType.REVERSAL, amount_minor=5000, original=bought.original())
        assert (await pos.transact(reversal, card)).response_code == "00"
        after = await pos.transact(TransactionRequest(TxnType.BALANCE, pin=demo.DEMO_PIN), card)
    assert before.balances == after.balances


async def test_atm_withdrawal_with_partial_dispense(switch):
    """If an ATM dispenses 40.00 of a 100.00 withdrawal, then the partial reversal returns 60.00."""
    card = demo_card(demo.demo_pan(demo.DEBIT_BIN, 8))
    async with terminal(switch, ATM) as atm:
        before = await atm.transact(TransactionRequest(TxnType.BALANCE, pin=demo.DEMO_PIN), card)
        taken = await atm.transact(
            TransactionRequest(TxnType.WITHDRAWAL, amount_minor=10_000, pin=demo.DEMO_PIN), card
        )
        assert taken.response_code == "00"
        partial = TransactionRequest(
            TxnType.REVERSAL, amount_minor=10_000, original=taken.original(), actual_amount_minor=4000
        )
        assert (await atm.transact(partial, card)).response_code == "00"
        after = await atm.transact(TransactionRequest(TxnType.BALANCE, pin=demo.DEMO_PIN), card)
    avail = lambda r: {b.amount_type: b.amount_minor for b in r.balances}["02"]  # noqa: E731
    assert avail(after) == avail(before) - 4000


async def test_purchase_survives_a_restart_before_its_reversal(database_url, tmp_path, log_output):
    """If switchd restarts between a purchase and its reversal, then the reversal still finds and undoes it."""
    card = demo_card(demo.demo_pan(demo.DEBIT_BIN, 9))
    async with running_switch(database_url, str(tmp_path)) as info, terminal(info) as pos:
        before = await pos.transact(TransactionRequest(TxnType.BALANCE, pin=demo.DEMO_PIN), card)
        bought = await pos.transact(purchase(700), card)
    async with running_switch(database_url, str(tmp_path)) as info, terminal(info) as pos:
        reversal = TransactionRequest(TxnType.REVERSAL, amount_minor=700, original=bought.original())
        assert (await pos.transact(reversal, card)).response_code == "00"
        after = await pos.transact(TransactionRequest(TxnType.BALANCE, pin=demo.DEMO_PIN), card)
    assert before.balances == after.balances


async def test_dukpt_counter_used_before_a_restart_is_refused_after_it(database_url, tmp_path, log_output):
    """If a DUKPT PIN pad's counter was used before switchd restarted, then after the restart the same
    counter from a PIN pad that lost its state is refused with 63 (the counters are in the database), and
    the pad that goes on from where it was is served."""
    card = demo_card(demo.demo_pan(demo.DEBIT_BIN, 12))
    initial = bytes.fromhex(demo.dukpt_initial_ksn(demo.DUKPT_TERMINALS[DKPOS.terminal_id][1]))
    pad = DukptPinPad(bdk=BDK, initial_ksn=initial)
    async with running_switch(database_url, str(tmp_path)) as info, terminal(info, DKPOS, pad) as pos:
        assert (await pos.transact(purchase(100), card)).response_code == "00"
    async with running_switch(database_url, str(tmp_path)) as info:
        async with terminal(info, DKPOS, DukptPinPad(bdk=BDK, initial_ksn=initial)) as pos:
            assert (await pos.transact(purchase(100), card)).response_code == "63"
        async with terminal(info, DKPOS, DukptPinPad(bdk=BDK, initial_ksn=initial, counter=1)) as pos:
            assert (await pos.transact(purchase(100), card)).response_code == "00"


async def test_no_card_data_in_any_log_line(switch, log_output):
    """If transactions with PAN, track 2 and PIN blocks run, then no log line holds the clear PAN or track."""
    card = demo_card()
    async with terminal(switch) as pos:
        await pos.transact(purchase(100), card)
        await pos.transact(purchase(100, pin="0000"), card)
    text = log_output.getvalue()
    assert card.pan not in text
    assert card.track2(chip=False)[17:] not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(line.get("event") == "transaction" for line in lines)


def available(result) -> int:
    return {b.amount_type: b.amount_minor for b in result.balances}["02"]


async def balance(client: TerminalClient, card) -> int:
    result = await client.transact(TransactionRequest(TxnType.BALANCE, pin=demo.DEMO_PIN), card)
    assert result.response_code == "00"
    return available(result)


async def test_every_pos_transaction_moves_the_money_it_should(switch):
    """If a card runs refund, cashback, void, pre-auth with completion and cancel, then its balance follows each."""
    card = demo_card(demo.demo_pan(demo.DEBIT_BIN, 11))
    async with terminal(switch) as pos:
        start = await balance(pos, card)
        refund = await pos.transact(TransactionRequest(TxnType.REFUND, amount_minor=300), card)
        assert refund.response_code == "00"
        assert await balance(pos, card) == start + 300
        cashback = await pos.transact(
            TransactionRequest(TxnType.CASHBACK, amount_minor=1500, cashback_minor=500, pin=demo.DEMO_PIN),
            card,
        )
        assert cashback.response_code == "00" and cashback.amount_minor is not None
        after_cashback = await balance(pos, card)
        assert after_cashback == start + 300 - cashback.amount_minor
        bought = await pos.transact(purchase(900), card)
        void = await pos.transact(
            TransactionRequest(TxnType.VOID, amount_minor=900, original=bought.original()), card
        )
        assert void.response_code == "00"
        assert await balance(pos, card) == after_cashback
        held = await pos.transact(
            TransactionRequest(TxnType.PREAUTH, amount_minor=4000, pin=demo.DEMO_PIN), card
        )
        assert held.response_code == "00"
        assert await balance(pos, card) == after_cashback - 4000
        done = await pos.transact(
            TransactionRequest(TxnType.COMPLETION, amount_minor=2500, original=held.original()), card
        )
        assert done.response_code == "00"
        assert await balance(pos, card) == after_cashback - 2500
        held2 = await pos.transact(
            TransactionRequest(TxnType.PREAUTH, amount_minor=1000, pin=demo.DEMO_PIN), card
        )
        cancel = await pos.transact(
            TransactionRequest(TxnType.CANCEL, amount_minor=1000, original=held2.original()), card
        )
        assert cancel.response_code == "00"
        assert await balance(pos, card) == after_cashback - 2500


async def test_prepaid_load_and_spend(switch):
    """If a prepaid card is topped up and then spends, then its balance follows, and it cannot overspend."""
    card = demo_card(demo.demo_pan(demo.PREPAID_BIN, 3))
    async with terminal(switch) as pos:
        start = await balance(pos, card)
        assert (
            await pos.transact(TransactionRequest(TxnType.LOAD, amount_minor=2000), card)
        ).response_code == "00"
        assert await balance(pos, card) == start + 2000
        too_much = await pos.transact(purchase(start + 2001), card)
        assert too_much.response_code == "51"
        assert (await pos.transact(purchase(start + 2000), card)).response_code == "00"
        assert await balance(pos, card) == 0


async def test_atm_transfer_between_own_accounts(switch):
    """If an ATM transfer from checking to savings runs, then the checking balance drops by the amount."""
    card = demo_card(demo.demo_pan(demo.DEBIT_BIN, 12))
    async with terminal(switch, ATM) as atm:
        start = await balance(atm, card)
        moved = await atm.transact(
            TransactionRequest(
                TxnType.TRANSFER, amount_minor=1200, from_account="20", to_account="10", pin=demo.DEMO_PIN
            ),
            card,
        )
        assert moved.response_code == "00"
        assert await balance(atm, card) == start - 1200


async def test_retransmission_is_answered_once(switch):
    """If a terminal sends the very same purchase frame twice, then both answers match and it is paid once."""
    card = demo_card(demo.demo_pan(demo.DEBIT_BIN, 13))
    async with terminal(switch) as pos:
        start = await balance(pos, card)
        message = pos.build(purchase(400), card)
        first, _, _ = await pos.send_message(message)
        second, _, _ = await pos.send_message(message)
        assert first is not None and second is not None
        assert first.fields == second.fields
        assert await balance(pos, card) == start - 400


async def test_macing_terminal_end_to_end(switch, database_url):
    """If a terminal is set to MAC, then MACed requests are approved with a MACed answer, unMACed ones get 63."""

    async def require_mac() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE terminals SET mac_required = true WHERE terminal_id = $1", "POS00002")
        finally:
            await conn.close()

    await trio.to_thread.run_sync(lambda: asyncio.run(require_mac()))
    identity = TerminalIdentity(terminal_id="POS00002", merchant_id=demo.MERCHANT_ID)
    assert switch.terminal_address is not None
    host, port = switch.terminal_address.rsplit(":", 1)
    card = demo_card(demo.demo_pan(demo.DEBIT_BIN, 14))
    async with open_terminal(host, int(port), identity=identity, tmk=TMK, mac=True) as pos:
        assert (await pos.key_exchange()).approved
        signed = await pos.transact(purchase(100), card)
        assert signed.response_code == "00" and signed.mac_ok is True
        pos.mac = False
        unsigned = await pos.transact(purchase(100), card)
        assert unsigned.response_code == "63"


async def test_switchctl_txn_show_finds_the_purchase_masked(switch, database_url, tmp_path):
    """If an operator looks up a purchase's RRN, then switchctl shows it from the journal, PAN masked."""
    card = demo_card(demo.demo_pan(demo.DEBIT_BIN, 15))
    async with terminal(switch) as pos:
        bought = await pos.transact(purchase(4321), card)
    assert bought.rrn is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
    env["SWITCH_DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "switch.cli.switchctl", "txn", "show", bought.rrn]
    with trio.fail_after(30):
        while True:  # the journal writes in the background, within its flush interval
            done = await trio.run_process(
                command, env=env, capture_stdout=True, capture_stderr=True, check=False
            )
            if done.returncode == 0:
                break
            await trio.sleep(0.1)
    out = done.stdout.decode()
    assert "990001******0159" in out and "4321" in out and "approved" in out
    assert card.pan not in out
    missing = await trio.run_process(
        [*command[:-1], "000000000000"], env=env, capture_stdout=True, capture_stderr=True, check=False
    )
    assert missing.returncode == 1


async def test_pin_change_at_the_atm(switch):
    """If a card changes its PIN at the ATM, then the new PIN is accepted and the old one is refused."""
    pan = demo.demo_pan(demo.DEBIT_BIN, 16)
    async with terminal(switch, ATM) as atm:
        change = TransactionRequest(TxnType.PIN_CHANGE, pin=demo.DEMO_PIN, new_pin="4321")
        assert (await atm.transact(change, demo_card(pan))).response_code == "00"
        new_card = demo_card(pan)  # the stripe keeps the old PVV; the switch checks the stored one
        assert (
            await atm.transact(TransactionRequest(TxnType.BALANCE, pin="4321"), new_card)
        ).response_code == "00"
        assert (
            await atm.transact(TransactionRequest(TxnType.BALANCE, pin="1234"), new_card)
        ).response_code == "55"
