"""The network link over real TCP against a small fake network, for each of the three network dialects.

The fake network (below) listens like netsim, speaks the dialect with the real codec, answers sign-on,
sign-off and echo by itself (each switchable), and hands every other request to the test, which answers
when and how it likes (out of order, late, twice, never). Intervals are short so the file runs in seconds.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import pytest
import trio
from prometheus_client import generate_latest

from specs import demo_networks
from switch.adapters.network_link import LateResponse, NetworkLink
from switch.config import NetworkConfig
from switch.iso.codec import Codec, Packet
from switch.iso.framing import prefix_frame
from switch.iso.headers import CupsHeader, Header, HeaderCodec, VisaHeader
from switch.iso.message import Message
from switch.logs import configure_logging
from switch.metrics import Metrics
from switch.ports import Network, NetworkUnavailable

DIALECTS = ("visa", "cups", "shetab")
PAN = "4761739001010010"  # Visa's public test PAN
TRACK2 = "4761739001010010=26122011758928889"
WAIT_S = 5.0  # upper bound for things that happen at once; the tests take milliseconds when all is well


# -- the fake network ----------------------------------------------------------------------------------


@dataclass
class FakeNetwork:
    dialect: str
    sign_on_code: str = "00"
    answer_echo: bool = True
    answer_sign_off: bool = True
    port: int = 0
    received: list[Packet] = field(default_factory=list)  # every decoded frame, in order
    connections: int = 0
    _stream: trio.SocketStream | None = None
    _changed: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self.codec = Codec(self.dialect)
        self.demo = demo_networks.network(self.dialect)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        self._stream = stream
        framer = self.codec.framer(frame_bytes_max=8192)
        try:
            async with stream:
                while data := await stream.receive_some(65536):
                    framer.receive_data(data)
                    for payload in framer:
                        packet = self.codec.decode_payload(payload)
                        assert isinstance(packet, Packet)
                        self.received.append(packet)
                        self._notify()
                        await self._auto_answer(stream, packet)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            if self._stream is stream:
                self._stream = None
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _auto_answer(self, stream: trio.SocketStream, packet: Packet) -> None:
        message = packet.message
        if message.mti[1] != "8" or message.mti[2] not in "02":
            return
        code = {"001": self.sign_on_code, "301": "00" if self.answer_echo else None}.get(
            message.get(70) or ""
        )
        if message.get(70) == "002":
            code = "00" if self.answer_sign_off else None
        if code is not None:
            response = self.codec.response(message, response_code=code)
            await stream.send_all(self.codec.encode_frame(response, self.reply_header(packet)))

    def reply_header(self, packet: Packet) -> Header | None:
        return packet.header.reply() if packet.header is not None else None

    def header_to_switch(self) -> Header | None:
        """The header of a request the network originates: from the network to us."""
        default = self.codec.default_header
        if isinstance(default, VisaHeader):
            return VisaHeader(destination_id=self.demo.our_station_id, source_id=self.demo.station_id)
        if isinstance(default, CupsHeader):
            return CupsHeader(destination_id=self.demo.forwarding_id, source_id=self.demo.network_id)
        return default

    async def wait_for(self, predicate: Callable[[Packet], bool], *, count: int = 1) -> list[Packet]:
        """The first `count` received packets matching `predicate`, waiting for them to arrive."""
        with trio.fail_after(WAIT_S):
            while len(found := [p for p in self.received if predicate(p)]) < count:
                await self._changed.wait()
        return found[:count]

    async def wait_request(self, mti: str, stan: str | None = None) -> Packet:
        def matches(p: Packet) -> bool:
            return p.message.mti == mti and (stan is None or p.message.get(11) == stan)

        return (await self.wait_for(matches))[0]

    async def wait_closed(self) -> None:
        with trio.fail_after(WAIT_S):
            while self._stream is not None:
                await self._changed.wait()

    async def send(self, message: Message, header: Header | None = None) -> None:
        await self.send_raw(self.codec.encode_frame(message, header))

    async def send_raw(self, frame: bytes) -> None:
        assert self._stream is not None, "no connection"
        await self._stream.send_all(frame)

    async def answer(
        self, packet: Packet, code: str = "00", updates: dict[int, str | None] | None = None
    ) -> None:
        response = self.codec.response(packet.message, response_code=code, updates=updates)
        await self.send(response, self.reply_header(packet))

    async def drop(self) -> None:
        assert self._stream is not None, "no connection"
        await self._stream.aclose()


def management(packets: list[Packet], code: str) -> list[Packet]:
    return [
        p
        for p in packets
        if p.message.mti[1] == "8" and p.message.get(70) == code and p.message.mti[2] in "02"
    ]


# -- the switch side -----------------------------------------------------------------------------------


def network_config(dialect: str, endpoints: tuple[str, ...], **overrides: object) -> NetworkConfig:
    demo = demo_networks.network(dialect)
    values: dict[str, object] = {
        "dialect": dialect,
        "endpoints": endpoints,
        "acquirer_id": demo.acquirer_id,
        "forwarding_id": demo.forwarding_id,
        "network_id": demo.network_id,
        "network_station_id": demo.station_id,
        "our_station_id": demo.our_station_id,
        "deadline_ms": 2000,
        "connect_timeout_s": 2.0,
        "echo_idle_s": 30.0,
        "reconnect_backoff_initial_s": 0.01,
        "reconnect_backoff_max_s": 0.05,
        "pending_max": 16,
    }
    values.update(overrides)
    return NetworkConfig(**values)  # type: ignore[arg-type]


@dataclass
class Switch:
    link: NetworkLink
    metrics: Metrics
    late: list[LateResponse]
    inbound: list[Message]
    nursery: trio.Nursery

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"network": self.link.name, **labels})
        return value or 0.0

    async def wait_up(self, up: bool = True) -> None:
        await eventually(lambda: self.link.up == up)

    async def wait_late(self, count: int = 1) -> list[LateResponse]:
        await eventually(lambda: len(self.late) >= count)
        return self.late


def purchase(dialect: str, **fields: str) -> Message:
    """A forwarded purchase as the pipeline would hand it over (no 11 or 7: the link fills them)."""
    demo = demo_networks.network(dialect)
    currency = str(demo.currencies[0])
    values = {
        2: PAN,
        3: "000000",
        4: "000000001000",
        32: demo.acquirer_id,
        37: "000000000001",
        41: "TERM0001",
        42: "MERCHANT0000001",
        49: currency,
    }
    values.update({int(k[1:]): v for k, v in fields.items()})
    return Message("0200", values)


_CODECS = {name: Codec(name) for name in DIALECTS}


@asynccontextmanager
async def linked(
    dialect: str,
    *,
    endpoints: tuple[str, ...] | None = None,
    primary: str | None = None,
    fake: FakeNetwork | None = None,
    inbound: Callable[[Message], object] | None = None,
    on_signed_on: Callable[[NetworkLink], Awaitable[None]] | None = None,
    wait_up: bool = True,
    **overrides: object,
) -> AsyncIterator[tuple[FakeNetwork, Switch]]:
    """A fake network and a running link to it; both stop when the block ends."""
    fake = fake or FakeNetwork(dialect)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        own = f"127.0.0.1:{fake.port}"
        config = network_config(dialect, endpoints or ((primary, own) if primary else (own,)), **overrides)
        metrics = Metrics.create(version="test", node_name="test")
        late: list[LateResponse] = []
        received: list[Message] = []
        codec = _CODECS[dialect]

        async def on_inbound(message: Message) -> Message | None:
            received.append(message)
            if inbound is not None:
                answer = inbound(message)
                return (await answer) if isinstance(answer, Awaitable) else answer  # type: ignore[return-value]
            return codec.response(message, response_code="00", updates={38: "A00001"})

        async def on_late(response: LateResponse) -> None:
            late.append(response)

        link = NetworkLink(
            config,
            codec,
            metrics,
            name=dialect,
            inbound=on_inbound,
            late=on_late,
            on_signed_on=on_signed_on,
            rng=random.Random(4),
        )
        await nursery.start(link.run)
        switch = Switch(link, metrics, late, received, nursery)
        if wait_up:
            await switch.wait_up()
        yield fake, switch
        nursery.cancel_scope.cancel()


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until `condition` holds (at most WAIT_S)."""
    with trio.fail_after(WAIT_S):
        # Link state and metrics have no event a test could wait on; a short poll is bounded above.
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.002)


async def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]
    for listener in listeners:
        await listener.aclose()
    return port


# -- sign-on, echo, reconnect ----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_sign_on_on_connect(dialect: str) -> None:
    """If the link connects, then it signs on (70 = 001 in the dialect's management MTI) and is up."""
    async with linked(dialect) as (fake, switch):
        (sign_on,) = management(fake.received, "001")
        assert sign_on.message.mti == ("0820" if dialect == "cups" else "0800")
        assert switch.link.up
        assert switch.sample("switch_network_link_up", endpoint=f"127.0.0.1:{fake.port}") == 1


@pytest.mark.parametrize("dialect", ["visa", "cups"])
async def test_requests_are_addressed_to_the_network(dialect: str) -> None:
    """If the link sends a request, then its header goes from our IDs to the network's (Visa, CUPS)."""
    async with linked(dialect) as (fake, _switch):
        header = management(fake.received, "001")[0].header
        demo = demo_networks.network(dialect)
        if isinstance(header, VisaHeader):
            assert (header.destination_id, header.source_id) == (demo.station_id, demo.our_station_id)
        else:
            assert isinstance(header, CupsHeader)
            assert (header.destination_id, header.source_id) == (demo.network_id, demo.forwarding_id)


async def test_cups_sign_on_carries_the_forwarding_id() -> None:
    """If the link signs on to CUPS, then the 0820 carries our forwarding ID in 33, as CUPS requires."""
    async with linked("cups") as (fake, _switch):
        assert (
            management(fake.received, "001")[0].message.get(33) == demo_networks.network("cups").forwarding_id
        )


async def test_refused_sign_on_keeps_the_link_down() -> None:
    """If the network answers the sign-on with a refusal, then the link is not up and tries again."""
    fake = FakeNetwork("shetab", sign_on_code="91")
    async with linked("shetab", fake=fake, wait_up=False) as (_fake, switch):
        await fake.wait_for(lambda p: p.message.get(70) == "001", count=2)
        assert not switch.link.up
        with pytest.raises(NetworkUnavailable):
            await switch.link.request(purchase("shetab"), timeout_s=1)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_echo_after_idle(dialect: str) -> None:
    """If nothing is received for echo_idle_s, then the link sends an echo (70 = 301) and stays up."""
    async with linked(dialect, echo_idle_s=0.05) as (fake, switch):
        await fake.wait_for(lambda p: p.message.get(70) == "301", count=2)
        assert switch.link.up and fake.connections == 1


async def test_unanswered_echo_reconnects() -> None:
    """If an echo is not answered within the deadline, then the link closes and signs on anew."""
    fake = FakeNetwork("visa", answer_echo=False)
    async with linked("visa", fake=fake, echo_idle_s=0.05, deadline_ms=100) as (_fake, switch):
        await fake.wait_for(lambda p: p.message.get(70) == "001", count=2)
        assert fake.connections == 2
        assert switch.sample("switch_network_reconnects_total") >= 1


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_reconnect_after_the_network_drops(dialect: str) -> None:
    """If the network closes the connection, then the link backs off, reconnects and signs on again."""
    async with linked(dialect) as (fake, switch):
        await fake.drop()
        await fake.wait_for(lambda p: p.message.get(70) == "001", count=2)
        await switch.wait_up()
        assert fake.connections == 2
        assert switch.sample("switch_network_reconnects_total") == 1


async def test_secondary_endpoint_when_the_primary_refuses() -> None:
    """If the primary endpoint refuses connections, then the link signs on at the secondary."""
    primary = f"127.0.0.1:{await closed_port()}"
    async with linked("cups", primary=primary) as (fake, switch):
        secondary = f"127.0.0.1:{fake.port}"
        assert fake.connections == 1 and switch.link.up
        assert switch.sample("switch_network_link_up", endpoint=secondary) == 1
        assert switch.sample("switch_network_link_up", endpoint=primary) == 0


async def test_retries_while_no_endpoint_answers() -> None:
    """If no endpoint accepts, then the link keeps retrying after backoffs, counted as reconnects."""
    endpoint = f"127.0.0.1:{await closed_port()}"
    async with linked("shetab", endpoints=(endpoint,), wait_up=False) as (_fake, switch):
        await eventually(lambda: switch.sample("switch_network_reconnects_total") >= 4)
        assert not switch.link.up


async def test_signed_on_hook_can_exchange_keys() -> None:
    """If the link signs on, then the on_signed_on hook runs and its key-exchange request is answered."""
    answers: list[Message | None] = []

    async def key_exchange(link: NetworkLink) -> None:
        exchange = await link.request(link.management_message("key_exchange"), timeout_s=WAIT_S)
        answers.append(exchange.response)

    async with linked("visa", on_signed_on=key_exchange) as (fake, _switch):
        request = await fake.wait_for(lambda p: p.message.get(70) == "101")
        await fake.answer(request[0], updates={48: "ZPK01"})
        await eventually(lambda: bool(answers))
    assert answers[0] is not None and answers[0][48] == "ZPK01"
    assert fake.received.index(management(fake.received, "001")[0]) < fake.received.index(request[0])


# -- requests and responses -----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_out_of_order_responses_are_matched(dialect: str) -> None:
    """If the network answers two requests in reverse order, then each caller gets its own response."""
    async with linked(dialect) as (fake, switch):
        results: dict[str, Message | None] = {}

        async def call(rrn: str) -> None:
            exchange = await switch.link.request(purchase(dialect, f37=rrn), timeout_s=WAIT_S)
            results[rrn] = exchange.response

        async with trio.open_nursery() as callers:
            callers.start_soon(call, "000000000001")
            callers.start_soon(call, "000000000002")
            first, second = await fake.wait_for(lambda p: p.message.mti == "0200", count=2)
            await fake.answer(second, "51")
            await fake.answer(first, "00")
        by_rrn = {p.message[37]: p.message[11] for p in (first, second)}
        for rrn, response in results.items():
            assert response is not None and response[11] == by_rrn[rrn]
        assert {rrn: r[39] for rrn, r in results.items() if r} == {
            first.message[37]: "00",
            second.message[37]: "51",
        }
        assert switch.sample("switch_network_responses_total", result="approved") >= 1
        assert switch.sample("switch_network_responses_total", result="declined") == 1


async def test_requests_ready_together_share_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """If several requests are ready at the same moment, then they reach the network in one write, each
    whole, and each caller still gets its own answer."""
    writes: list[bytes] = []
    send_all = trio.SocketStream.send_all
    async with linked("visa") as (fake, switch):

        async def counting(stream: trio.SocketStream, data: bytes) -> None:
            if stream.socket.getpeername()[1] == fake.port:  # the link's side, not the fake's answers
                writes.append(bytes(data))
            await send_all(stream, data)

        monkeypatch.setattr(trio.SocketStream, "send_all", counting)
        results: dict[str, Message | None] = {}

        async def call(rrn: str) -> None:
            results[rrn] = (await switch.link.request(purchase("visa", f37=rrn), timeout_s=WAIT_S)).response

        async with trio.open_nursery() as callers:
            for i in range(8):
                callers.start_soon(call, f"{i:012d}")
            for packet in await fake.wait_for(lambda p: p.message.mti == "0200", count=8):
                await fake.answer(packet)
        assert len(writes) == 1
        assert {rrn: r[37] for rrn, r in results.items() if r is not None} == {
            f"{i:012d}": f"{i:012d}" for i in range(8)
        }


async def test_request_whose_deadline_has_passed_is_not_sent() -> None:
    """If a request's deadline has passed when it is handed to the link, then it is not sent and its caller
    gets None (deadline), as if the network had not answered."""
    async with linked("shetab") as (fake, switch):
        exchange = await switch.link.request(purchase("shetab", f37="000000000009"), timeout_s=0)
        assert exchange.response is None
        assert switch.sample("switch_network_timeouts_total", reason="deadline") == 1
        async with trio.open_nursery() as callers:
            callers.start_soon(partial(switch.link.request, purchase("shetab"), timeout_s=WAIT_S))
            await fake.answer(await fake.wait_request("0200"))
        assert [p.message[37] for p in fake.received if p.message.mti == "0200"] == ["000000000001"]


async def test_link_fills_stan_and_transmission_time() -> None:
    """If a request has no 11 and 7, then the link sets its own STAN and the time it sends."""
    async with linked("visa") as (fake, switch):
        async with trio.open_nursery() as callers:
            callers.start_soon(partial(switch.link.request, purchase("visa"), timeout_s=WAIT_S))
            packet = await fake.wait_request("0200")
            await fake.answer(packet)
        stans = [int(p.message[11]) for p in fake.received]
        assert stans == sorted(set(stans))  # sign-on then the purchase: one counter, counting up
        assert len(packet.message[7]) == 10


async def test_exchange_returns_what_was_sent() -> None:
    """If a request is answered, then the exchange holds the message as sent (with 11 and 7) and the answer."""
    async with linked("shetab") as (fake, switch):
        network: Network = switch.link
        async with trio.open_nursery() as callers:
            outcome: list[object] = []

            async def call() -> None:
                outcome.append(await network.request(purchase("shetab"), timeout_s=WAIT_S))

            callers.start_soon(call)
            packet = await fake.wait_request("0200")
            await fake.answer(packet, updates={38: "ABC123"})
        (exchange,) = outcome
        assert exchange.sent == packet.message  # type: ignore[attr-defined]
        assert exchange.response[38] == "ABC123"  # type: ignore[attr-defined]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_timeout_then_late_response_goes_to_the_late_handler(dialect: str) -> None:
    """If the deadline passes, then the caller gets None and the late answer reaches the late handler
    with the request it answers."""
    async with linked(dialect) as (fake, switch):
        exchange = await switch.link.request(purchase(dialect), timeout_s=0.05)
        assert exchange.response is None
        assert switch.sample("switch_network_timeouts_total", reason="deadline") == 1
        packet = await fake.wait_request("0200")
        await fake.answer(packet, "00")
        (late,) = await switch.wait_late()
        assert (late.reason, late.request, late.response[39]) == ("late", exchange.sent, "00")
        assert switch.sample("switch_network_unmatched_responses_total", reason="late") == 1


async def test_duplicate_response_goes_to_the_late_handler() -> None:
    """If the network answers a request twice, then the caller gets the first and the copy is a duplicate."""
    async with linked("cups") as (fake, switch):
        async with trio.open_nursery() as callers:
            outcome: list[Message | None] = []

            async def call() -> None:
                outcome.append((await switch.link.request(purchase("cups"), timeout_s=WAIT_S)).response)

            callers.start_soon(call)
            packet = await fake.wait_request("0200")
            await fake.answer(packet, "00")
            await fake.answer(packet, "00")
        (late,) = await switch.wait_late()
        assert outcome[0] is not None
        assert (
            late.reason == "duplicate" and late.request is not None and late.request[11] == packet.message[11]
        )


async def test_unknown_response_goes_to_the_late_handler_without_request() -> None:
    """If a response matches no request the link ever sent, then the late handler gets it as unknown."""
    async with linked("shetab") as (fake, switch):
        stray = purchase("shetab", f11="424242", f7="0101000000").with_fields({39: "00"}, mti="0210")
        await fake.send(stray)
        (late,) = await switch.wait_late()
        assert (late.reason, late.request) == ("unknown", None)


async def test_full_pending_table_refuses_at_once() -> None:
    """If pending_max requests await answers, then the next request fails at once as unavailable."""
    async with linked("visa", pending_max=1) as (fake, switch), trio.open_nursery() as callers:
        callers.start_soon(partial(switch.link.request, purchase("visa"), timeout_s=WAIT_S))
        packet = await fake.wait_request("0200")
        with pytest.raises(NetworkUnavailable):
            await switch.link.request(purchase("visa"), timeout_s=WAIT_S)
        assert switch.sample("switch_network_unavailable_total", reason="pending_full") == 1
        assert switch.sample("switch_network_pending_requests") == 1
        await fake.answer(packet)


async def test_request_while_down_is_unavailable() -> None:
    """If no connection is signed on, then request() raises NetworkUnavailable without waiting."""
    endpoint = f"127.0.0.1:{await closed_port()}"
    async with linked("visa", endpoints=(endpoint,), wait_up=False) as (_fake, switch):
        with trio.fail_after(0.5), pytest.raises(NetworkUnavailable):
            await switch.link.request(purchase("visa"), timeout_s=WAIT_S)


async def test_connection_lost_ends_pending_requests_at_once() -> None:
    """If the connection drops while a request is pending, then the caller gets None without waiting
    for the deadline, and an answer on the next connection is a late answer with its request."""
    async with linked("shetab") as (fake, switch):
        outcome: list[Message | None] = []
        # The deadline is far away: only the lost connection can end the request within WAIT_S.
        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as callers:

                async def call() -> None:
                    outcome.append((await switch.link.request(purchase("shetab"), timeout_s=60)).response)

                callers.start_soon(call)
                packet = await fake.wait_request("0200")
                await fake.drop()
        assert outcome == [None]
        assert switch.sample("switch_network_timeouts_total", reason="connection_lost") == 1
        await switch.wait_up()
        await fake.answer(packet)
        (late,) = await switch.wait_late()
        assert late.reason == "late" and late.request is not None


async def test_visa_reject_ends_the_request() -> None:
    """If VisaNet bounces a request under a reject header, then the caller gets None at once."""
    async with linked("visa") as (fake, switch):
        outcome: list[Message | None] = []
        with trio.fail_after(WAIT_S):  # far before the request's own deadline
            async with trio.open_nursery() as callers:

                async def call() -> None:
                    outcome.append((await switch.link.request(purchase("visa"), timeout_s=60)).response)

                callers.start_soon(call)
                packet = await fake.wait_request("0200")
                assert isinstance(packet.header, VisaHeader)
                reject = VisaHeader(
                    destination_id=packet.header.source_id,
                    source_id=packet.header.destination_id,
                    reject_code="0012",
                )
                await fake.send_raw(fake.codec.encode_frame(packet.message, reject, packet.header))
        assert outcome == [None]
        assert switch.sample("switch_network_responses_total", result="rejected") == 1


# -- the network's requests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_inbound_request_is_answered_on_the_same_connection(dialect: str) -> None:
    """If the network sends a request, then the inbound handler's answer comes back with the reply header."""
    async with linked(dialect) as (fake, switch):
        request = purchase(dialect, f11="700001", f7="0101101010", f32=fake.demo.network_id)
        await fake.send(request, fake.header_to_switch())
        answer = await fake.wait_request("0210", "700001")
        assert switch.inbound == [request]
        assert answer.message[39] == "00" and answer.message[38] == "A00001"
        sent = fake.header_to_switch()
        if sent is not None:
            assert answer.header == sent.reply()


async def test_network_echo_is_answered_by_the_link() -> None:
    """If the network sends an echo, then the link answers it 00 itself (not the inbound handler)."""
    async with linked("cups") as (fake, switch):
        echo = Message("0820", {7: "0101101010", 11: "800001", 33: fake.demo.network_id, 70: "301"})
        await fake.send(echo, fake.header_to_switch())
        answer = await fake.wait_request("0830", "800001")
        assert answer.message[39] == "00" and switch.inbound == []


async def test_network_sign_off_closes_and_reconnects() -> None:
    """If the network signs off, then the link answers 00, closes and signs on again."""
    async with linked("shetab") as (fake, switch):
        await fake.send(Message("0800", {7: "0101101010", 11: "800002", 70: "002"}))
        await fake.wait_request("0810", "800002")
        await fake.wait_for(lambda p: p.message.get(70) == "001", count=2)
        await switch.wait_up()


async def test_inbound_overload_is_answered_91() -> None:
    """If pending_max network requests are being served, then the next one is answered 91 at once."""
    release = trio.Event()

    async def slow(message: Message) -> Message:
        await release.wait()
        return _CODECS["shetab"].response(message, response_code="00")

    async with linked("shetab", inbound=slow, pending_max=1) as (fake, _switch):
        await fake.send(purchase("shetab", f11="700005", f7="0101101010"))
        await fake.send(purchase("shetab", f11="700006", f7="0101101010"))
        refused = await fake.wait_request("0210", "700006")
        release.set()
        served = await fake.wait_request("0210", "700005")
    assert (refused.message[39], served.message[39]) == ("91", "00")


async def test_inbound_handler_failure_leaves_the_link_up() -> None:
    """If the inbound handler raises, then nothing is sent for that request and the link stays up."""

    def broken(_message: Message) -> Message:
        raise RuntimeError(f"bug while serving {PAN}")

    async with linked("visa", inbound=broken) as (fake, switch):
        await fake.send(purchase("visa", f11="700002", f7="0101101010"), fake.header_to_switch())
        await eventually(lambda: switch.sample("switch_network_frame_errors_total", reason="internal") >= 1)
        assert switch.link.up and not [p for p in fake.received if p.message.mti == "0210"]


# -- malformed frames --------------------------------------------------------------------------------------


def corrupt_frame(codec: Codec, message: Message, header: Header | None) -> bytes:
    """A frame whose framing and header are right but whose message body is cut short by one byte."""
    body = codec.encode_message(message)[:-1]
    head = HeaderCodec(codec.dialect.header.kind, codec.dialect.header.options, dialect=codec.name)
    return prefix_frame(codec.dialect.framing, head.encode(header, None, len(body)) + body)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_malformed_frame_is_counted_and_the_connection_survives(dialect: str) -> None:
    """If the network sends a frame whose message cannot be decoded, then it is counted and the
    connection carries on (a request on it is still answered)."""
    async with linked(dialect) as (fake, switch):
        stray = purchase(dialect, f11="123456", f7="0101000000").with_fields({39: "00"}, mti="0210")
        await fake.send_raw(corrupt_frame(fake.codec, stray, fake.header_to_switch()))
        async with trio.open_nursery() as callers:
            callers.start_soon(partial(switch.link.request, purchase(dialect), timeout_s=WAIT_S))
            await fake.answer(await fake.wait_request("0200"))
        assert switch.sample("switch_network_frame_errors_total", reason="decode") == 1
        assert fake.connections == 1


async def test_undecodable_request_is_answered_30() -> None:
    """If a request from the network cannot be decoded but its MTI can, then the answer is 30."""
    async with linked("shetab") as (fake, _switch):
        request = purchase("shetab", f11="700003", f7="0101101010")
        await fake.send_raw(corrupt_frame(fake.codec, request, None))
        answer = (await fake.wait_for(lambda p: p.message.mti == "0210"))[0]
        assert answer.message[39] == "30"


async def test_broken_framing_closes_and_reconnects() -> None:
    """If the network breaks the framing, then the link closes that connection and reconnects."""
    async with linked("shetab") as (fake, switch):
        await fake.send_raw(b"12x4" + b"0" * 10)
        await fake.wait_for(lambda p: p.message.get(70) == "001", count=2)
        assert switch.sample("switch_network_frame_errors_total", reason="framing") == 1


# -- drain --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_drain_signs_off_after_pending_requests(dialect: str) -> None:
    """If the link drains with a request pending, then the request is still answered, then the link
    signs off (70 = 002), closes, and refuses new requests."""
    async with linked(dialect) as (fake, switch):
        outcome: list[Message | None] = []

        async def call() -> None:
            outcome.append((await switch.link.request(purchase(dialect), timeout_s=WAIT_S)).response)

        async with trio.open_nursery() as tasks:
            tasks.start_soon(call)
            packet = await fake.wait_request("0200")
            tasks.start_soon(switch.link.drain, WAIT_S)
            await trio.sleep(0.02)
            assert not management(fake.received, "002")  # not before the pending request is answered
            with pytest.raises(NetworkUnavailable):
                await switch.link.request(purchase(dialect), timeout_s=WAIT_S)
            await fake.answer(packet)
        assert outcome[0] is not None
        (sign_off,) = management(fake.received, "002")
        assert fake.received.index(sign_off) > fake.received.index(packet)
        assert not switch.link.up
        await fake.wait_closed()


async def test_drain_deadline_cuts_an_unanswered_request() -> None:
    """If a pending request is not answered within the drain timeout, then drain still signs off and ends."""
    async with linked("visa") as (fake, switch):
        async with trio.open_nursery() as tasks:
            tasks.start_soon(partial(switch.link.request, purchase("visa"), timeout_s=60))
            await fake.wait_request("0200")
            with trio.fail_after(WAIT_S):
                await switch.link.drain(0.05)
        assert not switch.link.up


# -- card safety --------------------------------------------------------------------------------------------


async def test_link_logs_carry_no_card_data() -> None:
    """If requests time out, answers come late, frames are malformed and handlers fail, then the log
    lines name MTIs, STANs and codes but never the PAN or track data."""
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)

    def broken(_message: Message) -> Message:
        raise RuntimeError(f"bug while serving {PAN}")

    async with linked("shetab", inbound=broken) as (fake, switch):
        exchange = await switch.link.request(purchase("shetab", f35=TRACK2), timeout_s=0.02)
        packet = await fake.wait_request("0200")
        await fake.answer(packet)
        await switch.wait_late()
        await fake.send_raw(corrupt_frame(fake.codec, packet.message, None))
        await fake.send(purchase("shetab", f11="700004", f7="0101101010"))
        await eventually(lambda: switch.sample("switch_network_frame_errors_total", reason="internal") >= 1)
        await fake.drop()
        await switch.wait_up()
    text = out.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    events = {line["event"] for line in lines}
    assert {
        "request unanswered",
        "unmatched response",
        "undecodable frame from the network",
        "network request not answered",
        "link closed",
        "link signed on",
    } <= events
    assert exchange.sent[2] == PAN
    assert PAN not in text and TRACK2 not in text
    exposition = generate_latest(switch.metrics.registry).decode()
    assert "switch_network_unmatched_responses_total" in exposition and PAN not in exposition
