"""The PostgreSQL ledger (`switch.ports.Ledger`) with group commit.

It owns how transfers reach the database: every authorization wants one ledger round trip, and a round
trip through the asyncio bridge plus a durable commit costs far more than the SQL itself, so calls from
concurrent trio tasks are coalesced ("natural batching", no timers): while one batch is in flight, new
calls queue; when it returns, everything queued (up to `batch_size_max` transfers) goes in the next
single call of `ledger_apply_transfers` (switch/migrations/0002_ledger.sql), and each caller gets its
own results. A caller alone never waits for anyone: it finds no batch in flight and sends after a
single pass of the trio scheduler (no timer), which lets the callers woken by the previous batch, who
are already runnable, join it instead of trailing one batch behind.

How batches run: there is no background task (the ledger has no nursery). The caller that finds the
ledger idle becomes the leader: it sends batches until its own transfers are done, then hands the
leadership to the oldest queued call (waking its task) or marks the ledger idle. The leader's database
call is shielded from cancellation, because other callers' transfers ride in it: cancelling one caller
never cancels a batch. A waiting caller that is cancelled before its transfers are sent is removed
from the queue (nothing of it is applied); once sent, its transfers are applied or not exactly as if it
had waited, and an idempotent retry with the same ids reports EXISTS for what was applied.

If the database rejects a batch (a server error rolls the whole batch back), the calls in it are sent
again one by one, so only the call that caused the error sees it (as LedgerError). If the connection
fails instead, every call in the batch gets LedgerError and the outcome is unknown: the batch may have
committed, and a retry with the same transfers reports EXISTS for what was applied. Malformed transfers are refused
before queueing (ValueError, see `switch.domain.ledger_model.check_transfer`). The semantics, and every
decision where `ledger_types` leaves room, are those of `switch.domain.ledger_model`.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import trio

from switch.adapters.postgres.db import AnyConnection, Database
from switch.domain.ledger_model import check_account, check_transfer
from switch.domain.ledger_types import AccountBalance, LedgerAccount, Transfer, TransferKind, TransferResult

__all__ = ["GroupCommitStats", "LedgerError", "PgLedger"]

_APPLY_SQL = """
SELECT ledger_apply_transfers(
    $1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::smallint[], $7::text[],
    $8::timestamptz[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::text[]
)
"""

_TRANSFER_COLUMNS = """
    id, kind, debit_account_id, credit_account_id, amount, currency, pending_id, expires_at,
    reverses_id, limit_key, limit_amount_max, limit_count_max, reference
"""


class LedgerError(RuntimeError):
    """The ledger could not apply a call (database unavailable or refusing); the cause is chained."""


@dataclass(frozen=True, slots=True)
class GroupCommitStats:
    """How group commit has batched so far (for tests, the benchmark and metrics)."""

    db_calls: int  # calls of ledger_apply_transfers, including one-by-one retries after an error
    transfers: int  # transfers sent in those calls
    batch_size_counts: dict[int, int]  # batch size (transfers) -> how many batches had it

    @property
    def batch_size_mean(self) -> float:
        return self.transfers / self.db_calls if self.db_calls else 0.0


@dataclass(eq=False)
class _Call:
    """One create_transfers call: its transfers, its results so far, and how its task is woken."""

    transfers: list[Transfer]
    results: list[TransferResult | None]
    sent: int = 0  # transfers handed to a batch so far (a call larger than a batch is split)
    received: int = 0  # results filled in
    error: BaseException | None = None
    done: bool = False
    lead: bool = False  # woken to lead, not because it is done
    abandoned: bool = False  # its task was cancelled; results are not wanted any more
    wake: trio.Event = field(default_factory=trio.Event)


@dataclass(frozen=True, slots=True)
class _Piece:
    call: _Call
    start: int
    stop: int


class PgLedger:
    """`switch.ports.Ledger` on PostgreSQL, batching concurrent `create_transfers` calls."""

    def __init__(self, database: Database, *, batch_size_max: int = 256) -> None:
        if batch_size_max < 1:
            raise ValueError("batch_size_max must be at least 1")
        self._database = database
        self._batch_size_max = batch_size_max
        self._queue: collections.deque[_Call] = collections.deque()
        self._leading = False  # a task is leading (sending batches); new calls queue behind it
        self._db_calls = 0
        self._transfers_sent = 0
        self._batch_size_counts: collections.Counter[int] = collections.Counter()

    # -- the Ledger port --------------------------------------------------------------------------------

    async def create_accounts(self, accounts: Sequence[LedgerAccount]) -> None:
        for account in accounts:
            check_account(account)
        if not accounts:
            await trio.lowlevel.checkpoint()
            return
        await self._database.execute(
            """
            INSERT INTO ledger_accounts (id, currency, debits_must_not_exceed_credits, overdraft_limit)
            SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::boolean[], $4::bigint[])
            ON CONFLICT (id) DO NOTHING
            """,
            [a.account_id for a in accounts],
            [a.currency for a in accounts],
            [a.debits_must_not_exceed_credits for a in accounts],
            [a.overdraft_limit for a in accounts],
        )

    async def create_transfers(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        """Apply transfers in order, each atomically, batched with concurrent callers' transfers."""
        for transfer in transfers:
            check_transfer(transfer)
        if not transfers:
            await trio.lowlevel.checkpoint()
            return []
        call = _Call(list(transfers), [None] * len(transfers))
        self._queue.append(call)
        if self._leading:
            try:
                await call.wake.wait()
            except BaseException:
                self._abandon(call)
                raise
            fresh = False
        else:
            self._leading = True
            fresh = True
        if not call.done:
            await self._lead(call, fresh=fresh)
        if call.error is not None:
            raise LedgerError("the ledger could not apply the transfers") from call.error
        results = [r for r in call.results if r is not None]
        assert len(results) == len(call.transfers)
        return results

    async def lookup_transfers(self, transfer_ids: Sequence[str]) -> dict[str, Transfer]:
        if not transfer_ids:
            await trio.lowlevel.checkpoint()
            return {}
        rows = await self._database.fetch(
            f"SELECT {_TRANSFER_COLUMNS} FROM ledger_transfers WHERE id = ANY($1::text[])",
            list(transfer_ids),
        )
        return {row["id"]: _transfer_from_row(row) for row in rows}

    async def lookup_by_reference(self, reference: str, limit: int = 10) -> list[Transfer]:
        rows = await self._database.fetch(
            f"SELECT {_TRANSFER_COLUMNS} FROM ledger_transfers WHERE reference = $1"
            " ORDER BY created_at, id LIMIT $2",
            reference,
            max(0, min(limit, 1000)),
        )
        return [_transfer_from_row(row) for row in rows]

    async def balances(self, account_ids: Sequence[int]) -> dict[int, AccountBalance]:
        if not account_ids:
            await trio.lowlevel.checkpoint()
            return {}
        rows = await self._database.fetch(
            """
            SELECT id, currency, debits_pending, debits_posted, credits_pending, credits_posted,
                   overdraft_limit
              FROM ledger_accounts WHERE id = ANY($1::bigint[])
            """,
            list(account_ids),
        )
        return {
            row["id"]: AccountBalance(
                account_id=row["id"],
                currency=row["currency"],
                debits_pending=row["debits_pending"],
                debits_posted=row["debits_posted"],
                credits_pending=row["credits_pending"],
                credits_posted=row["credits_posted"],
                overdraft_limit=row["overdraft_limit"],
            )
            for row in rows
        }

    async def expire_pending(self, now: datetime, limit: int = 1000) -> int:
        if now.utcoffset() is None:
            raise ValueError("now must be an aware datetime")
        released: int = await self._database.fetchval(
            "SELECT ledger_expire_pending($1, $2)", now, max(0, min(limit, 2**31 - 1))
        )
        return released

    # -- group commit ------------------------------------------------------------------------------------

    def stats(self) -> GroupCommitStats:
        return GroupCommitStats(
            db_calls=self._db_calls,
            transfers=self._transfers_sent,
            batch_size_counts=dict(self._batch_size_counts),
        )

    def _abandon(self, call: _Call) -> None:
        """The caller's task is gone (cancelled): unsent transfers are dropped, leadership passed on."""
        call.abandoned = True
        if call in self._queue and not call.done:
            self._queue.remove(call)
        if call.lead and not call.done:
            # It was woken to lead but never started: somebody else must.
            self._hand_off()

    async def _lead(self, own: _Call, *, fresh: bool) -> None:
        """Send batches until `own` is done, then pass the leadership on."""
        try:
            # Other callers' transfers ride in every batch: the leader's cancellation must not stop it.
            with trio.CancelScope(shield=True):
                if fresh:
                    # One pass of the scheduler (no timer): the callers that the last batch just woke
                    # are runnable now and most call again at once; without this, the first of them
                    # would go alone and batches would alternate between 1 and everyone else.
                    await trio.lowlevel.cancel_shielded_checkpoint()
                while not own.done:
                    pieces = self._take_batch()
                    assert pieces, "the leader's own call is queued until it is done"
                    await self._send_batch(pieces)
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

    def _take_batch(self) -> list[_Piece]:
        room = self._batch_size_max
        pieces: list[_Piece] = []
        while self._queue and room > 0:
            call = self._queue[0]
            stop = min(len(call.transfers), call.sent + room)
            pieces.append(_Piece(call, call.sent, stop))
            room -= stop - call.sent
            call.sent = stop
            if stop == len(call.transfers):
                self._queue.popleft()
        return pieces

    async def _send_batch(self, pieces: list[_Piece]) -> None:
        try:
            transfers = [t for p in pieces for t in p.call.transfers[p.start : p.stop]]
            try:
                results = await self._apply(transfers)
            except asyncpg.PostgresError:
                # The whole batch was rolled back. Alone, each call gets its own outcome.
                if len(pieces) == 1:
                    raise
                for piece in pieces:
                    await self._send_alone(piece)
                return
            offset = 0
            for piece in pieces:
                size = piece.stop - piece.start
                self._deliver(piece, results[offset : offset + size])
                offset += size
        except BaseException as exc:
            # Every caller in the batch hears of it (as LedgerError); only interrupts go further.
            for piece in pieces:
                self._fail(piece.call, exc)
            if not isinstance(exc, Exception):
                raise

    async def _send_alone(self, piece: _Piece) -> None:
        try:
            results = await self._apply(piece.call.transfers[piece.start : piece.stop])
        except asyncpg.PostgresError as exc:
            self._fail(piece.call, exc)
        else:
            self._deliver(piece, results)

    def _deliver(self, piece: _Piece, results: list[TransferResult]) -> None:
        call = piece.call
        if call.done:
            return
        call.results[piece.start : piece.stop] = results
        call.received += len(results)
        if call.received == len(call.transfers):
            call.done = True
            call.wake.set()

    def _fail(self, call: _Call, exc: BaseException) -> None:
        if call.done:
            return
        call.error = exc
        call.done = True
        if call in self._queue:
            self._queue.remove(call)  # the rest of a split call is not sent after a failure
        call.wake.set()

    async def _apply(self, transfers: list[Transfer]) -> list[TransferResult]:
        args = _transfer_arrays(transfers)

        async def work(conn: AnyConnection) -> list[str]:
            codes: list[str] = await conn.fetchval(_APPLY_SQL, *args)
            return codes

        self._db_calls += 1
        self._transfers_sent += len(transfers)
        self._batch_size_counts[len(transfers)] += 1
        codes = await self._database.run(work)
        if len(codes) != len(transfers):
            raise LedgerError(f"ledger_apply_transfers returned {len(codes)} results for {len(transfers)}")
        return [TransferResult(code) for code in codes]


def _transfer_arrays(transfers: list[Transfer]) -> tuple[list[Any], ...]:
    return (
        [t.transfer_id for t in transfers],
        [t.kind.value for t in transfers],
        [t.debit_account_id for t in transfers],
        [t.credit_account_id for t in transfers],
        [t.amount for t in transfers],
        [t.currency for t in transfers],
        [t.pending_id for t in transfers],
        [t.expires_at for t in transfers],
        [t.reverses_id for t in transfers],
        [t.limit_key for t in transfers],
        [t.limit_amount_max for t in transfers],
        [t.limit_count_max for t in transfers],
        [t.reference for t in transfers],
    )


def _transfer_from_row(row: asyncpg.Record) -> Transfer:
    return Transfer(
        transfer_id=row["id"],
        kind=TransferKind(row["kind"]),
        debit_account_id=row["debit_account_id"],
        credit_account_id=row["credit_account_id"],
        amount=row["amount"],
        currency=row["currency"],
        pending_id=row["pending_id"],
        expires_at=row["expires_at"],
        reverses_id=row["reverses_id"],
        limit_key=row["limit_key"],
        limit_amount_max=row["limit_amount_max"],
        limit_count_max=row["limit_count_max"],
        reference=row["reference"],
    )
