"""Shared pieces of the command-line tools: loading config with a readable error, opening the database."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from hsm.client import HsmClient, InProcessTransport
from hsm.host.processor import HostCommandProcessor
from hsm.keys import KeyVault
from hsm.lmk import VariantLmk
from switch.adapters.hsm import HsmSetupError, open_hsm
from switch.adapters.postgres.db import Database, DatabaseSettings
from switch.adapters.postgres.embedded import EmbeddedPostgres
from switch.config import Config, ConfigError, load_config

__all__ = ["TEST_LMK_WARNING", "fail", "load_config_or_exit", "open_cli_hsm", "open_database"]

TEST_LMK_WARNING = (
    "WARNING: using an in-process HSM with the PUBLIC TEST LMK. Keys and PINs under it are not secret: "
    "test and demo data only."
)


def fail(message: str, code: int = 2) -> SystemExit:
    print(f"error: {message}", file=sys.stderr)
    return SystemExit(code)


def load_config_or_exit(path: str | None, *, demo: bool = False) -> Config:
    """The config of file and environment; with `demo`, the demo networks when the file has none (so
    `SWITCH_NETWORKS_*` overrides apply to them)."""
    try:
        return load_config(Path(path) if path else None, demo=demo)
    except ConfigError as exc:
        raise fail(str(exc)) from None


@asynccontextmanager
async def open_database(config: Config) -> AsyncIterator[Database]:
    """The configured database; with no DSN, the embedded server (started and stopped here if needed)."""
    embedded: EmbeddedPostgres | None = None
    started = False
    dsn = config.database.url
    if not dsn:
        embedded = EmbeddedPostgres(
            config.var_path.resolve() / "pgdata", start_timeout_s=config.database.embedded_start_timeout_s
        )
        started = await trio.to_thread.run_sync(embedded.start)
        dsn = embedded.dsn()
    db = Database(DatabaseSettings(dsn=dsn, pool_size_min=1, pool_size_max=2, application_name="switchctl"))
    try:
        await db.open()
        try:
            yield db
        finally:
            with trio.CancelScope(shield=True):
                await db.close()
    finally:
        if embedded is not None and started:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(embedded.stop)


@asynccontextmanager
async def open_cli_hsm(config: Config) -> AsyncIterator[HsmClient]:
    """The HSM as switchd would use it: hsmd over TCP (`hsm.mode = "tcp"`) or the in-process HSM with the
    LMK file of `hsm.lmk_file`; with neither configured, the in-process HSM with the PUBLIC test LMK of
    the demo (`switchd run --demo`), announced on stderr."""
    if config.hsm.mode == "tcp" or config.hsm.lmk_file:
        try:
            client = open_hsm(config.hsm, allow_test_lmk=False)[0].client
        except HsmSetupError as exc:
            raise fail(str(exc)) from None
    else:
        print(TEST_LMK_WARNING, file=sys.stderr)
        client = HsmClient(InProcessTransport(HostCommandProcessor(KeyVault(VariantLmk.test_lmk()))))
    try:
        yield client
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()
