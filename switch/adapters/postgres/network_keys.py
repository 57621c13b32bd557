"""The acquirer side's two tables of migration 0009: `network_keys` (`switch.ports.NetworkKeyStore`) and
`forwarded_transactions` (`switch.ports.ForwardedTransactions`).

Keys: stored under the LMK only; `install` takes the network's row lock (SELECT ... FOR UPDATE) and merges
the new key with what is there (`NetworkKeySet.installed`), so switchd processes exchanging keys at the
same moment agree on the network's newest key. Forwarded transactions: one row per approval that moved
money, written before the terminal hears the answer, never holding card data (the table refuses it too).
Nothing here logs a key or a message.

Every forwarded approval records right after its ledger posting, and a round trip through the asyncio
bridge costs far more than the row, so concurrent `record` calls are coalesced the way the ledger's group
commit coalesces transfers (switch/adapters/postgres/ledger.py): no timers, no background task; the call
that finds the store idle leads, lets one pass of the scheduler go by (the purchases released by the
same ledger batch are runnable and join), sends everything queued in one INSERT, then hands the lead to
the oldest call queued meanwhile. Each caller returns once the statement carrying its row committed,
with its own answer (False: that transfer id was recorded before, or earlier in the same batch). The
leader's statement is shielded from its cancellation (other rows ride in it); a caller cancelled while
queued is dropped from the queue and nothing of it is written. A statement the server refuses (rolled
back whole) is sent again row by row, so only the caller whose row caused it sees the error.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson
import trio

from switch.adapters.postgres.db import AnyConnection, Database
from switch.domain.translation import CARD_DATA_FIELDS, NetworkKeySet, ZoneKey
from switch.iso.message import Message
from switch.ports import ForwardedRecord

__all__ = ["PgForwardedTransactions", "PgNetworkKeyStore", "RecordBatchStats"]

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
SELECT r.transfer_id, r.network, r.route, r.mti, r.stan, r.transmission, r.fields::jsonb, r.pan_masked,
       r.amount, r.currency, r.auth_code, r.created_at
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
              $9::bigint[], $10::smallint[], $11::text[], $12::timestamptz[])
       AS r (transfer_id, network, route, mti, stan, transmission, fields, pan_masked, amount, currency,
             auth_code, created_at)
ON CONFLICT (transfer_id) DO NOTHING
RETURNING transfer_id
"""


@dataclass(frozen=True, slots=True)
class RecordBatchStats:
    """How `record` calls have been batched so far (for tests and the benchmark)."""

    statements: int  # INSERT statements sent, one-by-one retries after an error included
    records: int  # records sent in them
    batch_size_counts: dict[int, int]  # records in a statement -> how many statements had that many


@dataclass(eq=False)
class _Waiter:
    """One `record` call: its row, its outcome, and how its task is woken."""

    transfer_id: str
    row: tuple[Any, ...]
    inserted: bool = False
    error: BaseException | None = None
    done: bool = False
    lead: bool = False  # woken to lead, not because it is done
    abandoned: bool = False  # its task was cancelled while queued; nothing of it is sent
    wake: trio.Event = field(default_factory=trio.Event)


class PgForwardedTransactions:
    """The `forwarded_transactions` table, batching concurrent `record` calls into one INSERT."""

    def __init__(self, database: Database, *, batch_size_max: int = 256) -> None:
        if batch_size_max < 1:
            raise ValueError("batch_size_max must be at least 1")
        self.database = database
        self._batch_size_max = batch_size_max
        self._queue: collections.deque[_Waiter] = collections.deque()
        self._leading = False  # a task is sending batches; new calls queue behind it
        self._statements = 0
        self._records_sent = 0
        self._batch_size_counts: collections.Counter[int] = collections.Counter()

    async def record(self, entry: ForwardedRecord) -> bool:
        """Keep `entry` (committed when this returns, batched with concurrent calls); False if a record
        with its transfer id exists already, also when that one came earlier in the same batch."""
        row = _row(entry)  # refuses card data before anything is queued
        waiter = _Waiter(entry.transfer_id, row)
        self._queue.append(waiter)
        if self._leading:
            try:
                await waiter.wake.wait()
            except BaseException:
                self._abandon(waiter)
                raise
            fresh = False
        else:
            self._leading = True
            fresh = True
        if not waiter.done:
            await self._lead(waiter, fresh=fresh)
        if waiter.error is not None:
            # The statement's own error (a batch refused by the server is retried row by row, so a
            # refusal reaches only the caller whose row caused it); a lost connection reaches every
            # caller of its batch, whose outcome is then unknown, as for a single INSERT.
            raise waiter.error
        return waiter.inserted

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

    def stats(self) -> RecordBatchStats:
        return RecordBatchStats(
            statements=self._statements,
            records=self._records_sent,
            batch_size_counts=dict(self._batch_size_counts),
        )

    # -- batching (the same leader scheme as the ledger's group commit) ----------------------------------

    def _abandon(self, waiter: _Waiter) -> None:
        """The caller's task is gone (cancelled): an unsent record is dropped, leadership passed on."""
        waiter.abandoned = True
        if not waiter.done and waiter in self._queue:
            self._queue.remove(waiter)
        if waiter.lead and not waiter.done:
            # It was woken to lead but never started: somebody else must.
            self._hand_off()

    async def _lead(self, own: _Waiter, *, fresh: bool) -> None:
        """Send batches until `own` is done, then pass the leadership on."""
        try:
            # Other callers' records ride in every batch: the leader's cancellation must not stop it.
            with trio.CancelScope(shield=True):
                if fresh:
                    # One pass of the scheduler (no timer): the purchases that the ledger's last batch
                    # just released are runnable now and record at once; they join this batch.
                    await trio.lowlevel.cancel_shielded_checkpoint()
                while not own.done:
                    batch = self._take_batch()
                    assert batch, "the leader's own record is queued until it is done"
                    await self._send_batch(batch)
        finally:
            self._hand_off()

    def _hand_off(self) -> None:
        while self._queue and self._queue[0].abandoned:
            self._queue.popleft()
        if self._queue:
            nxt = self._queue[0]
            nxt.lead = True
            nxt.wake.set()
        else:
            self._leading = False

    def _take_batch(self) -> list[_Waiter]:
        batch: list[_Waiter] = []
        while self._queue and len(batch) < self._batch_size_max:
            batch.append(self._queue.popleft())
        return batch

    async def _send_batch(self, batch: list[_Waiter]) -> None:
        try:
            # A transfer id twice in one batch: the first is sent, the later ones find it there (False).
            first: dict[str, _Waiter] = {}
            for waiter in batch:
                first.setdefault(waiter.transfer_id, waiter)
            try:
                inserted = await self._insert([w.row for w in first.values()])
            except asyncpg.PostgresError:
                # The statement was rolled back as a whole. Alone, each row gets its own outcome.
                if len(batch) == 1:
                    raise
                for waiter in batch:
                    await self._send_alone(waiter)
                return
            for waiter in batch:
                self._deliver(waiter, first[waiter.transfer_id] is waiter and waiter.transfer_id in inserted)
        except BaseException as exc:
            # Every caller still waiting in the batch hears of it; only interrupts go further.
            for waiter in batch:
                self._fail(waiter, exc)
            if not isinstance(exc, Exception):
                raise

    async def _send_alone(self, waiter: _Waiter) -> None:
        try:
            inserted = await self._insert([waiter.row])
        except asyncpg.PostgresError as exc:
            self._fail(waiter, exc)
        else:
            self._deliver(waiter, waiter.transfer_id in inserted)

    def _deliver(self, waiter: _Waiter, inserted: bool) -> None:
        if waiter.done:
            return
        waiter.inserted = inserted
        waiter.done = True
        waiter.wake.set()

    def _fail(self, waiter: _Waiter, exc: BaseException) -> None:
        if waiter.done:
            return
        waiter.error = exc
        waiter.done = True
        waiter.wake.set()

    async def _insert(self, rows: list[tuple[Any, ...]]) -> set[str]:
        """INSERT the rows in one statement (committed on return); the transfer ids actually inserted."""
        self._statements += 1
        self._records_sent += len(rows)
        self._batch_size_counts[len(rows)] += 1
        columns = [list(column) for column in zip(*rows, strict=True)]
        done = await self.database.fetch(_INSERT_FORWARDED, *columns)
        return {r["transfer_id"] for r in done}


def _row(entry: ForwardedRecord) -> tuple[Any, ...]:
    """The record's columns in `_INSERT_FORWARDED`'s order; ValueError if it would keep card data."""
    message = entry.message
    present = CARD_DATA_FIELDS.intersection(message.numbers)
    if present:
        # Field numbers only: the values are what must not be kept.
        raise ValueError(f"a forwarded transaction is kept without card data (fields {sorted(present)})")
    return (
        entry.transfer_id,
        entry.network,
        entry.route,
        message.mti,
        message.get(11),
        message.get(7),
        orjson.dumps({str(n): v for n, v in message.items()}).decode(),
        entry.pan_masked,
        entry.amount,
        entry.currency,
        entry.auth_code,
        entry.created_at,
    )
