"""PostgreSQL access for trio code: an asyncpg pool living on the bridge's asyncio loop.

The bridge is a `HostedLoop` (an asyncio loop stepped from a trio task in trio's own thread) unless the
caller passes another. Everything asyncpg touches (pool, connections, records' creation) runs inside the
loop's iterations; trio code calls `fetch`/`execute`/... or hands a whole unit of work to
`run`/`transaction`, which executes it on the loop with one pooled connection. Units of work are
asyncio coroutine functions that take a connection, so a batch of statements costs one bridge crossing,
not one per statement.

Returning a connection to the pool costs no round trip. asyncpg's default reset on release sends
`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` and waits for it: one more round trip
per unit of work, as many as the work itself for the ledger's one-statement batches, and the caller waits
for it. The pool here keeps only the part of the reset that is free or needed (asyncpg's own: a
transaction left open is rolled back, listeners dropped), which holds because of a rule for every unit of
work: leave no session state behind. No `SET` (use `SET LOCAL` inside a transaction, or a function's `SET`
clause), no `LISTEN` (listening.py holds its own connections), no session advisory lock that is not
unlocked before the work returns (migrate.py unlocks in `finally`; `pg_advisory_xact_lock` needs nothing),
no `DECLARE ... WITH HOLD`. (The connection's startup settings, `statement_timeout` and the application
name, are what `RESET ALL` would go back to anyway.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from switch.adapters.postgres.bridge import AsyncioThread, HostedLoop

__all__ = ["AnyConnection", "Database", "DatabaseSettings"]

T = TypeVar("T")
# asyncpg hands out pool connections as proxies; both kinds offer the same query methods.
AnyConnection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
ConnectionWork = Callable[[AnyConnection], Awaitable[T]]


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    dsn: str
    pool_size_min: int = 2
    pool_size_max: int = 10
    connect_timeout_s: float = 10.0
    statement_timeout_ms: int = 5000
    application_name: str = "switchd"


async def _keep_session(_conn: AnyConnection) -> None:
    """The pool's reset on release beyond asyncpg's own rollback: nothing (see the module's rule)."""


class Database:
    """A pooled PostgreSQL handle usable from trio. `open()` before use, `close()` at the end."""

    def __init__(self, settings: DatabaseSettings, bridge: HostedLoop | AsyncioThread | None = None) -> None:
        self.settings = settings
        self._own_bridge = bridge is None
        self.bridge = bridge if bridge is not None else HostedLoop()
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database is not open")
        return self._pool

    async def open(self) -> None:
        if self._own_bridge:
            self.bridge.start()
        s = self.settings
        server_settings = {"application_name": s.application_name}
        if s.statement_timeout_ms:
            server_settings["statement_timeout"] = str(s.statement_timeout_ms)

        async def create() -> asyncpg.Pool:
            return await asyncpg.create_pool(
                s.dsn,
                min_size=s.pool_size_min,
                max_size=s.pool_size_max,
                timeout=s.connect_timeout_s,
                server_settings=server_settings,
                reset=_keep_session,
            )

        try:
            self._pool = await self.bridge.call(create)
        except BaseException:
            # Callers only close what opened; a failed open must not leave the loop thread behind.
            if self._own_bridge:
                await self.bridge.aclose()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await self.bridge.call(pool.close)
        if self._own_bridge:
            await self.bridge.aclose()

    async def run(self, work: ConnectionWork[T]) -> T:
        """Run `work(connection)` on the loop thread with a pooled connection."""
        pool = self.pool

        async def unit() -> T:
            async with pool.acquire() as conn:
                return await work(conn)

        return await self.bridge.call(unit)

    async def transaction(self, work: ConnectionWork[T]) -> T:
        """Like `run`, inside one transaction (committed if `work` returns, rolled back if it raises)."""
        pool = self.pool

        async def unit() -> T:
            async with pool.acquire() as conn, conn.transaction():
                return await work(conn)

        return await self.bridge.call(unit)

    async def execute(self, sql: str, *args: Any) -> str:
        pool = self.pool
        return await self.bridge.call(lambda: pool.execute(sql, *args))

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        pool = self.pool
        return await self.bridge.call(lambda: pool.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        pool = self.pool
        return await self.bridge.call(lambda: pool.fetchrow(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        pool = self.pool
        return await self.bridge.call(lambda: pool.fetchval(sql, *args))
