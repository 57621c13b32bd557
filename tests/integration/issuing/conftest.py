"""Fixtures for the issuing tests: an in-process HSM with the public test LMK, the PAN vault with keys
created through it, and the directory, ledger and demo seed on a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hsm.client import HsmClient, InProcessTransport
from hsm.host.processor import HostCommandProcessor
from hsm.keys import KeyVault
from hsm.lmk import VariantLmk
from switch.adapters.postgres.db import Database
from switch.adapters.postgres.directory import PgDirectory, VaultKeyStore
from switch.adapters.postgres.ledger import PgLedger
from switch.domain.pan_vault import PanVault


@pytest.fixture
def hsm_client() -> HsmClient:
    return HsmClient(InProcessTransport(HostCommandProcessor(KeyVault(VariantLmk.test_lmk()))))


@pytest.fixture
async def vault(db: Database, hsm_client: HsmClient) -> PanVault:
    return await VaultKeyStore(db, hsm_client).load_or_create()


@pytest.fixture
def ledger(db: Database) -> PgLedger:
    return PgLedger(db)


@pytest.fixture
async def directory(db: Database, vault: PanVault) -> AsyncIterator[PgDirectory]:
    yield PgDirectory(db, vault)
