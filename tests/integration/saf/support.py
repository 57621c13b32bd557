"""Test doubles for the store-and-forward tests: a fake network server on a real TCP socket speaking the
Visa dialect with the real codec, a small `Network` link to it, and a clock the test steps by hand.

The link is a test double of the real network link (switch/adapters, built separately): one connection,
its own STAN counter, field 7 from its clock, responses matched by MTI class + STAN. It is just enough to
exercise the worker against the `switch.ports.Network` contract over real bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import trio

from switch.iso.codec import Codec, Packet
from switch.iso.message import Message
from switch.ports import NetworkExchange, NetworkUnavailable, SafEntry

CODEC = Codec("visa")
PAN = "4761739001010010"
TRACK2 = PAN + "=26122011758928889"
PIN_BLOCK = "0123456789ABCDEF"
T0 = datetime(2026, 11, 23, 19, 35, tzinfo=UTC)


class ManualClock:
    """`switch.ports.Clock` whose time moves only when the test says so."""

    def __init__(self, start: datetime = T0) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def reversal(n: int, *, network: str = "visa", with_secrets: bool = False) -> SafEntry:
    """The n-th test reversal (0420 without 11 and 7: the link gives them). RRN 6123190000nn names it."""
    fields = {
        2: PAN,
        3: "000000",
        4: f"{1000 + n:012d}",
        32: "990001",
        37: f"6123190{n:05d}",
        41: "POS00001",
        42: "DEMOMERCHANT001",
        49: "840",
        90: "0200" + f"{n:06d}" + "1123193500" + "00000990001" + "00000000000",
    }
    if with_secrets:
        fields[35] = TRACK2
        fields[52] = PIN_BLOCK
    return SafEntry(
        network=network,
        kind="reversal",
        key=f"{network}:POS00001:1123193500:{n:06d}",
        message=Message("0420", fields),
    )


def advice(n: int, *, network: str = "visa") -> SafEntry:
    message = reversal(n, network=network).message.with_fields(mti="0220")
    return SafEntry(network=network, kind="advice", key=f"{network}:advice:{n:06d}", message=message)


Answer = Callable[[Message], Message | None]


def answer_all(code: str = "00") -> Answer:
    return lambda message: CODEC.response(message, response_code=code)


def answer_none(message: Message) -> Message | None:
    return None


@dataclass
class Received:
    message: Message
    at: float  # trio time when it arrived


@dataclass
class FakeNetworkServer:
    """A network that records what reaches it and answers as `answer` says (None: no answer)."""

    answer: Answer = field(default_factory=answer_all)
    answer_delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    outstanding: int = 0
    outstanding_max: int = 0
    arrived: trio.Event = field(default_factory=trio.Event)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._connection, listeners)

    @property
    def messages(self) -> list[Message]:
        return [r.message for r in self.received]

    async def _connection(self, stream: trio.SocketStream) -> None:
        framer = CODEC.framer(frame_bytes_max=8192)
        async with stream, trio.open_nursery() as nursery:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return
                if not data:
                    return
                framer.receive_data(bytes(data))
                for payload in framer:
                    packet = CODEC.decode_payload(payload)
                    assert isinstance(packet, Packet)
                    self.received.append(Received(packet.message, trio.current_time()))
                    self.arrived.set()
                    self.arrived = trio.Event()
                    nursery.start_soon(self._reply, stream, packet)

    async def _reply(self, stream: trio.SocketStream, packet: Packet) -> None:
        self.outstanding += 1
        self.outstanding_max = max(self.outstanding_max, self.outstanding)
        try:
            await trio.sleep(self.answer_delay_s)
            response = self.answer(packet.message)
            if response is not None:
                header = packet.header.reply() if packet.header is not None else None
                await stream.send_all(CODEC.encode_frame(response, header))
        finally:
            self.outstanding -= 1


class TcpNetwork:
    """A minimal `switch.ports.Network` over one TCP connection to a FakeNetworkServer."""

    def __init__(
        self, name: str, port: int, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._name = name
        self._port = port
        self._clock = clock
        self._stream: trio.SocketStream | None = None
        self._stan = itertools.count(1)
        self._pending: dict[tuple[str, str], trio.MemorySendChannel[Message]] = {}
        self.late: list[Message] = []
        self.requests = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def up(self) -> bool:
        return self._stream is not None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect and read responses until cancelled or the server closes."""
        stream = await trio.open_tcp_stream("127.0.0.1", self._port)
        self._stream = stream
        task_status.started()
        framer = CODEC.framer(frame_bytes_max=8192)
        try:
            async with stream:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    framer.receive_data(bytes(data))
                    for payload in framer:
                        packet = CODEC.decode_payload(payload)
                        assert isinstance(packet, Packet)
                        self._deliver(packet.message)
        finally:
            self._stream = None

    def _deliver(self, response: Message) -> None:
        channel = self._pending.pop((response.mti[:3], response.stan or ""), None)
        if channel is None:
            self.late.append(response)
            return
        channel.send_nowait(response)

    async def request(self, message: Message, *, timeout_s: float) -> NetworkExchange:
        stream = self._stream
        if stream is None:
            raise NetworkUnavailable(self._name)
        updates: dict[int, str | None] = {}
        if 11 not in message:
            updates[11] = f"{next(self._stan) % 1_000_000:06d}"
        if 7 not in message:
            updates[7] = self._clock().strftime("%m%d%H%M%S")
        sent = message.with_fields(updates)
        response_class = sent.mti[:2] + str(int(sent.mti[2]) + 1)
        send, receive = trio.open_memory_channel[Message](1)
        self._pending[(response_class, sent.stan or "")] = send
        self.requests += 1
        try:
            await stream.send_all(CODEC.encode_frame(sent))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._pending.pop((response_class, sent.stan or ""), None)
            raise NetworkUnavailable(self._name) from None
        response: Message | None = None
        with trio.move_on_after(timeout_s):
            response = await receive.receive()
        self._pending.pop((response_class, sent.stan or ""), None)
        return NetworkExchange(sent=sent, response=response)


class DownNetwork:
    """A network whose link is down."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.requests = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def up(self) -> bool:
        return False

    async def request(self, message: Message, *, timeout_s: float) -> NetworkExchange:
        self.requests += 1
        raise NetworkUnavailable(self._name)
