"""What the netsim tests drive it with: a running netsim, a member client over real TCP, an HTTP client.

The member client plays the switch on the link: the dialect's codec and header from switch.iso, key
exchange answers unwrapped under the ZMK and PIN blocks built with hsm.crypto, a reader task that puts
every packet from netsim in an inbox and, when `answer` is set, answers netsim's own requests (the
issuer side of the switch, reduced to a function). Nothing here imports the switch's pipeline.
"""

from __future__ import annotations

import importlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import trio

from hsm.crypto.pinblock import encrypt_pin_block
from simulators.netsim import Netsim, NetsimConfig
from simulators.netsim.keys import ZoneKey, field53, parse_field48
from specs.demo import demo_pan
from specs.demo_networks import DemoNetwork, network
from switch.iso.codec import Codec, KeepAlive, Packet
from switch.iso.headers import CupsHeader, Header, VisaHeader
from switch.iso.interchange import is_reject
from switch.iso.message import Message

NETWORKS = ("visa", "cups", "shetab")
WAIT_S = 5.0  # bound for what happens at once; tests take milliseconds when all is well


def card(name: str, index: int = 1, *, bin_index: int = 0) -> str:
    """Card `index` of a network's BIN number `bin_index` (2 to 6 of the first BIN are special cards)."""
    return demo_pan(network(name).bins[bin_index], index)


class Clock:
    """A monotonic clock the test moves by hand (key grace periods of minutes, tested in no time)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@asynccontextmanager
async def running_netsim(name: str, **overrides: Any) -> AsyncIterator[Netsim]:
    """A netsim on free ports in this test's trio loop, cancelled when the block ends."""
    options: dict[str, Any] = {"port": 0, "control_port": 0, "var_dir": None, "originate_timeout_s": 2.0}
    clock = overrides.pop("monotonic", None)
    options.update(overrides)
    config = NetsimConfig(network=network(name), **options)
    netsim = Netsim(config, **({"monotonic": clock} if clock is not None else {}))
    async with trio.open_nursery() as nursery:
        await nursery.start(netsim.run)
        try:
            yield netsim
        finally:
            nursery.cancel_scope.cancel()


# -- the member (the switch's side of the link) --------------------------------------------------------


@dataclass
class Member:
    netsim_port: int
    demo: DemoNetwork
    stream: trio.SocketStream
    answer: Callable[[Message], Message | None] | None = None  # the issuer side, for /originate tests
    requests: list[Message] = field(default_factory=list)  # requests netsim sent us
    keys: dict[int, ZoneKey] = field(default_factory=dict)
    current_key: ZoneKey | None = None
    closed: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self.codec = Codec(self.demo.name)
        self.management = importlib.import_module(f"specs.{self.demo.name}").NETWORK_MANAGEMENT
        self.zmk = bytes.fromhex(self.demo.zmk_hex)
        self._send_inbox, self.inbox = trio.open_memory_channel[Packet](1000)
        self._stans = itertools.count(1)
        self._lock = trio.Lock()

    @property
    def header(self) -> Header | None:
        """Our requests' header: from the member to the network."""
        if self.demo.name == "visa":
            return VisaHeader(destination_id=self.demo.station_id, source_id=self.demo.our_station_id)
        if self.demo.name == "cups":
            return CupsHeader(destination_id=self.demo.network_id, source_id=self.demo.forwarding_id)
        return None

    def stan(self) -> str:
        return f"{next(self._stans):06d}"

    async def send(self, message: Message, header: Header | None = None) -> None:
        async with self._lock:
            await self.stream.send_all(self.codec.encode_frame(message, header or self.header))

    async def next_packet(self, timeout_s: float = WAIT_S) -> Packet:
        with trio.fail_after(timeout_s):
            return await self.inbox.receive()

    async def maybe_packet(self, timeout_s: float) -> Packet | None:
        with trio.move_on_after(timeout_s):
            return await self.inbox.receive()
        return None

    async def request(self, message: Message, timeout_s: float = WAIT_S) -> Message:
        """Send and return the next packet's message (tests send one request at a time)."""
        await self.send(message)
        return (await self.next_packet(timeout_s)).message

    async def read_loop(self) -> None:
        framer = self.codec.framer(frame_bytes_max=8192)
        try:
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                framer.receive_data(bytes(data))
                for payload in framer:
                    decoded = self.codec.decode_payload(payload)
                    if isinstance(decoded, KeepAlive):
                        continue
                    message = decoded.message
                    is_request = int(message.mti[2]) % 2 == 0
                    if self.answer is not None and is_request and not is_reject(decoded.header):
                        self.requests.append(message)
                        response = self.answer(message)
                        if response is not None:
                            reply = decoded.header.reply() if decoded.header is not None else None
                            await self.send(response, reply)
                        continue
                    await self._send_inbox.send(decoded)
        finally:
            self.closed.set()

    # -- network management --------------------------------------------------------------------------

    def management_message(self, action: str) -> Message:
        fields = {7: now_f7(), 11: self.stan(), 70: self.management[action]}
        if self.demo.name == "cups":
            fields[33] = self.demo.forwarding_id
        return Message(self.management["mti"], fields)

    async def sign_on(self) -> Message:
        return await self.request(self.management_message("sign_on"))

    async def key_exchange(self) -> Message:
        """Ask for a key; keep it when its check value verifies (as the switch's HSM would)."""
        response = await self.request(self.management_message("key_exchange"))
        if response.get(39) == "00":
            zone_key = parse_field48(response.get(48), self.zmk)
            self.keys[zone_key.index] = zone_key
            self.current_key = zone_key
        return response

    async def ready(self) -> None:
        """Signed on and holding a key, as the switch is after connecting."""
        assert (await self.sign_on()).get(39) == "00"
        assert (await self.key_exchange()).get(39) == "00"

    # -- financial requests --------------------------------------------------------------------------

    def financial(
        self,
        pan: str,
        *,
        mti: str = "0200",
        amount_minor: int = 1000,
        currency: int | None = None,
        processing: str = "000000",
        pin: str | None = None,
        key: ZoneKey | None = None,
        expiry: str = "3012",
        track: bool = False,
        extra: dict[int, str] | None = None,
    ) -> Message:
        """A request as the switch forwards it: every field any of the three dialects requires."""
        stan = self.stan()
        now = datetime.now(UTC)
        demo = self.demo
        fields: dict[int, str] = {
            3: processing,
            4: f"{amount_minor:012d}",
            7: now.strftime("%m%d%H%M%S"),
            11: stan,
            12: now.strftime("%H%M%S"),
            13: now.strftime("%m%d"),
            18: "5411",
            22: "0210" if demo.name == "visa" else "021",
            25: "00",
            32: demo.acquirer_id,
            37: f"{now:%y%j}{int(stan):07d}",
            41: "POS00001",
            42: "DEMOMERCHANT001",
            49: f"{currency if currency is not None else demo.currencies[0]:03d}",
            100: demo.network_id,
        }
        if track:
            separator = "D" if demo.name == "visa" else "="
            fields[35] = f"{pan}{separator}{expiry}2011000000000"
        if not track or demo.name == "cups":
            fields[2] = pan
            fields[14] = expiry
        if demo.name == "cups":
            fields[33] = demo.forwarding_id
            fields[60] = "0000020003"
        if pin is not None:
            zone_key = key or self.current_key
            assert zone_key is not None, "exchange keys first"
            fields[52] = encrypt_pin_block(pin, pan, 0, zone_key.key).hex().upper()
            fields[53] = field53(zone_key.index)
        fields.update(extra or {})
        return Message(mti, fields)

    def reversal(
        self,
        original: Message,
        *,
        mti: str = "0420",
        actual_minor: int | None = None,
        same_stan_as: Message | None = None,
    ) -> Message:
        """A reversal naming `original` in field 90 (a repeat reuses `same_stan_as`'s STAN and time)."""
        fields = {n: v for n, v in original.items() if n in (2, 3, 4, 32, 33, 37, 41, 42, 49, 60, 100)}
        fields[7] = same_stan_as[7] if same_stan_as is not None else now_f7()
        fields[11] = same_stan_as[11] if same_stan_as is not None else self.stan()
        fields[90] = (
            original.mti
            + original[11]
            + original[7]
            + (original.get(32) or "").rjust(11, "0")
            + (original.get(33) or "").rjust(11, "0")
        )
        if actual_minor is not None:
            fields[95] = f"{actual_minor:012d}" * 2 + "0" * 18
        return Message(mti, fields)


def now_f7() -> str:
    return datetime.now(UTC).strftime("%m%d%H%M%S")


@asynccontextmanager
async def connected(netsim: Netsim, **member_options: Any) -> AsyncIterator[Member]:
    """A member connection to `netsim`'s link with its reader running."""
    assert netsim.ready is not None
    stream = await trio.open_tcp_stream("127.0.0.1", netsim.ready.link_port)
    member = Member(netsim.ready.link_port, netsim.network, stream, **member_options)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(member.read_loop)
        try:
            yield member
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await stream.aclose()


# -- HTTP ------------------------------------------------------------------------------------------------


async def http(
    netsim: Netsim, method: str, path: str, body: object = None, *, raw: bytes | None = None
) -> tuple[int, Any]:
    """One request to the control API over TCP: (status, decoded JSON)."""
    assert netsim.ready is not None
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    stream = await trio.open_tcp_stream("127.0.0.1", netsim.ready.control_port)
    async with stream:
        await stream.send_all(head + payload)
        data = b""
        with trio.fail_after(WAIT_S * 4):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head_bytes, _, body_bytes = data.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    return status, json.loads(body_bytes)


async def balance(netsim: Netsim, pan: str, currency: int | None = None) -> int:
    """The card's available balance in `currency` (default the network's first), via POST /balance."""
    status, body = await http(netsim, "POST", "/balance", {"pan": pan})
    assert status == 200, body
    code = f"{currency if currency is not None else netsim.network.currencies[0]:03d}"
    return int(body["balances"][code]["available_minor"])
