"""`switchctl --help` and `switchctl db migrate|status` against a real (embedded) PostgreSQL."""

from __future__ import annotations

import asyncio
import os

import asyncpg
import pytest

from switch.adapters.postgres.migrate import load_migrations
from switch.cli.switchctl import main


@pytest.fixture
def operator_env(monkeypatch, tmp_path):
    """A shell with no SWITCH_* variables and no switch.toml, as an operator's would be before setting one."""
    for name in [n for n in os.environ if n.startswith("SWITCH_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def names() -> list[str]:
    return [f"{m.version:04d}_{m.name}" for m in load_migrations()]


def test_help_lists_the_commands(capsys):
    """If `switchctl --help` is asked for, then it exits 0 listing every command group."""
    assert run(["--help"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("    ")}
    assert {"db", "iso", "demo", "card", "hotlist", "blacklist", "prepaid", "txn"} <= listed


def test_db_help_lists_migrate_and_status(capsys):
    """If `switchctl db --help` is asked for, then it names the migrate and status commands."""
    assert run(["db", "--help"]) == 0
    out = capsys.readouterr().out
    assert "migrate" in out and "status" in out


def test_db_migrate_applies_everything_then_nothing(operator_env, empty_database_url, capsys):
    """If `switchctl db migrate` runs twice on an empty database, then the first applies all and the second none."""
    operator_env.setenv("SWITCH_DATABASE_URL", empty_database_url)
    assert run(["db", "migrate"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"applied {n}" for n in names()]
    assert run(["db", "migrate"]) == 0
    assert capsys.readouterr().out.strip() == "database is up to date; nothing to apply"


def test_db_status_lists_pending_migrations(operator_env, empty_database_url, capsys):
    """If nothing is applied yet, then `switchctl db status` lists every migration as pending and exits 0."""
    operator_env.setenv("SWITCH_DATABASE_URL", empty_database_url)
    assert run(["db", "status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [[n, "pending"] for n in names()]
    assert lines[-1] == f"{len(names())} migrations, {len(names())} pending"


def test_db_status_reports_an_edited_migration(operator_env, database_url, capsys):
    """If an applied migration no longer matches its file, then `switchctl db status` says so and exits 1."""
    operator_env.setenv("SWITCH_DATABASE_URL", database_url)

    async def tamper() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        finally:
            await conn.close()

    asyncio.run(tamper())
    assert run(["db", "status"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "CHANGED after it was applied" in lines[0]
    assert all(" applied " in f" {line} " for line in lines[1:-1])
    assert lines[-1] == f"{len(names())} migrations, 0 pending, 1 changed"
