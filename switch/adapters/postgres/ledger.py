"""The PostgreSQL ledger (`switch.ports.Ledger`) with group commit.

It owns how transfers reach the database: every authorization wants one ledger round trip, and a round
trip through the asyncio bridge plus a durable commit costs far more than the SQL itself, so calls from
concurrent trio tasks are coalesced ("natural batching", no timers): while one batch is in flight, new
calls queue; when it returns, everything queued (up to `batch_size_max` transfers) goes in the next
single call of `ledger_apply_transfers` (switch/migrations/0002_ledger.sql), and each caller gets its
own results. A caller alone never waits for anyone: it finds no batch in flight and sends after a
single pass of the trio scheduler (no timer), which lets the callers woken by the previous batch, who
are already runnable, join it instead of trailing one batch behind.

How batches run (the scheme is `switch.adapters.postgres.coalesce.Coalescer`, which the
forwarded-transaction records share): there is no background task (the ledger has no nursery). The caller
that finds the ledger idle becomes the leader: it sends batches until its own transfers are done, then
hands the leadership to the oldest queued call (waking its task) or marks the ledger idle. The leader's
database call is shielded from cancellation, because other callers' transfers ride in it: cancelling one
caller never cancels a batch. A waiting caller that is cancelled before its transfers are sent is removed
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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import trio

from switch.adapters.postgres.coalesce import Coalescer
from switch.adapters.postgres.db import AnyConnection, Database
from switch.domain.ledger_model import check_account, check_transfer, check_transfer_id
from switch.domain.ledger_types import AccountBalance, LedgerAccount, Transfer, TransferKind, TransferResult

__all__ = ["APPLY_TRANSFERS_CALL", "GroupCommitStats", "LedgerError", "PgLedger", "transfer_arrays"]

# The function call with its 13 parameters ($1..$13, in `transfer_arrays`' order): shared with the
# forwarded-transaction store, which books a forwarded approval and its record in one statement.
APPLY_TRANSFERS_CALL = """ledger_apply_transfers(
    $1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::smallint[], $7::text[],
    $8::timestamptz[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::text[]
)"""
_APPLY_SQL = f"SELECT {APPLY_TRANSFERS_CALL}"

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


class PgLedger:
    """`switch.ports.Ledger` on PostgreSQL, batching concurrent `create_transfers` calls."""

    def __init__(self, database: Database, *, batch_size_max: int = 256) -> None:
        self._group_commit: Coalescer[Transfer, TransferResult] = Coalescer(
            self._apply,
            batch_size_max=batch_size_max,
            refused=asyncpg.PostgresError,
            error_for=lambda _: LedgerError("the ledger could not apply the transfers"),
        )
        self._database = database

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
        return await self._group_commit.submit(transfers)

    async def lookup_transfers(self, transfer_ids: Sequence[str]) -> dict[str, Transfer]:
        if not transfer_ids:
            await trio.lowlevel.checkpoint()
            return {}
        rows = await self._database.fetch(
            f"SELECT {_TRANSFER_COLUMNS} FROM ledger_transfers WHERE id = ANY($1::text[])",
            list(transfer_ids),
        )
        return {row["id"]: _transfer_from_row(row) for row in rows}

    async def bar(self, transfer_id: str) -> bool:
        check_transfer_id(transfer_id)
        return bool(await self._database.fetchval("SELECT ledger_bar_transfer($1)", transfer_id))

    async def prune_barred(self, before: datetime, limit: int = 10_000) -> int:
        """Forget barred ids (see `bar`) barred before `before`, at most `limit`: an original that has not
        come by then will not come. Not part of the Ledger port: housekeeping of this store."""
        deleted = await self._database.fetchval(
            """
            WITH old AS (
                SELECT id FROM ledger_barred_transfers WHERE barred_at < $1 ORDER BY barred_at LIMIT $2
            ), gone AS (
                DELETE FROM ledger_barred_transfers AS b USING old WHERE b.id = old.id RETURNING 1
            )
            SELECT count(*) FROM gone
            """,
            before,
            limit,
        )
        return int(deleted)

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
        sent = self._group_commit.stats()
        return GroupCommitStats(
            db_calls=sent.sends, transfers=sent.items, batch_size_counts=sent.batch_size_counts
        )

    async def _apply(self, transfers: list[Transfer]) -> list[TransferResult]:
        """One call of ledger_apply_transfers (committed on return): the group commit's `send`."""
        args = transfer_arrays(transfers)

        async def work(conn: AnyConnection) -> list[str]:
            codes: list[str] = await conn.fetchval(_APPLY_SQL, *args)
            return codes

        codes = await self._database.run(work)
        if len(codes) != len(transfers):
            raise LedgerError(f"ledger_apply_transfers returned {len(codes)} results for {len(transfers)}")
        return [TransferResult(code) for code in codes]


def transfer_arrays(transfers: Sequence[Transfer]) -> tuple[list[Any], ...]:
    """The transfers as `APPLY_TRANSFERS_CALL`'s 13 column arrays."""
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
