"""Schema migrations: ordered plain SQL files, each applied once inside a transaction and recorded.

Files live in `switch/migrations/` as `NNNN_short_name.sql` (shipped as package data). A file that was
applied and then edited is reported (its checksum no longer matches) and stops `migrate`, because the
database no longer matches what the code believes it is. Concurrent starts of several switchd nodes are
serialised by an advisory lock, so each file still runs exactly once.

These are asyncio coroutines over an asyncpg connection: run them through `Database.run`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from switch.adapters.postgres.db import AnyConnection

__all__ = [
    "Migration",
    "MigrationError",
    "MigrationStatus",
    "apply_migrations",
    "load_migrations",
    "migration_status",
]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every node using this database.
_ADVISORY_LOCK_KEY = 0x5357_4D49  # "SWMI"


class MigrationError(RuntimeError):
    """Migrations cannot be applied: bad file names, duplicate versions, or edited history."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: datetime | None
    checksum_matches: bool | None  # None when not applied yet


def load_migrations() -> list[Migration]:
    """All migration files shipped with the package, in version order."""
    root = importlib.resources.files("switch") / "migrations"
    found: dict[int, Migration] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name}: expected a name like 0001_short_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"migration version {version:04d} appears twice")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def _applied(conn: AnyConnection) -> dict[int, asyncpg.Record]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum, applied_at FROM schema_migrations")
    return {row["version"]: row for row in rows}


async def migration_status(
    conn: AnyConnection, migrations: list[Migration] | None = None
) -> list[MigrationStatus]:
    """Every known migration with when it was applied (or None) and whether the file is unchanged."""
    known = load_migrations() if migrations is None else migrations
    applied = await _applied(conn)
    out = []
    for m in known:
        row = applied.get(m.version)
        out.append(
            MigrationStatus(
                version=m.version,
                name=m.name,
                applied_at=row["applied_at"] if row else None,
                checksum_matches=(row["checksum"] == m.checksum) if row else None,
            )
        )
    return out


async def apply_migrations(conn: AnyConnection, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply every pending migration in order; returns the ones applied now (empty: nothing to do)."""
    known = load_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", _ADVISORY_LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        applied = await _applied(conn)
        unknown = sorted(set(applied) - {m.version for m in known})
        if unknown:
            raise MigrationError(
                f"the database has migration(s) {', '.join(f'{v:04d}' for v in unknown)} that this version "
                "of the switch does not know: it is older than the schema"
            )
        done: list[Migration] = []
        for m in known:
            row = applied.get(m.version)
            if row is not None:
                if row["checksum"] != m.checksum:
                    raise MigrationError(
                        f"migration {m.version:04d}_{m.name} was edited after it was applied; "
                        "add a new migration instead of changing an applied one"
                    )
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            done.append(m)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _ADVISORY_LOCK_KEY)
