"""One simulated network (`Netsim`): its link listener, issuer, acquirer, faults and control API.

docs/networks.md is the contract. The member switch connects to the link port and signs on; netsim
answers network management (sign-on, sign-off, echo, key exchange) on any connection, and financial
requests only on a connection that is signed on. Each request is decided by the `Issuer` the moment
it arrives (so a reversal that follows its original always finds it applied) and its answer goes out
after the fault draw's delay, from a task of the connection's nursery, so that a late answer never
holds up the next request. Answers with no delay go out inline, in order. Requests netsim originates
(`originate`) go on a signed-on connection and wait for the member's answer in a table keyed by
(request MTI, STAN, field 7).

`Netsim` has no globals: build one from a `NetsimConfig`, run `await netsim.run(task_status=...)` in a
nursery (it reports a `ReadyInfo` with the bound ports) and cancel the nursery to stop it. Clocks, the
random source and the key generator can be injected, so tests can drive the grace period and the
fault draws; the CLI (`simulators.netsim.cli`) uses the real ones.

Not modelled (yet): completions of pre-authorizations, network-initiated echo or sign-on toward the
member, checks of the header's addresses on what arrives, MACs on the link, and state that survives a
restart (the books live in memory; only the clearing file is on disk).
"""

from __future__ import annotations

import gc
import importlib
import itertools
import os
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import trio

from simulators.messages import SimulatorError, demo_card
from simulators.netsim.acquirer import OriginateError, OriginateSpec, Originator, parse_originate
from simulators.netsim.clearing import ClearingFile, ClearingRecord
from simulators.netsim.control import HttpError, HttpRequest, json_body, serve_control
from simulators.netsim.faults import FaultError, Faults, draw
from simulators.netsim.issuer import Issuer, base_mti, identity, pan_of
from simulators.netsim.keys import ZoneKey, ZpkRing, corrupted_kcv, field48, parse_field53
from simulators.netsim.ledger import CardBase, Effect, Entry, Ledger
from specs.demo_networks import DemoNetwork
from switch.iso.codec import Codec, KeepAlive, Packet
from switch.iso.errors import IsoError
from switch.iso.headers import CupsHeader, Header, VisaHeader
from switch.iso.interchange import is_reject
from switch.iso.message import Message
from switch.logs import get_logger
from switch.masking import mask_pan

__all__ = ["DEFAULT_VAR_DIR", "REJECT_CODES", "Netsim", "NetsimConfig", "NetsimError", "ReadyInfo"]

DEFAULT_VAR_DIR = Path("var/netsim")
RECEIVE_BYTES = 65536
STAN_MAX = 999_999
ORIGINATED_KEPT_MAX = 10_000  # originated requests remembered for a later /originate 0420
# Reject codes netsim puts in a reject header. Assumption: the networks' own reject reason codes are
# not public; these say "message rejected" and nothing more.
REJECT_CODES: dict[str, str] = {"visa": "0001", "cups": "00001"}


class NetsimError(Exception):
    """A control request that cannot be served now (HTTP status and a safe message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class NetsimConfig:
    """Everything a netsim is started with; units in the names."""

    network: DemoNetwork
    host: str = "127.0.0.1"
    port: int | None = None  # None: the network's demo port; 0: any free port
    control_port: int | None = None  # likewise
    var_dir: Path | None = DEFAULT_VAR_DIR  # clearing files under <var_dir>/<network>/; None: none
    key_grace_s: float = 300.0  # the previous ZPK stays accepted this long after a key exchange
    keep_key: bool = False  # key exchanges repeat the current key until POST /rekey
    faults: Faults = field(default_factory=Faults)
    seed: int | None = None  # of the fault draws; None: a random run
    originate_timeout_s: float = 10.0  # wait for the member's answer to an originated request
    reversal_attempts: int = 3  # an originated reversal (advice): the 0420 (0220) then 0421 (0221) repeats
    frame_bytes_max: int = 8192
    connections_max: int = 16
    in_flight_max: int = 1024  # delayed answers waiting per connection before reading pauses
    link_idle_timeout_s: float = 600.0  # a connection silent this long is closed
    pin_tries_max: int = 3
    # Answers and ledger entries remembered for repeats and reversals (~2 KB each: 200,000 is ~400 MB).
    history_max: int = 200_000
    log_messages: bool = True  # one log line per message (off for benchmarks; counters stay)
    # Once listening: collect, then move everything built so far out of the cycle collector's reach
    # (gc.freeze), so that full collections do not walk the long-lived books (their containers and the
    # card base). The command line sets it; an in-process netsim (tests) leaves the host process alone.
    freeze_gc_when_ready: bool = False


@dataclass(frozen=True, slots=True)
class ReadyInfo:
    host: str
    link_port: int
    control_port: int


@dataclass(eq=False)
class _Connection:
    id: int
    stream: trio.SocketStream
    peer: str
    opened_at: float
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    send_lock: trio.Lock = field(default_factory=trio.Lock)
    signed_on: bool = False
    messages_in: int = 0
    close_reason: str = "closed by the member"


@dataclass(eq=False)
class _Waiter:
    done: trio.Event = field(default_factory=trio.Event)
    response: Message | None = None


def _response_key(message: Message) -> tuple[str, str, str]:
    # 0210 answers 0200, 0430 answers 0420 (and its 0421 repeats).
    request_mti = message.mti[:2] + str(int(message.mti[2]) - 1) + "0"
    return (request_mti, message.get(11) or "", message.get(7) or "")


class Netsim:
    """One network toward one member switch. See the module docstring."""

    def __init__(
        self,
        config: NetsimConfig,
        *,
        log: Any = None,
        monotonic: Callable[[], float] = time.monotonic,
        utc_now: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_key: Callable[[], bytes] | None = None,
    ) -> None:
        network = config.network
        self.config = config
        self.network: DemoNetwork = network
        self.codec = Codec(network.name)
        self.management: Mapping[str, str] = importlib.import_module(
            f"specs.{network.name}"
        ).NETWORK_MANAGEMENT
        self.zmk = bytes.fromhex(network.zmk_hex)
        self.ring = ZpkRing(grace_s=config.key_grace_s, **({"new_key": new_key} if new_key else {}))
        self.ledger = Ledger(CardBase(network), history_max=config.history_max)
        self.issuer = Issuer(
            network,
            codec=self.codec,
            ledger=self.ledger,
            ring=self.ring,
            pin_tries_max=config.pin_tries_max,
            history_max=config.history_max,
        )
        self.originator = Originator(network)
        self.clearing = ClearingFile(config.var_dir / network.name if config.var_dir is not None else None)
        self.faults = Faults().updated(config.faults.to_json(), has_header=self.has_header)
        self.rng = random.Random(config.seed)
        self.counters: Counter[str] = Counter()
        self.log = log if log is not None else get_logger("netsim", network=network.name)
        self._monotonic = monotonic
        self._utc_now = utc_now
        self._connections: dict[int, _Connection] = {}
        self._connection_ids = itertools.count(1)
        self._waiters: dict[tuple[str, str, str], _Waiter] = {}
        self._originated: OrderedDict[str, Message] = OrderedDict()
        # A random start unless seeded: a restarted netsim must not repeat the identities (STAN + field 7)
        # and RRNs the member has already seen today.
        start = random.Random(config.seed) if config.seed is not None else random.SystemRandom()
        self._stan = start.randint(1, STAN_MAX)
        self._rrn = itertools.count(start.randint(1, 5_000_000))
        self.rekey_pending = False
        self.ready: ReadyInfo | None = None

    @property
    def has_header(self) -> bool:
        return self.codec.default_header is not None

    @property
    def up(self) -> bool:
        """True while at least one member connection is signed on."""
        return any(conn.signed_on for conn in self._connections.values())

    # -- running -------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[ReadyInfo] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on the link and control ports until cancelled."""
        config = self.config
        link_port = config.port if config.port is not None else self.network.port
        control_port = config.control_port if config.control_port is not None else self.network.control_port
        link_listeners = await trio.open_tcp_listeners(link_port, host=config.host)
        control_listeners = await trio.open_tcp_listeners(control_port, host=config.host)
        info = ReadyInfo(
            host=config.host,
            link_port=link_listeners[0].socket.getsockname()[1],
            control_port=control_listeners[0].socket.getsockname()[1],
        )
        self.ready = info
        if config.freeze_gc_when_ready:
            gc.collect()
            gc.freeze()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._serve_link, link_listeners)
            nursery.start_soon(
                partial(serve_control, control_listeners, self._control, on_error=self._control_error)
            )
            self.log.info(
                f"netsim ready: {self.network.name} link on {info.host}:{info.link_port}, "
                f"control API on http://{info.host}:{info.control_port}",
                event_kind="ready",
                link=f"{info.host}:{info.link_port}",
                control=f"{info.host}:{info.control_port}",
                dialect=self.codec.name,
                pid=os.getpid(),
            )
            task_status.started(info)

    def _control_error(self, name: str) -> None:
        self.counters["control_errors"] += 1
        self.log.error("netsim_control_error", error=name)

    # -- the link ------------------------------------------------------------------------------------

    async def _serve_link(self, stream: trio.SocketStream) -> None:
        if len(self._connections) >= self.config.connections_max:
            self.counters["connections_refused"] += 1
            self.log.warning("netsim_link_refused", reason="connections_max reached")
            await stream.aclose()
            return
        peer = stream.socket.getpeername()
        conn = _Connection(
            id=next(self._connection_ids),
            stream=stream,
            peer=f"{peer[0]}:{peer[1]}",
            opened_at=self._monotonic(),
        )
        self._connections[conn.id] = conn
        self.counters["connections_accepted"] += 1
        self.log.info("netsim_link_connected", connection=conn.id, peer=conn.peer)
        try:
            with conn.cancel_scope:
                async with trio.open_nursery() as nursery:
                    await self._read_loop(conn, nursery)
                    nursery.cancel_scope.cancel()
        finally:
            del self._connections[conn.id]
            with trio.CancelScope(shield=True):
                await stream.aclose()
            self.log.info(
                "netsim_link_closed",
                connection=conn.id,
                reason=conn.close_reason,
                messages_in=conn.messages_in,
            )

    async def _read_loop(self, conn: _Connection, nursery: trio.Nursery) -> None:
        framer = self.codec.framer(frame_bytes_max=self.config.frame_bytes_max)
        delayed = trio.Semaphore(self.config.in_flight_max)
        while True:
            data = b""
            with trio.move_on_after(self.config.link_idle_timeout_s) as idle:
                try:
                    data = await conn.stream.receive_some(RECEIVE_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    conn.close_reason = "connection lost"
                    return
            if idle.cancelled_caught:
                conn.close_reason = f"idle for {self.config.link_idle_timeout_s:g} s"
                return
            if not data:
                return
            try:
                framer.receive_data(bytes(data))
                payloads = list(framer)
            except IsoError as exc:
                self.counters["framing_errors"] += 1
                conn.close_reason = f"framing error: {exc}"
                return
            for payload in payloads:
                try:
                    decoded = self.codec.decode_payload(payload)
                except IsoError as exc:
                    # The error names field and offset only (switch.iso never keeps data in errors).
                    self.counters["undecodable"] += 1
                    self.log.warning("netsim_undecodable", connection=conn.id, error=str(exc))
                    continue
                if isinstance(decoded, KeepAlive):
                    continue
                conn.messages_in += 1
                await self._on_packet(conn, decoded, nursery, delayed)
                drop_after = self.faults.drop_after
                if drop_after is not None and conn.messages_in >= drop_after:
                    self.counters["drops"] += 1
                    conn.close_reason = f"drop_after={drop_after} fault"
                    return

    async def _on_packet(
        self, conn: _Connection, packet: Packet, nursery: trio.Nursery, delayed: trio.Semaphore
    ) -> None:
        message = packet.message
        self.counters[f"in_{message.mti}"] += 1
        if is_reject(packet.header):
            self.counters["rejects_received"] += 1
            self._log_message("in", conn, message, rejected=True)
            return
        self._log_message("in", conn, message)
        if message.mti[2] not in "024":
            self._on_response(message)
            return
        financial = message.mti[1] != "8"
        fate = draw(self.faults, self.rng, financial=financial)
        header = packet.header.reply() if packet.header is not None else None
        if fate.reject:
            self.counters["rejects_sent"] += 1
            reject, original = self._reject_header(packet.header)
            await self._answer(conn, message, reject, original, fate.delay_s, 1, nursery, delayed, "reject")
            return
        if financial:
            outcome = self.issuer.handle(
                message,
                now=self._monotonic(),
                now_utc=self._utc_now(),
                signed_on=conn.signed_on,
                decline_code=self.faults.decline_code if fate.decline else None,
            )
            self.counters[outcome.outcome] += 1
            if outcome.clearing is not None:
                self.clearing.append(outcome.clearing)
            response = outcome.response
        else:
            response = self._network_management(conn, message)
        if response is None:
            return
        if not fate.answer:
            self.counters["no_answer"] += 1
            self._log_message("out", conn, response, fault="no_answer", sent=False)
            return
        if fate.late:
            self.counters["late"] += 1
        copies = 2 if fate.duplicate else 1
        if fate.duplicate:
            self.counters["duplicates"] += 1
        fault = "late" if fate.late else ("duplicate" if fate.duplicate else None)
        await self._answer(conn, response, header, None, fate.delay_s, copies, nursery, delayed, fault)

    def _reject_header(self, header: Header | None) -> tuple[Header, Header | None]:
        """The reject header of the answer, and the original header a Visa reject carries after it."""
        code = REJECT_CODES[self.network.name]
        if isinstance(header, VisaHeader):
            return replace(header.reply(), reject_code=code), header
        # Faults refuses reject_share on a dialect without a header, so this is CUPS.
        assert isinstance(header, CupsHeader)
        return replace(header.reply(), reject_code=code), None

    async def _answer(
        self,
        conn: _Connection,
        message: Message,
        header: Header | None,
        original_header: Header | None,
        delay_s: float,
        copies: int,
        nursery: trio.Nursery,
        delayed: trio.Semaphore,
        fault: str | None,
    ) -> None:
        if delay_s <= 0:
            for _ in range(copies):
                await self._send(conn, message, header, original_header, fault)
            return
        # Reading pauses while in_flight_max answers are waiting: the member's sends then back up.
        await delayed.acquire()

        async def later() -> None:
            try:
                await trio.sleep(delay_s)
                for _ in range(copies):
                    await self._send(conn, message, header, original_header, fault)
            finally:
                delayed.release()

        nursery.start_soon(later)

    async def _send(
        self,
        conn: _Connection,
        message: Message,
        header: Header | None,
        original_header: Header | None = None,
        fault: str | None = None,
    ) -> bool:
        try:
            frame = self.codec.encode_frame(message, header, original_header)
        except IsoError as exc:
            self.counters["encode_errors"] += 1
            self.log.error("netsim_encode_error", connection=conn.id, mti=message.mti, error=str(exc))
            return False
        try:
            async with conn.send_lock:
                await conn.stream.send_all(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.counters["send_failed"] += 1
            return False
        self.counters[f"out_{message.mti}"] += 1
        self._log_message("out", conn, message, **({"fault": fault} if fault else {}))
        return True

    def _log_message(self, direction: str, conn: _Connection, message: Message, **extra: object) -> None:
        """One line per message, from chosen fields only: never track, PIN block, keys or a clear PAN."""
        if not self.config.log_messages:
            return
        line: dict[str, object] = {
            "direction": direction,
            "connection": conn.id,
            "mti": message.mti,
            "stan": message.get(11),
        }
        pan = pan_of(message)
        if pan is not None:
            line["card"] = mask_pan(pan)
        for number, name in ((70, "nm_code"), (4, "amount_minor"), (49, "currency"), (39, "response_code")):
            value = message.get(number)
            if value is not None:
                line[name] = int(value) if number == 4 and value.isdigit() else value
        if 52 in message:
            line["pin_key_index"] = parse_field53(message.get(53))
        line.update(extra)
        self.log.info("netsim_message", **line)

    # -- network management --------------------------------------------------------------------------

    def _network_management(self, conn: _Connection, message: Message) -> Message:
        code = message.get(70)
        nm = self.management
        if code == nm["sign_on"]:
            conn.signed_on = True
            self.counters["sign_ons"] += 1
            self.log.info("netsim_signed_on", connection=conn.id)
            return self.codec.response(message, response_code="00")
        if code == nm["sign_off"]:
            conn.signed_on = False
            self.counters["sign_offs"] += 1
            self.log.info("netsim_signed_off", connection=conn.id)
            return self.codec.response(message, response_code="00")
        if code == nm["echo"]:
            self.counters["echoes"] += 1
            return self.codec.response(message, response_code="00")
        if code == nm["key_exchange"]:
            return self._key_exchange(conn, message)
        self.counters["unknown_network_management"] += 1
        return self.codec.response(message, response_code=self.issuer_code("invalid_transaction"))

    def issuer_code(self, result: str) -> str:
        for code, name in self.issuer.codes.items():
            if name == result:
                return code
        raise KeyError(result)

    def _key_exchange(self, conn: _Connection, message: Message) -> Message:
        current = self.ring.current
        rotate = current is None or not self.config.keep_key or self.rekey_pending
        offered: ZoneKey = self.ring.candidate() if rotate or current is None else current
        self.counters["key_exchanges"] += 1
        if self.faults.bad_kcv:
            # Corrupted in transit, as far as both sides can tell: the member must refuse it, so the
            # network does not adopt it either and both stay on the key they had.
            self.faults = replace(self.faults, bad_kcv=False)
            self.counters["bad_kcv_sent"] += 1
            value = field48(offered, self.zmk, kcv=corrupted_kcv(offered.kcv))
            self.log.warning("netsim_key_exchange", connection=conn.id, key_index=offered.index, bad_kcv=True)
        else:
            self.ring.adopt(offered, self._monotonic())
            self.rekey_pending = False
            value = field48(offered, self.zmk)
            self.log.info("netsim_key_exchange", connection=conn.id, key_index=offered.index, kcv=offered.kcv)
        return self.codec.response(message, response_code="00", updates={48: value})

    # -- the member's answers to what netsim originated ----------------------------------------------

    def _on_response(self, message: Message) -> None:
        waiter = self._waiters.get(_response_key(message))
        if waiter is None or waiter.done.is_set():
            self.counters["unmatched_responses"] += 1
            return
        waiter.response = message
        waiter.done.set()

    def _signed_on_connection(self) -> _Connection | None:
        for conn in self._connections.values():
            if conn.signed_on:
                return conn
        return None

    def _next_stan(self) -> str:
        stan = self._stan
        self._stan = 1 if stan >= STAN_MAX else stan + 1
        return f"{stan:06d}"

    def _next_rrn(self, now_utc: datetime) -> str:
        return f"{now_utc:%y%j}{next(self._rrn) % 10_000_000:07d}"

    async def _exchange(self, message: Message, timeout_s: float) -> tuple[Message | None, float]:
        """Send one request on a signed-on connection and wait for its answer: (answer or None, ms)."""
        conn = self._signed_on_connection()
        if conn is None:
            return None, 0.0
        key = (base_mti(message.mti), message.get(11) or "", message.get(7) or "")
        waiter = _Waiter()
        self._waiters[key] = waiter
        started = time.perf_counter()
        try:
            if await self._send(conn, message, self.originator.header()):
                with trio.move_on_after(timeout_s):
                    await waiter.done.wait()
        finally:
            del self._waiters[key]
        return waiter.response, (time.perf_counter() - started) * 1000.0

    async def originate(self, spec: OriginateSpec) -> list[dict[str, object]]:
        """Send what `spec` asks for to the member, one request after the other; each one's result.

        NetsimError(409) when no member connection is signed on, or a PIN is asked for and no key
        exchange has happened yet; (400) for an unusable card or an unknown original.
        """
        if self._signed_on_connection() is None:
            raise NetsimError(409, "no signed-on member connection: the link is down")
        timeout_s = spec.timeout_s if spec.timeout_s is not None else self.config.originate_timeout_s
        if spec.mti == "0420":
            assert spec.original_stan is not None
            original = self._originated.get(spec.original_stan)
            if original is None:
                raise NetsimError(400, "no originated request with that original_stan is remembered")
            return [await self._reverse_originated(original, spec.actual_amount_minor, timeout_s)]
        try:
            card = demo_card(spec.pan)
        except SimulatorError as exc:
            raise NetsimError(400, str(exc)) from None
        results: list[dict[str, object]] = []
        for _ in range(spec.count):
            zone_key = self.ring.current
            if self.faults.stale_key and self.ring.previous is not None:
                zone_key = self.ring.previous
            now = self._utc_now()
            try:
                request = self.originator.request(
                    spec,
                    card,
                    stan=self._next_stan(),
                    now_utc=now,
                    rrn=self._next_rrn(now),
                    zone_key=zone_key,
                )
            except SimulatorError as exc:
                raise NetsimError(409, str(exc)) from None
            self._originated[request[11]] = request
            if len(self._originated) > ORIGINATED_KEPT_MAX:
                self._originated.popitem(last=False)
            self.counters["originated"] += 1
            if request.mti == "0220":
                response, latency_ms = await self._advise(request, timeout_s)
            else:
                response, latency_ms = await self._exchange(request, timeout_s)
            result = self._result(request, response, latency_ms)
            if response is None:
                self.counters["originated_timeouts"] += 1
                if request.mti != "0220":  # an advice is repeated until answered, never reversed
                    # As an acquirer must: a request left unanswered is reversed, in case it was applied.
                    result["reversal"] = await self._reverse_originated(request, None, timeout_s)
            elif response.get(39) == "00":
                self._record_acquired(request, response)
                if spec.reverse:
                    result["reversal"] = await self._reverse_originated(
                        request, spec.actual_amount_minor, timeout_s
                    )
            results.append(result)
        return results

    def _result(self, request: Message, response: Message | None, latency_ms: float) -> dict[str, object]:
        pan = pan_of(request)
        return {
            "mti": request.mti,
            "stan": request.get(11),
            "transmission": request.get(7),
            "rrn": request.get(37),
            "card": mask_pan(pan) if pan else None,
            "amount_minor": int(request.get(4) or "0"),
            "currency": int(request.get(49) or "0"),
            "pin_key_index": parse_field53(request.get(53)),
            "response_mti": response.mti if response is not None else None,
            "response_code": response.get(39) if response is not None else None,
            "approved": response is not None and response.get(39) == "00",
            "auth_code": response.get(38) if response is not None else None,
            "timed_out": response is None,
            "latency_ms": round(latency_ms, 3),
        }

    def _record_acquired(self, request: Message, response: Message) -> None:
        processing = (request.get(3) or "")[:2]
        effect: Effect | None
        if request.mti == "0100":
            effect = "hold"
        elif processing == "20":
            effect = "credit"
        elif processing == "31":
            effect = None
        else:
            effect = "debit"
        if effect is None:
            return
        pan = pan_of(request)
        assert pan is not None
        amount = int(request.get(4) or "0")
        currency = int(request.get(49) or "0")
        auth_code = response.get(38) or ""
        entry = Entry(
            role="acquirer",
            effect=effect,
            pan=pan,
            currency=currency,
            amount_minor=amount,
            mti=request.mti,
            stan=request[11],
            transmission=request[7],
            rrn=request.get(37) or "",
            acquirer_id=request.get(32) or "",
            auth_code=auth_code,
        )
        if self.ledger.apply(identity(request), entry):
            self.clearing.append(self._acquirer_clearing(request, pan, amount, auth_code))

    def _acquirer_clearing(self, message: Message, pan: str, amount: int, auth_code: str) -> ClearingRecord:
        return ClearingRecord.of(
            business_date=self._utc_now().date(),
            role="acquirer",
            mti=message.mti,
            stan=message.get(11) or "",
            transmission=message.get(7) or "",
            rrn=message.get(37) or "",
            acquirer_id=message.get(32) or "",
            pan=pan,
            amount_minor=amount,
            currency=int(message.get(49) or "0"),
            auth_code=auth_code,
            response_code="00",
        )

    async def _advise(self, advice: Message, timeout_s: float) -> tuple[Message | None, float]:
        """Send an originated advice: the 0220, then 0221 repeats with its STAN and time until answered."""
        response: Message | None = None
        latency_ms = 0.0
        for attempt in range(self.config.reversal_attempts):
            message = advice.with_fields(mti="0221") if attempt else advice
            response, latency_ms = await self._exchange(message, timeout_s)
            if response is not None:
                break
        return response, latency_ms

    async def _reverse_originated(
        self, original: Message, actual_amount_minor: int | None, timeout_s: float
    ) -> dict[str, object]:
        """Reverse an originated request: 0420, then 0421 repeats, until the member answers."""
        stan = self._next_stan()
        now = self._utc_now()
        response: Message | None = None
        reversal = self.originator.reversal(
            original, stan=stan, now_utc=now, actual_amount_minor=actual_amount_minor
        )
        latency_ms = 0.0
        for attempt in range(self.config.reversal_attempts):
            if attempt:
                # Repeats keep the first attempt's STAN and time, so any of them answers the one reversal.
                reversal = reversal.with_fields(mti="0421")
            self.counters["originated_reversals"] += 1
            response, latency_ms = await self._exchange(reversal, timeout_s)
            if response is not None:
                break
        if response is not None and response.get(39) == "00":
            key = identity(original)
            entry = self.ledger.get(key)
            amount = None
            if entry is not None and actual_amount_minor is not None:
                amount = max(0, entry.amount_minor - actual_amount_minor)
            reversed_minor = self.ledger.reverse(key, amount)
            if reversed_minor and entry is not None:
                self.clearing.append(
                    self._acquirer_clearing(reversal, entry.pan, reversed_minor, entry.auth_code)
                )
        return self._result(reversal, response, latency_ms)

    # -- control -------------------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        now = self._monotonic()
        return {
            "network": self.network.name,
            "dialect": self.codec.name,
            "link": {
                "address": f"{self.ready.host}:{self.ready.link_port}" if self.ready else None,
                "up": self.up,
                "connections": [
                    {
                        "id": conn.id,
                        "peer": conn.peer,
                        "signed_on": conn.signed_on,
                        "messages_in": conn.messages_in,
                        "open_s": round(now - conn.opened_at, 3),
                    }
                    for conn in self._connections.values()
                ],
            },
            "key": self.ring.status(now),
            "keep_key": self.config.keep_key,
            "rekey_pending": self.rekey_pending,
            "faults": self.faults.to_json(),
            "counters": dict(sorted(self.counters.items())),
            "business_date": self._utc_now().strftime("%Y%m%d"),
            "clearing_records": self.clearing.records_written,
            "originations_waiting": len(self._waiters),
        }

    def position(self) -> dict[str, object]:
        return {
            "network": self.network.name,
            "member_acquirer_id": self.network.acquirer_id,
            "sign": (
                "net_minor > 0: the network owes the member; it equals the debit balance (debits minus "
                f"credits) of the member's account network:{self.network.name}:<currency>"
            ),
            "currencies": self.ledger.position_json(),
        }

    def set_faults(self, changes: Mapping[str, object]) -> Faults:
        """Apply a subset of fault settings; FaultError (nothing changed) if any is not accepted."""
        self.faults = self.faults.updated(changes, has_header=self.has_header)
        self.log.info("netsim_faults", **self.faults.to_json())
        return self.faults

    def drop(self) -> int:
        """Close every member connection now; how many there were."""
        conns = list(self._connections.values())
        for conn in conns:
            conn.close_reason = "dropped by POST /drop"
            conn.cancel_scope.cancel()
        self.counters["drops"] += len(conns)
        return len(conns)

    def balance(self, pan: object) -> dict[str, object]:
        if not isinstance(pan, str) or not self.ledger.cards.issues(pan):
            raise NetsimError(400, "pan must be a card number of this network's card base")
        card = self.ledger.cards.find(pan)
        assert card is not None
        return {
            "card": mask_pan(pan),
            "status": card.status,
            "balances": {
                f"{currency:03d}": {
                    "posted_minor": card.posted[currency],
                    "available_minor": card.available(currency),
                }
                for currency in sorted(card.posted)
            },
        }

    async def _control(self, request: HttpRequest) -> tuple[int, object]:
        routes: dict[str, dict[str, Callable[[], Any]]] = {
            "/status": {"GET": self.status},
            "/position": {"GET": self.position},
        }
        method, path = request.method, request.path
        try:
            if path in routes:
                if method not in routes[path]:
                    raise HttpError(405, f"{path} answers {', '.join(routes[path])}")
                return 200, routes[path][method]()
            if path == "/faults":
                self._require(method, "PUT", path)
                return 200, {"faults": self.set_faults(json_body(request)).to_json()}
            if path == "/originate":
                self._require(method, "POST", path)
                return 200, {"results": await self.originate(parse_originate(json_body(request)))}
            if path == "/drop":
                self._require(method, "POST", path)
                return 200, {"dropped": self.drop()}
            if path == "/rekey":
                self._require(method, "POST", path)
                self.rekey_pending = True
                return 200, {"rekey_pending": True}
            if path == "/balance":
                self._require(method, "POST", path)
                return 200, self.balance(json_body(request).get("pan"))
        except (FaultError, OriginateError) as exc:
            raise HttpError(400, str(exc)) from None
        except NetsimError as exc:
            raise HttpError(exc.status, exc.message) from None
        raise HttpError(404, "unknown path; see docs/networks.md for the control API")

    @staticmethod
    def _require(method: str, expected: str, path: str) -> None:
        if method != expected:
            raise HttpError(405, f"{path} answers {expected}")
