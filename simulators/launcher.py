"""`make run`: the demo world in one command: the three network simulators, then `switchd run --demo`.

The simulators are outside actors, so they run as their own processes, in their own sessions: a Ctrl-C
on the terminal reaches switchd (which drains, signs off from the networks and stops its database) but
not the networks, which this launcher stops once switchd has exited, as a real network stays up while a
member switch restarts. Their logs go to `<var>/netsim/<network>.log`; switchd's stay on stdout.

Exit status: switchd's. A network that cannot start (its port taken, say) is reported and left out:
switchd keeps trying to reach it, as it would a network that is down.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO

from specs.demo_networks import NETWORKS

__all__ = ["main"]

READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 30.0


def _say(message: str, **fields: object) -> None:
    # One line per event, JSON like switchd's own when stdout is not a terminal (tests and log shippers
    # read it), plain text on a terminal.
    if sys.stdout.isatty():
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"launcher: {message}" + (f" ({extra})" if extra else "")
    else:
        line = json.dumps({"logger_name": "launcher", "event": message, **fields})
    # One write for line and newline: switchd writes to the same stdout.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _var_dir() -> Path:
    return Path(os.environ.get("SWITCH_SWITCH_VAR_DIR", "var"))


def _start_network(name: str, var: Path) -> tuple[subprocess.Popen[bytes], Path, IO[bytes]]:
    log_path = var / "netsim" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("wb")
    command = [
        sys.executable,
        "-m",
        "simulators.netsim.cli",
        "--network",
        name,
        "--var-dir",
        str(var / "netsim"),
        "--log-format",
        "json",
    ]
    proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log_path, log_file


def _ready_line(log_path: Path, proc: subprocess.Popen[bytes], deadline: float) -> dict[str, object] | None:
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("event_kind") == "ready":
                return event
        time.sleep(0.05)
    return None


def _stop(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.launcher",
        description="Run the demo: netsim for visa, cups and shetab, then switchd run --demo (make run).",
    )
    parser.add_argument("--no-networks", action="store_true", help="run switchd alone, no network simulators")
    parser.add_argument("switchd_args", nargs=argparse.REMAINDER, help="passed to `switchd run --demo`")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    var = _var_dir()
    networks: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
    switchd: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        # A Ctrl-C on the terminal already reached switchd (same process group); a SIGTERM sent to the
        # launcher alone did not: pass it on, so switchd drains in both cases.
        if switchd is not None and switchd.poll() is None and signum == signal.SIGTERM:
            switchd.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if not args.no_networks:
            deadline = time.monotonic() + READY_TIMEOUT_S
            started = [(n.name, *_start_network(n.name, var)) for n in NETWORKS]
            for name, proc, log_path, log_file in started:
                networks.append((name, proc, log_file))
                ready = _ready_line(log_path, proc, deadline)
                if ready is None:
                    _say(
                        "network simulator did not start; switchd will keep trying it",
                        network=name,
                        log=str(log_path),
                    )
                else:
                    _say(
                        f"netsim {name} ready",
                        network=name,
                        link=ready.get("link"),
                        control=ready.get("control"),
                        log=str(log_path),
                    )
        if stopping:
            return 0
        extra = [a for a in args.switchd_args if a != "--"]
        switchd = subprocess.Popen([sys.executable, "-m", "switch.cli.switchd", "run", "--demo", *extra])
        while True:
            try:
                return switchd.wait()
            except KeyboardInterrupt:  # pragma: no cover - the handler above takes SIGINT
                continue
    finally:
        if switchd is not None and switchd.poll() is None:
            _stop(switchd, STOP_TIMEOUT_S)
        for _name, proc, log_file in networks:
            _stop(proc, STOP_TIMEOUT_S)
            log_file.close()


if __name__ == "__main__":
    raise SystemExit(main())
