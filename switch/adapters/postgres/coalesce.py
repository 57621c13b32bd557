"""Group commit for this package's stores: concurrent calls coalesced into one database call.

A round trip through the asyncio bridge plus a durable commit costs far more than the SQL itself, so
`Coalescer.submit` calls from concurrent trio tasks share database calls ("natural batching", no timers):
while one batch is in flight, new calls queue; when it returns, everything queued (up to
`batch_size_max` items) goes in the next single call of `send`, and each caller gets its own results, in
the order of its items. The ledger's transfers (ledger.py) and the forwarded-transaction records
(network_keys.py) go this way.

There is no background task (no nursery). The caller that finds the coalescer idle becomes the leader:
it lets one pass of the trio scheduler go by (no timer: the callers woken by the previous batch are
runnable and join), then sends batches until its own items are done, then hands the lead to the oldest
queued call (waking its task) or marks the coalescer idle. A caller alone therefore never waits for
anyone. The leader's `send` is shielded from its cancellation, because other callers' items ride in it.
A waiting caller cancelled before its items are sent is removed from the queue (nothing of it is sent);
once sent, its items are applied or not exactly as if it had waited. A call larger than a batch is split
across batches, in order; if one part of it fails, the rest is not sent.

Errors: if `send` raises `refused` (the database rolled the whole call back), the calls of that batch
are sent again one by one, so only the call that caused it sees the error. Any other error reaches every
call of the batch (the outcome is then unknown: the batch may have committed). A caller whose items
failed raises `error_for(cause)` chained to the cause, or the cause itself by default.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import trio

__all__ = ["CoalesceStats", "Coalescer"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True, slots=True)
class CoalesceStats:
    """How calls have been coalesced so far."""

    sends: int  # calls of send, one-by-one retries after a refusal included
    items: int  # items in those calls
    batch_size_counts: dict[int, int]  # items in a call of send -> how many calls had that many


@dataclass(eq=False)
class _Call(Generic[ItemT, ResultT]):
    """One submit: its items, its results so far, and how its task is woken."""

    items: list[ItemT]
    results: list[ResultT] = field(default_factory=list)  # filled in order, part by part
    sent: int = 0  # items handed to a batch so far (a call larger than a batch is split)
    error: BaseException | None = None
    done: bool = False
    lead: bool = False  # woken to lead, not because it is done
    abandoned: bool = False  # its task was cancelled; results are not wanted any more
    wake: trio.Event = field(default_factory=trio.Event)


@dataclass(frozen=True, slots=True)
class _Piece(Generic[ItemT, ResultT]):
    """The part of a call that travels in one batch: its items from start to stop."""

    call: _Call[ItemT, ResultT]
    start: int
    stop: int


def _same(cause: BaseException) -> BaseException:
    return cause


class Coalescer(Generic[ItemT, ResultT]):
    """Coalesces concurrent `submit` calls into calls of `send(items) -> results` (one result per item, in
    order), at most `batch_size_max` items each."""

    def __init__(
        self,
        send: Callable[[list[ItemT]], Awaitable[list[ResultT]]],
        *,
        batch_size_max: int,
        refused: type[BaseException] | tuple[type[BaseException], ...],
        error_for: Callable[[BaseException], BaseException] = _same,
    ) -> None:
        if batch_size_max < 1:
            raise ValueError("batch_size_max must be at least 1")
        self._send = send
        self._batch_size_max = batch_size_max
        self._refused = refused
        self._error_for = error_for
        self._queue: collections.deque[_Call[ItemT, ResultT]] = collections.deque()
        self._leading = False  # a task is leading (sending batches); new calls queue behind it
        self._sends = 0
        self._items_sent = 0
        self._batch_size_counts: collections.Counter[int] = collections.Counter()

    async def submit(self, items: Sequence[ItemT]) -> list[ResultT]:
        """Send `items` in order, batched with concurrent callers' items; their results once all are in."""
        if not items:
            await trio.lowlevel.checkpoint()
            return []
        call: _Call[ItemT, ResultT] = _Call(list(items))
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
            error = self._error_for(call.error)
            if error is call.error:
                raise error
            raise error from call.error
        assert len(call.results) == len(call.items)
        return call.results

    def stats(self) -> CoalesceStats:
        return CoalesceStats(
            sends=self._sends,
            items=self._items_sent,
            batch_size_counts=dict(self._batch_size_counts),
        )

    def _abandon(self, call: _Call[ItemT, ResultT]) -> None:
        """The caller's task is gone (cancelled): unsent items are dropped, leadership passed on."""
        call.abandoned = True
        if not call.done and call in self._queue:
            self._queue.remove(call)
        if call.lead and not call.done:
            # It was woken to lead but never started: somebody else must.
            self._hand_off()

    async def _lead(self, own: _Call[ItemT, ResultT], *, fresh: bool) -> None:
        """Send batches until `own` is done, then pass the leadership on."""
        try:
            # Other callers' items ride in every batch: the leader's cancellation must not stop it.
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

    def _take_batch(self) -> list[_Piece[ItemT, ResultT]]:
        room = self._batch_size_max
        pieces: list[_Piece[ItemT, ResultT]] = []
        while self._queue and room > 0:
            call = self._queue[0]
            stop = min(len(call.items), call.sent + room)
            pieces.append(_Piece(call, call.sent, stop))
            room -= stop - call.sent
            call.sent = stop
            if stop == len(call.items):
                self._queue.popleft()
        return pieces

    async def _send_batch(self, pieces: list[_Piece[ItemT, ResultT]]) -> None:
        try:
            items = [item for p in pieces for item in p.call.items[p.start : p.stop]]
            try:
                results = await self._send_counted(items)
            except self._refused:
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
            # Every caller in the batch hears of it; only interrupts go further.
            for piece in pieces:
                self._fail(piece.call, exc)
            if not isinstance(exc, Exception):
                raise

    async def _send_alone(self, piece: _Piece[ItemT, ResultT]) -> None:
        try:
            results = await self._send_counted(piece.call.items[piece.start : piece.stop])
        except self._refused as exc:
            self._fail(piece.call, exc)
        else:
            self._deliver(piece, results)

    async def _send_counted(self, items: list[ItemT]) -> list[ResultT]:
        self._sends += 1
        self._items_sent += len(items)
        self._batch_size_counts[len(items)] += 1
        results = await self._send(items)
        assert len(results) == len(items), "send returns one result per item"
        return results

    def _deliver(self, piece: _Piece[ItemT, ResultT], results: list[ResultT]) -> None:
        call = piece.call
        if call.done:
            return
        # A call's pieces travel in order, one per batch, and each batch is delivered before the next.
        assert piece.start == len(call.results)
        call.results.extend(results)
        if len(call.results) == len(call.items):
            call.done = True
            call.wake.set()

    def _fail(self, call: _Call[ItemT, ResultT], exc: BaseException) -> None:
        if call.done:
            return
        call.error = exc
        call.done = True
        if call.sent < len(call.items) and call in self._queue:
            self._queue.remove(call)  # the rest of a split call is not sent after a failure
        call.wake.set()
