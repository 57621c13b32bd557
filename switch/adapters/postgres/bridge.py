"""The trio <-> asyncio bridge for asyncpg: one asyncio event loop in a dedicated thread.

asyncpg only runs on asyncio. Measured on the 2-core machine (see docs/database.md and
`make bench ARGS=db`): native asyncio ~150 us CPU per query, trio-asyncio ~700 us, an asyncio loop in
its own thread ~290 us. We take the thread: it is the cheapest bridge, keeps asyncpg on the event loop it
was written for, and group commit (many authorizations per round trip) makes the per-call cost small.

A call costs two thread hops: `call_soon_threadsafe` into the loop, `run_sync_soon` back into trio, with
the waiting trio task parked by `wait_task_rescheduled` (no polling, no thread per call). Cancellation
of the trio task cancels the asyncio task; the trio task then raises trio.Cancelled as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio

__all__ = ["AsyncioThread", "BridgeClosedError"]

T = TypeVar("T")


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
        try:
            result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        except asyncio.CancelledError:
            # Cancelled on our request: surface trio's own Cancelled from the enclosing scope.
            await trio.lowlevel.checkpoint()
            raise BridgeClosedError("database call was cancelled by the loop thread") from None
        return result
