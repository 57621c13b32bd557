"""The trio -> asyncio bridges for asyncpg: results, errors and cancellation cross them correctly.

Every behaviour is checked on both bridges: `HostedLoop` (asyncio stepped in trio's thread, what
`Database` uses) and `AsyncioThread` (the loop in its own thread)."""

from __future__ import annotations

import asyncio
import time

import pytest
import trio

from switch.adapters.postgres.bridge import AsyncioThread, BridgeClosedError, HostedLoop


@pytest.fixture(params=["hosted", "thread"])
async def bridge(request):
    if request.param == "thread":
        thread = AsyncioThread()
        thread.start()
        yield thread
        thread.stop()
    else:
        hosted = HostedLoop()
        hosted.start()
        yield hosted
        await hosted.aclose()


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


async def test_hosted_call_after_close_fails_clearly():
    """If the hosted loop was never started or is closed, then a call raises BridgeClosedError."""
    hosted = HostedLoop()

    async def work() -> int:
        return 1

    with pytest.raises(BridgeClosedError):
        await hosted.call(work)
    hosted.start()
    assert await hosted.call(work) == 1
    await hosted.aclose()
    with pytest.raises(BridgeClosedError):
        await hosted.call(work)


async def test_hosted_close_cancels_work_still_running():
    """If the hosted loop closes while a call runs, then the asyncio task is cancelled and the caller
    gets BridgeClosedError instead of waiting forever."""
    hosted = HostedLoop()
    hosted.start()
    seen = []
    errors = []

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def caller() -> None:
        try:
            await hosted.call(slow)
        except BridgeClosedError:
            errors.append("closed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller)
        await trio.sleep(0.05)
        with trio.fail_after(5):
            await hosted.aclose()
    assert seen == ["cancelled"]
    assert errors == ["closed"]


async def test_two_hosted_loops_in_one_trio_run():
    """If two hosted loops share trio's thread, then each serves its own calls (a process can open
    several Database objects)."""
    first, second = HostedLoop(), HostedLoop()
    first.start()
    second.start()
    try:

        async def which(n: int) -> int:
            await asyncio.sleep(0.001)
            return n

        results = {}

        async def one(hosted: HostedLoop, n: int) -> None:
            results[n] = await hosted.call(lambda: which(n))

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(one, first if n % 2 else second, n)
        assert results == {n: n for n in range(20)}
    finally:
        await first.aclose()
        await second.aclose()


async def test_hosted_loop_sleeps_while_idle():
    """If asyncio has nothing to do but a distant timer, then the hosted loop waits instead of spinning:
    the process uses next to no CPU while trio sleeps."""
    hosted = HostedLoop()
    hosted.start()
    try:

        async def arm_timer() -> None:
            asyncio.get_running_loop().call_later(30, lambda: None)

        await hosted.call(arm_timer)
        cpu_before = time.process_time()
        await trio.sleep(0.5)
        used_s = time.process_time() - cpu_before
        # A loop stepping without waiting would burn the whole 0.5 s.
        assert used_s < 0.2
    finally:
        await hosted.aclose()


async def _count_trio_passes_while(hosted: HostedLoop, work) -> tuple[object, int]:
    """Run `work` on the hosted loop; count the passes a busy trio task got meanwhile."""
    passes = 0
    done = False

    async def count() -> None:
        nonlocal passes
        while not done:
            passes += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(count)
        await trio.lowlevel.checkpoint()
        result = await hosted.call(work)
        done = True
    return result, passes


async def test_hosted_loop_runs_a_chain_of_ready_callbacks_in_one_trio_pass():
    """If an asyncio coroutine hops through 20 loop iterations, then trio's scheduler runs a few passes
    meanwhile, not one per iteration (each pass cost more than the iteration itself)."""
    hosted = HostedLoop()
    hosted.start()
    try:

        async def hops() -> str:
            for _ in range(20):
                await asyncio.sleep(0)
            return "done"

        result, passes = await _count_trio_passes_while(hosted, hops)
        assert result == "done"
        assert passes <= 4, passes
    finally:
        await hosted.aclose()


async def test_hosted_loop_that_is_always_ready_does_not_starve_trio():
    """If an asyncio task never stops being ready, then trio tasks still get their turns."""
    hosted = HostedLoop()
    hosted.start()
    try:

        async def spin() -> None:
            while True:  # noqa: ASYNC110 - a task that is always ready is the point, not a wait
                await asyncio.sleep(0)

        turns = 0
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hosted.call, spin)
                while turns < 50:
                    turns += 1
                    await trio.lowlevel.checkpoint()
                nursery.cancel_scope.cancel()
        assert turns == 50
    finally:
        await hosted.aclose()
