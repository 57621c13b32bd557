"""On-us purchases with PIN through the whole switch, against the bare ISO 8583 echo server as ceiling.

Everything on this one machine, as a user would run it: `switchd run --demo` on a fresh, DURABLE embedded
PostgreSQL (fsync on, synchronous commit), the load generator as a separate process, the echo server
(bench/echo_server.py: decode + encode, nothing else) under the same load. Three runs:
1. echo server, maximum rate: the ceiling;
2. switchd, maximum rate: purchases with PIN (HSM in-process, ledger group commit, journal);
3. switchd at 1,000 purchases/s offered: the latency a terminal sees at that load.
Runs 2 and 3 also print the CPU per purchase of switchd, PostgreSQL and the load generator, the time
they waited for a CPU, and how busy the machine was (bench/cpu.py, from the scheduler's own statistics).
Options: --duration S (default 15), --terminals N (default 16), --in-flight N (default 8),
--workers N (switchd processes on the port, default 2: one per core of this machine; 1 for a single
process).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import option, report, report_cpu, run_loadgen, wait_for_events
from tests.fixtures.pg import make_world_readable_tmpdir

WARMUP_S = 3


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


def run(args: list[str]) -> None:
    duration_s = option(args, "duration", 15)
    terminals = int(option(args, "terminals", 16))
    in_flight = int(option(args, "in-flight", 8))
    workers = int(option(args, "workers", 2))
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
        ceiling = run_loadgen(
            port, rate=0, duration_s=duration_s, warmup_s=WARMUP_S, terminals=terminals, in_flight=in_flight
        )
        report("echo server (ceiling), max rate", ceiling, width=34)
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
        ready = wait_for_events(log_path, "ready", workers, 180)[0]
        port = int(ready["terminal"].rsplit(":", 1)[1])
        runs = {}
        for label, rate in (("max rate", 0), ("1,000/s", 1000)):
            runs[rate] = run_loadgen(
                port,
                rate=rate,
                duration_s=duration_s,
                warmup_s=WARMUP_S,
                terminals=terminals,
                in_flight=in_flight,
                measure_cpu=True,
            )
            report(f"switchd x{workers} purchases, {label}", runs[rate], width=34)
            report_cpu(runs[rate], ["switchd", "postgres", "loadgen"])
        full = runs[0]
        if ceiling["tps"]:
            print(f"switch / ceiling: {full['tps'] / ceiling['tps']:.2f}", flush=True)
    finally:
        switchd.send_signal(signal.SIGTERM)
        try:
            switchd.wait(30)
        finally:
            log_file.close()
            shutil.rmtree(Path(var), ignore_errors=True)
