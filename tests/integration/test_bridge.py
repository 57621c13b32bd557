"""The trio -> asyncio bridge for asyncpg: results, errors and cancellation cross it correctly."""

from __future__ import annotations

import asyncio

import pytest
import trio

from switch.adapters.postgres.bridge import AsyncioThread, BridgeClosedError


@pytest.fixture
def bridge():
    thread = AsyncioThread()
    thread.start()
    yield thread
    thread.stop()


async def test_result_comes_back(bridge):
    """If an asyncio coroutine returns a value, then the trio caller gets it."""

    async def work() -> int:
        await asyncio.sleep(0)
        return 41 + 1

    assert await bridge.call(work) == 42


async def test_exception_comes_back(bridge):
    """If the coroutine raises, then the trio caller sees the same exception type."""

    async def work() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        await bridge.call(work)


async def test_factory_error_comes_back(bridge):
    """If building the coroutine fails, then the trio caller gets that error instead of hanging."""

    def factory():
        raise RuntimeError("cannot build")

    with pytest.raises(RuntimeError, match="cannot build"):
        await bridge.call(factory)


async def test_trio_cancellation_cancels_the_asyncio_task(bridge):
    """If the trio caller is cancelled, then the asyncio task is cancelled and the caller unwinds."""
    seen = []

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    with trio.move_on_after(0.05) as scope:
        await bridge.call(slow)
    assert scope.cancelled_caught
    assert seen == ["cancelled"]


async def test_many_concurrent_calls(bridge):
    """If many trio tasks call at once, then each gets its own answer."""
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        async def work() -> int:
            await asyncio.sleep(0.001)
            return i * i

        results[i] = await bridge.call(work)

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(one, i)
    assert results == {i: i * i for i in range(200)}


async def test_call_after_stop_fails_clearly():
    """If the loop thread is not running, then a call raises BridgeClosedError."""
    thread = AsyncioThread()

    async def work() -> int:
        return 1

    with pytest.raises(BridgeClosedError):
        await thread.call(work)
