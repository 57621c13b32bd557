"""Shared pieces of the interbank end-to-end modules: real `netsim` processes (one per network, on free
ports), a real `switchd run --demo` pointed at them through `SWITCH_NETWORKS_*` overrides, netsim's control
API over HTTP, and the switch's side of the books (a network settlement account in the ledger).

A module starts its processes once (module-scoped fixtures) and drives them as an operator and other
banks would: terminals over TCP to switchd, `POST /originate` to make a network's acquirer send requests
for our cards, `GET /status` and `GET /position` to see what the network saw. Fault scenarios (timeouts,
late answers, link drops, restarts) reuse the same pieces: `Netsim.faults` changes netsim's fault modes
while it runs, `Netsim.drop` closes the member connections, `start_switchd` takes any setting, and
`switchd_process` starts (or restarts) switchd on an existing database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from simulators.messages import Card, TerminalIdentity, TransactionRequest
from simulators.netsim.faults import Faults
from simulators.terminal import Result as TerminalResult
from specs import demo
from specs.demo_networks import NETWORKS, network
from switch.cli.demo_seed import card_account_ids
from switch.pipeline.forward import network_settlement_account_id
from switch.pipeline.issuer import advice_suspense_account_id
from tests.e2e.support import Switchd, Terminal, pos, sql, start_switchd, switchd_process
from tests.fixtures.pg import PgServer
from tests.integration.test_switchd import ProcessOutput, stop_process

NETWORK_NAMES = tuple(n.name for n in NETWORKS)
# Short link timings: a test waits seconds, not the production minutes, for what a fault makes happen.
FAST_LINK_SETTINGS = {
    "DEADLINE_MS": "3000",
    "RECONNECT_BACKOFF_INITIAL_S": "0.2",
    "RECONNECT_BACKOFF_MAX_S": "1.0",
    "CONNECT_TIMEOUT_S": "2.0",
}
FAST_SAF_SETTINGS = {
    "SWITCH_SAF_REQUEST_TIMEOUT_S": "3.0",
    "SWITCH_SAF_POLL_INTERVAL_S": "0.2",
    "SWITCH_SAF_BACKOFF_INITIAL_S": "0.5",
    "SWITCH_SAF_BACKOFF_MAX_S": "2.0",
}


@dataclass
class Netsim:
    """One running netsim process: its link and control addresses and everything it printed."""

    name: str
    link_port: int
    control: str  # host:port of the control API
    output: ProcessOutput

    def _call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://{self.control}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        return await trio.to_thread.run_sync(self._call, method, path, body)

    async def status(self) -> dict[str, Any]:
        code, body = await self.call("GET", "/status")
        assert code == 200, body
        return dict(body)

    async def originate(self, **spec: object) -> list[dict[str, Any]]:
        """Requests for our cards from the network's acquirer (docs/networks.md, POST /originate)."""
        code, body = await self.call("POST", "/originate", spec)
        assert code == 200, body
        return list(body["results"])

    async def position(self, currency: int) -> int:
        """netsim's net position toward us in `currency` (> 0: the network owes us)."""
        code, body = await self.call("GET", "/position")
        assert code == 200, body
        entry = body["currencies"].get(f"{currency:03d}") or body["currencies"].get(str(currency))
        return int(entry["net_minor"]) if entry else 0

    async def faults(self, **changes: object) -> dict[str, Any]:
        code, body = await self.call("PUT", "/faults", changes)
        assert code == 200, body
        return dict(body)

    async def drop(self) -> int:
        code, body = await self.call("POST", "/drop", {})
        assert code == 200, body
        return int(body["dropped"])

    async def balance(self, pan: str, currency: int) -> int:
        """The available balance of one of netsim's cards (the PAN goes in the body, never the URL)."""
        code, body = await self.call("POST", "/balance", {"pan": pan})
        assert code == 200, body
        return int(body["balances"][f"{currency:03d}"]["available_minor"])


def start_netsim(name: str, var_dir: Path, *flags: str) -> Iterator[Netsim]:
    """Body of a fixture: `netsim --network NAME` on free ports, stopped (SIGTERM) at the end."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulators.netsim.cli",
            "--network",
            name,
            "--port",
            "0",
            "--control-port",
            "0",
            "--var-dir",
            str(var_dir),
            "--log-format",
            "json",
            "--originate-timeout-s",
            "5",
            *flags,
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = ProcessOutput(proc)
    try:
        ready = output.ready(30)
        yield Netsim(
            name=name, link_port=int(ready["link"].rsplit(":", 1)[1]), control=ready["control"], output=output
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        finally:
            stop_process(proc, output)


def network_settings(netsims: dict[str, Netsim], **extra: str) -> dict[str, str]:
    """`SWITCH_NETWORKS_*` overrides pointing the demo networks at these netsims, with fast timings."""
    settings: dict[str, str] = {}
    for name, sim in netsims.items():
        # The demo networks are off in tests (NETWORKS_OFF in base_env): on again, at this netsim.
        settings[f"SWITCH_NETWORKS_{name.upper()}_ENABLED"] = "true"
        settings[f"SWITCH_NETWORKS_{name.upper()}_ENDPOINTS"] = f"127.0.0.1:{sim.link_port}"
        for key, value in FAST_LINK_SETTINGS.items():
            settings[f"SWITCH_NETWORKS_{name.upper()}_{key}"] = value
    return {**settings, **FAST_SAF_SETTINGS, **extra}


def start_interbank(
    pg_server: PgServer, var_dir: Path, *netsim_flags: str, **settings: str
) -> Iterator[tuple[Switchd, dict[str, Netsim]]]:
    """Body of a module fixture: the three netsims, then switchd linked to them."""
    with ExitStack() as stack:
        netsims = {
            name: stack.enter_context(FixtureBody(start_netsim(name, var_dir / "netsim", *netsim_flags)))
            for name in NETWORK_NAMES
        }
        switchd = stack.enter_context(
            FixtureBody(start_switchd(pg_server, var_dir, **network_settings(netsims, **settings)))
        )
        yield switchd, netsims


class FixtureBody:
    """A generator fixture body as a context manager (so several can share one ExitStack)."""

    def __init__(self, body: Iterator[Any]) -> None:
        self._body = body

    def __enter__(self) -> Any:
        return next(self._body)

    def __exit__(self, *_: object) -> None:
        for _ in self._body:
            pass


async def restart_switchd(
    stack: ExitStack, switchd: Switchd, var_dir: Path, netsims: dict[str, Netsim], **settings: str
) -> Switchd:
    """Stop switchd with SIGTERM (it must drain and exit 0), then start it again on the same database and
    var dir, linked to the same netsims; the new process is stopped when `stack` closes."""
    proc = switchd.output.proc
    proc.send_signal(signal.SIGTERM)
    code = await trio.to_thread.run_sync(lambda: proc.wait(timeout=30))
    assert code == 0, "".join(switchd.output.lines[-20:])
    body = switchd_process(switchd.dsn, var_dir, **network_settings(netsims, **settings))
    started: Switchd = await trio.to_thread.run_sync(lambda: stack.enter_context(FixtureBody(body)))
    return started


async def wait_until_linked(
    netsims: dict[str, Netsim], timeout_s: float = 30, *, switchd: Switchd | None = None
) -> None:
    """Until every netsim has a signed-on member connection and has answered a key exchange; with
    `switchd`, also until the switch holds netsim's current ZPK (a restarted switchd forgets the demo
    working keys, netsim does not)."""
    with trio.fail_after(timeout_s):
        for sim in netsims.values():
            while True:
                status = await sim.status()
                index = status["key"].get("index")
                linked = status["link"]["up"] and index is not None
                if linked and (switchd is None or await switch_key_index(switchd, sim.name) == index):
                    break
                await trio.sleep(0.05)


async def switch_key_index(switchd: Switchd, name: str) -> int | None:
    """The index of the ZPK the switch holds as current for the network (its key store)."""
    rows = await sql(switchd.dsn, "SELECT current_index FROM network_keys WHERE network = $1", name)
    return rows[0]["current_index"] if rows else None


async def settlement_debit_balance(switchd: Switchd, name: str, currency: int) -> int:
    """Debits minus credits posted on the switch's `network:<name>:<currency>` account (the netsim
    position's mirror; holds are left out on both sides)."""
    rows = await sql(
        switchd.dsn,
        "SELECT debits_posted - credits_posted AS net FROM ledger_accounts WHERE id = $1",
        network_settlement_account_id(name, currency),
    )
    return int(rows[0]["net"]) if rows else 0


async def suspense_debit_balance(switchd: Switchd, name: str, currency: int) -> int:
    """Debits minus credits posted on the switch's advice suspense account for the network (advices booked
    there because our cardholder's account could not take them)."""
    rows = await sql(
        switchd.dsn,
        "SELECT debits_posted - credits_posted AS net FROM ledger_accounts WHERE id = $1",
        advice_suspense_account_id(name, currency),
    )
    return int(rows[0]["net"]) if rows else 0


async def wait_saf_drained(switchd: Switchd, timeout_s: float = 20) -> None:
    """Until store-and-forward holds no undelivered entry (every reversal and advice acknowledged)."""
    with trio.fail_after(timeout_s):
        while True:
            rows = await sql(
                switchd.dsn, "SELECT count(*) AS n FROM saf_queue WHERE state IN ('queued', 'in_flight')"
            )
            if rows[0]["n"] == 0:
                return
            await trio.sleep(0.1)


def network_card(name: str, index: int, *, bin_index: int = 0) -> str:
    """Card `index` of netsim's card base on the network's BIN number `bin_index` (TEST DATA)."""
    return demo.demo_pan(network(name).bins[bin_index], index)


def currency_of(name: str) -> int:
    """The currency a demo terminal prices a card of this network in: 840 where the network settles it,
    else the network's first (Shetab: rials)."""
    currencies = network(name).currencies
    return demo.CURRENCY if demo.CURRENCY in currencies else currencies[0]


# -- terminals, cards and books of the interbank modules ------------------------------------------------------


def terminal_for(name: str) -> TerminalIdentity:
    """A demo terminal pricing in a currency the network settles (Shetab: the rial terminal), one per
    network: a test may use the networks at once, and two connections of one terminal would replace each
    other's keys."""
    if currency_of(name) == demo.RIAL_CURRENCY:
        return TerminalIdentity(
            terminal_id=demo.RIAL_POS_TERMINALS[0],
            merchant_id=demo.RIAL_MERCHANT_ID,
            currency=demo.RIAL_CURRENCY,
        )
    return pos(40 + NETWORK_NAMES.index(name))


def our_card(name: str, index: int) -> str:
    """One of our cards a network's acquirer can bring in the network's currency (Shetab: a rial card)."""
    bin6 = demo.RIAL_BIN if currency_of(name) == demo.RIAL_CURRENCY else demo.DEBIT_BIN
    return demo.demo_pan(bin6, index)


async def our_available(switchd: Switchd, pan: str) -> int:
    """Available balance of the first (checking) account of one of our demo cards, from the ledger."""
    account_id = card_account_ids(pan[:6], int(pan[6:15]))[0]
    [row] = await sql(
        switchd.dsn,
        "SELECT credits_posted - debits_posted - debits_pending AS available FROM ledger_accounts WHERE id = $1",
        account_id,
    )
    return int(row["available"])


async def journal_route(switchd: Switchd, rrn: str | None, *, mti: str = "02%") -> str:
    """The route of the journal row of the request with this RRN (the journal writes in the background)."""
    assert rrn, "the answer has no RRN"
    with trio.fail_after(10):
        while True:
            rows = await sql(
                switchd.dsn, "SELECT route FROM journal WHERE rrn = $1 AND mti LIKE $2", rrn, mti
            )
            if rows:
                return str(rows[0]["route"])
            await trio.sleep(0.05)


async def wait_counter(sim: Netsim, key: str, at_least: int, timeout_s: float = 10) -> dict[str, Any]:
    """netsim's status once its counter `key` has reached `at_least` (it counts as messages arrive)."""
    with trio.fail_after(timeout_s):
        while True:
            status = await sim.status()
            if status["counters"].get(key, 0) >= at_least:
                return status
            await trio.sleep(0.02)


def counter_deltas(before: dict[str, Any], after: dict[str, Any], *keys: str) -> dict[str, int]:
    """How much each of netsim's counters `keys` grew between two /status answers."""
    return {k: after["counters"].get(k, 0) - before["counters"].get(k, 0) for k in keys}


async def reset_faults(netsims: dict[str, Netsim]) -> None:
    """Every netsim back to no faults (a module's tests share the processes)."""
    defaults = Faults().to_json()
    for sim in netsims.values():
        await sim.faults(**defaults)


async def transact_during(
    terminal: Terminal,
    request: TransactionRequest,
    card: Card,
    during: Callable[[], Awaitable[object]],
) -> TerminalResult:
    """The terminal's answer to `request`, with `during()` run while the request waits for it (a test
    changes netsim's faults or drops the link once netsim has the request)."""
    answer: list[TerminalResult] = []

    async def send() -> None:
        answer.append(await terminal.transact(request, card))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        await during()
    return answer[0]


@dataclass
class Books:
    """Both sides' books for one network and currency at the start of a scenario: the switch's settlement
    account and netsim's position. `assert_agree` checks that they moved by the same amount."""

    switchd: Switchd
    sim: Netsim
    currency: int
    settlement: int
    position: int

    @classmethod
    async def open(cls, switchd: Switchd, sim: Netsim, currency: int) -> Books:
        await wait_saf_drained(switchd)
        return cls(
            switchd=switchd,
            sim=sim,
            currency=currency,
            settlement=await settlement_debit_balance(switchd, sim.name, currency),
            position=await sim.position(currency),
        )

    async def assert_agree(self, *, moved: int) -> None:
        """Once store-and-forward has drained: both sides moved by `moved` (minor units, > 0: the network
        owes us more) since `open`."""
        await wait_saf_drained(self.switchd)
        settlement = (
            await settlement_debit_balance(self.switchd, self.sim.name, self.currency) - self.settlement
        )
        position = await self.sim.position(self.currency) - self.position
        assert (settlement, position) == (moved, moved), (
            f"{self.sim.name}: switch {settlement}, netsim {position}"
        )


async def last_saf_entry_id(switchd: Switchd) -> int:
    rows = await sql(switchd.dsn, "SELECT coalesce(max(entry_id), 0) AS n FROM saf_queue")
    return int(rows[0]["n"])


async def saf_entries_since(switchd: Switchd, entry_id: int, network: str) -> list[dict[str, Any]]:
    """The network's store-and-forward entries queued after `entry_id`, in queue order (no card data)."""
    rows = await sql(
        switchd.dsn,
        "SELECT entry_id, kind, mti, state, attempts, last_response_code FROM saf_queue "
        "WHERE entry_id > $1 AND network = $2 ORDER BY entry_id",
        entry_id,
        network,
    )
    return [dict(r) for r in rows]


async def healthz_text(switchd: Switchd) -> str:
    def fetch() -> str:
        with urllib.request.urlopen(f"http://{switchd.metrics_address}/healthz", timeout=10) as reply:
            return str(reply.read().decode())

    return await trio.to_thread.run_sync(fetch)


async def wait_switch_link(switchd: Switchd, name: str, *, up: bool, timeout_s: float = 20) -> None:
    """Until switchd's /healthz says the network's link is up (signed on) or down."""
    wanted = f"{name} {'up' if up else 'down'}"
    with trio.fail_after(timeout_s):
        while True:
            if wanted in await healthz_text(switchd):
                return
            await trio.sleep(0.05)
