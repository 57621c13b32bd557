"""Database access and migrations against a real (embedded) PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from switch.adapters.postgres.db import Database, DatabaseSettings
from switch.adapters.postgres.embedded import EmbeddedPostgres
from switch.adapters.postgres.migrate import (
    Migration,
    MigrationError,
    apply_migrations,
    load_migrations,
    migration_status,
)
from tests.fixtures.pg import make_world_readable_tmpdir


async def test_query_round_trip(db):
    """If a query runs through the bridge, then its rows come back to trio."""
    assert await db.fetchval("SELECT 6 * 7") == 42
    row = await db.fetchrow("SELECT $1::text AS a, $2::int AS b", "x", 5)
    assert (row["a"], row["b"]) == ("x", 5)


async def test_transaction_rolls_back_on_error(db):
    """If work inside a transaction raises, then none of its writes remain."""

    async def work(conn):
        await conn.execute("INSERT INTO switch_meta (key, value) VALUES ('k', 'v')")
        raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await db.transaction(work)
    assert await db.fetchval("SELECT count(*) FROM switch_meta WHERE key = 'k'") == 0


async def test_a_pooled_connection_comes_back_clean(database_url):
    """If a unit of work leaves a transaction open or runs migrations, then the next unit on the same pooled
    connection finds no transaction, no advisory lock and an ordinary session (the pool skips asyncpg's
    reset query, so this is what keeps it safe)."""
    db = Database(DatabaseSettings(dsn=database_url, pool_size_min=1, pool_size_max=1))
    await db.open()
    try:
        pid = await db.fetchval("SELECT pg_backend_pid()")

        async def leave_open(conn):
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO switch_meta (key, value) VALUES ('left', 'open')")

        await db.run(leave_open)
        await db.run(apply_migrations)

        async def inspect(conn):
            return (
                await conn.fetchval("SELECT pg_backend_pid()"),
                conn.is_in_transaction(),
                await conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                ),
                await conn.fetchval("SELECT count(*) FROM switch_meta WHERE key = 'left'"),
                await conn.fetchval("SHOW statement_timeout"),
            )

        assert await db.run(inspect) == (pid, False, 0, 0, "5s")
    finally:
        await db.close()


async def test_database_errors_surface(db):
    """If SQL is invalid, then asyncpg's error reaches the trio caller."""
    with pytest.raises(asyncpg.PostgresSyntaxError):
        await db.execute("SELEC 1")


async def test_template_database_is_migrated(db):
    """If a test database is cloned from the template, then every migration is recorded as applied."""
    status = await db.run(migration_status)
    assert status and all(s.applied_at is not None and s.checksum_matches for s in status)


async def test_migrate_on_empty_database_then_noop(empty_database_url):
    """If migrations run on an empty database, then all apply once and a second run applies none."""
    db = Database(DatabaseSettings(dsn=empty_database_url, pool_size_min=1, pool_size_max=2))
    await db.open()
    try:
        first = await db.run(apply_migrations)
        second = await db.run(apply_migrations)
        assert [m.version for m in first] == [m.version for m in load_migrations()]
        assert second == []
        assert await db.fetchval("SELECT count(*) FROM schema_migrations") == len(first)
    finally:
        await db.close()


async def test_failed_migration_leaves_nothing_behind(empty_database_url):
    """If a migration fails halfway, then neither its changes nor its record remain."""
    bad = [
        Migration(1, "good", "CREATE TABLE a (x int)"),
        Migration(2, "bad", "CREATE TABLE b (x int); SELEC 1"),
    ]
    db = Database(DatabaseSettings(dsn=empty_database_url, pool_size_min=1, pool_size_max=2))
    await db.open()
    try:
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await db.run(lambda conn: apply_migrations(conn, bad))
        assert await db.fetchval("SELECT array_agg(version) FROM schema_migrations") == [1]
        assert await db.fetchval("SELECT to_regclass('b')") is None
    finally:
        await db.close()


async def test_edited_migration_is_refused(empty_database_url):
    """If an applied migration's file changes, then migrate refuses to continue."""
    db = Database(DatabaseSettings(dsn=empty_database_url, pool_size_min=1, pool_size_max=2))
    await db.open()
    try:
        await db.run(lambda conn: apply_migrations(conn, [Migration(1, "one", "CREATE TABLE a (x int)")]))
        with pytest.raises(MigrationError, match="edited after it was applied"):
            await db.run(lambda conn: apply_migrations(conn, [Migration(1, "one", "CREATE TABLE a (y int)")]))
        status = await db.run(
            lambda conn: migration_status(conn, [Migration(1, "one", "CREATE TABLE a (y int)")])
        )
        assert status[0].checksum_matches is False
    finally:
        await db.close()


async def test_database_newer_than_code_is_refused(empty_database_url):
    """If the database has a migration the code does not know, then migrate refuses."""
    db = Database(DatabaseSettings(dsn=empty_database_url, pool_size_min=1, pool_size_max=2))
    await db.open()
    try:
        two = [Migration(1, "one", "SELECT 1"), Migration(2, "two", "SELECT 2")]
        await db.run(lambda conn: apply_migrations(conn, two))
        with pytest.raises(MigrationError, match="does not know"):
            await db.run(lambda conn: apply_migrations(conn, two[:1]))
    finally:
        await db.close()


def test_shipped_migrations_are_well_formed():
    """If the package's migration files are listed, then versions are unique and ascending from 1."""
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))


async def test_failed_open_leaves_no_loop_thread(tmp_path):
    """If the server cannot be reached, then open raises and the bridge's loop thread is gone again."""

    def loop_threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "asyncpg-loop")

    before = loop_threads()
    dsn = f"postgresql://postgres@/postgres?host={tmp_path}&port=5432"  # no server has a socket there
    db = Database(DatabaseSettings(dsn=dsn, pool_size_min=1, pool_size_max=1, connect_timeout_s=2))
    with pytest.raises(OSError):
        await db.open()
    assert loop_threads() == before


# -- the embedded server: who stops it ------------------------------------------------------------------

_OWNER_SCRIPT = """
import sys
from switch.adapters.postgres.embedded import EmbeddedPostgres
server = EmbeddedPostgres(sys.argv[1], durable=False)
server.start()
print("started", flush=True)
sys.stdin.readline()
server.stop()
"""


def start_owner(data_dir: Path) -> subprocess.Popen[str]:
    """Another process (as a first switchd would be) that starts the server and stops it on a newline."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _OWNER_SCRIPT, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    return proc


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    root = make_world_readable_tmpdir("cardswitch-test-owner-")
    yield root / "pgdata"
    EmbeddedPostgres(root / "pgdata").stop()  # only acts if a test left the server to nobody
    shutil.rmtree(root, ignore_errors=True)


def test_server_of_a_live_owner_is_not_stopped_by_another_process(pg_dir):
    """If another live process started the embedded server, then our stop leaves it running for that one."""
    owner = start_owner(pg_dir)
    try:
        second = EmbeddedPostgres(pg_dir, durable=False)
        assert second.start() is False
        assert second.stop() is False
        assert second.running
    finally:
        owner.communicate("\n", timeout=30)
    assert not EmbeddedPostgres(pg_dir).running


def test_server_left_by_a_killed_owner_is_adopted_and_stopped(pg_dir):
    """If the process that started the server was killed, then the next user adopts it and stops it on exit."""
    owner = start_owner(pg_dir)
    owner.kill()
    owner.communicate(timeout=30)
    adopter = EmbeddedPostgres(pg_dir, durable=False)
    assert adopter.running
    assert adopter.start() is False
    assert adopter.stop() is True
    assert not adopter.running
