"""IBM 3624 offset cards and DUKPT PIN pads end to end: pos-sim and atm-sim (and their terminal client)
over real TCP to one real `switchd run --demo` process on its own database, with the demo seed."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trio

from hsm.crypto import dukpt
from simulators import atm, pos
from simulators.cli import run_cli
from simulators.messages import DukptPinPad, TerminalIdentity, TransactionRequest, TxnType, demo_card
from simulators.terminal import open_terminal
from specs import demo
from switch.iso.message import Message
from tests.e2e.support import Switchd, start_switchd
from tests.fixtures.pg import PgServer

TMK = bytes.fromhex(demo.DEMO_TMK_HEX)
BDK = bytes.fromhex(demo.DEMO_BDK_HEX)
DKPOS, DKATM = "DKPOS001", "DKATM001"
IBM_CARD = demo.demo_pan(demo.IBM_BIN, 1)


@pytest.fixture(scope="module")
def switchd(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switchd]:
    """One switchd for the module (starting one costs seconds), on a fresh database it seeds itself."""
    yield from start_switchd(pg_server, tmp_path_factory.mktemp("switchd"))


def sim(profile: Any, port: int, *args: str) -> tuple[int, list[dict[str, Any]]]:
    """Run pos-sim or atm-sim in this process; (exit status, its JSON lines)."""
    out = io.StringIO()
    code = run_cli(profile, ["--port", str(port), "--json", *args], out=out)
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


def last_code(lines: list[dict[str, Any]]) -> str:
    return str(lines[-1]["response_code"])


# -- IBM 3624 offsets ------------------------------------------------------------------------------------


def test_ibm_card_purchase_right_then_wrong_pin(switchd):
    """If an IBM offset card buys at a POS with its PIN, then 00; with a wrong PIN, then 55."""
    code, lines = sim(
        pos.PROFILE, switchd.port, "purchase", "--card", IBM_CARD, "--amount", "12.34", "--pin", "1234"
    )
    assert (code, last_code(lines)) == (0, "00")
    code, lines = sim(
        pos.PROFILE, switchd.port, "purchase", "--card", IBM_CARD, "--amount", "1.00", "--pin", "9999"
    )
    assert (code, last_code(lines)) == (1, "55")


def test_ibm_card_tries_exceeded_is_75_and_persisted(switchd, tmp_path):
    """If an IBM card gets three wrong PINs, then 55, 55, 75, the right PIN is 75 too, and the database
    holds the count."""
    pan = demo.demo_pan(demo.IBM_BIN, 3)
    script = tmp_path / "tries.txt"
    script.write_text(
        f"purchase amount=1.00 pin=9999 card={pan} expect=55\n"
        f"purchase amount=1.00 pin=9999 card={pan} expect=55\n"
        f"purchase amount=1.00 pin=9999 card={pan} expect=75\n"
        f"purchase amount=1.00 pin=1234 card={pan} expect=75\n"
    )
    code, lines = sim(pos.PROFILE, switchd.port, "--script", str(script))
    assert code == 0, lines

    async def tries() -> int:
        conn = await asyncpg.connect(switchd.dsn)
        try:
            value = await conn.fetchval(
                "SELECT pin_tries FROM cards WHERE first6 = $1 AND last4 = $2", pan[:6], pan[-4:]
            )
        finally:
            await conn.close()
        return int(value)

    assert asyncio.run(tries()) == 3


# -- DUKPT PIN pads --------------------------------------------------------------------------------------


def test_dukpt_pos_purchase_right_then_wrong_pin(switchd, tmp_path):
    """If pos-sim is the demo DUKPT POS, then the right PIN buys (00), a wrong one is 55, run after run."""
    state = str(tmp_path / "dkpos.json")
    code, lines = sim(
        pos.PROFILE, switchd.port, "--dukpt", "--dukpt-state", state, "--amount", "5.00", "--pin", "1234"
    )
    assert (code, last_code(lines)) == (0, "00")
    # A second run takes the counter up where the first left it: not a replay.
    code, lines = sim(
        pos.PROFILE, switchd.port, "--dukpt", "--dukpt-state", state, "--amount", "5.00", "--pin", "0000"
    )
    assert (code, last_code(lines)) == (1, "55")
    assert json.loads(Path(state).read_text())["counter"] == 2


def test_dukpt_atm_script_withdrawal_balance_and_ibm_card(switchd, tmp_path):
    """If atm-sim runs a script as the DUKPT ATM, then withdrawals and balances with either PIN method pass."""
    script = tmp_path / "atm.txt"
    script.write_text(
        "withdrawal amount=40.00 pin=1234\n"
        "balance pin=1234\n"
        f"withdrawal amount=20.00 pin=1234 card={IBM_CARD}\n"
        f"balance pin=5555 card={IBM_CARD} expect=55\n"
    )
    state = str(tmp_path / "dkatm.json")
    code, lines = sim(atm.PROFILE, switchd.port, "--dukpt", "--dukpt-state", state, "--script", str(script))
    assert code == 0, lines
    assert [line["response_code"] for line in lines[-4:]] == [
        "00",
        "00",
        "00",
        "55",
    ]
    assert json.loads(Path(state).read_text())["counter"] == 4


def add_dukpt_terminal(switchd: Switchd, terminal_id: str, device_id: int, like: str) -> str:
    """A DUKPT terminal of the demo key set with its own PIN pad, as an operator would add it (SQL); its
    initial KSN. Each test that needs the counters to itself gets one, so tests do not depend on order."""

    async def insert() -> None:
        conn = await asyncpg.connect(switchd.dsn)
        try:
            await conn.execute(
                "INSERT INTO terminals (terminal_id, merchant_id, kind, tmk_under_lmk, dukpt_key_set_id, "
                "dukpt_device_id) SELECT $1, merchant_id, kind, tmk_under_lmk, dukpt_key_set_id, $2 "
                "FROM terminals WHERE terminal_id = $3",
                terminal_id,
                device_id,
                like,
            )
        finally:
            await conn.close()

    asyncio.run(insert())
    return demo.dukpt_initial_ksn(device_id)


def test_pin_pad_that_lost_its_counter_is_refused_as_a_replay(switchd, tmp_path):
    """If a PIN pad starts its counter again from 1, then the switch refuses the reused KSN with 63."""
    ksn = add_dukpt_terminal(switchd, "DKTEST01", 9001, like=DKPOS)
    args = ["--terminal", "DKTEST01", "--ksn", ksn, "--amount", "1.00", "--pin", "1234"]
    code, lines = sim(pos.PROFILE, switchd.port, *args, "--dukpt-state", str(tmp_path / "first.json"))
    assert (code, last_code(lines)) == (0, "00")
    code, lines = sim(pos.PROFILE, switchd.port, *args, "--dukpt-state", str(tmp_path / "reset.json"))
    assert (code, last_code(lines)) == (1, "63")


def test_foreign_ksn_is_refused(switchd, tmp_path):
    """If the DUKPT POS sends the KSN of another PIN pad, then the switch answers 63."""
    state = str(tmp_path / "foreign.json")
    foreign = demo.dukpt_initial_ksn(demo.DUKPT_TERMINALS[DKATM][1])  # the ATM's PIN pad, at the POS
    code, lines = sim(
        pos.PROFILE,
        switchd.port,
        "--dukpt",
        "--ksn",
        foreign,
        "--dukpt-state",
        state,
        "--amount",
        "1.00",
        "--pin",
        "1234",
    )
    assert (code, last_code(lines)) == (1, "63")


# -- no PIN data in logs or journal ----------------------------------------------------------------------


async def _transact_and_collect(
    port: int, dukpt_terminal: str, initial: bytes
) -> tuple[list[Message], list[bytes]]:
    """Run IBM (TPK) and DUKPT transactions, a DUKPT PIN change among them; (requests sent, DUKPT keys used)."""
    sent: list[Message] = []
    ibm = demo_card(demo.demo_pan(demo.IBM_BIN, 2))
    async with open_terminal(
        "127.0.0.1", port, identity=TerminalIdentity(demo.POS_TERMINALS[5], demo.MERCHANT_ID), tmk=TMK
    ) as t:
        assert (await t.key_exchange()).approved
        for pin in ("1234", "8888"):
            result = await t.transact(TransactionRequest(TxnType.PURCHASE, amount_minor=300, pin=pin), ibm)
            assert result.request is not None
            sent.append(result.request)
    pad = DukptPinPad(bdk=BDK, initial_ksn=initial)
    card = demo_card(demo.demo_pan(demo.DEBIT_BIN, 31))
    identity = TerminalIdentity(dukpt_terminal, demo.ATM_MERCHANT_ID)
    async with open_terminal("127.0.0.1", port, identity=identity, tmk=TMK, pin_pad=pad) as t:
        assert (await t.key_exchange()).approved
        for request in (
            TransactionRequest(TxnType.WITHDRAWAL, amount_minor=1000, pin="1234"),
            TransactionRequest(TxnType.PIN_CHANGE, pin="1234", new_pin="4321"),
            TransactionRequest(TxnType.BALANCE, pin="4321"),
        ):
            result = await t.transact(request, card)
            assert result.response_code == "00", (request.type, result.response_code)
            assert result.request is not None
            sent.append(result.request)
    ipek = dukpt.tdes_ipek(BDK, initial)
    keys = [ipek]
    for counter in range(1, pad.counter + 1):
        ksn = (int.from_bytes(initial, "big") | counter).to_bytes(10, "big")
        keys += [dukpt.tdes_transaction_key(ipek, ksn), dukpt.tdes_pin_key(ipek, ksn)]
    return sent, keys


def _journal_text(dsn: str, terminals: list[str], rows_min: int) -> str:
    async def fetch() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(
                await conn.fetch(
                    "SELECT request::text AS request, response::text AS response FROM journal "
                    "WHERE terminal_id = ANY($1::text[]) AND mti <> '0800'",
                    terminals,
                )
            )
        finally:
            await conn.close()

    deadline = time.monotonic() + 20
    while True:  # the journal is written in the background, within its flush interval
        rows = asyncio.run(fetch())
        if len(rows) >= rows_min or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(rows) >= rows_min
    for row in rows:
        assert not {"52", "120"} & set(json.loads(row["request"]))
    return "\n".join(row["request"] + row["response"] for row in rows)


def test_no_pin_block_or_dukpt_key_in_logs_or_journal(switchd):
    """If IBM and DUKPT PINs (and a PIN change) go through, then no PIN, PIN block, BDK, IPEK or DUKPT
    transaction or PIN key appears in switchd's log lines or in the journal."""
    initial = add_dukpt_terminal(switchd, "DKTEST02", 9002, like=DKATM)
    sent, keys = trio.run(_transact_and_collect, switchd.port, "DKTEST02", bytes.fromhex(initial))
    journal = _journal_text(switchd.dsn, [demo.POS_TERMINALS[5], "DKTEST02"], len(sent))
    logs = "".join(switchd.output.lines)
    secrets = {m[n] for m in sent for n in (52, 120) if m.get(n) is not None}
    secrets |= {k.hex().upper() for k in keys} | {demo.DEMO_BDK_HEX, demo.DEMO_IBM_PVK_HEX}
    assert len(secrets) > 8
    for text in (logs, journal):
        found = [s for s in secrets if s in text or s.lower() in text]
        assert not found
    # A clear PIN would be text; amounts (1234 = 12.34) are numbers.
    pins = {"1234", "8888", "4321"}
    for line in logs.splitlines():
        if line.startswith("{"):
            assert not pins & {v for v in json.loads(line).values() if isinstance(v, str)}
    assert any('"transaction"' in line for line in switchd.output.lines)
