"""Fixtures for the routing tests: a second database handle on the test's database (another switchd's
connections, or switchctl's)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from switch.adapters.postgres.db import Database, DatabaseSettings


@pytest.fixture
async def other_db(database_url: str) -> AsyncIterator[Database]:
    """Another pool on the same database, with its own asyncio thread: what a second process would have."""
    database = Database(
        DatabaseSettings(dsn=database_url, pool_size_min=1, pool_size_max=2, application_name="other")
    )
    await database.open()
    try:
        yield database
    finally:
        await database.close()
