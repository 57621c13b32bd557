"""The acquirer side's two tables of migration 0009: `network_keys` (`switch.ports.NetworkKeyStore`) and
`forwarded_transactions` (`switch.ports.ForwardedTransactions`).

Keys: stored under the LMK only; `install` takes the network's row lock (SELECT ... FOR UPDATE) and merges
the new key with what is there (`NetworkKeySet.installed`), so switchd processes exchanging keys at the
same moment agree on the network's newest key. Forwarded transactions: one row per approval that moved
money, written before the terminal hears the answer, never holding card data (the table refuses it too).
Nothing here logs a key or a message.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from switch.adapters.postgres.db import AnyConnection, Database
from switch.domain.translation import CARD_DATA_FIELDS, NetworkKeySet, ZoneKey
from switch.iso.message import Message
from switch.ports import ForwardedRecord

__all__ = ["PgForwardedTransactions", "PgNetworkKeyStore"]

_ENSURE_ROW = "INSERT INTO network_keys (network) VALUES ($1) ON CONFLICT (network) DO NOTHING"
_SELECT = "SELECT * FROM network_keys WHERE network = $1"
_SET_ZMK = """
INSERT INTO network_keys (network, zmk_under_lmk, zmk_check_value) VALUES ($1, $2, $3)
ON CONFLICT (network) DO UPDATE
SET zmk_under_lmk = EXCLUDED.zmk_under_lmk, zmk_check_value = EXCLUDED.zmk_check_value, updated_at = now()
"""
_UPDATE_KEYS = """
UPDATE network_keys
SET current_index = $2, current_zpk_under_lmk = $3, current_check_value = $4, current_installed_at = $5,
    previous_index = $6, previous_zpk_under_lmk = $7, previous_check_value = $8, previous_installed_at = $9,
    updated_at = now()
WHERE network = $1
"""


def _key(row: asyncpg.Record, prefix: str) -> ZoneKey | None:
    if row[f"{prefix}_index"] is None:
        return None
    return ZoneKey(
        index=row[f"{prefix}_index"],
        under_lmk=row[f"{prefix}_zpk_under_lmk"],
        check_value=row[f"{prefix}_check_value"],
        installed_at=row[f"{prefix}_installed_at"],
    )


def _keyset(row: asyncpg.Record | None) -> NetworkKeySet:
    if row is None:
        return NetworkKeySet()
    return NetworkKeySet(current=_key(row, "current"), previous=_key(row, "previous"))


def _columns(key: ZoneKey | None) -> tuple[Any, ...]:
    if key is None:
        return (None, None, None, None)
    return (key.index, key.under_lmk, key.check_value, key.installed_at)


class PgNetworkKeyStore:
    """The `network_keys` table."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def zone_master_key(self, network: str) -> str | None:
        value = await self.database.fetchval(
            "SELECT zmk_under_lmk FROM network_keys WHERE network = $1", network
        )
        return value or None

    async def set_zone_master_key(self, network: str, *, zmk_under_lmk: str, check_value: str) -> None:
        await self.database.execute(_SET_ZMK, network, zmk_under_lmk, check_value.upper())

    async def load(self, network: str) -> NetworkKeySet:
        return _keyset(await self.database.fetchrow(_SELECT, network))

    async def install(self, network: str, key: ZoneKey) -> NetworkKeySet:
        async def work(conn: AnyConnection) -> NetworkKeySet:
            await conn.execute(_ENSURE_ROW, network)
            before = _keyset(await conn.fetchrow(_SELECT + " FOR UPDATE", network))
            after = before.installed(key)
            if after != before:
                await conn.execute(_UPDATE_KEYS, network, *_columns(after.current), *_columns(after.previous))
            return after

        return await self.database.transaction(work)


_INSERT_FORWARDED = """
INSERT INTO forwarded_transactions (transfer_id, network, route, mti, stan, transmission, fields, pan_masked,
                                    amount, currency, auth_code, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11, $12)
ON CONFLICT (transfer_id) DO NOTHING
RETURNING transfer_id
"""


class PgForwardedTransactions:
    """The `forwarded_transactions` table."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def record(self, entry: ForwardedRecord) -> bool:
        present = CARD_DATA_FIELDS.intersection(entry.message.numbers)
        if present:
            # Field numbers only: the values are what must not be kept.
            raise ValueError(f"a forwarded transaction is kept without card data (fields {sorted(present)})")
        message = entry.message
        done = await self.database.fetchval(
            _INSERT_FORWARDED,
            entry.transfer_id,
            entry.network,
            entry.route,
            message.mti,
            message.get(11),
            message.get(7),
            json.dumps({str(n): v for n, v in message.items()}),
            entry.pan_masked,
            entry.amount,
            entry.currency,
            entry.auth_code,
            entry.created_at,
        )
        return done is not None

    async def find(self, transfer_id: str) -> ForwardedRecord | None:
        row = await self.database.fetchrow(
            "SELECT * FROM forwarded_transactions WHERE transfer_id = $1", transfer_id
        )
        if row is None:
            return None
        raw = row["fields"]
        fields = {int(k): str(v) for k, v in (json.loads(raw) if isinstance(raw, str) else raw).items()}
        created_at: datetime = row["created_at"]
        return ForwardedRecord(
            transfer_id=row["transfer_id"],
            network=row["network"],
            route=row["route"],
            message=Message(row["mti"], fields),
            pan_masked=row["pan_masked"],
            amount=row["amount"],
            currency=row["currency"],
            auth_code=row["auth_code"],
            created_at=created_at,
        )
