"""Fixtures for the store-and-forward tests: the PAN vault through an in-process HSM (public test LMK),
a queue on a fresh database with a hand-stepped clock, and a fake network server with a link to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio

from hsm.client import HsmClient, InProcessTransport
from hsm.host.processor import HostCommandProcessor
from hsm.keys import KeyVault
from hsm.lmk import VariantLmk
from switch.adapters.postgres.db import Database, DatabaseSettings
from switch.adapters.postgres.directory import VaultKeyStore
from switch.adapters.postgres.saf import PgSafQueue
from switch.domain.pan_vault import PanVault
from switch.domain.saf import SafBackoff, SafPolicy
from tests.integration.saf.support import FakeNetworkServer, ManualClock, TcpNetwork

# No jitter: the tests check exact due times. 10 s, 20 s, 40 s, ... capped at 60 s; a day to live.
POLICY = SafPolicy(backoff=SafBackoff(initial_s=10, factor=2, max_s=60, jitter=0))


@pytest.fixture
def hsm_client() -> HsmClient:
    return HsmClient(InProcessTransport(HostCommandProcessor(KeyVault(VariantLmk.test_lmk()))))


@pytest.fixture
async def vault(db: Database, hsm_client: HsmClient) -> PanVault:
    return await VaultKeyStore(db, hsm_client).load_or_create()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def queue(db: Database, vault: PanVault, clock: ManualClock) -> PgSafQueue:
    return PgSafQueue(db, vault, clock=clock, policy=POLICY)


OpenDatabase = Callable[[], Awaitable[Database]]


@pytest.fixture
async def open_database(database_url: str) -> AsyncIterator[OpenDatabase]:
    """Open more Database handles on the test's database (another switchd process, or one restarted)."""
    opened: list[Database] = []

    async def open_one() -> Database:
        database = Database(DatabaseSettings(dsn=database_url, pool_size_min=1, pool_size_max=2))
        await database.open()
        opened.append(database)
        return database

    try:
        yield open_one
    finally:
        for database in opened:
            await database.close()


@pytest.fixture
async def server(nursery: trio.Nursery) -> FakeNetworkServer:
    fake = FakeNetworkServer()
    await nursery.start(fake.serve)
    return fake


@pytest.fixture
async def link(nursery: trio.Nursery, server: FakeNetworkServer) -> TcpNetwork:
    network = TcpNetwork("visa", server.port)
    await nursery.start(network.run)
    return network
