"""Pieces the benchmarks share: `--name=value` options, waiting for a process's JSON log lines, running
the load generator as a separate process (optionally measuring the machine's CPU by process group while
it runs, bench/cpu.py), and the one-line report of its summary."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.cpu import CpuWindow, machine_ticks, snapshot

__all__ = ["json_lines", "option", "report", "report_cpu", "run_loadgen", "wait_for_events"]


def option(args: list[str], name: str, default: float) -> float:
    """The value of `--name=value` among `args`, else `default`."""
    for arg in args:
        if arg.startswith(f"--{name}="):
            return float(arg.split("=", 1)[1])
    return default


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects among the lines of `path` (other lines skipped)."""
    found = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            found.append(event)
    return found


def wait_for_events(path: Path, kind: str, count: int, timeout_s: float) -> list[dict[str, Any]]:
    """The first `count` JSON log lines of `path` whose event_kind is `kind` (the file is being written)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [e for e in json_lines(path) if e.get("event_kind") == kind]
        if len(found) >= count:
            return found[:count]
        time.sleep(0.2)
    raise RuntimeError(f"not {count} {kind!r} lines in {path.name} within {timeout_s} s")


def run_loadgen(
    port: int,
    *,
    rate: float,
    terminals: int,
    in_flight: int,
    duration_s: float | None,
    warmup_s: float,
    count: int | None = None,
    extra: Sequence[str] = (),
    measure_cpu: bool = False,
) -> dict[str, Any]:
    """`loadgen --json` purchases against `port`, as its own process; its summary. With a duration, the
    first `warmup_s` of load (caches filling, plans settling) are sent, not counted; without, `count`
    requests. With `measure_cpu` (and a duration of at least 4 s), the summary's "cpu" is a `CpuWindow`
    from one second after the warm-up to one second before the end, and "cpu_transactions" the answers
    counted in that window (from loadgen's progress lines)."""
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
        "--mix",
        "purchase=1",
        *extra,
        "--json",
    ]
    if duration_s is not None:
        command += ["--duration", str(duration_s), "--warmup", str(warmup_s)]
    else:
        command += ["--count", str(count)]
    timeout_s = (duration_s or 60) + warmup_s + 120
    window = (
        (warmup_s + 1, warmup_s + duration_s - 1) if measure_cpu and duration_s and duration_s >= 4 else None
    )
    marks: list[tuple[float, int, dict[int, Any], tuple[int, int]]] = []
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert proc.stdout is not None
        watchdog = threading.Timer(timeout_s, proc.kill)  # a stuck loadgen must not hang the benchmark
        watchdog.start()
        try:
            out = []
            for line in proc.stdout:
                out.append(line)
                if window is not None and len(marks) < 2 and '"progress"' in line:
                    progress = json.loads(line)
                    if progress["elapsed_s"] >= window[len(marks)]:
                        marks.append((time.monotonic(), progress["answered"], snapshot(), machine_ticks()))
            proc.wait(timeout_s)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errors.seek(0)
        stderr = errors.read()
    lines = [line for line in out if line.startswith("{") and '"progress"' not in line]
    if not lines:
        raise RuntimeError(f"loadgen printed no summary: {stderr[-500:]}")
    summary: dict[str, Any] = json.loads(lines[-1])
    if len(marks) == 2:
        (t0, answered0, before, ticks0), (t1, answered1, after, ticks1) = marks
        summary["cpu"] = CpuWindow.between(
            before, after, seconds=t1 - t0, ticks_before=ticks0, ticks_after=ticks1
        )
        summary["cpu_transactions"] = answered1 - answered0
    return summary


def report(name: str, s: dict[str, Any], *, width: int) -> None:
    """One line for a loadgen summary: rate, percentiles, timeouts, response codes."""
    lat = s["latency_ms"]
    codes = " ".join(f"{k}:{v}" for k, v in s["response_codes"].items())
    print(
        f"{name:{width}} {s['tps']:8.1f} TPS  p50 {lat['p50']:7.2f}  p90 {lat['p90']:7.2f}  p99 {lat['p99']:7.2f}"
        f"  p99.9 {lat['p99.9']:7.2f} ms  timeouts {s['timeouts']}  codes {codes}",
        flush=True,
    )


def report_cpu(s: dict[str, Any], groups: Sequence[str]) -> None:
    """The CPU line of a summary made with `measure_cpu`, if it has one."""
    window = s.get("cpu")
    if isinstance(window, CpuWindow):
        print("  " + window.describe(int(s["cpu_transactions"]), [*groups, "other"]), flush=True)
