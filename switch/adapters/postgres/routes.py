"""The routing table over PostgreSQL (`switch.ports.Routes`), held in memory, and its operator writes.

Why in memory: every forwarded authorization needs a routing decision; the table (networks, BIN ranges,
rules, stand-in rules; migration 0007) is small and changes rarely, so it is loaded whole into an
immutable `RoutingTable` and shared by every request until something changes.

Freshness, as for the card directory (switch/adapters/postgres/directory.py has the long version):
- every change to a table routing reads fires `NOTIFY switch_routes '<table>'` (statement triggers);
  `run()` holds a LISTEN connection and drops the table on each notification, then loads the new one in
  the background, so the next request finds it ready;
- the cached table is used only while the LISTEN connection is up (before `run()` has connected, or while
  it reconnects, every `table()` reads the database), and a table read while a notification arrived is
  not kept (an invalidation epoch);
- an operator's change through this class waits, after it committed, until every live listener has
  acknowledged a sync token notified after it (route_listeners, route_change_token), so it holds for the
  very next request on every switchd. Plain SQL changes get the notification behaviour only.
The LISTEN session and the sync tokens are shared with the directory: switch/adapters/postgres/listening.py.
"""

from __future__ import annotations

from dataclasses import replace

import asyncpg
import structlog
import trio

from switch.adapters.postgres.db import AnyConnection, Database
from switch.adapters.postgres.listening import ChangeListener, ListenerTables
from switch.domain.routing import (
    ON_US,
    BinRange,
    PrefixRange,
    RouteRule,
    RoutingTable,
    RuleKind,
    StandinRule,
    valid_network_name,
)

__all__ = ["CHANNEL", "PgRoutes", "RoutesError", "load_routing_table"]

CHANNEL = "switch_routes"
SYNC_TIMEOUT_S = 5.0  # an operator's change waits at most this long for every listener, then warns
_TABLES = ListenerTables(
    name="routes", channel=CHANNEL, listeners="route_listeners", token_sequence="route_change_token"
)
_log = structlog.get_logger("switch.routes")


class RoutesError(Exception):
    """A routing change was refused (unknown network, duplicate, still in use). Never holds card data."""


async def load_routing_table(conn: AnyConnection) -> RoutingTable:
    """Read everything routing needs in one consistent snapshot (one repeatable-read transaction)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        networks = await conn.fetch("SELECT name FROM networks")
        on_us = await conn.fetch(
            "SELECT bin_range_id, low_prefix, high_prefix, priority FROM bin_ranges WHERE owner = 'on_us'"
        )
        ranges = await conn.fetch(
            "SELECT range_id, network, low_prefix, high_prefix, priority FROM network_bin_ranges"
        )
        rules = await conn.fetch("SELECT * FROM route_rules")
        standin = await conn.fetch("SELECT * FROM standin_rules")
    return RoutingTable(
        networks=tuple(r["name"] for r in networks),
        bin_ranges=tuple(
            BinRange(
                range_id=r["bin_range_id"],
                owner=ON_US,
                prefixes=PrefixRange(r["low_prefix"], r["high_prefix"]),
                priority=r["priority"],
            )
            for r in on_us
        )
        + tuple(
            BinRange(
                range_id=r["range_id"],
                owner=r["network"],
                prefixes=PrefixRange(r["low_prefix"], r["high_prefix"]),
                priority=r["priority"],
            )
            for r in ranges
        ),
        rules=tuple(
            RouteRule(
                rule_id=r["rule_id"],
                kind=RuleKind(r["kind"]),
                network=r["network"],
                scope=PrefixRange(r["low_prefix"], r["high_prefix"]),
                currency=r["currency"],
                amount_min=r["amount_min"],
                amount_max=r["amount_max"],
                fee_fixed=r["fee_fixed"],
                fee_bps=r["fee_bps"],
                note=r["note"],
            )
            for r in rules
        ),
        standin_rules=tuple(
            StandinRule(
                standin_id=r["standin_id"],
                network=r["network"],
                scope=PrefixRange(r["low_prefix"], r["high_prefix"]),
                currency=r["currency"],
                per_transaction_amount_max=r["per_transaction_amount_max"],
                daily_amount_max=r["daily_amount_max"],
                daily_count_max=r["daily_count_max"],
            )
            for r in standin
        ),
    )


class PgRoutes:
    """`Routes` over PostgreSQL; run `run()` in a nursery to keep the table in memory.

    Without `run()` every `table()` reads the database (correct, slower): what a CLI wants.
    """

    def __init__(self, database: Database, *, reconnect_delay_s: float = 1.0) -> None:
        self._db = database
        self._reconnect_delay_s = reconnect_delay_s
        self._table: RoutingTable | None = None
        self._epoch = 0
        self._listener = ChangeListener(database, _TABLES, _log)
        self._loading = trio.Lock()  # one load at a time: a burst of requests after a change shares it
        self.notifications_received = 0
        self.loads = 0

    @property
    def caching(self) -> bool:
        """True while the LISTEN connection is up (the table is kept in memory and fresh)."""
        return self._listener.listening

    async def table(self) -> RoutingTable:
        """The routing table as of now: from memory while listening, else from the database."""
        cached = self._table
        if cached is not None and self._listener.listening:
            return cached
        async with self._loading:
            cached = self._table
            if cached is not None and self._listener.listening:
                return cached
            epoch = self._epoch
            table = await self._db.run(load_routing_table)
            self.loads += 1
            if self._listener.listening and epoch == self._epoch:
                self._table = table
            return table

    def _drop(self) -> None:
        self._epoch += 1
        self._table = None

    def _on_notification(self, payload: str) -> None:
        """Runs in the trio thread, in commit order of the changes that notified."""
        self.notifications_received += 1
        kind, _, token = payload.partition(":")
        if kind == "sync":
            # A writer waits for us; every notification committed before its token was applied above.
            self._listener.sync_requested(token)
        else:
            self._drop()
            self._listener.wake()  # the LISTEN loop reloads the table

    async def _load_if_dropped(self) -> None:
        if self._table is None:
            await self.table()  # load now, so the next request does not wait for it

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a LISTEN connection open (reconnecting after loss); `task_status.started()` once listening
        with the table loaded."""
        await self._listener.run(
            self._on_notification,
            reset=self._drop,  # whatever was loaded before may have missed notifications
            refresh=self._load_if_dropped,
            reconnect_delay_s=self._reconnect_delay_s,
            task_status=task_status,
        )

    async def _sync_listeners(self) -> None:
        """Return once every live listener (every switchd) has dropped the table our committed change
        touched; warn after SYNC_TIMEOUT_S instead."""
        self._drop()
        await self._listener.wait_for_listeners(timeout_s=SYNC_TIMEOUT_S)

    async def network_descriptions(self) -> dict[str, str]:
        """Network name -> its description, for `switchctl routes list` (not part of the table)."""
        rows = await self._db.fetch("SELECT name, description FROM networks ORDER BY name")
        return {r["name"]: r["description"] for r in rows}

    # -- operator writes (switchctl routes / standin) --

    async def _write(self, sql: str, *args: object, foreign_key_error: str) -> asyncpg.Record | None:
        """One statement (RETURNING a row when it changed one); once it changed something, wait for every
        listener. Constraint errors become RoutesError with a readable message."""
        try:
            row = await self._db.fetchrow(sql, *args)
        except asyncpg.ForeignKeyViolationError:
            raise RoutesError(foreign_key_error) from None
        except asyncpg.UniqueViolationError:
            raise RoutesError("an identical entry exists already") from None
        except asyncpg.CheckViolationError as exc:
            raise RoutesError(f"refused by the database check {exc.constraint_name}") from None
        if row is not None:
            await self._sync_listeners()
        return row

    @staticmethod
    def _unknown(network: str) -> str:
        return f"unknown network {network!r} (`switchctl routes list` shows the networks)"

    async def add_network(self, name: str, *, description: str = "") -> None:
        if not valid_network_name(name):
            raise RoutesError("a network name is 1-32 lower-case letters, digits or _ (not on_us)")
        row = await self._write(
            "INSERT INTO networks (name, description) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING "
            "RETURNING name",
            name,
            description,
            foreign_key_error="",
        )
        if row is None:
            raise RoutesError(f"network {name!r} exists already")

    async def remove_network(self, name: str) -> bool:
        """Remove a network nothing refers to any more; False if there was none."""
        row = await self._write(
            "DELETE FROM networks WHERE name = $1 RETURNING name",
            name,
            foreign_key_error=f"network {name!r} still has BIN ranges, rules or stand-in rules: remove them first",
        )
        return row is not None

    async def add_bin_range(self, network: str, prefixes: PrefixRange, *, priority: int = 0) -> BinRange:
        """Store a BIN range of `network`; the stored range, with the id the database gave it."""
        try:
            wanted = BinRange(range_id=0, owner=network, prefixes=prefixes, priority=priority)
        except ValueError as exc:
            raise RoutesError(str(exc)) from None
        row = await self._write(
            "INSERT INTO network_bin_ranges (network, low_prefix, high_prefix, priority) "
            "VALUES ($1, $2, $3, $4) RETURNING range_id",
            network,
            prefixes.low,
            prefixes.high,
            priority,
            foreign_key_error=self._unknown(network),
        )
        assert row is not None
        return replace(wanted, range_id=row["range_id"])

    async def remove_bin_range(self, range_id: int) -> bool:
        row = await self._write(
            "DELETE FROM network_bin_ranges WHERE range_id = $1 RETURNING range_id",
            range_id,
            foreign_key_error="",
        )
        return row is not None

    async def add_rule(self, rule: RouteRule) -> RouteRule:
        """Store `rule` (its rule_id is ignored); the stored rule, with the id the database gave it."""
        row = await self._write(
            "INSERT INTO route_rules (network, kind, low_prefix, high_prefix, currency, amount_min, amount_max, "
            "fee_fixed, fee_bps, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING rule_id",
            rule.network,
            rule.kind.value,
            rule.scope.low,
            rule.scope.high,
            rule.currency,
            rule.amount_min,
            rule.amount_max,
            rule.fee_fixed,
            rule.fee_bps,
            rule.note,
            foreign_key_error=self._unknown(rule.network),
        )
        assert row is not None
        return replace(rule, rule_id=row["rule_id"])

    async def remove_rule(self, rule_id: int) -> bool:
        row = await self._write(
            "DELETE FROM route_rules WHERE rule_id = $1 RETURNING rule_id", rule_id, foreign_key_error=""
        )
        return row is not None

    async def set_standin(self, rule: StandinRule) -> StandinRule:
        """Create or replace the stand-in rule of this network, scope and currency (its id is ignored)."""
        row = await self._write(
            "INSERT INTO standin_rules (network, low_prefix, high_prefix, currency, per_transaction_amount_max, "
            "daily_amount_max, daily_count_max) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (network, low_prefix, high_prefix, currency) DO UPDATE SET "
            "per_transaction_amount_max = EXCLUDED.per_transaction_amount_max, "
            "daily_amount_max = EXCLUDED.daily_amount_max, daily_count_max = EXCLUDED.daily_count_max, "
            "updated_at = now() RETURNING standin_id",
            rule.network,
            rule.scope.low,
            rule.scope.high,
            rule.currency,
            rule.per_transaction_amount_max,
            rule.daily_amount_max,
            rule.daily_count_max,
            foreign_key_error=self._unknown(rule.network),
        )
        assert row is not None
        return replace(rule, standin_id=row["standin_id"])

    async def remove_standin(self, standin_id: int) -> bool:
        row = await self._write(
            "DELETE FROM standin_rules WHERE standin_id = $1 RETURNING standin_id",
            standin_id,
            foreign_key_error="",
        )
        return row is not None
