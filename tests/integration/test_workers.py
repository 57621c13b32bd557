"""Several switchd processes on one port (switch.workers): the primary, its workers, their stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import trio

from tests.fixtures.pg import make_world_readable_tmpdir
from tests.integration.test_switchd import (
    CODEC,
    TPDU,
    ProcessOutput,
    base_env,
    echo_request,
    exchange,
    postgres_running_for,
    stop_process,
)

NO_NETWORKS = {f"SWITCH_NETWORKS_{name}_ENABLED": "false" for name in ("VISA", "CUPS", "SHETAB")}


def _start(var: str) -> tuple[subprocess.Popen[str], ProcessOutput]:
    env = base_env(SWITCH_SWITCH_VAR_DIR=var, SWITCH_SWITCH_WORKERS="2", **NO_NETWORKS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "switch.cli.switchd", "run", "--demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, ProcessOutput(proc)


def _ready_lines(output: ProcessOutput, count: int, timeout_s: float) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = []
        for line in list(output.lines):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event_kind") == "ready":
                ready.append(event)
        if len(ready) >= count:
            return ready
        time.sleep(0.05)
    raise AssertionError(f"not {count} ready lines within {timeout_s} s: {''.join(output.lines)[-2000:]}")


async def _echo_many(port: int, connections: int) -> list[str]:
    stans = []
    for n in range(connections):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            reply = await exchange(stream, CODEC.encode_frame(echo_request(f"{n + 1:06d}"), TPDU))
            stans.append(reply.message.get(39) or "")
    return stans


async def _echo_held(port: int, connections: int) -> list[str]:
    """Echo once on each of `connections` connections opened one after the other and kept open."""
    codes = []
    async with contextlib.AsyncExitStack() as streams:
        for n in range(connections):
            stream = await streams.enter_async_context(await trio.open_tcp_stream("127.0.0.1", port))
            reply = await exchange(stream, CODEC.encode_frame(echo_request(f"{n + 1:06d}"), TPDU))
            codes.append(reply.message.get(39) or "")
    return codes


def _connections_by_node(output: ProcessOutput, transactions: int) -> dict[str, int]:
    """Connections that carried a transaction, by node, once `transactions` log lines are in."""
    deadline = time.monotonic() + 10
    while True:
        events = [
            json.loads(line)
            for line in list(output.lines)
            if line.startswith("{") and '"event":"transaction"' in line
        ]
        if len(events) >= transactions or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    served: dict[str, set[str]] = {}
    for event in events:
        served.setdefault(event["node"], set()).add(event["conn"])
    return {node: len(conns) for node, conns in served.items()}


def test_two_workers_share_the_port_and_stop_together():
    """If switch.workers is 2, then two processes answer on one port, share held connections evenly, and
    SIGTERM stops both and the database."""
    var = make_world_readable_tmpdir("cardswitch-test-workers-")
    proc, output = _start(str(var))
    try:
        primary, worker = _ready_lines(output, 2, 60)
        assert primary["node"] == "switch-1" and worker["node"] == "switch-1.w1"
        assert primary["terminal"] == worker["terminal"] and worker["database"] == "external"
        port = int(str(primary["terminal"]).rsplit(":", 1)[1])
        assert trio.run(_echo_held, port, 12) == ["00"] * 12
        # Twelve connections open at once: six each (the kernel's SO_REUSEPORT hash would often split
        # them 8/4 or worse).
        assert _connections_by_node(output, 12) == {"switch-1": 6, "switch-1.w1": 6}
        codes = trio.run(_echo_many, port, 20)
        assert codes == ["00"] * 20
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        stop_process(proc, output)
    bad = [line for line in output.lines if line.startswith("{") and line.count('{"logger_name"') > 1]
    assert not bad, bad[:2]  # each process writes whole lines, even with PYTHONUNBUFFERED
    served_by = {
        json.loads(line).get("node")
        for line in output.lines
        if line.startswith("{") and '"event":"transaction"' in line
    }
    assert served_by == {"switch-1", "switch-1.w1"}
    assert "worker stopped" in output.events()
    assert not postgres_running_for(var / "pgdata")
    subprocess.run(
        [sys.executable, "-c", "import shutil,sys; shutil.rmtree(sys.argv[1], ignore_errors=True)", str(var)],
        check=False,
    )


def test_a_killed_worker_is_started_again_and_serves_its_share():
    """If a worker is killed, then the primary logs it, starts a new worker in its slot after a pause, the
    new one takes its share of the terminals again, and SIGTERM still stops everything."""
    var = make_world_readable_tmpdir("cardswitch-test-workers-")
    proc, output = _start(str(var))
    try:
        primary, worker = _ready_lines(output, 2, 60)
        port = int(str(primary["terminal"]).rsplit(":", 1)[1])
        os.kill(int(str(worker["pid"])), signal.SIGKILL)
        third = _ready_lines(output, 3, 60)[2]
        assert third["node"] == "switch-1.w1" and third["pid"] != worker["pid"]
        assert trio.run(_echo_held, port, 12) == ["00"] * 12
        assert _connections_by_node(output, 12) == {"switch-1": 6, "switch-1.w1": 6}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        stop_process(proc, output)
    restarts = [
        json.loads(line)
        for line in output.lines
        if line.startswith("{") and "worker exited unexpectedly; restarting it" in line
    ]
    assert len(restarts) == 1 and restarts[0]["exit_code"] == -signal.SIGKILL
    assert restarts[0]["pid"] == worker["pid"] and restarts[0]["restart_in_s"] == 1.0
    assert "worker stopped" in output.events()
    assert not postgres_running_for(var / "pgdata")
    subprocess.run(
        [sys.executable, "-c", "import shutil,sys; shutil.rmtree(sys.argv[1], ignore_errors=True)", str(var)],
        check=False,
    )


def test_a_worker_stops_when_its_primary_is_killed():
    """If the primary is killed outright, then its worker notices the closed pipe, drains and exits 0."""
    var = make_world_readable_tmpdir("cardswitch-test-workers-")
    proc, output = _start(str(var))
    worker_pid = None
    try:
        _primary, worker = _ready_lines(output, 2, 60)
        worker_pid = int(str(worker["pid"]))
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(worker_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the worker outlived its primary")
    finally:
        stop_process(proc, output)
        if worker_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker_pid, signal.SIGKILL)
        # The killed primary left its embedded PostgreSQL running: stop it the way the next start would.
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from switch.adapters.postgres.embedded import EmbeddedPostgres; import sys; "
                "EmbeddedPostgres(__import__('pathlib').Path(sys.argv[1])).stop()",
                str(var / "pgdata"),
            ],
            check=False,
        )
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import shutil,sys; shutil.rmtree(sys.argv[1], ignore_errors=True)",
                str(var),
            ],
            check=False,
        )
    assert "primary switchd is gone; draining" in output.events()


def test_a_stop_while_the_primary_starts_starts_no_worker():
    """If SIGTERM comes while the primary's database starts, then it exits 0 and never starts a worker."""
    var = make_world_readable_tmpdir("cardswitch-test-workers-")
    proc, output = _start(str(var))
    try:
        deadline = time.monotonic() + 15
        while "starting embedded postgresql" not in output.events():
            assert time.monotonic() < deadline and proc.poll() is None, output.lines[-5:]
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        stop_process(proc, output)
        left_running = postgres_running_for(var / "pgdata")
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import shutil,sys; shutil.rmtree(sys.argv[1], ignore_errors=True)",
                str(var),
            ],
            check=False,
        )
    events = output.events()
    assert "stop requested while starting; stopping without serving" in events
    assert "worker started" not in events and not left_running
