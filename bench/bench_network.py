"""Forwarded purchases through one network simulator: how much the switch adds to the network's own time.

Issue 6's target: purchases forwarded to a network that answers immediately, the switch adds at most 5 ms
p99 at 1,000/s offered. Everything on this one machine:
1. netsim for Visa (`--no-message-log`), driven directly by a member client in this process (one
   connection, as the switch uses: sign-on, key exchange, then 0200s for netsim's Visa cards with a PIN
   block under the ZPK, built before the clock starts): netsim's own answer time at 1,000/s, the floor;
2. `switchd run --demo` on a fresh, DURABLE embedded PostgreSQL, linked to that netsim (the other demo
   networks off), with the load generator as a separate process sending purchases with PIN for netsim's
   Visa cards (`loadgen --card-bin 476173`): at 1,000/s offered and at the maximum rate;
3. what the switch adds: (2)'s latency at 1,000/s minus (1)'s, percentile by percentile, and the switch's
   own view of its network round trips (`switch_network_latency_seconds`, bucket bounds) in that run.
Each switchd run also prints the CPU per purchase of switchd, netsim, PostgreSQL and the load generator
and the time they waited for a CPU (bench/cpu.py, from the scheduler's own statistics).
Every paced run is also made at --low-rate (default 200/s), a load the switch serves without queueing
on this machine, so that what the switch itself adds shows apart from the queueing of an overload.
Options: --duration S (default 15), --terminals N (16), --in-flight N (8), --workers N (switchd
processes, default 1), --low-rate R.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import trio

from bench.common import option, report, report_cpu, run_loadgen, wait_for_events
from simulators.loadgen import percentile
from simulators.messages import demo_card
from simulators.netsim.acquirer import Originator, parse_originate
from simulators.netsim.keys import parse_field48
from specs import demo
from specs.demo_networks import NETWORK_CARD_COUNT, NETWORK_SPECIAL_CARDS, network
from specs.visa import NETWORK_MANAGEMENT
from switch.iso.codec import Codec, Packet
from switch.iso.headers import VisaHeader
from switch.iso.message import Message
from tests.fixtures.pg import make_world_readable_tmpdir

NETWORK = network("visa")
TARGET_ADDED_P99_MS = 5.0
PACED_RATE_PER_S = 1000.0
DIRECT_WINDOW = 64  # requests in flight at most on the direct connection at max rate
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
CPU_GROUPS = ("switchd", "netsim", "postgres", "loadgen")


# -- the processes ------------------------------------------------------------------------------------


def _http(address: str, path: str) -> str:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as reply:
        return str(reply.read().decode())


def _stop(proc: subprocess.Popen[str], timeout_s: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _loadgen(
    port: int,
    *,
    rate: float,
    duration_s: float | None,
    terminals: int,
    in_flight: int,
    count: int | None = None,
) -> dict[str, Any]:
    """Purchases for netsim's Visa cards; with a duration, the first 3 s (caches filling, the first key
    exchange) are not counted, and the CPU by process group is measured (bench/cpu.py)."""
    return run_loadgen(
        port,
        rate=rate,
        duration_s=duration_s,
        warmup_s=3,
        count=count,
        terminals=terminals,
        in_flight=in_flight,
        extra=("--card-bin", NETWORK.bins[0]),
        measure_cpu=duration_s is not None,
    )


# -- netsim alone: a member client on its link --------------------------------------------------------


@dataclass
class _Direct:
    """One member connection to netsim, with its requests' send times by STAN."""

    stream: trio.SocketStream
    codec: Codec = field(default_factory=lambda: Codec("visa"))
    header: VisaHeader = field(
        default_factory=lambda: VisaHeader(
            destination_id=NETWORK.station_id, source_id=NETWORK.our_station_id
        )
    )
    sent_at: dict[str, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    answered: trio.Event = field(default_factory=trio.Event)
    expected: int = 0
    window: trio.Semaphore | None = None  # at max rate: released by each answer

    async def read(self, management: trio.MemorySendChannel[Message]) -> None:
        framer = self.codec.framer(frame_bytes_max=8192)
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                return
            now = time.perf_counter()
            framer.receive_data(data)
            while (payload := framer.next_frame()) is not None:
                packet = self.codec.decode_payload(payload)
                if not isinstance(packet, Packet):
                    continue
                message = packet.message
                if message.mti.startswith("08"):
                    await management.send(message)
                    continue
                started = self.sent_at.pop(message.get(11) or "", None)
                if started is None:
                    continue
                self.latencies_ms.append((now - started) * 1000)
                if self.window is not None:
                    self.window.release()
                code = message.get(39) or "none"
                self.codes[code] = self.codes.get(code, 0) + 1
                if len(self.latencies_ms) >= self.expected:
                    self.answered.set()

    async def send(self, stan: str, frame: bytes) -> None:
        self.sent_at[stan] = time.perf_counter()
        await self.stream.send_all(frame)


def _frames(count: int, first_stan: int, zone_key: Any) -> list[tuple[str, bytes]]:
    """`count` encoded 0200 purchases with PIN for netsim's ordinary Visa cards, STANs from `first_stan`."""
    originator = Originator(NETWORK)
    special = {index for _, index in NETWORK_SPECIAL_CARDS.values()}
    cards = [
        demo_card(demo.demo_pan(NETWORK.bins[0], i))
        for i in range(1, NETWORK_CARD_COUNT + 1)
        if i not in special
    ]
    spec = parse_originate({"amount_minor": 100})
    codec = Codec("visa")
    header = VisaHeader(destination_id=NETWORK.station_id, source_id=NETWORK.our_station_id)
    now = datetime.now(UTC)
    frames = []
    for n in range(count):
        stan = f"{(first_stan + n) % 999_999 + 1:06d}"
        message = originator.request(
            spec, cards[n % len(cards)], stan=stan, now_utc=now, rrn=f"{n:012d}", zone_key=zone_key
        )
        frames.append((stan, codec.encode_frame(message, header)))
    return frames


async def _direct_run(port: int, *, rate: float, duration_s: float, seed_stan: int) -> dict[str, Any]:
    """netsim's own answer time: sign on, exchange keys, then `rate`/s (0: a window of DIRECT_WINDOW)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    direct = _Direct(stream)
    send_management, receive_management = trio.open_memory_channel[Message](10)
    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(direct.read, send_management)

        async def management(code: str, stan: str) -> Message:
            now = datetime.now(UTC).strftime("%m%d%H%M%S")
            await stream.send_all(
                direct.codec.encode_frame(Message("0800", {7: now, 11: stan, 70: code}), direct.header)
            )
            with trio.fail_after(10):
                return await receive_management.receive()

        if (await management(NETWORK_MANAGEMENT["sign_on"], "900001")).get(39) != "00":
            raise RuntimeError("netsim refused the sign-on")
        answer = await management(NETWORK_MANAGEMENT["key_exchange"], "900002")
        zone_key = parse_field48(answer.get(48), bytes.fromhex(NETWORK.zmk_hex))
        count = int(rate * duration_s) if rate else int(duration_s * 4000)
        frames = _frames(count, seed_stan, zone_key)
        direct.expected = count
        started = time.perf_counter()
        if rate:
            interval_s = 1 / rate
            at = trio.current_time()
            for stan, frame in frames:
                await trio.sleep_until(at)
                at += interval_s
                await direct.send(stan, frame)
        else:
            direct.window = trio.Semaphore(DIRECT_WINDOW)
            deadline = trio.current_time() + duration_s
            sent = 0
            for stan, frame in frames:
                if trio.current_time() >= deadline:
                    break
                await direct.window.acquire()
                await direct.send(stan, frame)
                sent += 1
            direct.expected = sent
            if len(direct.latencies_ms) >= sent:
                direct.answered.set()
        with trio.move_on_after(30):
            await direct.answered.wait()
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    ordered = sorted(direct.latencies_ms)
    return {
        "tps": round(len(ordered) / elapsed, 1),
        "answered": len(ordered),
        "timeouts": direct.expected - len(ordered),
        "latency_ms": {f"p{p:g}": round(percentile(ordered, p), 3) for p in PERCENTILES},
        "response_codes": dict(sorted(direct.codes.items())),
    }


# -- the switch's own network round trips -------------------------------------------------------------


def _histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of the histogram `name` (summed over label sets other than `le`)."""
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if not line.startswith(name + "_bucket{"):
            continue
        labels, value = line.rsplit(" ", 1)
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        bound = float("inf") if le == "+Inf" else float(le)
        buckets[bound] = buckets.get(bound, 0.0) + float(value)
    return buckets


def _bucket_percentile(before: dict[float, float], after: dict[float, float], pct: float) -> str:
    """The bucket bound under which `pct` % of the observations between two scrapes fell."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    if not total:
        return "-"
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= total * pct / 100:
            return "> 10 s" if bound == float("inf") else f"<= {bound * 1000:g} ms"
    return "-"


def _scrape(addresses: list[str]) -> dict[float, float]:
    merged: dict[float, float] = {}
    for address in addresses:
        for bound, count in _histogram(_http(address, "/metrics"), "switch_network_latency_seconds").items():
            merged[bound] = merged.get(bound, 0.0) + count
    return merged


# -- report -------------------------------------------------------------------------------------------


def run(args: list[str]) -> None:
    duration_s = option(args, "duration", 15)
    terminals = int(option(args, "terminals", 16))
    in_flight = int(option(args, "in-flight", 8))
    workers = int(option(args, "workers", 1))
    low_rate = option(args, "low-rate", 200)
    load = os.getloadavg()
    print(
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} before the runs; {duration_s:g} s per run; "
        f"loadgen {terminals} terminals x {in_flight} in flight, purchases with PIN for netsim's Visa cards; "
        f"switchd with {workers} process(es)",
        flush=True,
    )
    var = make_world_readable_tmpdir("cardswitch-bench-network-")
    netsim_log = (var / "netsim.log").open("w")
    netsim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulators.netsim.cli",
            "--network",
            "visa",
            "--port",
            "0",
            "--control-port",
            "0",
            "--var-dir",
            str(var / "netsim"),
            "--no-message-log",
            "--log-format",
            "json",
        ],
        stdout=netsim_log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    switchd: subprocess.Popen[str] | None = None
    switchd_log = None
    try:
        ready = wait_for_events(var / "netsim.log", "ready", 1, 30)[0]
        link_port = int(ready["link"].rsplit(":", 1)[1])
        rates = (PACED_RATE_PER_S, low_rate)
        direct: dict[float, dict[str, Any]] = {}
        for n, rate in enumerate(rates):
            direct[rate] = trio.run(
                partial(_direct_run, link_port, rate=rate, duration_s=duration_s, seed_stan=n * 100_000)
            )
            report(f"netsim alone (direct member), {rate:,.0f}/s", direct[rate], width=44)
        direct_max = trio.run(
            partial(_direct_run, link_port, rate=0, duration_s=duration_s, seed_stan=400_000)
        )
        report(f"netsim alone (direct member), max ({DIRECT_WINDOW} in flight)", direct_max, width=44)

        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
        env.update(
            {
                "SWITCH_SWITCH_VAR_DIR": str(var / "switchd"),
                "SWITCH_TERMINAL_PORT": "0",
                "SWITCH_METRICS_PORT": "0",
                "SWITCH_LOG_FORMAT": "json",
                "SWITCH_SWITCH_WORKERS": str(workers),
                "SWITCH_NETWORKS_VISA_ENABLED": "true",
                "SWITCH_NETWORKS_VISA_ENDPOINTS": f"127.0.0.1:{link_port}",
                "SWITCH_NETWORKS_CUPS_ENABLED": "false",
                "SWITCH_NETWORKS_SHETAB_ENABLED": "false",
            }
        )
        (var / "switchd").mkdir()
        switchd_log = (var / "switchd.log").open("w")
        switchd = subprocess.Popen(
            [sys.executable, "-m", "switch.cli.switchd", "run", "--demo"],
            stdout=switchd_log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        readies = wait_for_events(var / "switchd.log", "ready", workers, 180)
        metrics = [str(r["metrics"]) for r in readies]
        port = int(readies[0]["terminal"].rsplit(":", 1)[1])
        deadline = time.monotonic() + 60
        # Linked, and a ZPK exchanged: a short warm-up is all approved.
        while True:
            if all("visa up" in _http(address, "/healthz") for address in metrics):
                warm = _loadgen(port, rate=0, duration_s=None, count=200, terminals=terminals, in_flight=1)
                if warm["response_codes"].get("00", 0) == warm["answered"] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("switchd did not link to netsim and approve purchases within 60 s")
            time.sleep(0.5)
        verdict = "NOT met"
        for rate in rates:
            before = _scrape(metrics)
            paced = _loadgen(port, rate=rate, duration_s=duration_s, terminals=terminals, in_flight=in_flight)
            after = _scrape(metrics)
            report(f"switchd x{workers} forwarding, {rate:,.0f}/s", paced, width=44)
            report_cpu(paced, CPU_GROUPS)
            round_trips = ", ".join(f"p{p:g} {_bucket_percentile(before, after, p)}" for p in (50.0, 99.0))
            print(f"  its network round trips (switch_network_latency_seconds): {round_trips}", flush=True)
            added = {
                p: paced["latency_ms"][f"p{p:g}"] - direct[rate]["latency_ms"][f"p{p:g}"] for p in PERCENTILES
            }
            print(
                "  the switch adds (this run minus netsim alone at the same rate): "
                + "  ".join(f"p{p:g} {value:+.2f} ms" for p, value in added.items()),
                flush=True,
            )
            if rate == PACED_RATE_PER_S:
                met = (
                    added[99.0] <= TARGET_ADDED_P99_MS
                    and paced["timeouts"] == 0
                    and paced["tps"] >= rate * 0.98
                )
                verdict = "met" if met else "NOT met"
        full = _loadgen(port, rate=0, duration_s=duration_s, terminals=terminals, in_flight=in_flight)
        report(f"switchd x{workers} forwarding, max rate", full, width=44)
        report_cpu(full, CPU_GROUPS)
        print(
            f"target (the switch adds at most {TARGET_ADDED_P99_MS:g} ms p99 at 1,000/s offered): {verdict}",
            flush=True,
        )
    finally:
        if switchd is not None:
            _stop(switchd)
        if switchd_log is not None:
            switchd_log.close()
        _stop(netsim)
        netsim_log.close()
        shutil.rmtree(var, ignore_errors=True)
