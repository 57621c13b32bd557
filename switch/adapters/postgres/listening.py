"""LISTEN/NOTIFY sessions for this package's in-memory caches, and the sync protocol that makes an operator's
change hold for the very next request on every switchd.

The card directory (directory.py has the long version of why) and the routing table (routes.py) both keep
what they read in memory and drop it when the database notifies a change. The owner decides what a
notification drops; this module keeps the rest, once:
- `ChangeListener.run()` holds a LISTEN connection (reconnecting after loss) and probes it; while it is up
  `listening` is True, and only then may the owner serve from memory (notifications may be missed
  otherwise, so the owner's `reset` runs whenever a session starts or ends);
- each session has a row in the owner's listener table, its heartbeat and the highest sync token it
  acknowledged (migrations 0006 and 0007);
- a writer whose change committed calls `wait_for_listeners()`: it notifies `sync:<token>` and waits until
  every live listener has acknowledged that token. Notifications reach a listener in commit order, so an
  acknowledged token means the change's own notification was applied first. A listener whose heartbeat is
  older than LISTENER_STALE_S is taken for gone and not waited for.
Table names come from code (`ListenerTables`), never from input.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import structlog
import trio

from switch.adapters.postgres.db import AnyConnection, Database

__all__ = [
    "LISTENER_STALE_S",
    "LISTEN_PROBE_INTERVAL_S",
    "LISTEN_PROBE_TIMEOUT_S",
    "SYNC_POLL_S",
    "ChangeListener",
    "ListenerTables",
]

# A silent network drop may leave the LISTEN connection "open" forever: probe it this often.
LISTEN_PROBE_INTERVAL_S = 10.0
LISTEN_PROBE_TIMEOUT_S = 5.0
LISTENER_STALE_S = 3 * LISTEN_PROBE_INTERVAL_S
SYNC_POLL_S = 0.005


@dataclass(frozen=True, slots=True)
class ListenerTables:
    """Where one cache listens and keeps its sync tokens."""

    name: str  # "directory", "routes": the LISTEN connection's application name suffix, the log event prefix
    channel: str
    listeners: str  # the table of live listeners: listener_id, acked_token, seen_at
    token_sequence: str


class ChangeListener:
    """One cache's LISTEN sessions and sync tokens. The owner hands each notification's payload to its
    own handler, which calls `sync_requested` for a sync token."""

    def __init__(
        self, database: Database, tables: ListenerTables, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        self._db = database
        self._tables = tables
        self._log = log
        self.listening = False
        self._sync_wanted = 0  # the highest sync token notified: the LISTEN loop acknowledges it
        self._wake = trio.Event()  # wakes the LISTEN loop: a sync token to acknowledge, or the link lost

    def sync_requested(self, token: str) -> None:
        """A writer waits until we confirm `token` (runs in the trio thread). Notifications come in commit
        order, so everything its change touched has been dropped by now."""
        with contextlib.suppress(ValueError):
            self._sync_wanted = max(self._sync_wanted, int(token))
        self._wake.set()

    def wake(self) -> None:
        """Wake the LISTEN loop, so the owner's `refresh` runs soon."""
        self._wake.set()

    async def run(
        self,
        on_notification: Callable[[str], None],
        *,
        reset: Callable[[], None],
        refresh: Callable[[], Awaitable[None]] | None = None,
        reconnect_delay_s: float,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep a LISTEN connection open (reconnecting after loss); `task_status.started()` once listening.

        `on_notification(payload)` runs in the trio thread, in commit order; `reset()` drops everything
        cached, when a session starts and when it ends; `refresh()`, if given, runs once listening and
        after every wake-up, so the owner can reload what it dropped before a request asks for it.
        """
        started = False

        def on_listening() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        while True:
            try:
                await self._listen(on_notification, reset, refresh, on_listening)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._log.warning(f"{self._tables.name}_listen_lost", error=type(exc).__name__)
            await trio.sleep(reconnect_delay_s)

    async def _listen(
        self,
        on_notification: Callable[[str], None],
        reset: Callable[[], None],
        refresh: Callable[[], Awaitable[None]] | None,
        on_listening: Callable[[], None],
    ) -> None:
        """One LISTEN session: calls `on_listening` once listening, returns when the connection is lost."""
        token = trio.lowlevel.current_trio_token()
        lost = trio.Event()
        bridge = self._db.bridge
        tables = self._tables

        def on_notify(_conn: AnyConnection, _pid: int, _channel: str, payload: object) -> None:
            # Runs inside the asyncio loop (trio's own thread or the loop's thread, per bridge): hand the
            # payload to trio, which run_sync_soon does from either.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(on_notification, str(payload))

        def lose() -> None:
            lost.set()
            self._wake.set()

        def on_terminate(_conn: AnyConnection) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(lose)

        settings = self._db.settings

        async def connect() -> asyncpg.Connection:
            conn = await asyncpg.connect(
                settings.dsn,
                timeout=settings.connect_timeout_s,
                server_settings={"application_name": f"{settings.application_name}-{tables.name}"},
            )
            await conn.add_listener(tables.channel, on_notify)
            conn.add_termination_listener(on_terminate)
            return conn

        conn = await bridge.call(connect)
        listener_id = os.urandom(8).hex()
        try:
            # Anything cached before now may have missed notifications.
            reset()
            acked = await self._register(listener_id)
            self.listening = True
            if refresh is not None:
                await refresh()
            self._log.info(f"{tables.name}_listening")
            on_listening()
            probe_at = trio.current_time() + LISTEN_PROBE_INTERVAL_S
            while not lost.is_set():
                with trio.move_on_at(probe_at):
                    await self._wake.wait()
                self._wake = trio.Event()
                if lost.is_set():
                    break
                with trio.fail_after(LISTEN_PROBE_TIMEOUT_S):
                    if trio.current_time() >= probe_at:
                        await bridge.call(lambda: conn.fetchval("SELECT 1"))
                        probe_at = trio.current_time() + LISTEN_PROBE_INTERVAL_S
                        # Also the heartbeat that keeps writers waiting for this listener.
                        acked = await self._acknowledge(listener_id, max(acked, self._sync_wanted))
                    elif self._sync_wanted > acked:
                        acked = await self._acknowledge(listener_id, self._sync_wanted)
                if refresh is not None:
                    await refresh()
        except trio.TooSlowError:
            self._log.warning(f"{tables.name}_listen_probe_timeout")
        finally:
            self.listening = False
            reset()
            # Best effort: a row left behind is ignored once its heartbeat is stale.
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(LISTEN_PROBE_TIMEOUT_S),
                contextlib.suppress(Exception),
            ):
                await self._db.execute(f"DELETE FROM {tables.listeners} WHERE listener_id = $1", listener_id)
            with trio.CancelScope(shield=True):
                try:
                    await bridge.call(lambda: conn.close(timeout=2.0))
                except Exception:  # closing a broken connection may fail any way: cut it instead
                    bridge.loop.call_soon_threadsafe(conn.terminate)

    async def _register(self, listener_id: str) -> int:
        """Enter this LISTEN session in the listener table; the sync token it starts from.

        It starts at the token sequence's current value: the owner has just reset, so every change
        committed before is already seen, and any later sync notification reaches it.
        """
        tables = self._tables

        async def work(conn: AnyConnection) -> int:
            await conn.execute(
                f"DELETE FROM {tables.listeners} WHERE seen_at < now() - make_interval(secs => $1)",
                LISTENER_STALE_S,
            )
            token: int = await conn.fetchval(
                f"INSERT INTO {tables.listeners} (listener_id, acked_token) "
                f"SELECT $1, CASE WHEN is_called THEN last_value ELSE 0 END FROM {tables.token_sequence} "
                "RETURNING acked_token",
                listener_id,
            )
            return token

        return await self._db.run(work)

    async def _acknowledge(self, listener_id: str, token: int) -> int:
        # An upsert: a row removed meanwhile (taken for stale after a long stall) comes back.
        listeners = self._tables.listeners
        await self._db.execute(
            f"INSERT INTO {listeners} (listener_id, acked_token) VALUES ($1, $2) "
            "ON CONFLICT (listener_id) DO UPDATE "
            f"SET acked_token = greatest({listeners}.acked_token, $2), seen_at = now()",
            listener_id,
            token,
        )
        return token

    async def wait_for_listeners(self, *, timeout_s: float) -> None:
        """Return once every live listener has acknowledged a sync token notified after the caller's
        committed change; warn after `timeout_s` instead."""
        tables = self._tables
        token: int = await self._db.fetchval(
            f"WITH s AS (SELECT nextval('{tables.token_sequence}') AS t) "
            "SELECT t, pg_notify($1, 'sync:' || t) FROM s",
            tables.channel,
        )
        waiting = 0
        with trio.move_on_after(timeout_s):
            while True:
                waiting = await self._db.fetchval(
                    f"SELECT count(*) FROM {tables.listeners} "
                    "WHERE acked_token < $1 AND seen_at >= now() - make_interval(secs => $2)",
                    token,
                    LISTENER_STALE_S,
                )
                if not waiting:
                    return
                await trio.sleep(SYNC_POLL_S)
        self._log.warning(f"{tables.name}_change_unconfirmed", listeners=waiting, timeout_s=timeout_s)
