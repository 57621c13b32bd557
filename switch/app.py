"""Composition root: config -> adapters -> (pipeline) -> trio nurseries, signals, drain.

The only module (with switch.cli) that knows the concrete adapters. Start order: database (embedded
server if no DSN), migrations, admin endpoint, ledger, journal, card directory (and the demo seed),
then with any enabled `[networks.<name>]`: routing table, zone key store, forwarded-transaction store,
store-and-forward queue and worker, forwarder (its settlement accounts created), one link per network
(connecting in the background: sign-on, then key exchange and a wake-up of the SAF worker, and a key
exchange every `key_exchange_interval_s`); then the terminal listener and the ready line.

Stop order on SIGINT/SIGTERM: stop accepting terminals and let their in-flight requests finish (a
forwarded one waits for its network) within `switch.drain_timeout_s`; then drain the links (pending
requests answered or timed out, the networks' requests being served answered, sign-off); then stop the
SAF worker and the rest, close the pool, stop the embedded server, exit 0.
"""

from __future__ import annotations

import gc
import math
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version

import trio

from switch.adapters.admin_http import AdminServer
from switch.adapters.hsm import ClientHsm, open_hsm
from switch.adapters.network_link import LateResponse, NetworkLink
from switch.adapters.postgres.db import Database, DatabaseSettings
from switch.adapters.postgres.directory import PgDirectory, VaultKeyStore
from switch.adapters.postgres.dukpt import PgKsnCounters
from switch.adapters.postgres.embedded import EmbeddedPostgres
from switch.adapters.postgres.journal import PgJournal
from switch.adapters.postgres.ledger import PgLedger
from switch.adapters.postgres.migrate import apply_migrations
from switch.adapters.postgres.network_keys import PgForwardedTransactions, PgNetworkKeyStore
from switch.adapters.postgres.routes import PgRoutes
from switch.adapters.postgres.saf import PgSafQueue
from switch.adapters.saf_worker import SafMetrics, SafWorker, SafWorkerSettings
from switch.adapters.terminal_server import ListenerShare, TerminalServer
from switch.cli.demo_seed import seed_demo
from switch.config import Config, NetworkConfig
from switch.domain.business_day import business_day
from switch.domain.ledger_types import LedgerAccount
from switch.domain.model import Pan
from switch.domain.pan_vault import PanVault
from switch.domain.saf import SafBackoff, SafPolicy
from switch.domain.translation import NetworkProfile
from switch.iso.codec import Codec
from switch.iso.interchange import network_tables
from switch.iso.message import Message
from switch.logs import get_logger
from switch.metrics import Metrics
from switch.pipeline.authorize import Authorizer, NetworkRequests
from switch.pipeline.forward import Forwarder, ForwardingNetwork, settlement_accounts_for
from switch.pipeline.issuer import IssuerNetwork, advice_suspense_account_id, issuer_response_codes
from switch.pipeline.network_keys import NetworkKeys
from switch.ports import Clock
from switch.terminal_service import TerminalService

__all__ = ["ReadyInfo", "run_switch", "switch_version"]

log = get_logger("switchd")
_FORGET_WORKING_KEYS = """
UPDATE network_keys
SET current_index = NULL, current_zpk_under_lmk = NULL, current_check_value = NULL, current_installed_at = NULL,
    previous_index = NULL, previous_zpk_under_lmk = NULL, previous_check_value = NULL,
    previous_installed_at = NULL, updated_at = now()
WHERE network = ANY($1::text[])
"""
_SIGN_OFF_S = 2.0  # the links' drain gets at least this long, even when the terminals took it all
# The cycle collector's thresholds while serving (gc.set_threshold; Python's are 700, 10, 10). The
# collector runs when the tracked objects allocated since its last run exceed the first, and each run
# walks all of them, nearly all still alive (it collects next to nothing): with 700 a young collection ran
# every ~15 purchases and a full one every second or so at 1,800/s. With these, a young collection runs
# every ~130 (pausing about 3.5 ms instead of 0.3) and a full one after 100 middle ones (about 130,000
# purchases, a minute at full load) and only if the long-lived heap has grown by a quarter since the last
# (Python's own rule); the heap built at start is frozen out of it (gc.freeze below). One switchd process
# spent 7-15% less CPU per purchase at its maximum rate, with no difference seen at 1,000/s
# (docs/benchmarks.md).
GC_THRESHOLDS = (5000, 10, 100)
KEY_RESYNC_MIN_S = 5.0  # at most one key exchange this often because the network refused our key


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
    networks: dict[str, str] = field(default_factory=dict)  # enabled network -> its endpoints
    database_url: str = field(default="", repr=False)  # for worker processes; may carry a password
    # The terminal listener's sockets, for a primary to pass to its workers (they accept from the same).
    terminal_fds: tuple[int, ...] = field(default=(), repr=False)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Interbank:
    """The network side as wired for this process (present when a network is enabled)."""

    links: dict[str, NetworkLink]
    keys: dict[str, NetworkKeys]
    forwarder: Forwarder
    worker: SafWorker
    routes: PgRoutes
    configs: dict[str, NetworkConfig]
    # network -> the edge of its requests for our cards (filled by _start_links, read by the links).
    issuer_services: dict[str, TerminalService]

    def describe_links(self) -> str:
        return ", ".join(f"{name} {'up' if link.up else 'down'}" for name, link in self.links.items())

    async def drain(self, timeout_s: float) -> None:
        """Every link at once: pending requests answered or timed out, then sign-off."""
        async with trio.open_nursery() as nursery:
            for link in self.links.values():
                nursery.start_soon(link.drain, timeout_s)


@dataclass
class Core:
    """The transaction core as wired for this process."""

    codec: Codec
    service: TerminalService
    ledger: PgLedger
    journal: PgJournal
    hsm_description: str
    interbank: Interbank | None = None


async def _start_core(
    config: Config,
    db: Database,
    metrics: Metrics,
    services: trio.Nursery,
    hsm_and_description: tuple[ClientHsm, str],
    *,
    demo: bool,
    seed: bool = True,
) -> Core:
    """Ledger, journal, card directory (and demo data with --demo), pipeline; background tasks.

    `seed` is False in a worker process: the primary seeded the demo (and reset the demo networks'
    working keys) before it started the workers, which must not undo the keys it exchanged since."""
    hsm, hsm_description = hsm_and_description
    ledger = PgLedger(db, batch_size_max=config.ledger.batch_size_max)
    journal = PgJournal(db)
    await services.start(journal.run)
    vault = await VaultKeyStore(db, hsm.client).load_or_create()
    directory = PgDirectory(db, vault)
    await services.start(directory.run)  # LISTEN for changes before the first cached read
    enabled = {name: network for name, network in config.networks.items() if network.enabled}
    if demo and seed:
        summary = await seed_demo(db, ledger, hsm.client, vault)
        log.info(
            "demo data",
            created=summary.created,
            debit_cards=summary.debit_cards,
            prepaid_cards=summary.prepaid_cards,
        )
        if enabled:
            # A network simulator keeps no keys across its restarts: its first exchange is index 01 again,
            # which the key store would take for an older key than one a long previous run left current.
            # So the process that seeds the demo forgets the working keys (never the ZMKs), and the first
            # exchange's key is current whatever its index.
            await db.execute(_FORGET_WORKING_KEYS, sorted(enabled))
    codec = Codec("terminal")
    clock = SystemClock()
    business = business_day(config.switch.business_timezone)  # checked when the config was loaded
    interbank = (
        await _build_interbank(config, enabled, db, metrics, services, hsm, vault, ledger, clock)
        if enabled
        else None
    )
    authorizer = Authorizer(
        directory=directory,
        ledger=ledger,
        hsm=hsm,
        clock=clock,
        respond=lambda request, code: codec.response(request, response_code=code),
        encode=codec.encode_message,
        routes=interbank.routes if interbank is not None else None,
        forwarder=interbank.forwarder if interbank is not None else None,
        ksn_counters=PgKsnCounters(db),
        business=business,
    )
    service = TerminalService(
        authorizer=authorizer,
        journal=journal,
        metrics=metrics,
        clock=clock,
        node_name=config.switch.node_name,
        business=business,
    )
    if interbank is not None:
        await _start_links(config, interbank, authorizer, journal, metrics, services, clock)
    services.start_soon(
        _expire_holds, ledger, clock, config.ledger.hold_expiry_check_s, config.ledger.barred_keep_s
    )
    return Core(
        codec=codec,
        service=service,
        ledger=ledger,
        journal=journal,
        hsm_description=hsm_description,
        interbank=interbank,
    )


async def _build_interbank(
    config: Config,
    enabled: dict[str, NetworkConfig],
    db: Database,
    metrics: Metrics,
    services: trio.Nursery,
    hsm: ClientHsm,
    vault: PanVault,
    ledger: PgLedger,
    clock: SystemClock,
) -> Interbank:
    """Routing, keys, store-and-forward and the forwarder for the enabled networks; links built, not run."""
    routes = PgRoutes(db)
    await services.start(routes.run)  # LISTEN for route changes before the first decision
    key_store = PgNetworkKeyStore(db)
    exchanges = metrics.network_key_exchanges_total
    saf = config.saf
    policy = SafPolicy(
        backoff=SafBackoff(initial_s=saf.backoff_initial_s, max_s=saf.backoff_max_s),
        reversal_lifetime_s=saf.reversal_lifetime_s,
        advice_lifetime_s=saf.advice_lifetime_s,
    )
    links: dict[str, NetworkLink] = {}
    keys: dict[str, NetworkKeys] = {}
    forwarding: dict[str, ForwardingNetwork] = {}
    issuer_services: dict[str, TerminalService] = {}  # filled by _start_links before any link runs

    # The links' handlers; `forwarder` and `worker` are bound below, before any link runs.
    def inbound_for(name: str) -> Callable[[Message], Awaitable[Message | None]]:
        async def inbound(message: Message) -> Message | None:
            return await issuer_services[name].handle(message)

        return inbound

    async def late(response: LateResponse) -> None:
        await forwarder.late_response(
            network=response.network,
            response=response.response,
            request=response.request,
            reason=response.reason,
        )

    def signed_on_for(name: str) -> Callable[[NetworkLink], Awaitable[None]]:
        async def signed_on(link: NetworkLink) -> None:
            worker.wake(name)  # reversals and advices waiting for this network go now
            await keys[name].exchange(link)

        return signed_on

    for name, network in enabled.items():
        profile = NetworkProfile(
            name=name,
            dialect=network.dialect,
            acquirer_id=network.acquirer_id,
            forwarding_id=network.forwarding_id,
            network_id=network.network_id,
        )
        keys[name] = NetworkKeys(
            profile=profile,
            hsm=hsm,
            store=key_store,
            clock=clock,
            key_grace_s=network.key_grace_s,
            deadline_s=network.deadline_s,
            reload_s=network.key_reload_s,
            observe=lambda net, outcome: exchanges.labels(net, outcome).inc(),
        )
        links[name] = NetworkLink(
            network,
            Codec(network.dialect),
            metrics,
            name=name,
            inbound=inbound_for(name),
            late=late,
            on_signed_on=signed_on_for(name),
            clock=clock,
        )
        forwarding[name] = ForwardingNetwork(
            profile=profile, link=links[name], keys=keys[name], deadline_s=network.deadline_s
        )
    queue = PgSafQueue(db, vault, clock=clock, policy=policy)
    worker = SafWorker(
        queue,
        list(links.values()),
        policy=policy,
        settings=SafWorkerSettings(
            request_timeout_s=saf.request_timeout_s,
            lease_margin_s=saf.lease_margin_s,
            poll_interval_s=saf.poll_interval_s,
            error_pause_s=saf.error_pause_s,
        ),
        metrics=SafMetrics.create(metrics.registry),
    )

    def card_token(pan: Pan) -> str:
        # The PAN vault's keyed hash: stand-in counters are per card, and their keys are stored in clear.
        return vault.lookup_hash(pan).hex()[:32]

    forwarded = PgForwardedTransactions(db)
    services.start_soon(
        _prune_interbank,
        queue,
        forwarded,
        clock,
        config.ledger.hold_expiry_check_s,
        saf.finished_keep_s,
        config.ledger.forwarded_keep_s,
    )
    forwarder = Forwarder(
        networks=forwarding,
        hsm=hsm,
        ledger=ledger,
        saf=worker,
        forwarded=forwarded,
        settlement_accounts=settlement_accounts_for(
            (name, currency) for name, network in enabled.items() for currency in network.currencies
        ),
        card_token=card_token,
        clock=clock,
        business=business_day(config.switch.business_timezone),
    )
    await forwarder.ensure_settlement_accounts()
    return Interbank(
        links=links,
        keys=keys,
        forwarder=forwarder,
        worker=worker,
        routes=routes,
        configs=enabled,
        issuer_services=issuer_services,
    )


async def _start_links(
    config: Config,
    interbank: Interbank,
    authorizer: Authorizer,
    journal: PgJournal,
    metrics: Metrics,
    services: trio.Nursery,
    clock: SystemClock,
) -> None:
    """The issuer side's edge per network, then the SAF worker, the links and their key renewal."""
    for name, network in interbank.configs.items():
        suspense = {currency: advice_suspense_account_id(name, currency) for currency in network.currencies}
        await authorizer.ledger.create_accounts(
            [LedgerAccount(account_id=account, currency=currency) for currency, account in suspense.items()]
        )
        issuer = IssuerNetwork(
            name=name,
            keys=interbank.keys[name],
            settlement_accounts={
                currency: account
                for (net, currency), account in interbank.forwarder.settlement_accounts.items()
                if net == name
            },
            suspense_accounts=suspense,
            respond=_network_responder(interbank.links[name].codec),
            response_codes=issuer_response_codes(network_tables(network.dialect).response_codes),
        )
        interbank.issuer_services[name] = TerminalService(
            authorizer=NetworkRequests(authorizer, issuer),
            journal=journal,
            metrics=metrics,
            clock=clock,
            node_name=config.switch.node_name,
            business=authorizer.business,
        )
    await services.start(interbank.worker.run)
    for name, link in interbank.links.items():
        await services.start(link.run)
        interval_s = interbank.configs[name].key_exchange_interval_s
        services.start_soon(_keep_keys, link, interbank.keys[name], interval_s)


def _network_responder(codec: Codec) -> Callable[[Message, str], Message]:
    def respond(request: Message, code: str) -> Message:
        return codec.response(request, response_code=code)

    return respond


async def _keep_keys(link: NetworkLink, keys: NetworkKeys, interval_s: float) -> None:
    """A new zone PIN key every `interval_s` while the link is up (0: never on a timer; the sign-on hook
    does the first), and as soon as the network has refused ours (`NetworkKeys.request_resync`), at most
    once per KEY_RESYNC_MIN_S after the last exchange (the sign-on's too): PIN blocks already on their way
    under the key before are refused as well, and the exchange just made answers them."""
    while True:
        if await keys.resync_requested(interval_s if interval_s > 0 else math.inf):
            pause_s = keys.last_exchange_at + KEY_RESYNC_MIN_S - trio.current_time()
            if pause_s > 0:
                await trio.sleep(pause_s)
                await keys.resync_requested(0)  # the refusals meanwhile are answered by this exchange
        if link.up:
            try:
                await keys.exchange(link)
            except Exception as exc:  # a database hiccup must not end key renewal for good
                log.error("network key renewal failed", network=link.name, error=type(exc).__name__)


async def _watch_signals(
    stop: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            log.info("signal received", signal=signal.Signals(signum).name)
            stop.set()
            # Keep receiving: a second Ctrl-C during the drain is logged, not a KeyboardInterrupt.


async def _expire_holds(
    ledger: PgLedger, clock: SystemClock, interval_s: float, barred_keep_s: float
) -> None:
    """Release authorization holds whose time has passed (the ledger voids them exactly once), and forget
    the barred ids of originals that never came (older than `barred_keep_s`)."""
    while True:
        try:
            now = clock.now()
            released = await ledger.expire_pending(now)
            pruned = await ledger.prune_barred(now - timedelta(seconds=barred_keep_s))
        except Exception as exc:  # keep sweeping; a database hiccup must not stop expiry for good
            log.error("hold expiry failed", error=type(exc).__name__)
        else:
            if released:
                log.info("holds expired", released=released)
            if pruned:
                log.info("barred ids pruned", pruned=pruned)
        await trio.sleep(interval_s)


async def _prune_interbank(
    queue: PgSafQueue,
    forwarded: PgForwardedTransactions,
    clock: Clock,
    interval_s: float,
    finished_keep_s: float,
    forwarded_keep_s: float,
) -> None:
    """Delete store-and-forward entries acknowledged or purged longer than `finished_keep_s` ago (expired
    ones stay: money at risk) and forwarded-transaction records older than `forwarded_keep_s`, so neither
    table, nor the encrypted PANs in the queue, grows without end. As many rows a pass as the sweep's
    limit; a backlog goes in the passes after."""
    while True:
        try:
            now = clock.now()
            entries = await queue.prune_finished(now - timedelta(seconds=finished_keep_s))
            records = await forwarded.prune(now - timedelta(seconds=forwarded_keep_s))
        except Exception as exc:  # keep sweeping; a database hiccup must not stop it for good
            log.error("interbank housekeeping failed", error=type(exc).__name__)
        else:
            if entries or records:
                log.info(
                    "interbank housekeeping", saf_entries_deleted=entries, forwarded_records_deleted=records
                )
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
    seed: bool = True,
    share: ListenerShare | None = None,
    before_database_stops: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[ReadyInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run switchd until SIGINT/SIGTERM (or `stop_event`), then drain and return.

    For several processes on one port (switch/cli/workers.py): `share` is this process's part in accepting
    terminals from one listening socket (a worker's holds the primary's sockets), `seed=False` leaves the
    demo seed to the primary, and `before_database_stops` is awaited (shielded) after this process has
    drained and before it stops the embedded PostgreSQL.
    """
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
                await _serve(
                    config,
                    dsn,
                    embedded,
                    hsm,
                    demo,
                    stop,
                    serving,
                    task_status,
                    seed=seed,
                    share=share,
                )
        finally:
            with trio.CancelScope(shield=True):
                await hsm[0].client.aclose()  # a TCP pool's connections; nothing to do in-process
                if before_database_stops is not None:
                    await before_database_stops()
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
    *,
    seed: bool,
    share: ListenerShare | None,
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
    collector_was = gc.get_threshold()
    await db.open()
    try:
        applied = await db.run(apply_migrations)
        if applied:
            log.info("migrations applied", versions=[f"{m.version:04d}_{m.name}" for m in applied])
        await _record_node(db, config, stopping=False)
        running = RunningSwitch(config=config, database=db, metrics=metrics)

        async with trio.open_nursery() as services:
            admin_address = None
            interbank: Interbank | None = None
            if config.metrics.enabled:

                def health() -> tuple[bool, str]:
                    text = "ok" if running.serving else "draining"
                    if interbank is not None:
                        # A network down is not the switch down: on-us and the other networks still work.
                        text += f"; networks: {interbank.describe_links()}"
                    return (running.serving, text)

                admin = AdminServer(metrics.registry, health)
                admin_listeners = await services.start(admin.serve, config.metrics.host, config.metrics.port)
                admin_address = _address(admin_listeners)

            core = await _start_core(config, db, metrics, services, hsm, demo=demo, seed=seed)
            interbank = core.interbank
            networks = (
                {name: ",".join(network.endpoints) for name, network in interbank.configs.items()}
                if interbank is not None
                else {}
            )

            terminal: TerminalServer | None = None
            terminal_address = None
            terminal_fds: tuple[int, ...] = ()
            if config.terminal.enabled:
                terminal = TerminalServer(
                    config.terminal,
                    metrics,
                    name="terminal",
                    codec=core.codec,
                    handler=core.service.handle,
                    share=share,
                )
                terminal_listeners = await services.start(terminal.serve)
                terminal_address = _address(terminal_listeners)
                terminal_fds = tuple(listener.socket.fileno() for listener in terminal_listeners)

            metrics.up.set(1)
            info = ReadyInfo(
                terminal_address=terminal_address,
                admin_address=admin_address,
                database="embedded" if embedded else "external",
                embedded_data_dir=str(embedded.data_dir) if embedded else None,
                networks=networks,
                database_url=dsn,
                terminal_fds=terminal_fds,
            )
            linked = ", ".join(f"{name} ({endpoints})" for name, endpoints in networks.items())
            log.info(
                f"switchd ready: terminals on {terminal_address or 'disabled'}, "
                f"metrics on {'http://' + admin_address + '/metrics' if admin_address else 'disabled'}, "
                f"networks {linked or 'none'} (links connect in the background)",
                event_kind="ready",
                terminal=terminal_address,
                metrics=admin_address,
                networks=networks,
                database=info.database,
                node=config.switch.node_name,
                hsm=core.hsm_description,
                pid=os.getpid(),
                host=socket.gethostname(),
            )
            if demo and seed and terminal_address is not None:
                host, port = terminal_address.rsplit(":", 1)
                log.info(
                    "demo data is loaded; try a purchase with PIN 1234 from another shell: "
                    f".venv/bin/pos-sim --host {host} --port {port} purchase --amount 12.34 --pin 1234",
                    event_kind="hint",
                )
            # Everything built so far (code, caches, the directory) lives as long as the process: moved out
            # of the collector's generations, it is no longer walked by every full collection, which
            # otherwise pauses the event loop for tens of milliseconds at a time.
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            serving.set()
            task_status.started(info)

            await stop.wait()

            # Drain: stop accepting, give in-flight work its deadline, then cancel what is left.
            running.serving = False
            metrics.up.set(0)
            drain_s = config.switch.drain_timeout_s
            log.info("draining", drain_timeout_s=drain_s)
            drain_deadline = trio.current_time() + drain_s
            if terminal is not None:
                await terminal.drain(drain_s)
            if interbank is not None:
                # After the terminals: a forwarded request still in flight has been answered. What is left
                # of the drain time, but time for the sign-off in any case.
                left_s = max(drain_deadline - trio.current_time(), min(drain_s, _SIGN_OFF_S))
                await interbank.drain(left_s)
            services.cancel_scope.cancel()  # the SAF worker (after the links), listeners, caches
        with trio.CancelScope(shield=True):
            await _record_node(db, config, stopping=True)
    finally:
        gc.set_threshold(*collector_was)
        with trio.CancelScope(shield=True):
            await db.close()
    log.info("switchd stopped")
