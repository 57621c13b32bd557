"""HSM throughput: CA (TPK->ZPK PIN translation) and DC/EC (Visa PVV verification) per second, in-process
and over TCP to an hsmd in a separate process.

Usage: python -m bench hsm [--seconds=N] [--connections=N]
- in-process, direct: `HostCommandProcessor.process` in a loop (what one core does with parsing included);
- in-process, client: the same through `HsmClient(InProcessTransport)` under trio (the switch's path);
- TCP: an hsmd subprocess (test LMK, no per-command logging) and `HsmClient(TcpTransport)` with N
  concurrent callers over a pool of N connections; client and server share this machine's cores.
Keys are the public test LMK and made-up test keys; nothing secret is involved.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import trio

from bench.common import option
from hsm.client import HsmClient, InProcessTransport, TcpTransport
from hsm.crypto import pinblock, pinverify
from hsm.host.processor import HostCommandProcessor
from hsm.keys import PVK, TPK, ZPK, KeyVault
from hsm.lmk import VariantLmk

_TPK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
_ZPK = bytes.fromhex("A7F1DA4A3B5D7C0D2F6E4F3E5D2C1AA2")
_PVK = bytes.fromhex("4CA2161637D0133E5B1A4A2F40D30D8F")
_ACCOUNT = "000123456789"
_CA_TARGET_PER_S = 20_000
_PIN = "1234"

_SERVER_SCRIPT = """
import sys, trio
from hsm.host.processor import HostCommandProcessor
from hsm.keys import KeyVault
from hsm.lmk import VariantLmk
from hsm.server import HsmServer, ServerConfig

async def main():
    server = HsmServer(HostCommandProcessor(KeyVault(VariantLmk.test_lmk())), ServerConfig(port=0))
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.run)
        print(ports[0], flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)
        server.stop()

trio.run(main)
"""


def _requests() -> dict[str, tuple[str, str]]:
    vault = KeyVault(VariantLmk.test_lmk())
    tpk, zpk, pvk = vault.wrap(_TPK, TPK, "U"), vault.wrap(_ZPK, ZPK, "U"), vault.wrap(_PVK, PVK, "U")
    pan = _ACCOUNT + "0"
    tpk_block = pinblock.encrypt_pin_block(_PIN, pan, 0, _TPK).hex().upper()
    zpk_block = pinblock.encrypt_pin_block(_PIN, pan, 0, _ZPK).hex().upper()
    pvv = pinverify.visa_pvv(_PVK, pan, 1, _PIN)
    return {
        "CA": ("CA", f"{tpk}{zpk}12{tpk_block}0101{_ACCOUNT}"),
        "DC": ("DC", f"{tpk}{pvk}{tpk_block}01{_ACCOUNT}1{pvv}"),
        "EC": ("EC", f"{zpk}{pvk}{zpk_block}01{_ACCOUNT}1{pvv}"),
    }


def _direct(processor: HostCommandProcessor, command: str, fields: str, seconds: float) -> float:
    payload = ("0000" + command + fields).encode("latin-1")
    assert processor.process(payload)[6:8] == b"00"
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(500):
            processor.process(payload)
        count += 500
    return count / (time.perf_counter() - started)


async def _through_client(
    client: HsmClient, command: str, fields: str, seconds: float, workers: int
) -> float:
    code, _ = await client.call(command, fields)
    assert code == "00", code
    count = 0
    deadline = trio.current_time() + seconds

    async def worker() -> None:
        nonlocal count
        while trio.current_time() < deadline:
            await client.call(command, fields)
            count += 1

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
    return count / (time.perf_counter() - started)


async def _tcp(
    port: int, requests: dict[str, tuple[str, str]], seconds: float, connections: int
) -> dict[str, float]:
    client = HsmClient(TcpTransport("127.0.0.1", port, pool_size=connections, timeout_s=10.0))
    rates = {
        name: await _through_client(client, command, fields, seconds, connections)
        for name, (command, fields) in requests.items()
    }
    await client.aclose()
    return rates


def _tcp_with_server(
    requests: dict[str, tuple[str, str]], seconds: float, connections: int
) -> dict[str, float]:
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        return trio.run(_tcp, port, requests, seconds, connections)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def run(args: list[str]) -> None:
    seconds = option(args, "seconds", 2.0)
    connections = int(option(args, "connections", 8))
    requests = _requests()
    processor = HostCommandProcessor(KeyVault(VariantLmk.test_lmk()))
    in_process: dict[str, float] = {}
    for name, (command, fields) in requests.items():
        rate = _direct(processor, command, fields, seconds)
        print(f"in-process direct  {name}: {rate:10,.0f} commands/s (one core)")
    client = HsmClient(InProcessTransport(processor))
    for name, (command, fields) in requests.items():
        in_process[name] = trio.run(_through_client, client, command, fields, seconds, 1)
        print(f"in-process client  {name}: {in_process[name]:10,.0f} commands/s (HsmClient, trio)")
    # The target, judged on the switch's own path (client included), not the bare processor.
    verdict = "met" if in_process["CA"] >= _CA_TARGET_PER_S else "NOT met"
    print(f"target {_CA_TARGET_PER_S:,} in-process CA/s through HsmClient: {verdict}")
    tcp_rates = _tcp_with_server(requests, seconds, connections)
    for name, rate in tcp_rates.items():
        print(
            f"TCP ({connections} connections) {name}: {rate:10,.0f} commands/s (hsmd subprocess, same machine)"
        )
