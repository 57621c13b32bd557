"""Composition root: config -> adapters -> (pipeline) -> trio nurseries, signals, drain.

The only module (with switch.cli) that knows the concrete adapters. Start order: database (embedded
server if no DSN), migrations, admin endpoint, listeners, ready line. Stop order on SIGINT/SIGTERM:
stop accepting, let in-flight work finish within `switch.drain_timeout_s`, close connections, close the
pool, stop the embedded server, exit 0.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

import trio

from switch.adapters.admin_http import AdminServer
from switch.adapters.postgres.db import Database, DatabaseSettings
from switch.adapters.postgres.embedded import EmbeddedPostgres
from switch.adapters.postgres.migrate import apply_migrations
from switch.adapters.terminal_server import TerminalServer
from switch.config import Config
from switch.iso.codec import Codec
from switch.logs import get_logger
from switch.metrics import Metrics
from switch.pipeline.terminal_requests import TerminalRequests

__all__ = ["ReadyInfo", "StartHook", "run_switch", "switch_version"]

log = get_logger("switchd")

# Later parts of the product (HSM, demo data, network simulators) plug in here: each hook runs after
# migrations with the open database and may start tasks in the service nursery.
StartHook = Callable[["RunningSwitch", trio.Nursery], Awaitable[None]]


def switch_version() -> str:
    try:
        return version("cardswitch")
    except PackageNotFoundError:
        return "0+unknown"


def _address(listeners: list[trio.SocketListener]) -> str:
    host, port = listeners[0].socket.getsockname()[:2]
    return f"{host}:{port}"


@dataclass
class ReadyInfo:
    """What the ready line says; also returned to tests through task_status."""

    terminal_address: str | None
    admin_address: str | None
    database: str
    embedded_data_dir: str | None


@dataclass
class RunningSwitch:
    config: Config
    database: Database
    metrics: Metrics
    serving: bool = True
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))


async def _record_node(db: Database, config: Config, *, stopping: bool) -> None:
    if stopping:
        await db.execute(
            "UPDATE switch_nodes SET stopped_at = now() WHERE node_name = $1", config.switch.node_name
        )
    else:
        await db.execute(
            """INSERT INTO switch_nodes (node_name, started_at, stopped_at, pid, version)
               VALUES ($1, now(), NULL, $2, $3)
               ON CONFLICT (node_name) DO UPDATE
               SET started_at = now(), stopped_at = NULL, pid = EXCLUDED.pid, version = EXCLUDED.version""",
            config.switch.node_name,
            os.getpid(),
            switch_version(),
        )


async def run_switch(
    config: Config,
    *,
    hooks: list[StartHook] | None = None,
    stop_event: trio.Event | None = None,
    install_signal_handlers: bool = True,
    task_status: trio.TaskStatus[ReadyInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run switchd until SIGINT/SIGTERM (or `stop_event`), then drain and return."""
    embedded: EmbeddedPostgres | None = None
    dsn = config.database.url
    if not dsn:
        embedded = EmbeddedPostgres(
            config.var_path.resolve() / "pgdata", start_timeout_s=config.database.embedded_start_timeout_s
        )
        log.info("starting embedded postgresql", data_dir=str(embedded.data_dir))
        started = await trio.to_thread.run_sync(embedded.start)
        if not started:
            log.warning("embedded postgresql was already running; using it", data_dir=str(embedded.data_dir))
        dsn = embedded.dsn()
    try:
        await _serve(config, dsn, embedded, hooks or [], stop_event, install_signal_handlers, task_status)
    finally:
        if embedded is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(embedded.stop)
                log.info("embedded postgresql stopped")


async def _serve(
    config: Config,
    dsn: str,
    embedded: EmbeddedPostgres | None,
    hooks: list[StartHook],
    stop_event: trio.Event | None,
    install_signal_handlers: bool,
    task_status: trio.TaskStatus[ReadyInfo],
) -> None:
    metrics = Metrics.create(version=switch_version(), node_name=config.switch.node_name)
    db = Database(
        DatabaseSettings(
            dsn=dsn,
            pool_size_min=config.database.pool_size_min,
            pool_size_max=config.database.pool_size_max,
            connect_timeout_s=config.database.connect_timeout_s,
            statement_timeout_ms=config.database.statement_timeout_ms,
            application_name=f"switchd:{config.switch.node_name}",
        )
    )
    await db.open()
    try:
        applied = await db.run(apply_migrations)
        if applied:
            log.info("migrations applied", versions=[f"{m.version:04d}_{m.name}" for m in applied])
        await _record_node(db, config, stopping=False)
        running = RunningSwitch(config=config, database=db, metrics=metrics)
        stop = stop_event if stop_event is not None else trio.Event()

        async with trio.open_nursery() as services:
            admin_address = None
            if config.metrics.enabled:

                def health() -> tuple[bool, str]:
                    return (running.serving, "ok" if running.serving else "draining")

                admin = AdminServer(metrics.registry, health)
                admin_listeners = await services.start(admin.serve, config.metrics.host, config.metrics.port)
                admin_address = _address(admin_listeners)

            for hook in hooks:
                await hook(running, services)

            terminal: TerminalServer | None = None
            terminal_address = None
            if config.terminal.enabled:
                codec = Codec("terminal")
                requests = TerminalRequests(lambda request, code: codec.response(request, response_code=code))
                terminal = TerminalServer(
                    config.terminal, metrics, name="terminal", codec=codec, handler=requests.handle
                )
                terminal_address = _address(await services.start(terminal.serve))

            metrics.up.set(1)
            info = ReadyInfo(
                terminal_address=terminal_address,
                admin_address=admin_address,
                database="embedded" if embedded else "external",
                embedded_data_dir=str(embedded.data_dir) if embedded else None,
            )
            log.info(
                f"switchd ready: terminals on {terminal_address or 'disabled'}, "
                f"metrics on {'http://' + admin_address + '/metrics' if admin_address else 'disabled'}",
                event_kind="ready",
                terminal=terminal_address,
                metrics=admin_address,
                database=info.database,
                node=config.switch.node_name,
                pid=os.getpid(),
                host=socket.gethostname(),
            )
            task_status.started(info)

            if install_signal_handlers:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async with trio.open_nursery() as waiter:

                        async def on_signal() -> None:
                            async for signum in signals:
                                log.info("signal received", signal=signal.Signals(signum).name)
                                stop.set()
                                return

                        waiter.start_soon(on_signal)
                        await stop.wait()
                        waiter.cancel_scope.cancel()
            else:
                await stop.wait()

            # Drain: stop accepting, give in-flight work its deadline, then cancel what is left.
            running.serving = False
            metrics.up.set(0)
            drain_s = config.switch.drain_timeout_s
            log.info("draining", drain_timeout_s=drain_s)
            if terminal is not None:
                await terminal.drain(drain_s)
            services.cancel_scope.cancel()
        with trio.CancelScope(shield=True):
            await _record_node(db, config, stopping=True)
    finally:
        with trio.CancelScope(shield=True):
            await db.close()
    log.info("switchd stopped")
