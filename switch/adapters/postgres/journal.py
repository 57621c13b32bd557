"""The journal writer: entries queue in memory and are inserted in batches by one background task.

Why batched and after the response: the journal is the record for settlement and disputes, not the
money; the ledger commits the money before the terminal hears "approved". Entries are flushed at least
every `flush_interval_s`, when `batch_size_max` accumulate, and on drain (switchd waits for the flush
before it exits). A crash can lose the last interval of journal lines, never a ledger change.
Lookups (`by_rrn`) read the database directly.
"""

from __future__ import annotations

from typing import Any

import orjson
import trio

from switch.adapters.postgres.db import Database
from switch.domain.journal import JournalEntry
from switch.logs import get_logger

__all__ = ["PgJournal"]

log = get_logger("journal")

_COLUMNS = (
    "business_date",
    "node_name",
    "terminal_id",
    "merchant_id",
    "stan",
    "transmission",
    "mti",
    "processing_code",
    "transaction_type",
    "rrn",
    "auth_code",
    "pan_masked",
    "amount",
    "currency",
    "result",
    "response_code",
    "route",
    "transfer_id",
    "latency_us",
    "request",
    "response",
)


_TYPES = (
    "date",
    *("text",) * 11,  # node_name .. pan_masked
    "bigint",
    "smallint",
    *("text",) * 4,  # result .. transfer_id
    "integer",
    "text",  # request: JSON text, cast below
    "text",  # response
)
# One statement, one round trip: a batch as column arrays. (COPY took two round trips per flush, the
# COPY command and then its data, each waking the server and this process.)
_INSERT = (
    f"INSERT INTO journal ({', '.join(_COLUMNS)}) "
    f"SELECT {', '.join(f'r.{c}::json' if c in ('request', 'response') else f'r.{c}' for c in _COLUMNS)} "
    f"FROM unnest({', '.join(f'${i}::{t}[]' for i, t in enumerate(_TYPES, start=1))}) "
    f"AS r ({', '.join(_COLUMNS)})"
)


class PgJournal:
    def __init__(
        self, database: Database, *, batch_size_max: int = 500, flush_interval_s: float = 0.05
    ) -> None:
        self.database = database
        self.batch_size_max = batch_size_max
        self.flush_interval_s = flush_interval_s
        self._pending: list[JournalEntry] = []
        self._wakeup = trio.Event()
        self._idle = trio.Event()
        self._idle.set()
        self.written = 0
        self._lock = trio.Lock()  # one flush at a time, so batches stay in order and are counted once

    def record(self, entry: JournalEntry) -> None:
        """Queue an entry (never blocks the transaction path)."""
        self._pending.append(entry)
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        if len(self._pending) >= self.batch_size_max:
            self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer task: flush batches until cancelled (then flush what is left, shielded)."""
        task_status.started()
        try:
            while True:
                with trio.move_on_after(self.flush_interval_s):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()
                await self._flush()
        finally:
            with trio.CancelScope(shield=True):
                await self._flush()

    async def flush(self) -> None:
        """Write everything queued so far."""
        await self._flush()

    async def _flush(self) -> None:
        async with self._lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.batch_size_max], self._pending[self.batch_size_max :]
            rows = [_row(e) for e in batch]
            columns = [list(column) for column in zip(*rows, strict=True)]
            try:
                await self.database.execute(_INSERT, *columns)
                self.written += len(rows)
            except Exception as exc:
                # Put them back and try again on the next flush; never drop journal lines silently.
                self._pending[:0] = batch
                log.error(
                    "journal write failed; will retry", error=type(exc).__name__, queued=len(self._pending)
                )
                return
        self._idle.set()

    async def by_rrn(self, rrn: str) -> list[dict[str, Any]]:
        rows = await self.database.fetch("SELECT * FROM journal WHERE rrn = $1 ORDER BY journal_id", rrn)
        return [dict(r) for r in rows]


def _row(e: JournalEntry) -> tuple[Any, ...]:
    # Attribute access, not dataclasses.asdict: asdict deep-copies every value and showed up in profiles.
    return tuple(
        orjson.dumps(getattr(e, c)).decode() if c in ("request", "response") else getattr(e, c)
        for c in _COLUMNS
    )
