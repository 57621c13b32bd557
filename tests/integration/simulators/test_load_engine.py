"""The load loop over real socket pairs: counting, pacing, timeouts, lost connections, full send buffers.

The far end of each pair is a small responder thread with the terminal dialect's framing and a toy
payload (`STAN:code`), so that what is tested is the loop, not ISO 8583.
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from simulators.load_engine import Engine, Lane
from simulators.loadgen import Stats
from switch.iso.codec import Codec
from switch.iso.framing import Framer, prefix_frame

FRAMING = Codec("terminal").dialect.framing


def _frame(payload: bytes) -> bytes:
    return prefix_frame(FRAMING, payload)


def _parse(payload: bytes) -> tuple[str | None, str | None]:
    stan, _, code = payload.decode().partition(":")
    return stan, code or None


def _framer() -> Framer:
    return Codec("terminal").framer(frame_bytes_max=8192)  # as loadgen's terminals


@dataclass
class Responder:
    """The switch's end of one pair: answers each request `STAN:...` with `STAN:<code>`."""

    sock: socket.socket
    answer: Callable[[str], bytes | None] = lambda stan: _frame(f"{stan}:00".encode())
    start_reading: threading.Event = field(default_factory=threading.Event)
    received: list[str] = field(default_factory=list)

    def run(self) -> None:
        framer = Codec("terminal").framer(frame_bytes_max=1 << 20)
        self.start_reading.wait(10)
        try:
            while data := self.sock.recv(65536):
                framer.receive_data(data)
                for payload in framer:
                    stan = payload.decode().partition(":")[0]
                    self.received.append(stan)
                    reply = self.answer(stan)
                    if reply is None:
                        continue
                    if reply == b"close":
                        self.sock.close()
                        return
                    self.sock.sendall(reply)
        except OSError:
            return


@pytest.fixture
def pairs() -> Iterator[Callable[..., tuple[Lane, Responder]]]:
    threads: list[threading.Thread] = []
    socks: list[socket.socket] = []

    def make(
        name: str = "T1",
        *,
        answer: Callable[[str], bytes | None] | None = None,
        request_bytes: int = 20,
        read_at_once: bool = True,
    ) -> tuple[Lane, Responder]:
        ours, theirs = socket.socketpair()
        socks.extend([ours, theirs])
        stans = itertools.count(1)

        def next_request() -> tuple[str, bytes]:
            stan = f"{next(stans):06d}"
            return stan, _frame(f"{stan}:".encode().ljust(request_bytes, b"x"))

        lane = Lane.over(ours.fileno(), name=name, framer=_framer(), next_request=next_request, parse=_parse)
        responder = Responder(theirs) if answer is None else Responder(theirs, answer)
        if read_at_once:
            responder.start_reading.set()
        thread = threading.Thread(target=responder.run, daemon=True)
        thread.start()
        threads.append(thread)
        return lane, responder

    yield make
    for sock in socks:
        sock.close()
    for thread in threads:
        thread.join(5)


def _engine(
    lanes: list[Lane],
    stats: Stats,
    *,
    rate_per_s: float = 0.0,
    in_flight: int = 4,
    timeout_s: float = 5.0,
    duration_s: float | None = None,
    count: int | None = None,
    warmup_s: float = 0.0,
) -> Engine:
    return Engine(
        lanes,
        stats,
        rate_per_s=rate_per_s,
        in_flight=in_flight,
        timeout_s=timeout_s,
        duration_s=duration_s,
        count=count,
        warmup_s=warmup_s,
    )


def test_a_counted_run_sends_exactly_count_and_matches_every_answer(pairs):
    """If 200 requests are asked of two lanes at the maximum rate, then 200 go out and 200 are answered."""
    (one, r1), (two, r2) = pairs("T1"), pairs("T2")
    stats = Stats()
    _engine([one, two], stats, count=200).run()
    assert (stats.sent, stats.answered, stats.timeouts, stats.errors) == (200, 200, 0, 0)
    assert stats.codes == {"00": 200}
    assert len(r1.received) + len(r2.received) == 200
    assert one.pending == {} and two.pending == {}


def test_a_paced_run_sends_about_rate_times_duration(pairs):
    """If 4 lanes run at 200/s for 0.5 s, then about 100 requests go out (schedule, not slot-bound)."""
    lanes = [pairs(f"T{i}")[0] for i in range(4)]
    stats = Stats()
    _engine(lanes, stats, rate_per_s=200.0, duration_s=0.5).run()
    assert 80 <= stats.sent <= 101
    assert stats.answered == stats.sent and stats.timeouts == 0


def test_unanswered_requests_are_timeouts_and_the_run_still_ends(pairs):
    """If the switch never answers, then each request in flight counts as a timeout after timeout_s."""
    lane, responder = pairs(answer=lambda stan: None)
    stats = Stats()
    _engine([lane], stats, count=3, in_flight=3, timeout_s=0.3).run()
    assert (stats.sent, stats.answered, stats.timeouts, stats.errors) == (3, 0, 3, 0)
    assert responder.received == ["000001", "000002", "000003"]


def test_a_connection_closed_by_the_switch_is_an_error_and_the_others_go_on(pairs):
    """If one lane's switch end closes at its 3rd request, then that lane stops with an error, its
    requests still out are timeouts, and the other lane finishes the run."""
    closing, _ = pairs(
        "T1", answer=lambda stan: b"close" if stan == "000003" else _frame(f"{stan}:00".encode())
    )
    healthy, _ = pairs("T2")
    stats = Stats()
    _engine([closing, healthy], stats, count=100, in_flight=1).run()
    assert closing.closed_reason == "the switch closed the connection"
    assert healthy.closed_reason is None
    assert stats.errors == 1
    assert stats.timeouts == 1  # the 3rd request of the closed lane
    assert stats.answered == stats.sent - 1


def test_an_undecodable_answer_ends_its_lane(pairs):
    """If an answer's length prefix says more than a frame may hold, then its lane ends with the error."""
    lane, _ = pairs(answer=lambda stan: b"\xff\xff" + b"x" * 10)
    stats = Stats()
    _engine([lane], stats, count=5, in_flight=1).run()
    assert lane.closed_reason is not None and lane.closed_reason.startswith("undecodable response")
    assert stats.errors == 1 and stats.answered == 0 and stats.timeouts == 1


def test_a_full_send_buffer_is_written_when_the_switch_reads_again(pairs):
    """If the switch stops reading while large requests go out, then the loop waits for the socket to
    take them (EPOLLOUT) and every request is delivered and answered once the switch reads."""
    lane, responder = pairs(request_bytes=60_000, read_at_once=False)
    lane.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    stats = Stats()
    timer = threading.Timer(0.3, responder.start_reading.set)
    timer.start()
    _engine([lane], stats, count=40, in_flight=8).run()
    timer.join()
    assert (stats.sent, stats.answered, stats.timeouts, stats.errors) == (40, 40, 0, 0)
    assert responder.received == [f"{n:06d}" for n in range(1, 41)]


def test_the_warm_up_is_sent_but_not_counted(pairs):
    """If a run has 0.3 s of warm-up, then what was sent before it ended is not in the counts."""
    lane, responder = pairs()
    stats = Stats()
    _engine([lane], stats, rate_per_s=100.0, duration_s=0.3, warmup_s=0.3, in_flight=2).run()
    assert len(responder.received) > stats.sent > 0
    assert stats.timeouts == 0 and stats.errors == 0


def test_a_run_needs_lanes_and_an_end():
    """If an engine is made without lanes or without a duration or count, then it is refused."""
    with pytest.raises(ValueError, match="no lanes"):
        Engine([], Stats(), rate_per_s=0, in_flight=1, timeout_s=1, duration_s=1, count=None)
    a, b = socket.socketpair()
    try:
        lane = Lane.over(
            a.fileno(), name="T1", framer=_framer(), next_request=lambda: ("1", b""), parse=_parse
        )
        with pytest.raises(ValueError, match="duration or a count"):
            Engine([lane], Stats(), rate_per_s=0, in_flight=1, timeout_s=1, duration_s=None, count=None)
        lane.sock.close()
    finally:
        a.close()
        b.close()
