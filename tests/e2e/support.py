"""Shared pieces of the core end-to-end modules: one real `switchd run --demo` process per module on its
own database, terminals of the simulators connected to it over TCP, operator commands, SQL, and a record
of every request sent so the module can check that no log line holds its card data."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trio

from simulators.messages import Card, Original, TerminalIdentity, TransactionRequest, TxnType
from simulators.terminal import Result, TerminalClient, open_terminal
from specs import demo
from switch.cli import switchctl
from switch.iso.message import Message
from tests.fixtures.pg import TEMPLATE, PgServer
from tests.integration.test_switchd import ProcessOutput, base_env, stop_process

TMK = bytes.fromhex(demo.DEMO_TMK_HEX)
_databases = itertools.count(1)


@dataclass
class Switchd:
    """The module's running switchd: where to reach it, its database and every line it printed."""

    host: str
    port: int
    metrics_address: str
    dsn: str
    output: ProcessOutput
    sent: list[Message] = field(default_factory=list)  # every request a test sent (for the log check)


def switchd_process(dsn: str, var_dir: Path, **settings: str) -> Iterator[Switchd]:
    """Body of a fixture: `switchd run --demo` on an existing database (with `SWITCH_*` settings); a
    restart on the same `dsn` keeps the queue, keys and ledger. Stopped with SIGTERM at the end unless the
    test stopped it (restart scenarios stop the module's switchd with `proc.send_signal`)."""
    env = base_env(
        SWITCH_DATABASE_URL=dsn, SWITCH_SWITCH_VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1", **settings
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "switch.cli.switchd", "run", "--demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=var_dir,
    )
    output = ProcessOutput(proc)
    try:
        ready = output.ready(60)
        host, port = ready["terminal"].rsplit(":", 1)
        yield Switchd(host=host, port=int(port), metrics_address=ready["metrics"], dsn=dsn, output=output)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            stop_process(proc, output)


def start_switchd(pg_server: PgServer, var_dir: Path, **settings: str) -> Iterator[Switchd]:
    """Body of a module fixture: a fresh database, `switchd_process` on it, the database dropped at the end."""
    name = f"e2e_{os.getpid()}_{next(_databases)}"
    pg_server.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    try:
        yield from switchd_process(pg_server.dsn(name), var_dir, **settings)
    finally:
        pg_server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pos(n: int) -> TerminalIdentity:
    return TerminalIdentity(terminal_id=demo.POS_TERMINALS[n - 1], merchant_id=demo.MERCHANT_ID)


def atm(n: int) -> TerminalIdentity:
    return TerminalIdentity(terminal_id=demo.ATM_TERMINALS[n - 1], merchant_id=demo.ATM_MERCHANT_ID)


class Terminal:
    """A simulator terminal that records what it sends (so the module can look for it in the logs)."""

    def __init__(self, client: TerminalClient, sent: list[Message]) -> None:
        self.client = client
        self._sent = sent

    async def transact(self, request: TransactionRequest, card: Card | None = None) -> Result:
        result = await self.client.transact(request, card)
        assert result.request is not None
        self._sent.append(result.request)
        return result

    def build(self, request: TransactionRequest, card: Card | None) -> Message:
        return self.client.build(request, card)

    async def send(self, message: Message) -> Message:
        """Send a message as built (or altered) by the test; its answer (no answer fails the test)."""
        self._sent.append(message)
        response, _, _ = await self.client.send_message(message)
        assert response is not None, "no answer within the terminal's timeout"
        return response


@asynccontextmanager
async def connect(
    switchd: Switchd, identity: TerminalIdentity, *, sign_on: bool = True
) -> AsyncIterator[Terminal]:
    """A terminal connected to switchd; signed on with fresh keys unless `sign_on` is False."""
    async with open_terminal(switchd.host, switchd.port, identity=identity, tmk=TMK, timeout_s=10) as client:
        if sign_on:
            assert (await client.sign_on()).approved
            assert (await client.key_exchange()).approved
        yield Terminal(client, switchd.sent)


def original_of(request: Message) -> Original:
    """What a reversal needs of a request built but not sent yet (or sent by hand): its field 90 parts
    and its amount."""
    return Original(
        mti=request.mti,
        stan=request[11],
        transmission=request[7],
        processing_code=request[3],
        amount_minor=int(request[4]),
    )


def purchase(amount: int, pin: str | None = demo.DEMO_PIN) -> TransactionRequest:
    return TransactionRequest(TxnType.PURCHASE, amount_minor=amount, pin=pin)


def balances(result: Result) -> dict[str, int]:
    assert result.response_code == "00", result.response_code
    return {b.amount_type: b.amount_minor for b in result.balances}


async def available(terminal: Terminal, card: Card) -> int:
    """The card's available balance by a balance inquiry (PIN given: ATMs ask for it)."""
    result = await terminal.transact(TransactionRequest(TxnType.BALANCE, pin=demo.DEMO_PIN), card)
    return balances(result)["02"]


async def sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """Run one statement on the module's database (as an operator's SQL would)."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return await trio.to_thread.run_sync(lambda: asyncio.run(run()))


async def directory_sql(dsn: str, query: str, *args: Any) -> None:
    """Change the card directory with plain SQL, then wait until switchd has applied the change.

    Plain SQL only notifies; an operator command also waits for every switchd's confirmation (migration
    0006). This does that wait the same way: a sync token, confirmed in commit order after the change.
    """
    await sql(dsn, query, *args)
    [row] = await sql(
        dsn,
        "WITH s AS (SELECT nextval('directory_change_token') AS t) "
        "SELECT t, pg_notify('switch_directory', 'sync:' || t) FROM s",
    )
    with trio.fail_after(10):
        while True:
            [waiting] = await sql(
                dsn, "SELECT count(*) AS n FROM directory_listeners WHERE acked_token < $1", row["t"]
            )
            if not waiting["n"]:
                return
            await trio.sleep(0.01)


Switchctl = Callable[..., Any]


def switchctl_runner(
    switchd: Switchd, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Switchctl:
    """`switchctl ARGS` as an operator runs it (in a worker thread: it runs its own trio loop)."""
    monkeypatch.setenv("SWITCH_DATABASE_URL", switchd.dsn)
    monkeypatch.delenv("SWITCH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no switch.toml here

    async def run(*argv: str) -> str:
        code = await trio.to_thread.run_sync(switchctl.main, list(argv))
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    return run


async def metrics_text(switchd: Switchd) -> str:
    def fetch() -> str:
        with urllib.request.urlopen(f"http://{switchd.metrics_address}/metrics", timeout=10) as reply:
            text: str = reply.read().decode()
        return text

    return await trio.to_thread.run_sync(fetch)


def log_events(switchd: Switchd) -> list[dict[str, Any]]:
    out = []
    for line in list(switchd.output.lines):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


async def wait_for_log(
    switchd: Switchd, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10
) -> dict[str, Any]:
    """The first log line that matches, waiting for it: the pipe is read in a thread, a little behind."""
    with trio.fail_after(timeout_s):
        while True:
            for event in log_events(switchd):
                if predicate(event):
                    return event
            await trio.sleep(0.02)


def secrets_sent(switchd: Switchd) -> set[str]:
    """The clear card data of every request sent: PANs, track 2 data (and its part after the PAN), PIN
    blocks (52, 120)."""
    found: set[str] = set()
    for message in switchd.sent:
        if (pan := message.get(2)) is not None:
            found.add(pan)
        if (track := message.get(35)) is not None:
            pan_part, _, rest = track.partition("=")
            found.update({track, pan_part, rest})
        for number in (52, 120):
            if (block := message.get(number)) is not None:
                found.update({block.upper(), block.lower()})
    return found


def assert_no_card_data_logged(switchd: Switchd) -> None:
    secrets = secrets_sent(switchd)
    assert secrets, "no request with card data was sent"
    text = "".join(switchd.output.lines)
    leaked = sorted(s[:6] + "..." for s in secrets if s in text)
    assert not leaked, f"card data in switchd's log: {leaked}"
