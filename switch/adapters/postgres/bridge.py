"""The trio <-> asyncio bridges for asyncpg: asyncio's own event loop, driven from trio.

asyncpg only runs on asyncio. Measured on the 2-core machine (`make bench ARGS=db`, docs/database.md),
32 concurrent tasks running `SELECT $1::int`: native asyncio ~90-150 us of CPU per query, trio-asyncio
~540-1,000 us, an asyncio loop in its own thread ~165-315 us, and the same loop stepped from a trio task
in trio's thread ~95-110 us, about what native asyncio costs.

- `HostedLoop` (what `Database` uses): asyncio's selector loop in trio's thread, run one iteration at a
  time by a trio system task that sleeps on the loop's epoll descriptor. A call is a `call_soon` and a
  direct reschedule of the waiting trio task: no thread hop, no wake-up of another thread, no contention
  for the GIL between two busy threads.
- `AsyncioThread`: the loop in a dedicated thread. A call costs two thread hops (`call_soon_threadsafe`
  into the loop, `run_sync_soon` back into trio). It works from any trio run and from plain threads
  (`run_blocking`); kept as the measured alternative.

Both park the waiting trio task with `wait_task_rescheduled` (no polling, no thread per call), and both
cancel the asyncio task when the trio task is cancelled; the trio task then raises trio.Cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import selectors
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio

__all__ = ["AsyncioThread", "BridgeClosedError", "HostedLoop"]

T = TypeVar("T")

_WIND_DOWN_POLL_S = 0.001  # while closing: step again at least this often (timers, cancelled tasks)
_WIND_DOWN_STEPS_MAX = 100  # iterations given to async generators' finalizers when closing
# Iterations of the hosted loop run back to back while it has work ready, before trio gets a turn.
_BURST_STEPS_MAX = 32


class BridgeClosedError(RuntimeError):
    """The asyncio loop thread is not running (not started yet, or stopped)."""


class AsyncioThread:
    """An asyncio event loop running forever in one daemon thread, fed from trio."""

    def __init__(self, name: str = "asyncpg-loop") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise BridgeClosedError("asyncio loop thread is not running")
        return self._loop

    def start(self) -> None:
        if self._thread is not None:
            return
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            ready.set()
            try:
                loop.run_forever()
            finally:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name=self._name, daemon=True)
        self._thread.start()
        ready.wait()

    def stop(self) -> None:
        """Stop the loop (cancelling what still runs on it) and join the thread. Blocking."""
        if self._thread is None or self._loop is None:
            return
        loop = self._loop
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join()
        self._thread = None
        self._loop = None

    async def aclose(self) -> None:
        """`stop` (no checkpoint, it blocks to join), for trio callers that close either bridge alike."""
        self.stop()

    def run_blocking(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine on the loop from a plain (non-trio) thread and wait for it."""
        coro = factory()

        async def wrap() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result()

    async def call(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Run `factory()` (a coroutine) on the asyncio loop and return its result to this trio task."""
        loop = self.loop
        await trio.lowlevel.checkpoint_if_cancelled()
        token = trio.lowlevel.current_trio_token()
        task = trio.lowlevel.current_task()
        box: dict[str, asyncio.Future[Any]] = {}

        def deliver(result: outcome.Outcome[Any]) -> None:
            # If the trio run ended while we worked, nobody is waiting any more.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        def on_done(fut: asyncio.Future[Any]) -> None:
            deliver(outcome.capture(fut.result))

        def submit() -> None:
            try:
                fut = asyncio.ensure_future(factory())
            except BaseException as exc:  # the factory itself failed: hand the error back to trio
                deliver(outcome.Error(exc))
                return
            box["fut"] = fut
            fut.add_done_callback(on_done)

        def cancel() -> None:
            fut = box.get("fut")
            if fut is not None:
                fut.cancel()

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            # We cannot stop at once: the asyncio task must unwind first. It reports back via on_done.
            loop.call_soon_threadsafe(cancel)
            return trio.lowlevel.Abort.FAILED

        loop.call_soon_threadsafe(submit)
        result: T = await _parked(abort, "the loop thread")
        return result


class _SteppingSelector(selectors.EpollSelector):
    """asyncio's selector that never blocks and ends each `run_forever` after one iteration.

    asyncio computes how long it would like to wait (0 when callbacks are ready, the time to its next
    timer, None for nothing to do) and passes it to `select`. We note that wish, poll without waiting,
    and stop the loop so that `run_forever` returns after this iteration: the waiting itself is done by
    the trio task that steps the loop (`HostedLoop`), on this selector's epoll descriptor.
    """

    def __init__(self) -> None:
        super().__init__()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wished: float | None = 0.0
        self.events = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.wished = timeout
        ready = super().select(0)
        self.events = len(ready)
        if self.loop is not None:
            self.loop.stop()
        return ready


class HostedLoop:
    """An asyncio event loop stepped by a trio task in trio's own thread: no thread hop per call.

    asyncpg needs asyncio; this runs asyncio's own selector loop one iteration at a time from a trio
    system task, which sleeps on the loop's epoll descriptor (readable when any of asyncio's sockets
    is), on a poke from a caller, or until asyncio's next timer. A call then costs no thread wake-up,
    no cross-thread handoff and no GIL contention: the caller's task is rescheduled directly from the
    asyncio task's done-callback. Same interface as `AsyncioThread` for trio callers (`call`); `start`
    must be called from inside `trio.run`, and the loop lives at most as long as that run.
    """

    def __init__(self, name: str = "asyncpg-loop") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._selector: _SteppingSelector | None = None
        self._idle: trio.CancelScope | None = None
        self._poked = False
        self._closing = False
        self._closed: trio.Event | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._closing:
            raise BridgeClosedError("asyncio loop is not running")
        return self._loop

    def start(self) -> None:
        """Create the loop and the trio system task that steps it (from the trio thread)."""
        if self._loop is not None:
            return
        selector = _SteppingSelector()
        loop = asyncio.SelectorEventLoop(selector)
        selector.loop = loop
        self._loop, self._selector = loop, selector
        self._closing = False
        self._closed = trio.Event()
        trio.lowlevel.spawn_system_task(self._drive, name=self._name)

    async def aclose(self) -> None:
        """Cancel what still runs on the loop, let it unwind, close the loop."""
        if self._loop is None or self._closed is None:
            return
        closed = self._closed
        self._closing = True
        self._poke()
        await closed.wait()

    def _poke(self) -> None:
        self._poked = True
        if self._idle is not None:
            self._idle.cancel()

    def _step(self) -> None:
        assert self._loop is not None
        self._loop.run_forever()  # one iteration: the selector stops the loop

    async def _drive(self) -> None:
        loop, selector = self._loop, self._selector
        assert loop is not None and selector is not None
        fd = selector.fileno()
        try:
            while True:
                self._poked = False
                # One asyncpg round trip is a chain of callbacks (data received, future set, task
                # resumed, the next future...), one loop iteration each. Run them back to back: a trio
                # checkpoint between two (a pass of trio's scheduler and two epoll calls) cost more
                # than the iteration itself, about 25 system calls per purchase at a low rate.
                for _ in range(_BURST_STEPS_MAX):
                    self._step()
                    if self._closing or not (selector.wished == 0 or selector.events):
                        break
                if self._closing:
                    break
                if selector.wished == 0 or selector.events or self._poked:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    continue
                wished = selector.wished
                deadline = math.inf if wished is None else trio.current_time() + wished
                with trio.CancelScope(deadline=deadline) as idle:
                    self._idle = idle
                    await trio.lowlevel.wait_readable(fd)
                self._idle = None
            await self._wind_down(loop, fd)
        finally:
            self._idle = None
            self._finish()

    async def _wind_down(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        """Cancel the loop's tasks (also those submitted meanwhile), step it until they have unwound."""
        cancelled: set[asyncio.Task[Any]] = set()
        while True:
            for task in asyncio.all_tasks(loop) - cancelled:
                task.cancel()
                cancelled.add(task)
            self._step()
            if not asyncio.all_tasks(loop):
                break
            with trio.move_on_after(_WIND_DOWN_POLL_S):
                await trio.lowlevel.wait_readable(fd)
        shutdown = loop.create_task(loop.shutdown_asyncgens())
        for _ in range(_WIND_DOWN_STEPS_MAX):
            if shutdown.done():
                break
            self._step()

    def _finish(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.close()
        if self._closed is not None:
            self._closed.set()

    async def call(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Run `factory()` (a coroutine) on the hosted loop and return its result to this trio task."""
        loop = self.loop
        await trio.lowlevel.checkpoint_if_cancelled()
        task = trio.lowlevel.current_task()
        box: dict[str, Any] = {}

        def on_done(done: asyncio.Future[Any]) -> None:
            trio.lowlevel.reschedule(task, outcome.capture(done.result))

        def submit() -> None:
            # Inside a loop iteration, so that the factory sees its running loop (asyncpg asks for it).
            try:
                fut = asyncio.ensure_future(factory())
            except BaseException as exc:  # the factory itself failed: hand the error back
                trio.lowlevel.reschedule(task, outcome.Error(exc))
                return
            box["fut"] = fut
            fut.add_done_callback(on_done)
            if box.get("cancel"):
                fut.cancel()

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            # The asyncio task must unwind first; on_done reports back.
            fut = box.get("fut")
            if fut is None:
                box["cancel"] = True
            else:
                fut.cancel()
            self._poke()
            return trio.lowlevel.Abort.FAILED

        loop.call_soon(submit)
        self._poke()
        result: T = await _parked(abort, "the loop")
        return result


async def _parked(abort: Callable[[Any], trio.lowlevel.Abort], closer: str) -> Any:
    """Wait for the asyncio task's outcome, delivered by `trio.lowlevel.reschedule`."""
    try:
        return await trio.lowlevel.wait_task_rescheduled(abort)
    except asyncio.CancelledError:
        # Cancelled on our request: surface trio's own Cancelled from the enclosing scope.
        await trio.lowlevel.checkpoint()
        raise BridgeClosedError(f"database call was cancelled by {closer}") from None
