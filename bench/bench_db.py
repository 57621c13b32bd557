"""How should trio code reach asyncpg? Measure the three bridges on the same embedded PostgreSQL.

1. native asyncio (the floor: what asyncpg costs without any bridge),
2. an asyncio loop in a dedicated thread (switch.adapters.postgres.bridge.AsyncioThread),
3. asyncio's loop stepped from a trio task in trio's thread (bridge.HostedLoop, what the switch uses),
4. trio-asyncio (an asyncio loop implemented on top of trio).
Each runs the same `SELECT $1::int` sequentially (latency, CPU per query) and from 32 concurrent tasks
(throughput). CPU is this process's time (all its threads) per query: the client side only, since
PostgreSQL runs in its own processes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import trio

from switch.adapters.postgres.bridge import AsyncioThread, HostedLoop
from switch.adapters.postgres.embedded import EmbeddedPostgres
from tests.fixtures.pg import make_world_readable_tmpdir

SEQUENTIAL_N = 3000
CONCURRENT_N = 20000
CONCURRENCY = 32


def _report(name: str, mode: str, n: int, wall_s: float, cpu_s: float) -> None:
    print(
        f"{name:22} {mode:11} {n / wall_s:9.0f} queries/s  {wall_s / n * 1e6:7.0f} us wall/query"
        f"  {cpu_s / n * 1e6:6.0f} us client CPU/query"
    )


async def _asyncio_suite(pool: asyncpg.Pool) -> tuple[float, float, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(SEQUENTIAL_N):
        await pool.fetchval("SELECT $1::int", i)
    t1, c1 = time.perf_counter(), time.process_time()

    per_task = CONCURRENT_N // CONCURRENCY

    async def worker() -> None:
        for i in range(per_task):
            await pool.fetchval("SELECT $1::int", i)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    t2, c2 = time.perf_counter(), time.process_time()
    return t1 - t0, c1 - c0, t2 - t1, c2 - c1


def bench_native(dsn: str) -> None:
    async def main() -> tuple[float, float, float, float]:
        pool = await asyncpg.create_pool(dsn, min_size=CONCURRENCY, max_size=CONCURRENCY)
        try:
            return await _asyncio_suite(pool)
        finally:
            await pool.close()

    seq_w, seq_c, con_w, con_c = asyncio.run(main())
    _report("native asyncio", "sequential", SEQUENTIAL_N, seq_w, seq_c)
    _report("native asyncio", "32 tasks", CONCURRENT_N, con_w, con_c)


async def _trio_suite(call: Callable[[int], Awaitable[object]]) -> tuple[float, float, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(SEQUENTIAL_N):
        await call(i)
    t1, c1 = time.perf_counter(), time.process_time()
    per_task = CONCURRENT_N // CONCURRENCY

    async def worker() -> None:
        for i in range(per_task):
            await call(i)

    async with trio.open_nursery() as nursery:
        for _ in range(CONCURRENCY):
            nursery.start_soon(worker)
    t2, c2 = time.perf_counter(), time.process_time()
    return t1 - t0, c1 - c0, t2 - t1, c2 - c1


def _bench_bridge(name: str, dsn: str, bridge: AsyncioThread | HostedLoop) -> None:
    async def main() -> tuple[float, float, float, float]:
        bridge.start()
        try:
            pool = await bridge.call(
                lambda: asyncpg.create_pool(dsn, min_size=CONCURRENCY, max_size=CONCURRENCY)
            )

            async def call(i: int) -> object:
                return await bridge.call(lambda: pool.fetchval("SELECT $1::int", i))

            try:
                return await _trio_suite(call)
            finally:
                await bridge.call(pool.close)
        finally:
            await bridge.aclose()

    seq_w, seq_c, con_w, con_c = trio.run(main)
    _report(name, "sequential", SEQUENTIAL_N, seq_w, seq_c)
    _report(name, "32 tasks", CONCURRENT_N, con_w, con_c)


def bench_thread_bridge(dsn: str) -> None:
    _bench_bridge("asyncio thread bridge", dsn, AsyncioThread())


def bench_hosted_loop(dsn: str) -> None:
    _bench_bridge("asyncio hosted on trio", dsn, HostedLoop())


def bench_trio_asyncio(dsn: str) -> None:
    try:
        import trio_asyncio
    except ImportError:
        print("trio-asyncio             not installed; skipped")
        return

    async def main() -> tuple[float, float, float, float]:
        async with trio_asyncio.open_loop():
            pool = await trio_asyncio.aio_as_trio(
                asyncpg.create_pool(dsn, min_size=CONCURRENCY, max_size=CONCURRENCY)
            )

            async def call(i: int) -> object:
                return await trio_asyncio.aio_as_trio(pool.fetchval)("SELECT $1::int", i)

            try:
                return await _trio_suite(call)
            finally:
                await trio_asyncio.aio_as_trio(pool.close)()

    seq_w, seq_c, con_w, con_c = trio.run(main)
    _report("trio-asyncio", "sequential", SEQUENTIAL_N, seq_w, seq_c)
    _report("trio-asyncio", "32 tasks", CONCURRENT_N, con_w, con_c)


def run(args: list[str]) -> None:
    root = make_world_readable_tmpdir("cardswitch-bench-pg-")
    server = EmbeddedPostgres(root / "data", durable=False)
    try:
        server.start()
        dsn = server.dsn()
        print(f"embedded PostgreSQL, {os.cpu_count()} CPUs; SELECT $1::int, pool of {CONCURRENCY}")
        bench_native(dsn)
        bench_thread_bridge(dsn)
        bench_hosted_loop(dsn)
        bench_trio_asyncio(dsn)
    finally:
        server.destroy()
        shutil.rmtree(Path(root), ignore_errors=True)
