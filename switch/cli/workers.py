"""Several switchd processes on one machine: a primary and `switch.workers - 1` workers on one port.

Why: one Python process is held to one core by the GIL. Everything the processes must agree on already
lives in PostgreSQL (the ledger and its idempotency keys, the caches that NOTIFY invalidates, operator
changes confirmed by every listener, store-and-forward leases, network keys), exactly as for several
switchd machines on one database, so more processes spread the work over more cores with no new rules.

The primary starts the embedded PostgreSQL when no DSN is configured, migrates, seeds the demo and
serves; then it starts the workers with its database URL and its terminal listening socket. Every
process accepts from that one socket, and a shared connection board (`ConnectionBoard`) spreads the
terminals evenly over them; a terminal's connection stays with one process. Each worker serves under its
own node name (`<node>.w<i>`) and metrics port (`metrics.port + i`, or a free one when the port is 0).
On SIGINT/SIGTERM the primary passes the signal on, every process drains, and the primary stops the
database only after every worker has exited. A worker that exits unexpectedly (a crash, a kill) is
started again in its slot after a pause (`supervise`). A worker whose primary is gone (killed) drains
and exits too: it watches a pipe that only the primary holds open.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

import structlog
import trio

from switch.adapters.terminal_server import ConnectionBoard, ListenerShare
from switch.app import ReadyInfo, run_switch
from switch.config import Config
from switch.logs import get_logger

__all__ = ["WorkerPlace", "run_primary", "run_worker"]

log = get_logger("switchd")

# A worker drains within drain_timeout_s like any switchd; this much more is allowed for its exit.
_WORKER_EXIT_MARGIN_S = 10.0
# A worker that exits unexpectedly is started again after a pause: 1 s, doubled at each failure up to
# 30 s, back to 1 s once a worker has run for a minute (a worker that cannot start does not spin).
_RESTART_PAUSE_MIN_S = 1.0
_RESTART_PAUSE_MAX_S = 30.0
_RESTART_PAUSE_RESET_S = 60.0


async def _watch_signals(
    stop: trio.Event, on_signal: Callable[[int], None], *, task_status: trio.TaskStatus[None]
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            log.info("signal received", signal=signal.Signals(signum).name)
            on_signal(signum)
            stop.set()


def _worker_env(config: Config, info: ReadyInfo, index: int) -> dict[str, str]:
    assert info.terminal_address is not None
    env = dict(os.environ)
    env["SWITCH_DATABASE_URL"] = info.database_url
    env["SWITCH_TERMINAL_PORT"] = info.terminal_address.rsplit(":", 1)[1]
    env["SWITCH_SWITCH_NODE_NAME"] = f"{config.switch.node_name}.w{index}"
    env["SWITCH_SWITCH_WORKERS"] = "1"
    if config.metrics.enabled:
        base = config.metrics.port
        env["SWITCH_METRICS_PORT"] = str(base + index) if base else "0"
    return env


async def run_primary(config: Config, *, demo: bool) -> None:
    """Serve as the primary of `config.switch.workers` processes until SIGINT/SIGTERM, then drain all."""
    # Every process writes to the same stdout: each line says which one wrote it.
    structlog.contextvars.bind_contextvars(node=config.switch.node_name)
    stop = trio.Event()
    workers: dict[int, trio.Process] = {}  # slot -> its process now (a restart replaces it)
    # Held while a worker is being started, and by the stop once it has begun: no worker starts after the
    # stop has looked at what runs, so every one it must wait for is in `workers`.
    starting = trio.Lock()
    stopping = False
    done = trio.Event()
    # Inherited by every worker, never written: when this process ends, however it ends, the workers
    # read end-of-file on it and stop.
    life_read, life_write = os.pipe()
    board = ConnectionBoard.create(config.switch.workers)

    def pass_on(signum: int) -> None:
        for worker in workers.values():
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)

    async def stop_workers() -> None:
        """Before the database stops: every worker drained and gone, and none restarted."""
        nonlocal stopping
        async with starting:
            stopping = True
        pass_on(signal.SIGTERM)
        with trio.move_on_after(config.switch.drain_timeout_s + _WORKER_EXIT_MARGIN_S):
            for worker in workers.values():
                await worker.wait()
        for index, worker in sorted(workers.items()):
            if worker.returncode is None:
                log.warning("worker did not stop in time; killing it", worker=index, pid=worker.pid)
                worker.kill()
                await worker.wait()
            else:
                log.info("worker stopped", worker=index, pid=worker.pid, exit_code=worker.returncode)

    async def primary(*, task_status: trio.TaskStatus[ReadyInfo | None]) -> None:
        ready = _Ready(task_status)
        try:
            await run_switch(
                config,
                demo=demo,
                stop_event=stop,
                install_signal_handlers=False,
                share=ListenerShare(board, 0),
                before_database_stops=stop_workers,
                task_status=ready,
            )
            if not ready.reported:
                task_status.started(None)  # stopped while starting: there are no workers to start
        finally:
            done.set()

    async def launch(index: int, info: ReadyInfo) -> trio.Process | None:
        """Start the worker of slot `index`, unless the stop has begun."""
        assert info.terminal_address is not None and board.fd is not None
        command = [
            sys.executable,
            "-m",
            "switch.cli.switchd",
            "run",
            "--worker-life-fd",
            str(life_read),
            "--worker-slot",
            str(index),
            "--worker-board-fd",
            str(board.fd),
        ]
        for fd in info.terminal_fds:
            command += ["--worker-listen-fd", str(fd)]
        if demo:
            command.append("--demo")
        async with starting:
            if stopping or stop.is_set():
                return None
            worker = await trio.lowlevel.open_process(
                command,
                env=_worker_env(config, info, index),
                pass_fds=(life_read, board.fd, *info.terminal_fds),
            )
            workers[index] = worker
        log.info("worker started", worker=index, pid=worker.pid)
        return worker

    async def supervise(index: int, info: ReadyInfo) -> None:
        """Keep slot `index` served: start its worker, and start it again (after a pause that grows
        while it keeps failing) whenever it exits unless switchd is stopping."""
        pause_s = _RESTART_PAUSE_MIN_S
        while (worker := await launch(index, info)) is not None:
            started_at = trio.current_time()
            code = await worker.wait()
            board.stop_accepting(index)  # however it ended: the others must not leave connections to it
            if stopping or stop.is_set():
                return
            if trio.current_time() - started_at >= _RESTART_PAUSE_RESET_S:
                pause_s = _RESTART_PAUSE_MIN_S  # it had been running well: this is a new failure
            log.error(
                "worker exited unexpectedly; restarting it",
                worker=index,
                pid=worker.pid,
                exit_code=code,
                restart_in_s=pause_s,
            )
            with trio.move_on_after(pause_s):
                await stop.wait()
            pause_s = min(pause_s * 2, _RESTART_PAUSE_MAX_S)

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(_watch_signals, stop, pass_on)
            info: ReadyInfo | None = await nursery.start(primary)
            if info is not None:
                for index in range(1, config.switch.workers):
                    nursery.start_soon(supervise, index, info)
            await done.wait()
            nursery.cancel_scope.cancel()
    finally:
        os.close(life_read)
        os.close(life_write)
        board.close()


class _Ready:
    """Passes the primary's ready info on, and remembers whether it came (a stop while starting ends
    run_switch without it)."""

    def __init__(self, status: trio.TaskStatus[ReadyInfo | None]) -> None:
        self._status = status
        self.reported = False

    def started(self, value: ReadyInfo | None = None) -> None:
        self.reported = True
        self._status.started(value)


@dataclass(frozen=True)
class WorkerPlace:
    """What a primary hands a worker on its command line: descriptors it inherits, and its slot."""

    life_fd: int
    slot: int
    board_fd: int
    listen_fds: Sequence[int] = ()


async def run_worker(config: Config, *, demo: bool, place: WorkerPlace) -> None:
    """Serve as a worker: the primary's database and listening socket, no seeding; stop when the
    primary goes."""
    structlog.contextvars.bind_contextvars(node=config.switch.node_name)
    stop = trio.Event()
    life_fd = place.life_fd
    share = ListenerShare(
        ConnectionBoard.attach(place.board_fd),
        place.slot,
        tuple(socket.socket(fileno=fd) for fd in place.listen_fds),
    )

    async def watch_primary() -> None:
        await trio.lowlevel.wait_readable(life_fd)  # readable only at end-of-file: the primary is gone
        if not stop.is_set():
            log.warning("primary switchd is gone; draining")
            stop.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_primary)
        try:
            await run_switch(config, demo=demo, stop_event=stop, seed=False, share=share)
        finally:
            share.board.close()
        nursery.cancel_scope.cancel()


def start(config: Config, *, demo: bool, place: WorkerPlace | None) -> Callable[[], Awaitable[None]]:
    """The trio main function for this process: primary, worker, or a plain single switchd."""
    if place is not None:
        return partial(run_worker, config, demo=demo, place=place)
    if config.switch.workers > 1:
        return partial(run_primary, config, demo=demo)
    return partial(run_switch, config, demo=demo)
