"""How many POSTED purchases per second does PgLedger apply on a durable PostgreSQL, and at what latency?

One embedded server with fsync and synchronous commit on (as `make run` uses it), migrated. 1,000
debit-limited cardholder accounts (funded) buy from 16 merchants: one POSTED transfer per call, with a
daily usage counter per card, like an on-us authorization. Trio tasks call `create_transfers` in a loop
for a fixed time at 1, 32 and 256 concurrent tasks (and 32 tasks with group commit turned off,
batch_size_max=1, for comparison). Reported: transfers/s, per-call latency p50/p99, and batch sizes
(group commit). At the end debits must equal credits and no card may be overdrawn.
Usage: python -m bench ledger [--seconds=N]   (default 5 s per run)
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
from pathlib import Path

import asyncpg
import trio

from switch.adapters.postgres.db import Database, DatabaseSettings
from switch.adapters.postgres.embedded import EmbeddedPostgres
from switch.adapters.postgres.ledger import PgLedger
from switch.adapters.postgres.migrate import apply_migrations
from switch.domain.ledger_types import LedgerAccount, Transfer, TransferKind, TransferResult
from tests.fixtures.pg import make_world_readable_tmpdir

EUR = 978
CARDS = 1000
MERCHANTS = 16
FUNDING = 1
MERCHANT_BASE = 100
CARD_BASE = 10_000
CARD_FUNDS = 10**12  # minor units: nobody runs out during the bench


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def _setup(ledger: PgLedger) -> None:
    cards = [
        LedgerAccount(account_id=CARD_BASE + i, currency=EUR, debits_must_not_exceed_credits=True)
        for i in range(CARDS)
    ]
    merchants = [LedgerAccount(account_id=MERCHANT_BASE + i, currency=EUR) for i in range(MERCHANTS)]
    await ledger.create_accounts([LedgerAccount(account_id=FUNDING, currency=EUR), *merchants, *cards])
    loads = [
        Transfer(
            transfer_id=f"load:{a.account_id}",
            kind=TransferKind.POSTED,
            debit_account_id=FUNDING,
            credit_account_id=a.account_id,
            amount=CARD_FUNDS,
            currency=EUR,
        )
        for a in cards
    ]
    results = await ledger.create_transfers(loads)
    assert all(r in (TransferResult.OK, TransferResult.EXISTS) for r in results)


async def _run(ledger: PgLedger, tasks: int, seconds: float, label: str, run_no: int) -> None:
    latencies_s: list[float] = []
    outcomes: dict[TransferResult, int] = {}
    before = ledger.stats()
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        rng = random.Random(w * 7919 + run_no)
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            card = CARD_BASE + rng.randrange(CARDS)
            transfer = Transfer(
                transfer_id=f"r{run_no}:w{w}:{n}",
                kind=TransferKind.POSTED,
                debit_account_id=card,
                credit_account_id=MERCHANT_BASE + rng.randrange(MERCHANTS),
                amount=rng.randrange(100, 50_000),
                currency=EUR,
                limit_key=f"card:{card}:purchase:2026-11-23",
                limit_amount_max=10**15,
                reference=f"rrn:{run_no:02d}{w:04d}{n:06d}",
            )
            started = time.perf_counter()
            (result,) = await ledger.create_transfers([transfer])
            latencies_s.append(time.perf_counter() - started)
            outcomes[result] = outcomes.get(result, 0) + 1

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for w in range(tasks):
            nursery.start_soon(worker, w)
    wall_s = time.perf_counter() - started
    after = ledger.stats()
    calls = after.db_calls - before.db_calls
    sizes = sorted(
        size
        for size, count in after.batch_size_counts.items()
        for _ in range(count - before.batch_size_counts.get(size, 0))
    )
    latencies_s.sort()
    ok = outcomes.get(TransferResult.OK, 0)
    print(
        f"{label:28} {ok / wall_s:8.0f} posted/s  latency p50 {_percentile(latencies_s, 0.5) * 1e3:6.2f} ms"
        f"  p99 {_percentile(latencies_s, 0.99) * 1e3:6.2f} ms  | {calls} batches, size mean"
        f" {len(latencies_s) / max(calls, 1):5.1f} p50 {_percentile([float(s) for s in sizes], 0.5):4.0f}"
        f" max {max(sizes, default=0):3d}",
        flush=True,
    )
    if set(outcomes) != {TransferResult.OK}:
        print(f"  unexpected results: {outcomes}")


async def _main(dsn: str, seconds: float) -> None:
    database = Database(
        DatabaseSettings(dsn=dsn, pool_size_min=2, pool_size_max=4, statement_timeout_ms=30_000)
    )
    await database.open()
    try:
        await database.run(apply_migrations)
        ledger = PgLedger(database)
        await _setup(ledger)
        await _run(ledger, 1, seconds, "1 task", 1)
        await _run(PgLedger(database, batch_size_max=1), 32, seconds, "32 tasks, batch_size_max=1", 2)
        await _run(ledger, 32, seconds, "32 tasks", 3)
        await _run(ledger, 256, seconds, "256 tasks", 4)
        row = await database.fetchrow(
            "SELECT sum(debits_posted) = sum(credits_posted) AS balanced,"
            " bool_and(NOT debits_must_not_exceed_credits OR debits_posted + debits_pending"
            " <= credits_posted + overdraft_limit) AS within FROM ledger_accounts"
        )
        assert row is not None
        print(f"debits == credits: {row['balanced']}; no card overdrawn: {row['within']}")
    finally:
        await database.close()


def run(args: list[str]) -> None:
    seconds = 5.0
    for arg in args:
        if arg.startswith("--seconds="):
            seconds = float(arg.split("=", 1)[1])
    root = make_world_readable_tmpdir("cardswitch-bench-ledger-")
    server = EmbeddedPostgres(root / "data", durable=True)
    try:
        server.start()
        dsn = server.dsn()

        async def check() -> str:
            conn = await asyncpg.connect(dsn)
            try:
                fsync = await conn.fetchval("SHOW fsync")
                sync = await conn.fetchval("SHOW synchronous_commit")
                return f"fsync={fsync} synchronous_commit={sync}"
            finally:
                await conn.close()

        print(
            f"embedded PostgreSQL ({asyncio.run(check())}), {os.cpu_count()} CPUs; {CARDS} cards, "
            f"{MERCHANTS} merchants; one POSTED purchase per call, {seconds:g} s per run"
        )
        trio.run(_main, dsn, seconds)
    finally:
        server.destroy()
        shutil.rmtree(Path(root), ignore_errors=True)
