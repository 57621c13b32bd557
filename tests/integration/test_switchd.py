"""switchd end to end: start, ready line, terminal listener over real TCP, drain and exit.

In-process tests drive `run_switch` inside the test's trio run; process tests start the real
`switchd` (and `make run`) as a user would, and stop it with the signals a terminal or init sends.
"""

from __future__ import annotations

import gc
import json
import os
import queue
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trio
import trio.testing

from specs.demo_networks import NETWORKS
from switch.adapters.terminal_server import ConnectionBoard, ListenerShare, TerminalServer
from switch.app import GC_THRESHOLDS
from switch.config import TerminalListenerConfig, load_config
from switch.iso.codec import Codec, Packet
from switch.iso.headers import Tpdu
from switch.iso.message import Message
from switch.metrics import Metrics
from tests.fixtures.pg import make_world_readable_tmpdir
from tests.fixtures.switch import serving

REPO = Path(__file__).resolve().parents[2]
CODEC = Codec("terminal")
TPDU = Tpdu(destination_nii="0001", source_nii="0000")
PAN = "4761739001010010"


def echo_request(stan: str = "000001") -> Message:
    return Message("0800", {7: "1123193500", 11: stan, 41: "TERM0001", 70: "301"})


async def exchange(stream: trio.SocketStream, frame: bytes) -> Packet:
    await stream.send_all(frame)
    framer = CODEC.framer(frame_bytes_max=8192)
    while True:
        payload = framer.next_frame()
        if payload is not None:
            decoded = CODEC.decode_payload(payload)
            assert isinstance(decoded, Packet)
            return decoded
        data = await stream.receive_some(65536)
        assert data, "switch closed the connection instead of answering"
        framer.receive_data(data)


# `switchd run --demo` links to the demo networks on 127.0.0.1:9583-9585, where a developer's `make run`
# may be listening: a test's switchd would sign on there (and send it traffic). So they are off in every
# process a test starts (`make run` included), unless the test turns them on with endpoints of its own
# netsims on free ports (tests/e2e/interbank.py).
NETWORKS_OFF = {f"SWITCH_NETWORKS_{n.name.upper()}_ENABLED": "false" for n in NETWORKS}


def base_env(**extra: str) -> dict[str, str]:
    """The environment of a `switchd run --demo` (or `make run`) a test starts: the demo networks off
    (NETWORKS_OFF) unless `extra` turns them on."""
    return plain_env(**{**NETWORKS_OFF, **extra})


def plain_env(**extra: str) -> dict[str, str]:
    """The environment of a switchd a test starts without --demo: no demo networks to turn off (an
    override of a network the config lacks is refused)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
    env.update({"SWITCH_TERMINAL_PORT": "0", "SWITCH_METRICS_PORT": "0", "SWITCH_LOG_FORMAT": "json"})
    env.update(extra)
    return env


@pytest.fixture
async def switch(database_url, tmp_path, lmk_env, monkeypatch):
    async with serving(_in_process_config(database_url, tmp_path, lmk_env, monkeypatch)) as info:
        yield info


def _in_process_config(database_url, tmp_path, lmk_env, monkeypatch):
    monkeypatch.setenv("HSM_LMK_PASSPHRASE", lmk_env["HSM_LMK_PASSPHRASE"])
    return load_config(
        None,
        environ={
            "SWITCH_HSM_LMK_FILE": lmk_env["SWITCH_HSM_LMK_FILE"],
            "SWITCH_DATABASE_URL": database_url,
            "SWITCH_TERMINAL_PORT": "0",
            "SWITCH_METRICS_PORT": "0",
            "SWITCH_TERMINAL_FRAME_BYTES_MAX": "2048",
            "SWITCH_SWITCH_VAR_DIR": str(tmp_path),
        },
    )


def split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


async def test_echo_is_answered_with_swapped_tpdu(switch):
    """If a terminal sends an 0800 echo, then it gets 0810 with 39=00 and the TPDU addresses swapped."""
    stream = await trio.open_tcp_stream(*split(switch.terminal_address))
    async with stream:
        reply = await exchange(stream, CODEC.encode_frame(echo_request(), TPDU))
    assert reply.message.mti == "0810"
    assert reply.message.get(39) == "00"
    assert reply.message.get(11) == "000001"
    assert reply.header == TPDU.reply()


async def test_collector_thresholds_are_raised_while_serving_and_restored_after(
    database_url, tmp_path, lmk_env, monkeypatch
):
    """If switchd serves, then the cycle collector runs with its thresholds; when it stops, with the ones
    it found (the process may go on: tests, an embedding program)."""
    config = _in_process_config(database_url, tmp_path, lmk_env, monkeypatch)
    before = gc.get_threshold()
    assert before != GC_THRESHOLDS
    try:
        async with serving(config):
            assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_threshold() == before
    finally:
        gc.set_threshold(*before)


async def test_purchase_from_an_unknown_terminal_is_58(switch):
    """If a purchase comes from a terminal the switch does not know, then it is answered 58, not dropped."""
    request = Message(
        "0200",
        {2: PAN, 3: "000000", 4: "000000001000", 7: "1123193500", 11: "000002", 41: "TERM0001", 42: "M" * 15},
    )
    stream = await trio.open_tcp_stream(*split(switch.terminal_address))
    async with stream:
        reply = await exchange(stream, CODEC.encode_frame(request, TPDU))
    assert (reply.message.mti, reply.message.get(39)) == ("0210", "58")


async def test_malformed_message_with_readable_mti_gets_format_error(switch):
    """If the MTI is readable but the fields are not, then the answer is 39=30 and the connection lives."""
    good = CODEC.encode_payload(echo_request(), TPDU)
    broken = good[: len(good) - 6]  # cut inside field 70
    frame = len(broken).to_bytes(2, "big") + broken
    stream = await trio.open_tcp_stream(*split(switch.terminal_address))
    async with stream:
        reply = await exchange(stream, frame)
        assert (reply.message.mti, reply.message.get(39)) == ("0810", "30")
        again = await exchange(stream, CODEC.encode_frame(echo_request("000003"), TPDU))
        assert again.message.get(39) == "00"


async def test_oversize_frame_closes_only_that_connection(switch):
    """If a frame announces more than frame_bytes_max, then that connection closes and others still work."""
    host, port = split(switch.terminal_address)
    bystander = await trio.open_tcp_stream(host, port)
    offender = await trio.open_tcp_stream(host, port)
    async with bystander, offender:
        await offender.send_all((4000).to_bytes(2, "big") + b"\x60" * 10)
        with trio.fail_after(5):
            assert await offender.receive_some(100) == b""
        reply = await exchange(bystander, CODEC.encode_frame(echo_request(), TPDU))
        assert reply.message.get(39) == "00"


async def test_several_requests_in_flight_on_one_connection(switch):
    """If a terminal pipelines several requests, then each gets its own answer."""
    stream = await trio.open_tcp_stream(*split(switch.terminal_address))
    async with stream:
        frames = b"".join(CODEC.encode_frame(echo_request(f"{i:06d}"), TPDU) for i in range(1, 21))
        await stream.send_all(frames)
        framer = CODEC.framer(frame_bytes_max=8192)
        stans: set[str | None] = set()
        with trio.fail_after(5):
            while len(stans) < 20:
                framer.receive_data(await stream.receive_some(65536))
                while (payload := framer.next_frame()) is not None:
                    packet = CODEC.decode_payload(payload)
                    assert isinstance(packet, Packet)
                    stans.add(packet.message.get(11))
    assert stans == {f"{i:06d}" for i in range(1, 21)}


async def test_node_is_recorded_in_the_database(switch, database_url):
    """If switchd starts on a database, then its node row is there with no stop time."""
    rows = await _query(database_url, "SELECT node_name, stopped_at FROM switch_nodes")
    assert [(r["node_name"], r["stopped_at"]) for r in rows] == [("switch-1", None)]


async def _query(dsn: str, sql: str) -> list[asyncpg.Record]:
    import asyncio

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()

    return await trio.to_thread.run_sync(lambda: asyncio.run(run()))


# -- the real process ---------------------------------------------------------------------------------


class ProcessOutput:
    """Reads a process's output in a thread from the start to the end (a full pipe would block the switch's
    logging), so a test can wait for the ready line and later look at every line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        stdout = proc.stdout

        def pump() -> None:
            for line in stdout:
                self.lines.append(line)
                self._new.put(line)

        self._thread = threading.Thread(target=pump, daemon=True)
        self._thread.start()

    def ready(self, timeout_s: float) -> dict[str, Any]:
        """The ready line's JSON, waiting at most `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._new.get(timeout=left)
            except queue.Empty:
                break
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event_kind") == "ready":
                return dict(event)
        raise AssertionError(f"no ready line within {timeout_s} s; output: {''.join(self.lines)[-2000:]}")

    def finish(self, timeout_s: float) -> list[str]:
        """Every line, once the process has exited and closed its output."""
        self.proc.wait(timeout=timeout_s)
        self._thread.join(timeout=timeout_s)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.lines

    def events(self) -> list[str]:
        return [json.loads(line).get("event", "") for line in self.lines if line.startswith("{")]


def stop_process(proc: subprocess.Popen[str], output: ProcessOutput) -> None:
    """Kill whatever is left of a test's process and close its output."""
    if proc.poll() is None:
        proc.kill()
    output.finish(10)


def postgres_running_for(data_dir: Path) -> bool:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_switchd_uses_the_configured_database_and_stops_on_sigterm(database_url, tmp_path, lmk_env):
    """If SWITCH_DATABASE_URL is set, then switchd uses that server, starts no embedded one, and exits 0 on SIGTERM."""
    env = plain_env(SWITCH_DATABASE_URL=database_url, SWITCH_SWITCH_VAR_DIR=str(tmp_path / "var"), **lmk_env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "switch.cli.switchd", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    output = ProcessOutput(proc)
    try:
        ready = output.ready(15)
        assert ready["database"] == "external"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        stop_process(proc, output)
    assert not (tmp_path / "var" / "pgdata").exists()
    rows = trio.run(_query, database_url, "SELECT node_name, stopped_at FROM switch_nodes")
    assert len(rows) == 1 and rows[0]["stopped_at"] is not None


def test_missing_lmk_fails_fast_with_advice(tmp_path):
    """If no LMK is configured and --demo is not given, then switchd exits 2 saying how to get one."""
    proc = subprocess.run(
        [sys.executable, "-m", "switch.cli.switchd", "run"],
        env={k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "hsm.lmk_file" in proc.stderr and "--demo" in proc.stderr
    assert not (tmp_path / "var").exists()  # nothing was started


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[terminal]\nport = "x"\n', "terminal.port"),
        ("[terminal]\nread_timout_s = 5\n", "terminal.read_timout_s"),
    ],
    ids=["wrong type", "unknown key"],
)
def test_invalid_config_fails_fast_naming_the_key(tmp_path, text, key):
    """If the config has a wrong type or an unknown key, then switchd exits 2 with the key in its message."""
    (tmp_path / "bad.toml").write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "switch.cli.switchd", "run", "--config", str(tmp_path / "bad.toml")],
        env={k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert key in proc.stderr


@pytest.mark.slow
def test_make_run_on_embedded_postgres_start_ctrl_c_and_reuse():
    """If `make run` starts on a fresh var dir, then it is ready in 15 s, Ctrl-C stops it and PostgreSQL in 5 s, and a second run reuses the data."""
    var = make_world_readable_tmpdir("cardswitch-test-var-")
    env = base_env(SWITCH_SWITCH_VAR_DIR=str(var))
    data_dir = var / "pgdata"

    def one_run() -> list[str]:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, like a shell job: Ctrl-C goes to the group
        )
        output = ProcessOutput(proc)
        try:
            ready = output.ready(15)
            assert ready["database"] == "embedded"
            assert postgres_running_for(data_dir)
            os.killpg(proc.pid, signal.SIGINT)
            started = time.monotonic()
            proc.wait(timeout=5)
            assert time.monotonic() - started < 5
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            output.finish(10)
        events = output.events()
        assert "switchd stopped" in events, output.lines[-5:]
        assert "embedded postgresql stopped" in events
        assert not postgres_running_for(data_dir)
        return events

    try:
        first = one_run()
        assert "migrations applied" in first
        second = one_run()
        assert "migrations applied" not in second  # same data, nothing to migrate
    finally:
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import shutil,sys; shutil.rmtree(sys.argv[1], ignore_errors=True)",
                str(var),
            ],
            check=False,
        )


@pytest.mark.slow
def test_make_run_with_database_url_uses_that_server(database_url, tmp_path):
    """If `SWITCH_DATABASE_URL=... make run` is started, then switchd runs on that server, starts no embedded one, and Ctrl-C stops it cleanly."""
    var = tmp_path / "var"
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=REPO,
        env=base_env(SWITCH_DATABASE_URL=database_url, SWITCH_SWITCH_VAR_DIR=str(var)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = ProcessOutput(proc)
    try:
        ready = output.ready(15)
        assert ready["database"] == "external"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches make and switchd, like on a terminal
        proc.wait(timeout=5)  # make's own status is the interrupt's whatever switchd did (GNU make)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        output.finish(10)
    events = output.events()
    assert "switchd stopped" in events and "switchd failed" not in events
    assert "starting embedded postgresql" not in events
    assert not (var / "pgdata").exists()
    # The demo bank `make run` seeds and the node row are in the given database.
    rows = trio.run(_query, database_url, "SELECT node_name, stopped_at FROM switch_nodes")
    assert len(rows) == 1 and rows[0]["stopped_at"] is not None
    assert trio.run(_query, database_url, "SELECT count(*) AS n FROM cards")[0]["n"] > 0


async def test_thousands_of_connections_are_served_at_once(switch):
    """If 2,000 terminals are connected at the same time, then every one of them gets its echo answered."""
    # Both ends live in this process: two descriptors a connection. Fewer where the limit is low.
    soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    count = min(2000, (soft_limit - 200) // 2)
    host, port = split(switch.terminal_address)
    streams = [await trio.open_tcp_stream(host, port) for _ in range(count)]
    answered = 0

    async def one(stream: trio.SocketStream, i: int) -> None:
        nonlocal answered
        reply = await exchange(stream, CODEC.encode_frame(echo_request(f"{i:06d}"), TPDU))
        assert reply.message.get(11) == f"{i:06d}"
        answered += 1

    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i, stream in enumerate(streams):
                    nursery.start_soon(one, stream, i)
    finally:
        for stream in streams:
            await stream.aclose()
    assert answered == count


# -- drain: what happens to work in flight --------------------------------------------------------------


async def read_packet(stream: trio.SocketStream) -> Packet | None:
    """The next answer on `stream`, or None if the switch closes the connection first."""
    framer = CODEC.framer(frame_bytes_max=8192)
    while (payload := framer.next_frame()) is None:
        data = await stream.receive_some(65536)
        if not data:
            return None
        framer.receive_data(data)
    decoded = CODEC.decode_payload(payload)
    assert isinstance(decoded, Packet)
    return decoded


class GatedHandler:
    """Stands in for a slow authorization: holds every request until `release` is set."""

    def __init__(self) -> None:
        self.entered = trio.Event()
        self.release = trio.Event()

    async def __call__(self, request: Message) -> Message:
        self.entered.set()
        await self.release.wait()
        return CODEC.response(request, response_code="00")


async def start_listener(nursery: trio.Nursery, handler: GatedHandler) -> tuple[TerminalServer, Metrics, int]:
    metrics = Metrics.create(version="test", node_name="n1")
    server = TerminalServer(
        TerminalListenerConfig(port=0), metrics, name="terminal", codec=CODEC, handler=handler
    )
    listeners = await nursery.start(server.serve)
    return server, metrics, listeners[0].socket.getsockname()[1]


async def test_drain_answers_the_request_in_flight_then_closes():
    """If the drain starts while a request is being processed, then new connections are refused and it is still answered."""
    handler = GatedHandler()
    async with trio.open_nursery() as nursery:
        server, metrics, port = await start_listener(nursery, handler)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(CODEC.encode_frame(echo_request("000042"), TPDU))
            await handler.entered.wait()
            drained = trio.Event()

            async def drain() -> None:
                await server.drain(10)
                drained.set()

            nursery.start_soon(drain)
            await trio.testing.wait_all_tasks_blocked()
            assert not drained.is_set()  # waiting for the request, not cutting it
            assert metrics.registry.get_sample_value("switch_listener_up", {"listener": "terminal"}) == 0
            with pytest.raises(OSError):  # a terminal dialling in now is refused, not left waiting
                await trio.open_tcp_stream("127.0.0.1", port)
            handler.release.set()
            with trio.fail_after(5):
                reply = await read_packet(stream)
                assert reply is not None and reply.message.get(11) == "000042"
                assert await read_packet(stream) is None  # then the switch closes the connection
                await drained.wait()
        nursery.cancel_scope.cancel()


async def test_drain_cuts_work_that_outlasts_the_deadline():
    """If a request is still running at the drain deadline, then its connection is closed unanswered."""
    handler = GatedHandler()
    async with trio.open_nursery() as nursery:
        server, _metrics, port = await start_listener(nursery, handler)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(CODEC.encode_frame(echo_request(), TPDU))
            await handler.entered.wait()
            started = trio.current_time()
            with trio.fail_after(5):
                await server.drain(0.2)
                assert trio.current_time() - started >= 0.2
                assert await read_packet(stream) is None
        nursery.cancel_scope.cancel()


def test_sigterm_while_postgresql_starts_stops_cleanly():
    """If SIGTERM comes while the embedded PostgreSQL starts, then switchd stops it again and exits 0 without serving."""
    var = make_world_readable_tmpdir("cardswitch-test-var-")
    env = base_env(SWITCH_SWITCH_VAR_DIR=str(var), SWITCH_TERMINAL_PORT="0", SWITCH_METRICS_PORT="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "switch.cli.switchd", "run", "--demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    output = ProcessOutput(proc)
    try:
        deadline = time.monotonic() + 15
        # A fresh data directory: initdb alone takes longer than the signal needs to arrive.
        while "starting embedded postgresql" not in output.events():
            assert time.monotonic() < deadline and proc.poll() is None, output.lines[-5:]
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        stop_process(proc, output)
        events = output.events()
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
    assert "stop requested while starting; stopping without serving" in events
    assert "embedded postgresql stopped" in events and not left_running
    assert not any("switchd ready" in event for event in events)


async def _echo_on(stream: trio.SocketStream, stan: str) -> str:
    reply = await exchange(stream, CODEC.encode_frame(echo_request(stan), TPDU))
    return reply.message.get(39) or ""


def _shared_server(name: str, share: ListenerShare) -> TerminalServer:
    """A terminal server that answers every request 00, accepting as one process of a set."""
    handler = GatedHandler()
    handler.release.set()
    metrics = Metrics.create(version="test", node_name=name)
    return TerminalServer(
        TerminalListenerConfig(port=0), metrics, name="terminal", codec=CODEC, handler=handler, share=share
    )


async def _connect_and_echo(port: int, connections: int) -> list[trio.SocketStream]:
    """Open `connections` one after the other, each answered once (so accepted) and kept open."""
    streams = []
    with trio.fail_after(10):
        for n in range(connections):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            streams.append(stream)
            assert await _echo_on(stream, f"{n + 1:06d}") == "00"
    return streams


async def test_two_servers_on_one_socket_split_the_connections_evenly():
    """If two terminal servers accept from one socket with one board, then 16 connections split 8/8."""
    board = ConnectionBoard.create(2)
    first = _shared_server("n1", ListenerShare(board, 0))
    try:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(first.serve)
            port = listeners[0].socket.getsockname()[1]
            inherited = socket.socket(fileno=os.dup(listeners[0].socket.fileno()))
            second = _shared_server("n2", ListenerShare(board, 1, (inherited,)))
            await nursery.start(second.serve)
            streams = await _connect_and_echo(port, 16)
            assert board.counts() == [8, 8]
            for stream in streams:
                await stream.aclose()
            await trio.testing.wait_all_tasks_blocked()
            assert board.counts() == [0, 0]
            await first.drain(5)
            await second.drain(5)
            # A drained process is out of the count, so that the others stop leaving connections to it.
            assert board.counts() == [ConnectionBoard.NOT_ACCEPTING] * 2
            nursery.cancel_scope.cancel()
    finally:
        board.close()


async def test_a_process_that_never_accepts_does_not_stop_the_others():
    """If the board says another process holds fewer connections but it never accepts, then this one still
    takes every connection, after deferring to it."""
    board = ConnectionBoard.create(2)
    board.post(1, 0)  # a process that looks alive and idle, and is stuck
    server = _shared_server("n1", ListenerShare(board, 0))
    try:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(server.serve)
            streams = await _connect_and_echo(listeners[0].socket.getsockname()[1], 4)
            assert board.counts() == [4, 0]
            for stream in streams:
                await stream.aclose()
            nursery.cancel_scope.cancel()
    finally:
        board.close()


async def test_connection_reset_by_the_terminal_closes_only_that_connection():
    """If a terminal resets its connection while the switch reads from it, then the listener serves the others."""
    handler = GatedHandler()
    handler.release.set()
    async with trio.open_nursery() as nursery:
        _server, metrics, port = await start_listener(nursery, handler)
        rude = socket.socket()
        rude.connect(("127.0.0.1", port))
        rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        rude.send(b"\x00")  # half a length prefix: the switch is waiting for the rest
        await trio.sleep(0.1)
        rude.close()
        await trio.testing.wait_all_tasks_blocked(0.05)
        assert metrics.registry.get_sample_value("switch_connections_open", {"listener": "terminal"}) == 0
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                reply = await exchange(stream, CODEC.encode_frame(echo_request("000007"), TPDU))
        assert reply.message.get(11) == "000007"
        nursery.cancel_scope.cancel()
