"""The acquirer side's two tables of migration 0009: `network_keys` (`switch.ports.NetworkKeyStore`) and
`forwarded_transactions` (`switch.ports.ForwardedTransactions`).

Keys: stored under the LMK only; `install` takes the network's row lock (SELECT ... FOR UPDATE) and merges
the new key with what is there (`NetworkKeySet.installed`), so switchd processes exchanging keys at the
same moment agree on the network's newest key. Forwarded transactions: one row per approval that moved
money, written before the terminal hears the answer, never holding card data (the table refuses it too).
Nothing here logs a key or a message.

A forwarded approval is booked with its record in one statement, one commit (`post_and_record`: the
ledger's `ledger_apply_transfers`, then the record for each transfer it applied now): an approval is never
booked without its record, and a record the database refuses takes its posting back. A round trip through
the bridge plus a durable commit costs far more than the rows, so concurrent calls are coalesced
(`switch.adapters.postgres.coalesce.Coalescer`, one item a call), as are plain `record` calls (stand-in
approvals, and approvals posted by an older switchd without their record): no timers, no background task;
the call that finds the store idle leads, lets one pass of the scheduler go by, sends everything queued in
one statement, then hands the lead to the oldest call queued meanwhile. Each caller returns once the
statement carrying its row committed, with its own answer. The leader's statement is shielded from its
cancellation (other rows ride in it); a caller cancelled while queued is dropped from the queue and nothing
of it is written. A statement the server refuses (rolled back whole) is sent again call by call, so only
the caller whose row caused it sees the error. What differs from the ledger: a `record` statement carries
each transfer id once (`RecordBatchStats` counts the rows it carries, not the calls), and an error reaches
the caller as raised, not wrapped.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from switch.adapters.postgres.coalesce import Coalescer, CoalesceStats
from switch.adapters.postgres.db import AnyConnection, Database
from switch.adapters.postgres.ledger import APPLY_TRANSFERS_CALL, LedgerError, transfer_arrays
from switch.domain.ledger_model import check_transfer
from switch.domain.ledger_types import Transfer, TransferResult
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


# A forwarded approval's ledger posting and its record in one statement, so in one commit: the record is
# inserted for each transfer the function applied now ('ok'), in the same batch position. $1..$13 are the
# transfers (ledger.transfer_arrays), $14..$25 the records (_row's order).
_POST_AND_RECORD = f"""
WITH applied AS MATERIALIZED (
    SELECT {APPLY_TRANSFERS_CALL} AS codes
), recorded AS (
    INSERT INTO forwarded_transactions (transfer_id, network, route, mti, stan, transmission, fields,
                                        pan_masked, amount, currency, auth_code, created_at)
    SELECT r.transfer_id, r.network, r.route, r.mti, r.stan, r.transmission, r.fields::jsonb, r.pan_masked,
           r.amount, r.currency, r.auth_code, r.created_at
      FROM applied,
           unnest($14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[],
                  $21::text[], $22::bigint[], $23::smallint[], $24::text[], $25::timestamptz[])
           WITH ORDINALITY
           AS r (transfer_id, network, route, mti, stan, transmission, fields, pan_masked, amount, currency,
                 auth_code, created_at, n)
     WHERE applied.codes[r.n] = 'ok'
    ON CONFLICT (transfer_id) DO NOTHING
    RETURNING transfer_id
)
SELECT codes FROM applied
"""


@dataclass(frozen=True, slots=True)
class _Posting:
    """What one `post_and_record` call submits: the posting and its record's row."""

    transfer: Transfer
    row: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class RecordBatchStats:
    """How `record` calls have been batched so far (for tests and the benchmark)."""

    statements: int  # INSERT statements sent, one-by-one retries after an error included
    records: int  # records sent in them
    batch_size_counts: dict[int, int]  # records in a statement -> how many statements had that many


@dataclass(frozen=True, slots=True)
class _Entry:
    """What one `record` call submits: its transfer id and its row."""

    transfer_id: str
    row: tuple[Any, ...]


class PgForwardedTransactions:
    """The `forwarded_transactions` table, batching concurrent `record` calls into one INSERT."""

    def __init__(self, database: Database, *, batch_size_max: int = 256) -> None:
        self._batches: Coalescer[_Entry, bool] = Coalescer(
            self._insert_batch, batch_size_max=batch_size_max, refused=asyncpg.PostgresError
        )
        self._postings: Coalescer[_Posting, TransferResult] = Coalescer(
            self._post_batch, batch_size_max=batch_size_max, refused=asyncpg.PostgresError
        )
        self.database = database
        self._statements = 0
        self._records_sent = 0
        self._batch_size_counts: collections.Counter[int] = collections.Counter()

    async def record(self, entry: ForwardedRecord) -> bool:
        """Keep `entry` (committed when this returns, batched with concurrent calls); False if a record
        with its transfer id exists already, also when that one came earlier in the same batch."""
        row = _row(entry)  # refuses card data before anything is queued
        # A refusal of the statement is retried row by row, so it reaches only the caller whose row caused
        # it; a lost connection reaches every caller of its batch, whose outcome is then unknown, as for a
        # single INSERT.
        (inserted,) = await self._batches.submit([_Entry(entry.transfer_id, row)])
        return inserted

    async def post_and_record(self, transfer: Transfer, entry: ForwardedRecord) -> TransferResult:
        """Apply `transfer` in the ledger and, if it is applied now (OK), keep `entry`: one statement, one
        commit (committed when this returns), batched with concurrent calls like `record`. A refused
        statement is sent again call by call; any other error reaches the callers of its batch as raised
        (the outcome is then unknown, as for a ledger call)."""
        if entry.transfer_id != transfer.transfer_id:
            raise ValueError("a forwarded record goes with the posting of its own transfer id")
        check_transfer(transfer)
        row = _row(entry)  # refuses card data before anything is queued
        (result,) = await self._postings.submit([_Posting(transfer, row)])
        return result

    def posting_stats(self) -> CoalesceStats:
        """How `post_and_record` calls have been batched so far."""
        return self._postings.stats()

    async def _post_batch(self, postings: list[_Posting]) -> list[TransferResult]:
        args = transfer_arrays([p.transfer for p in postings])
        columns = [list(column) for column in zip(*(p.row for p in postings), strict=True)]
        codes: list[str] = await self.database.fetchval(_POST_AND_RECORD, *args, *columns)
        if len(codes) != len(postings):
            raise LedgerError(f"ledger_apply_transfers returned {len(codes)} results for {len(postings)}")
        return [TransferResult(code) for code in codes]

    async def find(self, transfer_id: str) -> ForwardedRecord | None:
        row = await self.database.fetchrow(
            "SELECT * FROM forwarded_transactions WHERE transfer_id = $1", transfer_id
        )
        return None if row is None else _forwarded_record(row)

    async def find_by_rrn(self, terminal_id: str, rrn: str) -> list[ForwardedRecord]:
        rows = await self.database.fetch(
            "SELECT * FROM forwarded_transactions WHERE fields->>'37' = $1 AND starts_with(transfer_id, $2)"
            " ORDER BY created_at, transfer_id LIMIT 10",
            rrn,
            f"{terminal_id}:",
        )
        return [_forwarded_record(row) for row in rows]

    async def prune(self, before: datetime, limit: int = 10_000) -> int:
        """Forget records created before `before`, at most `limit`: a reversal or completion that names
        one later finds no forwarded original (acknowledged without effect, or 25). Not part of the
        port: housekeeping of this store."""
        deleted = await self.database.fetchval(
            """
            WITH old AS (
                SELECT transfer_id FROM forwarded_transactions WHERE created_at < $1 ORDER BY created_at LIMIT $2
            ), gone AS (
                DELETE FROM forwarded_transactions AS f USING old WHERE f.transfer_id = old.transfer_id
                RETURNING 1
            )
            SELECT count(*) FROM gone
            """,
            before,
            limit,
        )
        return int(deleted)

    def stats(self) -> RecordBatchStats:
        return RecordBatchStats(
            statements=self._statements,
            records=self._records_sent,
            batch_size_counts=dict(self._batch_size_counts),
        )

    async def _insert_batch(self, entries: list[_Entry]) -> list[bool]:
        """One INSERT for a batch (the coalescer's `send`): per entry, whether its row was inserted."""
        # A transfer id twice in one batch: the first is sent, the later ones find it there (False).
        first: dict[str, int] = {}
        for i, entry in enumerate(entries):
            first.setdefault(entry.transfer_id, i)
        inserted = await self._insert([entries[i].row for i in first.values()])
        return [first[e.transfer_id] == i and e.transfer_id in inserted for i, e in enumerate(entries)]

    async def _insert(self, rows: list[tuple[Any, ...]]) -> set[str]:
        """INSERT the rows in one statement (committed on return); the transfer ids actually inserted."""
        # Counted here, not by the coalescer: a statement carries each transfer id once, so it may hold
        # fewer rows than its batch had calls.
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


def _forwarded_record(row: asyncpg.Record) -> ForwardedRecord:
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
