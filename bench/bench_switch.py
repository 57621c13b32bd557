"""On-us purchases with PIN through the whole switch, against the bare ISO 8583 echo server as ceiling.

Everything on this one machine, as a user would run it: `switchd run --demo` on a fresh, DURABLE embedded
PostgreSQL (fsync on, synchronous commit), the load generator as a separate process, the echo server
(bench/echo_server.py: decode + encode, nothing else) under the same load. Three runs:
1. echo server, maximum rate: the ceiling;
2. switchd, maximum rate: purchases with PIN (HSM in-process, ledger group commit, journal);
3. switchd at 1,000 purchases/s offered: the latency a terminal sees at that load.
Options: --duration S (default 15), --terminals N (default 16), --in-flight N (default 8),
--workers N (switchd processes on the port, default 2: one per core of this machine; 1 for a single
process).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.fixtures.pg import make_world_readable_tmpdir

WARMUP_S = 3


def _option(args: list[str], name: str, default: float) -> float:
    for arg in args:
        if arg.startswith(f"--{name}="):
            return float(arg.split("=", 1)[1])
    return default


def _read_line_with(proc: subprocess.Popen[str], needle: str, timeout_s: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if needle in line:
            return line
    raise RuntimeError(f"no line containing {needle!r} within {timeout_s} s")


def _wait_for_events(path: Path, kind: str, count: int, timeout_s: float) -> list[dict[str, Any]]:
    """The first `count` JSON log lines of `path` whose event_kind is `kind` (the file is being written)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = []
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("event_kind") == kind:
                found.append(event)
        if len(found) >= count:
            return found[:count]
        time.sleep(0.2)
    raise RuntimeError(f"not {count} {kind!r} lines in {path.name} within {timeout_s} s")


def _loadgen(port: int, *, rate: float, duration_s: float, terminals: int, in_flight: int) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "simulators.loadgen",
        "--port",
        str(port),
        "--terminals",
        str(terminals),
        "--in-flight",
        str(in_flight),
        "--rate",
        str(rate),
        "--duration",
        str(duration_s),
        # Caches fill and plans settle in the first seconds of load: sent, not counted.
        "--warmup",
        str(WARMUP_S),
        "--mix",
        "purchase=1",
        "--json",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + WARMUP_S + 120, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"loadgen printed no summary: {done.stderr[-500:]}")
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def _report(name: str, s: dict[str, Any]) -> None:
    lat = s["latency_ms"]
    codes = " ".join(f"{k}:{v}" for k, v in s["response_codes"].items())
    print(
        f"{name:34} {s['tps']:8.1f} TPS  p50 {lat['p50']:7.2f}  p90 {lat['p90']:7.2f}  p99 {lat['p99']:7.2f}"
        f"  p99.9 {lat['p99.9']:7.2f} ms  timeouts {s['timeouts']}  codes {codes}",
        flush=True,
    )


def run(args: list[str]) -> None:
    duration_s = _option(args, "duration", 15)
    terminals = int(_option(args, "terminals", 16))
    in_flight = int(_option(args, "in-flight", 8))
    workers = int(_option(args, "workers", 2))
    print(
        f"{os.cpu_count()} CPUs; loadgen: {terminals} terminals x {in_flight} in flight, {duration_s:g} s per run,"
        f" purchases with PIN (demo cards); switchd with {workers} process(es)",
        flush=True,
    )

    echo = subprocess.Popen(
        [sys.executable, "-m", "bench.echo_server", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(_read_line_with(echo, "ready on", 15).rsplit(":", 1)[1])
        ceiling = _loadgen(port, rate=0, duration_s=duration_s, terminals=terminals, in_flight=in_flight)
        _report("echo server (ceiling), max rate", ceiling)
    finally:
        echo.send_signal(signal.SIGINT)
        echo.wait(10)
        if echo.stdout is not None:
            echo.stdout.close()

    var = make_world_readable_tmpdir("cardswitch-bench-switch-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
    env.update(
        {
            "SWITCH_SWITCH_VAR_DIR": str(var),
            "SWITCH_TERMINAL_PORT": "0",
            "SWITCH_METRICS_PORT": "0",
            "SWITCH_LOG_FORMAT": "json",
            "SWITCH_SWITCH_WORKERS": str(workers),
            # On-us purchases only: no network links to keep up.
            "SWITCH_NETWORKS_VISA_ENABLED": "false",
            "SWITCH_NETWORKS_CUPS_ENABLED": "false",
            "SWITCH_NETWORKS_SHETAB_ENABLED": "false",
        }
    )
    # The log goes to a file: one line per transaction would fill a pipe nobody reads.
    log_path = var / "switchd.log"
    log_file = log_path.open("w")
    switchd = subprocess.Popen(
        [sys.executable, "-m", "switch.cli.switchd", "run", "--demo"],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        ready = _wait_for_events(log_path, "ready", workers, 180)[0]
        port = int(ready["terminal"].rsplit(":", 1)[1])
        full = _loadgen(port, rate=0, duration_s=duration_s, terminals=terminals, in_flight=in_flight)
        _report(f"switchd x{workers} purchases, max rate", full)
        paced = _loadgen(port, rate=1000, duration_s=duration_s, terminals=terminals, in_flight=in_flight)
        _report(f"switchd x{workers} purchases, 1,000/s", paced)
        if ceiling["tps"]:
            print(f"switch / ceiling: {full['tps'] / ceiling['tps']:.2f}", flush=True)
    finally:
        switchd.send_signal(signal.SIGTERM)
        try:
            switchd.wait(30)
        finally:
            log_file.close()
            shutil.rmtree(Path(var), ignore_errors=True)
