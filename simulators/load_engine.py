"""The load generator's measured phase: every terminal connection in one epoll loop, without trio.

`loadgen` connects, signs on and exchanges keys with trio (`TerminalClient`); then this loop takes over
the connections until the run ends. Why: at a paced rate every request wakes the generator twice, once
to send it on time and once for its answer, and on a small machine the generator shares the cores with
the switch it measures. Through trio each request also woke a sleeping slot task, a writer task and a
reader task, and set up an event and a cancel scope: about 300 us of CPU per request at 1,000/s on the
2-core development VM, taken from the switch under test (docs/benchmarks.md). Here a request is a list
append and a `send`, an answer a `recv` and a dict lookup.

While `Engine.run` runs it holds the thread: the terminals' trio tasks wait, parked on their sockets,
and find nothing to read when trio runs again (this loop read it). Pacing follows the trio version:
each terminal has `in_flight` request slots and a schedule of one request per interval (terminals
staggered over one interval); when every slot is busy the schedule slips, and freed slots catch up at
once, as a terminal with a full queue would.
"""

from __future__ import annotations

import math
import os
import select
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from switch.iso.errors import IsoError
from switch.iso.framing import Framer

__all__ = ["Counts", "Engine", "Lane"]

RECEIVE_BYTES = 65536
# How often requests are checked for their timeout, at most (and at least ten times per timeout).
SWEEP_S = 0.1


class Counts(Protocol):
    """What the loop counts into (`loadgen.Stats`)."""

    sent: int
    errors: int

    def record(self, code: str | None, latency_ms: float) -> None: ...

    def reset(self) -> None: ...


@dataclass(slots=True, eq=False)
class Lane:
    """One terminal's connection while the loop runs it.

    `next_request` gives the next request to send as (STAN, whole frame); `parse` reads a response
    payload's (STAN, response code), or raises `IsoError` for one that cannot be decoded.
    """

    name: str
    sock: socket.socket
    framer: Framer
    next_request: Callable[[], tuple[str, bytes]]
    parse: Callable[[bytes], tuple[str | None, str | None]]
    pending: dict[str, float] = field(default_factory=dict)  # STAN -> sent at (perf_counter s)
    outbox: list[bytes] = field(default_factory=list)
    unsent: bytes = b""  # the part of the last write the socket did not take
    waiting_to_write: bool = False  # registered for EPOLLOUT until `unsent` and `outbox` are written
    next_s: float = 0.0
    closed_reason: str | None = None
    unmatched_responses: int = 0

    @classmethod
    def over(
        cls,
        fileno: int,
        *,
        name: str,
        framer: Framer,
        next_request: Callable[[], tuple[str, bytes]],
        parse: Callable[[bytes], tuple[str | None, str | None]],
    ) -> Lane:
        """A lane on a duplicate of a connected socket's descriptor (closed by `Engine.run`)."""
        sock = socket.socket(fileno=os.dup(fileno))
        sock.setblocking(False)
        return cls(name, sock, framer, next_request, parse)


class Engine:
    """Runs the lanes: sends on schedule, matches answers by STAN, counts timeouts and lost connections.

    `rate_per_s` 0 means as fast as the slots allow. The run sends until `duration_s` after its start
    (warm-up included) or until `count` requests are sent, then waits for the answers still due (each
    at most `timeout_s`). A request whose answer does not come within `timeout_s`, or whose connection
    ends first, is counted as a timeout; a connection that ends (closed by the switch, broken, or an
    answer that cannot be decoded) is counted as an error and sends no more.
    """

    def __init__(
        self,
        lanes: Sequence[Lane],
        counts: Counts,
        *,
        rate_per_s: float,
        in_flight: int,
        timeout_s: float,
        duration_s: float | None,
        count: int | None,
        warmup_s: float = 0.0,
        progress: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not lanes:
            raise ValueError("no lanes to run")
        if duration_s is None and count is None:
            raise ValueError("a run needs a duration or a count")
        self.lanes = list(lanes)
        self.counts = counts
        self.interval_s = len(self.lanes) / rate_per_s if rate_per_s > 0 else 0.0
        self.in_flight = in_flight
        self.timeout_s = timeout_s
        self.duration_s = duration_s
        self.left = count
        self.warmup_s = warmup_s
        self.progress = progress
        self.clock = clock
        self._epoll = select.epoll()

    def run(self) -> float:
        """Run to the end; the seconds from the end of the warm-up (or the start) to the last answer."""
        by_fd: dict[int, Lane] = {}
        try:
            for lane in self.lanes:
                by_fd[lane.sock.fileno()] = lane
                self._epoll.register(lane.sock.fileno(), select.EPOLLIN)
            return self._loop(by_fd)
        finally:
            self._epoll.close()
            for lane in self.lanes:
                lane.sock.close()

    def _loop(self, by_fd: dict[int, Lane]) -> float:
        clock, counts, lanes, in_flight, epoll = (
            self.clock,
            self.counts,
            self.lanes,
            self.in_flight,
            self._epoll,
        )
        interval = self.interval_s
        start = clock()
        for index, lane in enumerate(lanes):
            lane.next_s = start + interval * index / len(lanes)
        end_s = start + self.warmup_s + self.duration_s if self.duration_s is not None else math.inf
        warm_until = start + self.warmup_s if self.warmup_s > 0 else None
        measured_from = start
        sweep_every = min(SWEEP_S, self.timeout_s / 10)
        next_sweep = start + sweep_every
        next_progress = start + 1.0
        sending = True
        while True:
            now = clock()
            if warm_until is not None and now >= warm_until:
                counts.reset()
                measured_from, warm_until = now, None
            if sending and (now >= end_s or self.left == 0 or all(ln.closed_reason for ln in lanes)):
                sending = False
            if sending:
                for lane in lanes:
                    if lane.closed_reason is None:
                        self._send_due(lane, now)
            if not sending and not any(lane.pending for lane in lanes):
                return clock() - measured_from
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + sweep_every
            if self.progress is not None and now >= next_progress:
                self.progress(now - start)
                next_progress += 1.0
            wake = min(next_sweep, next_progress if self.progress is not None else math.inf)
            if sending:
                wake = min(wake, end_s)
                for lane in lanes:
                    if lane.closed_reason is None and len(lane.pending) < in_flight:
                        wake = min(wake, lane.next_s)
            if warm_until is not None:
                wake = min(wake, warm_until)
            for fd, events in epoll.poll(max(0.0, wake - clock())):
                lane = by_fd[fd]
                if events & select.EPOLLOUT:
                    self._flush(lane)
                if events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                    self._receive(lane)

    def _send_due(self, lane: Lane, now: float) -> None:
        counts, interval = self.counts, self.interval_s
        while len(lane.pending) < self.in_flight and lane.next_s <= now and self.left != 0:
            # STANs count up to 999,999 and at most `in_flight` (1,000 or fewer) are out: no clash.
            stan, frame = lane.next_request()
            lane.pending[stan] = now
            lane.outbox.append(frame)
            counts.sent += 1
            if self.left is not None:
                self.left -= 1
            lane.next_s += interval
        if lane.outbox and not lane.unsent:
            frames, lane.outbox = lane.outbox, []
            lane.unsent = frames[0] if len(frames) == 1 else b"".join(frames)
            self._write(lane)

    def _write(self, lane: Lane) -> None:
        """Write what the socket takes of `unsent`; wait for it to take more (EPOLLOUT) if that is not all."""
        try:
            written = lane.sock.send(lane.unsent)
        except BlockingIOError:
            written = 0
        except OSError:
            self._close(lane, "connection lost")
            return
        lane.unsent = lane.unsent[written:]
        if lane.unsent and not lane.waiting_to_write:
            lane.waiting_to_write = True
            self._epoll.modify(lane.sock.fileno(), select.EPOLLIN | select.EPOLLOUT)

    def _flush(self, lane: Lane) -> None:
        """The socket can take more: the rest of the last write, then what queued meanwhile."""
        while lane.closed_reason is None:
            if not lane.unsent:
                if not lane.outbox:
                    lane.waiting_to_write = False
                    self._epoll.modify(lane.sock.fileno(), select.EPOLLIN)
                    return
                frames, lane.outbox = lane.outbox, []
                lane.unsent = b"".join(frames)
            self._write(lane)
            if lane.unsent:
                return  # still full: EPOLLOUT again

    def _receive(self, lane: Lane) -> None:
        if lane.closed_reason is not None:
            return
        try:
            data = lane.sock.recv(RECEIVE_BYTES)
        except BlockingIOError:
            return
        except OSError:
            self._close(lane, "connection lost")
            return
        if not data:
            self._close(lane, "the switch closed the connection")
            return
        answered_at = self.clock()
        try:
            lane.framer.receive_data(data)
            for payload in lane.framer:
                stan, code = lane.parse(payload)
                sent_at = lane.pending.pop(stan, None) if stan is not None else None
                if sent_at is None:
                    lane.unmatched_responses += 1
                    continue
                self.counts.record(code, (answered_at - sent_at) * 1000.0)
        except IsoError as exc:
            self._close(lane, f"undecodable response ({exc.__class__.__name__})")

    def _sweep(self, now: float) -> None:
        """Count as timeouts the requests whose answer is overdue; they are not waited for again."""
        oldest = now - self.timeout_s
        for lane in self.lanes:
            overdue = [stan for stan, sent_at in lane.pending.items() if sent_at <= oldest]
            for stan in overdue:
                sent_at = lane.pending.pop(stan)
                self.counts.record(None, (now - sent_at) * 1000.0)

    def _close(self, lane: Lane, reason: str) -> None:
        """The connection ended: an error; its requests still out are timeouts; it sends no more."""
        lane.closed_reason = reason
        self.counts.errors += 1
        now = self.clock()
        for sent_at in lane.pending.values():
            self.counts.record(None, (now - sent_at) * 1000.0)
        lane.pending.clear()
        lane.outbox.clear()
        lane.unsent = b""
        self._epoll.unregister(lane.sock.fileno())
