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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

import trio

from switch.adapters.admin_http import AdminServer
from switch.adapters.hsm import ClientHsm, open_hsm
from switch.adapters.postgres.db import Database, DatabaseSettings
from switch.adapters.postgres.directory import PgDirectory, VaultKeyStore
from switch.adapters.postgres.embedded import EmbeddedPostgres
from switch.adapters.postgres.journal import PgJournal
from switch.adapters.postgres.ledger import PgLedger
from switch.adapters.postgres.migrate import apply_migrations
from switch.adapters.terminal_server import TerminalServer
from switch.cli.demo_seed import seed_demo
from switch.config import Config
from switch.iso.codec import Codec
from switch.logs import get_logger
from switch.metrics import Metrics
from switch.pipeline.authorize import Authorizer
from switch.terminal_service import TerminalService

__all__ = ["ReadyInfo", "run_switch", "switch_version"]

log = get_logger("switchd")


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


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Core:
    """The transaction core as wired for this process."""

    codec: Codec
    service: TerminalService
    ledger: PgLedger
    journal: PgJournal
    hsm_description: str


async def _start_core(
    config: Config,
    db: Database,
    metrics: Metrics,
    services: trio.Nursery,
    hsm_and_description: tuple[ClientHsm, str],
    *,
    demo: bool,
) -> Core:
    """Ledger, journal, card directory (and demo data with --demo), pipeline; background tasks."""
    hsm, hsm_description = hsm_and_description
    ledger = PgLedger(db, batch_size_max=config.ledger.batch_size_max)
    journal = PgJournal(db)
    await services.start(journal.run)
    vault = await VaultKeyStore(db, hsm.client).load_or_create()
    directory = PgDirectory(db, vault)
    await services.start(directory.run)  # LISTEN for changes before the first cached read
    if demo:
        summary = await seed_demo(db, ledger, hsm.client, vault)
        log.info(
            "demo data",
            created=summary.created,
            debit_cards=summary.debit_cards,
            prepaid_cards=summary.prepaid_cards,
        )
    codec = Codec("terminal")
    clock = SystemClock()
    authorizer = Authorizer(
        directory=directory,
        ledger=ledger,
        hsm=hsm,
        clock=clock,
        respond=lambda request, code: codec.response(request, response_code=code),
        encode=codec.encode_message,
    )
    service = TerminalService(
        authorizer=authorizer,
        journal=journal,
        metrics=metrics,
        clock=clock,
        node_name=config.switch.node_name,
    )
    services.start_soon(_expire_holds, ledger, clock, config.ledger.hold_expiry_check_s)
    return Core(codec=codec, service=service, ledger=ledger, journal=journal, hsm_description=hsm_description)


async def _watch_signals(
    stop: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            log.info("signal received", signal=signal.Signals(signum).name)
            stop.set()
            # Keep receiving: a second Ctrl-C during the drain is logged, not a KeyboardInterrupt.


async def _expire_holds(ledger: PgLedger, clock: SystemClock, interval_s: float) -> None:
    """Release authorization holds whose time has passed (the ledger voids them exactly once)."""
    while True:
        try:
            released = await ledger.expire_pending(clock.now())
        except Exception as exc:  # keep sweeping; a database hiccup must not stop expiry for good
            log.error("hold expiry failed", error=type(exc).__name__)
        else:
            if released:
                log.info("holds expired", released=released)
        await trio.sleep(interval_s)


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
    demo: bool = False,
    stop_event: trio.Event | None = None,
    install_signal_handlers: bool = True,
    task_status: trio.TaskStatus[ReadyInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run switchd until SIGINT/SIGTERM (or `stop_event`), then drain and return."""
    hsm = open_hsm(config.hsm, allow_test_lmk=demo)  # before anything starts: a missing LMK fails fast
    stop = stop_event if stop_event is not None else trio.Event()
    serving = trio.Event()  # set with the ready line: from then on a stop is a drain
    starting = trio.CancelScope()

    async def abort_start_on_stop() -> None:
        await stop.wait()
        if not serving.is_set():
            log.info("stop requested while starting; stopping without serving")
            starting.cancel()

    async with trio.open_nursery() as guard:
        if install_signal_handlers:
            # Watched from the first moment, so a Ctrl-C while the database starts or migrates is a
            # clean stop (exit 0, embedded server stopped), not a KeyboardInterrupt.
            await guard.start(_watch_signals, stop)
        guard.start_soon(abort_start_on_stop)
        embedded: EmbeddedPostgres | None = None
        try:
            with starting:
                dsn = config.database.url
                if not dsn:
                    embedded = EmbeddedPostgres(
                        config.var_path.resolve() / "pgdata",
                        start_timeout_s=config.database.embedded_start_timeout_s,
                    )
                    log.info("starting embedded postgresql", data_dir=str(embedded.data_dir))
                    started = await trio.to_thread.run_sync(embedded.start)
                    if not started:
                        log.warning(
                            "embedded postgresql was already running; using it",
                            data_dir=str(embedded.data_dir),
                        )
                    dsn = embedded.dsn()
                await _serve(config, dsn, embedded, hsm, demo, stop, serving, task_status)
        finally:
            with trio.CancelScope(shield=True):
                await hsm[0].client.aclose()  # a TCP pool's connections; nothing to do in-process
            if embedded is not None:
                with trio.CancelScope(shield=True):
                    if await trio.to_thread.run_sync(embedded.stop):
                        log.info("embedded postgresql stopped")
                    else:
                        log.info("embedded postgresql left running: another process started it")
            guard.cancel_scope.cancel()


async def _serve(
    config: Config,
    dsn: str,
    embedded: EmbeddedPostgres | None,
    hsm: tuple[ClientHsm, str],
    demo: bool,
    stop: trio.Event,
    serving: trio.Event,
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

        async with trio.open_nursery() as services:
            admin_address = None
            if config.metrics.enabled:

                def health() -> tuple[bool, str]:
                    return (running.serving, "ok" if running.serving else "draining")

                admin = AdminServer(metrics.registry, health)
                admin_listeners = await services.start(admin.serve, config.metrics.host, config.metrics.port)
                admin_address = _address(admin_listeners)

            core = await _start_core(config, db, metrics, services, hsm, demo=demo)

            terminal: TerminalServer | None = None
            terminal_address = None
            if config.terminal.enabled:
                terminal = TerminalServer(
                    config.terminal, metrics, name="terminal", codec=core.codec, handler=core.service.handle
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
                hsm=core.hsm_description,
                pid=os.getpid(),
                host=socket.gethostname(),
            )
            if demo and terminal_address is not None:
                host, port = terminal_address.rsplit(":", 1)
                log.info(
                    "demo data is loaded; try a purchase with PIN 1234 from another shell: "
                    f".venv/bin/pos-sim --host {host} --port {port} purchase --amount 12.34 --pin 1234",
                    event_kind="hint",
                )
            serving.set()
            task_status.started(info)

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
