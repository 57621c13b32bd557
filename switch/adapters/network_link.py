"""The network link: the switch's member connection to one interbank network (docs/networks.md, "The link").

A thin trio driver around `switch.iso.interchange` (matching keys, STANs, network-management messages,
backoff) and the dialect's codec. `NetworkLink` implements the `Network` port: `request()` sends one
request and waits for the response that matches it. `run()` keeps a connection alive: it tries the
endpoints in order (primary first), signs on, calls the `on_signed_on` hook (the app's key exchange),
echoes after `echo_idle_s` without a frame received, and when the echo, a read or the connection fails,
closes and starts over after an exponential, jittered backoff. `drain()` stops new requests, lets the
pending ones be answered or time out, signs off and closes.

Both directions share the connection: frames that are responses go to the pending request with the same
key; a response that matches nothing pending (late, duplicated, unknown) goes to the `late` handler with
the request it answers when the link still remembers it; the network's requests (issuer side) go to the
`inbound` handler and its answer is sent back with the reply form of the request's header. Echo, sign-on
and sign-off from the network are answered by the link itself.

Card safety: the link logs and counts MTIs, STANs, field 70 and response codes only; wire-layer errors
name dialect, field and offset (never bytes), and no message is ever logged whole.
"""

from __future__ import annotations

import dataclasses
import errno
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, NoReturn

import trio

from switch.config import NetworkConfig
from switch.iso.codec import Codec, KeepAlive, Packet
from switch.iso.errors import FramingError, IsoError, MessageError
from switch.iso.headers import CupsHeader, Header, HeaderCodec, VisaHeader
from switch.iso.interchange import (
    MatchKey,
    NetworkAction,
    RecentMap,
    StanAllocator,
    backoff_s,
    is_reject,
    match_key,
    message_role,
    network_management_action,
    network_management_request,
    network_tables,
    reject_code,
    response_class,
    transmission_datetime,
)
from switch.iso.message import Message, response_mti
from switch.logs import get_logger
from switch.metrics import Metrics
from switch.ports import Clock, NetworkExchange, NetworkUnavailable

__all__ = ["InboundHandler", "LateHandler", "LateResponse", "NetworkLink", "SignedOnHook"]

log = get_logger("network")

FORMAT_ERROR = "30"
ISSUER_INOPERATIVE = "91"
_READ_BYTES = 65536

UnmatchedReason = Literal["late", "duplicate", "unknown"]
_Unanswered = Literal["deadline", "connection_lost", "send_failed", "rejected"]


@dataclass(frozen=True, slots=True)
class LateResponse:
    """A response that matched no pending request.

    `reason`: "late" (its request timed out, or its connection was lost, and this is the first answer),
    "duplicate" (its request was already answered, or a late answer already came), "unknown" (the link
    remembers no such request). `request` is the request as sent, when the link still remembers it.
    """

    network: str
    response: Message
    request: Message | None
    reason: UnmatchedReason


# The network's request (issuer side) -> the answer to send back, or None to send nothing.
InboundHandler = Callable[[Message], Awaitable[Message | None]]
# A late, duplicated or unknown response; the link has logged and counted it already.
LateHandler = Callable[[LateResponse], Awaitable[None]]
# Called after every sign-on, while the link is up (it may call link.request(), e.g. for a key exchange).
SignedOnHook = Callable[["NetworkLink"], Awaitable[None]]


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class _Outgoing:
    """A frame queued on a connection: written whole, or failed (never half-sent by a caller's deadline).

    `pending`: the request it carries, failed with "send_failed" if the frame is not written;
    `written`: set once the frame's fate is known, for a sender that waits for it (replies);
    `dropped`: its caller stopped waiting before the writer took it, so it is not sent at all."""

    __slots__ = ("dropped", "frame", "ok", "pending", "written")

    def __init__(self, frame: bytes, pending: _Pending | None, written: trio.Event | None) -> None:
        self.frame = frame
        self.pending = pending
        self.written = written
        self.ok: bool | None = None  # None while queued or being written
        self.dropped = False

    def finish(self, ok: bool) -> None:
        self.ok = ok
        if not ok and self.pending is not None and not self.pending.done.is_set():
            self.pending.failure = "send_failed"
            self.pending.done.set()
        if self.written is not None:
            self.written.set()


class _Connection:
    """One TCP connection to one endpoint; `close` cancels everything running on it.

    All frames go out through one writer task (`write_frames`), which sends whatever is queued in one
    write: requests that reach the link in the same scheduler pass (terminals' purchases arrive in
    bursts) and answers completing together share one system call, and a frame is never cut half-way by
    its caller's deadline or cancellation, because no caller writes; only a peer that stops reading for
    `timeout_s` stops a write, and then the connection is closed.
    """

    def __init__(self, stream: trio.SocketStream, endpoint: str) -> None:
        self.stream = stream
        self.endpoint = endpoint
        self.scope = trio.CancelScope()
        self.last_received = trio.current_time()
        self.reason: str | None = None
        self._queued: list[_Outgoing] = []
        self._ready = trio.Event()
        self._writer_gone = False  # the writer task ended: nothing queued now would ever be written

    @property
    def open(self) -> bool:
        return self.reason is None

    def close(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.scope.cancel()

    def put(self, frame: bytes, *, pending: _Pending | None = None, wait: bool = False) -> _Outgoing | None:
        """Queue one whole frame for the writer; None if the connection is closed (nothing is sent).
        With `wait`, the returned entry's `written` event is set once the frame is written or failed."""
        if not self.open or self._writer_gone:
            return None
        out = _Outgoing(frame, pending, trio.Event() if wait else None)
        self._queued.append(out)
        self._ready.set()
        return out

    async def write_frames(self, *, timeout_s: float) -> None:
        """The connection's writer task, until the connection closes (or a write fails, closing it)."""
        taken: list[_Outgoing] = []
        try:
            while True:
                await self._ready.wait()
                self._ready = trio.Event()
                taken, self._queued = [o for o in self._queued if not o.dropped], []
                if not taken:
                    continue
                data = taken[0].frame if len(taken) == 1 else b"".join(o.frame for o in taken)
                try:
                    with trio.move_on_after(timeout_s) as waited:
                        await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.close("connection broken")
                    return
                if waited.cancelled_caught:
                    self.close("send timed out")
                    return
                for out in taken:
                    out.finish(True)
                taken = []
        finally:
            # Closed or stopped: what was not written (cut by the close, or still queued) is not sent.
            self._writer_gone = True
            for out in taken + self._queued:
                if out.ok is None and not out.dropped:
                    out.finish(False)
            self._queued = []


@dataclass(eq=False)
class _Pending:
    sent: Message
    conn: _Connection
    done: trio.Event = field(default_factory=trio.Event)
    response: Message | None = None
    failure: _Unanswered | None = None


class NetworkLink:
    """The switch's link to one network, as the `Network` port (switch/ports.py) describes it.

    Wiring, one per enabled `[networks.<name>]` table:

        link = NetworkLink(cfg, Codec(cfg.dialect), metrics, name=name, inbound=issuer_side,
                           late=on_late_response, on_signed_on=key_exchange)
        await nursery.start(link.run)   # connects, signs on, echoes, reconnects
        ...                             # the pipeline and the SAF worker call link.request(), link.up
        await link.drain(timeout_s)     # on shutdown: finish pending, sign off, close; run() returns

    `clock` gives field 7 (default: the system clock, UTC); `rng` draws the backoff jitter.
    """

    def __init__(
        self,
        config: NetworkConfig,
        codec: Codec,
        metrics: Metrics,
        *,
        name: str,
        inbound: InboundHandler,
        late: LateHandler,
        on_signed_on: SignedOnHook | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if codec.name != config.dialect:
            raise ValueError(f"network {name}: codec {codec.name} is not the configured {config.dialect}")
        if not config.addresses:
            raise ValueError(f"network {name}: no endpoints configured")
        self.config = config
        self.codec = codec
        self._name = name
        self._tables = network_tables(codec.name)
        self._header_codec = HeaderCodec(
            codec.dialect.header.kind, codec.dialect.header.options, dialect=codec.name
        )
        self._request_header = self._our_header(codec.default_header)
        self._institution_ids = {32: config.acquirer_id, 33: config.forwarding_id, 100: config.network_id}
        self._inbound = inbound
        self._late = late
        self._on_signed_on = on_signed_on
        self._clock: Clock = clock if clock is not None else _SystemClock()
        self._rng = rng if rng is not None else random.Random()
        self._stan = StanAllocator()
        self._pending: dict[MatchKey, _Pending] = {}
        # What the link remembers of requests no longer pending: timed-out ones (a late answer finds its
        # request, so a late approval can be reversed) and answered ones (to tell duplicates from unknowns).
        self._timed_out: RecentMap[MatchKey, Message] = RecentMap(config.pending_max)
        self._answered: RecentMap[MatchKey, Message] = RecentMap(config.pending_max)
        self._active: _Connection | None = None
        self._draining = False
        self._stopping = False
        self._handlers_inflight = 0  # inbound and late handler tasks
        self._quiet = trio.Event()
        self._quiet.set()
        self._nursery: trio.Nursery | None = None
        self._maintain_scope = trio.CancelScope()
        self._running = False
        self._stopped = trio.Event()
        self._log = log.bind(network=name)
        self._metrics = metrics
        self._pending_gauge = metrics.network_pending.labels(name)
        self._latency = metrics.network_latency.labels(name)
        self._reconnects = metrics.network_reconnects_total.labels(name)
        # Children of the two counters every request touches, resolved once per MTI or result: labels()
        # takes a lock and a lookup each time, which showed in profiles of forwarded purchases.
        self._requests_counted: dict[str, Any] = {}
        self._responses_counted: dict[str, Any] = {}

    # -- the Network port ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def up(self) -> bool:
        """True while a connection is signed on and the link takes requests (not draining)."""
        return self._active is not None and not self._draining

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    async def request(self, message: Message, *, timeout_s: float) -> NetworkExchange:
        """Send a request and wait up to `timeout_s` for the response with the same matching key.

        Fills field 11 (the link's STAN) and field 7 (now) when absent. Raises NetworkUnavailable at once
        when no connection is signed on, the link is draining, the pending table is full or a request
        with the same key is pending. A request whose send failed half-way counts as sent and
        unanswered (response None): the network may have it, so the caller must treat it as a timeout.
        """
        if message_role(message.mti) != "request":
            raise ValueError("request() sends requests; responses go back through the inbound handler")
        conn = self._active
        if self._draining or self._stopping:
            self._refuse("draining")
        if conn is None or not conn.open:
            self._refuse("down")
        if len(self._pending) >= self.config.pending_max:
            self._refuse("pending_full")
        updates: dict[int, str | None] = {}
        if 11 not in message:
            updates[11] = self._stan.next()
        if 7 not in message:
            updates[7] = transmission_datetime(self._clock.now())
        sent = message.with_fields(updates) if updates else message
        return await self._exchange(conn, sent, timeout_s)

    def management_message(self, action: NetworkAction) -> Message:
        """A network-management request of this network (0800/0820, field 70), with the link's STAN and
        field 7, ready for `request()`; e.g. the key-exchange request, to which the caller adds fields."""
        return network_management_request(
            self.codec.dialect,
            self._tables,
            action,
            stan=self._stan.next(),
            transmitted=transmission_datetime(self._clock.now()),
            institution_ids=self._institution_ids,
        )

    # -- lifecycle -----------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the link connected and signed on until `drain()` finishes (or the task is cancelled)."""
        if self._running:
            raise RuntimeError(f"network {self._name}: run() is already running")
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                with self._maintain_scope:
                    await self._maintain()
                # Handler tasks still running after drain's deadline are cut here.
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            self._running = False
            self._stopped.set()

    async def drain(self, timeout_s: float) -> None:
        """Stop taking requests; within `timeout_s` let pending requests be answered or time out and the
        network's requests being served be answered; then sign off, close, and let `run()` return."""
        self._draining = True
        self._log.info("link draining", pending=len(self._pending), handlers=self._handlers_inflight)
        with trio.move_on_after(timeout_s) as waited:
            while self._pending or self._handlers_inflight:
                await self._quiet.wait()
            conn = self._active
            if conn is not None:
                code = await self._management(conn, "sign_off")
                self._log.info("link signed off", endpoint=conn.endpoint, response_code=code)
        if waited.cancelled_caught:
            self._log.warning("link drain deadline reached", pending=len(self._pending))
        self._stopping = True
        self._maintain_scope.cancel()
        if self._running:
            await self._stopped.wait()

    # -- connection upkeep ---------------------------------------------------------------------------

    def _stop_requested(self) -> bool:
        # A method, not the attribute: drain() sets it while _maintain awaits, which mypy cannot see.
        return self._stopping

    async def _maintain(self) -> None:
        attempt = 0
        while not self._stop_requested():
            for host, port in self.config.addresses:
                if self._stop_requested():
                    return
                if await self._session(host, port):
                    attempt = 0
                    break
            if self._stop_requested():
                return
            delay_s = backoff_s(
                attempt,
                initial_s=self.config.reconnect_backoff_initial_s,
                max_s=self.config.reconnect_backoff_max_s,
                rng=self._rng,
            )
            attempt += 1
            self._reconnects.inc()
            self._log.info("link backoff", delay_s=round(delay_s, 3), attempt=attempt)
            await trio.sleep(delay_s)

    async def _session(self, host: str, port: int) -> bool:
        """Connect to one endpoint, sign on and serve until the connection ends; True if it signed on."""
        endpoint = f"{host}:{port}"
        self._log.info("link connecting", endpoint=endpoint)
        try:
            with trio.fail_after(self.config.connect_timeout_s):
                stream = await trio.open_tcp_stream(host, port)
        except trio.TooSlowError:
            self._log.warning("link connect failed", endpoint=endpoint, reason="timeout")
            return False
        except OSError as exc:
            reason = errno.errorcode.get(exc.errno, "error") if exc.errno else type(exc).__name__
            self._log.warning("link connect failed", endpoint=endpoint, reason=reason)
            return False
        conn = _Connection(stream, endpoint)
        up = self._metrics.network_link_up.labels(self._name, endpoint)
        signed_on = False
        try:
            with conn.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read_loop, conn)
                    nursery.start_soon(partial(conn.write_frames, timeout_s=self.config.deadline_s))
                    code = await self._management(conn, "sign_on")
                    if code != "00":
                        self._log.warning("link sign-on failed", endpoint=endpoint, response_code=code)
                        conn.close("sign-on refused" if code is not None else "sign-on unanswered")
                    else:
                        signed_on = True
                        self._active = conn
                        up.set(1)
                        self._log.info("link signed on", endpoint=endpoint)
                        nursery.start_soon(self._echo_loop, conn)
                        if self._on_signed_on is not None:
                            nursery.start_soon(self._run_hook)
                    # The nursery now waits for the reader; conn.close() cancels it all.
        finally:
            if self._active is conn:
                self._active = None
            up.set(0)
            self._fail_pending(conn)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            self._log.info("link closed", endpoint=endpoint, reason=conn.reason or "stopped")
        return signed_on

    async def _run_hook(self) -> None:
        assert self._on_signed_on is not None
        try:
            await self._on_signed_on(self)
        except Exception as exc:
            # The hook is the app's (key exchange); its failure is logged, the link stays up.
            self._log.error("on_signed_on hook failed", error=type(exc).__name__)

    async def _echo_loop(self, conn: _Connection) -> None:
        idle_s = self.config.echo_idle_s
        while True:
            due = conn.last_received + idle_s
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            code = await self._management(conn, "echo")
            if code != "00":
                # Unanswered, or answered with a refusal (a network that forgot our sign-on): start over.
                self._log.warning("link echo failed", endpoint=conn.endpoint, response_code=code)
                conn.close("echo failed")
                return

    def _fail_pending(self, conn: _Connection) -> None:
        # Responses come back on the connection that carried the request: a closed one answers nothing.
        for pending in self._pending.values():
            if pending.conn is conn and not pending.done.is_set():
                pending.failure = "connection_lost"
                pending.done.set()

    # -- sending -------------------------------------------------------------------------------------

    def _refuse(self, reason: str) -> NoReturn:
        self._metrics.network_unavailable_total.labels(self._name, reason).inc()
        raise NetworkUnavailable(f"network {self._name}: {reason.replace('_', ' ')}")

    def _our_header(self, default: Header | None) -> Header | None:
        """The header of the requests we originate: addressed from us to the network."""
        if isinstance(default, VisaHeader):
            return dataclasses.replace(
                default, destination_id=self.config.network_station_id, source_id=self.config.our_station_id
            )
        if isinstance(default, CupsHeader):
            return dataclasses.replace(
                default, destination_id=self.config.network_id, source_id=self.config.forwarding_id
            )
        return default

    async def _management(self, conn: _Connection, action: NetworkAction) -> str | None:
        """Send sign-on, sign-off or echo on `conn`; the network's field 39, or None if unanswered."""
        exchange = await self._exchange(conn, self.management_message(action), self.config.deadline_s)
        return exchange.response.response_code if exchange.response is not None else None

    async def _exchange(self, conn: _Connection, sent: Message, timeout_s: float) -> NetworkExchange:
        # pending_max is checked by request() only: sign-on, echo and sign-off must get through a
        # table full of unanswered traffic, since they are what finds out that the link is dead.
        key = match_key(sent, self.config.match_fields)
        if key in self._pending:
            self._refuse("key_in_use")
        frame = self.codec.encode_frame(sent, self._request_header)  # an EncodeError is the caller's bug
        pending = _Pending(sent, conn)
        self._pending[key] = pending
        self._activity_changed()
        requests = self._requests_counted.get(sent.mti)
        if requests is None:
            requests = self._metrics.network_requests_total.labels(self._name, sent.mti)
            self._requests_counted[sent.mti] = requests
        requests.inc()
        started = trio.current_time()
        failure: _Unanswered = "deadline"
        out: _Outgoing | None = None
        try:
            with trio.move_on_after(timeout_s):
                # A deadline passed already, or the caller cancelled: nothing is sent.
                await trio.lowlevel.checkpoint_if_cancelled()
                out = conn.put(frame, pending=pending)
                if out is None:
                    await trio.lowlevel.checkpoint()
                    failure = "send_failed"
                else:
                    # A frame the writer fails to write ends the wait as "send_failed".
                    await pending.done.wait()
                    failure = pending.failure or failure
        finally:
            if out is not None and out.ok is None:
                # Given up: a frame still queued is not sent at all (as a send that never got its turn);
                # one the writer has taken already is written whole and may still be answered.
                out.dropped = True
            if self._pending.get(key) is pending:
                del self._pending[key]
            self._activity_changed()
            if pending.response is None:
                # Also when the caller was cancelled: the request is out there and may still be answered.
                self._timed_out.put(key, sent)
        response = pending.response
        if response is None:
            if failure == "rejected":
                self._metrics.network_responses_total.labels(self._name, "rejected").inc()
            else:
                self._metrics.network_timeouts_total.labels(self._name, failure).inc()
            self._log.info("request unanswered", mti=sent.mti, stan=sent.get(11), reason=failure)
            return NetworkExchange(sent, None)
        self._latency.observe(trio.current_time() - started)
        result = response_class(response.response_code, self._tables.response_codes)
        responses = self._responses_counted.get(result)
        if responses is None:
            responses = self._metrics.network_responses_total.labels(self._name, result)
            self._responses_counted[result] = responses
        responses.inc()
        self._answered.put(key, sent)
        return NetworkExchange(sent, response)

    async def _send_reply(self, conn: _Connection, response: Message, header: Header | None) -> None:
        try:
            frame = self.codec.encode_frame(response, header)
        except IsoError as exc:
            self._metrics.network_frame_errors_total.labels(self._name, "internal").inc()
            self._log.error("answer not encodable", error=str(exc), mti=response.mti)
            return
        out = conn.put(frame, wait=True)
        if out is not None:
            assert out.written is not None
            await out.written.wait()
        if out is None or not out.ok:
            self._log.info("answer not sent: connection gone", mti=response.mti, stan=response.get(11))

    def _spawn(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        assert self._nursery is not None, "frames arrive only while run() runs"
        self._nursery.start_soon(fn, *args)

    def _activity_changed(self) -> None:
        if not self._pending and not self._handlers_inflight:
            self._quiet.set()
        elif self._quiet.is_set():
            self._quiet = trio.Event()
        self._pending_gauge.set(len(self._pending))

    # -- receiving -----------------------------------------------------------------------------------

    async def _read_loop(self, conn: _Connection) -> None:
        framer = self.codec.framer(frame_bytes_max=self.config.frame_bytes_max)
        # The echo closes a silent link after echo_idle_s + deadline; this is the backstop should the
        # echo itself be stuck (e.g. behind a send that never completes).
        read_timeout_s = self.config.echo_idle_s + 2 * self.config.deadline_s
        try:
            while True:
                with trio.move_on_after(read_timeout_s) as waited:
                    data = await conn.stream.receive_some(_READ_BYTES)
                if waited.cancelled_caught:
                    conn.close("read timeout")
                    return
                if not data:
                    conn.close("peer closed")
                    return
                conn.last_received = trio.current_time()
                frames: list[bytes] = []
                broken: FramingError | None = None
                try:
                    framer.receive_data(data)
                    while (frame := framer.next_frame()) is not None:
                        frames.append(frame)
                except FramingError as exc:
                    broken = exc
                for frame in frames:
                    self._on_frame(conn, frame)
                if broken is not None:
                    # The stream is out of step; the error names offsets and limits only, never content.
                    self._metrics.network_frame_errors_total.labels(self._name, "framing").inc()
                    self._log.warning(
                        "framing error from the network", endpoint=conn.endpoint, error=str(broken)
                    )
                    conn.close("framing error")
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            conn.close("connection broken")

    def _on_frame(self, conn: _Connection, frame: bytes) -> None:
        try:
            decoded = self.codec.decode_payload(frame)
        except IsoError as exc:
            self._on_undecodable(conn, frame, exc)
            return
        if isinstance(decoded, KeepAlive):
            return
        try:
            if is_reject(decoded.header):
                self._on_reject(decoded)
            elif message_role(decoded.message.mti) == "response":
                self._on_response(decoded.message)
            else:
                self._on_request(conn, decoded)
        except Exception as exc:
            # A bug handling one frame must not take the connection (and everything pending on it) down.
            self._metrics.network_frame_errors_total.labels(self._name, "internal").inc()
            self._log.error("frame not handled", error=type(exc).__name__, mti=decoded.message.mti)

    def _on_undecodable(self, conn: _Connection, frame: bytes, exc: IsoError) -> None:
        self._metrics.network_frame_errors_total.labels(self._name, "decode").inc()
        # IsoError names dialect, field and offset only (never bytes or values): safe to log as it is.
        self._log.warning(
            "undecodable frame from the network", endpoint=conn.endpoint, error=str(exc), mti=exc.mti
        )
        if exc.mti is None or message_role(exc.mti) != "request":
            return  # a response we cannot read: its request will time out
        try:
            reply = Message(response_mti(exc.mti), {39: FORMAT_ERROR})
        except MessageError:
            return
        try:
            header, _original, _offset = self._header_codec.decode(frame)
        except IsoError:
            header = None
        reply_header = header.reply() if header is not None else self._request_header
        self._spawn(self._send_reply, conn, reply, reply_header)

    def _on_response(self, message: Message) -> None:
        key = match_key(message, self.config.match_fields)
        pending = self._pending.get(key)
        if pending is not None and not pending.done.is_set():
            pending.response = message
            pending.done.set()
            return
        reason: UnmatchedReason
        request = self._timed_out.pop(key)
        if request is None and pending is not None and pending.response is None:
            request = pending.sent  # ended (connection lost, rejected) but not yet moved to _timed_out
        if request is not None:
            reason = "late"
            self._answered.put(key, request)  # a second copy of the late answer is a duplicate
        else:
            request = self._answered.get(key) or (pending.sent if pending is not None else None)
            reason = "duplicate" if request is not None else "unknown"
        self._metrics.network_unmatched_total.labels(self._name, reason).inc()
        self._log.warning(
            "unmatched response",
            reason=reason,
            mti=message.mti,
            stan=message.get(11),
            response_code=message.response_code,
        )
        self._start_handler(self._call_late, LateResponse(self._name, message, request, reason))

    def _on_reject(self, packet: Packet) -> None:
        message = packet.message
        code = reject_code(packet.header)
        pending = self._pending.get(match_key(message, self.config.match_fields))
        matched = pending is not None and not pending.done.is_set()
        self._log.warning(
            "message rejected by the network",
            reject_code=code,
            mti=message.mti,
            stan=message.get(11),
            matched=matched,
        )
        if pending is not None and matched:
            pending.failure = "rejected"
            pending.done.set()
        else:
            self._metrics.network_unmatched_total.labels(self._name, "reject").inc()

    def _on_request(self, conn: _Connection, packet: Packet) -> None:
        message = packet.message
        mti = message.mti
        known_mti = mti in self.codec.dialect.mandatory or mti == self._tables.management_mti
        self._metrics.network_inbound_total.labels(self._name, mti if known_mti else "other").inc()
        reply_header = packet.header.reply() if packet.header is not None else None
        action = network_management_action(message, self._tables)
        if action in ("echo", "sign_on", "sign_off"):
            self._log.info("network management from the network", action=action, stan=message.get(11))
            self._spawn(
                self._answer_management,
                conn,
                self.codec.response(message, response_code="00"),
                reply_header,
                action,
            )
            return
        if self._handlers_inflight >= self.config.pending_max:
            # Overloaded as the issuer: say so rather than leave the network waiting for its deadline.
            self._log.warning("network request refused: too many in flight", mti=mti, stan=message.get(11))
            try:
                refusal = self.codec.response(message, response_code=ISSUER_INOPERATIVE)
            except MessageError:
                return
            self._spawn(self._send_reply, conn, refusal, reply_header)
            return
        self._start_handler(self._serve_inbound, conn, message, reply_header)

    async def _answer_management(
        self, conn: _Connection, reply: Message, header: Header | None, action: NetworkAction
    ) -> None:
        await self._send_reply(conn, reply, header)
        if action == "sign_off":
            # The network is going away on this connection; reconnecting signs on again.
            conn.close("network signed off")

    def _start_handler(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        self._handlers_inflight += 1
        self._activity_changed()
        self._spawn(self._handler_task, fn, args)

    async def _handler_task(self, fn: Callable[..., Awaitable[None]], args: tuple[Any, ...]) -> None:
        try:
            await fn(*args)
        finally:
            self._handlers_inflight -= 1
            self._activity_changed()

    async def _serve_inbound(self, conn: _Connection, message: Message, reply_header: Header | None) -> None:
        try:
            response = await self._inbound(message)
        except Exception as exc:
            self._metrics.network_frame_errors_total.labels(self._name, "internal").inc()
            self._log.error("network request not answered", error=type(exc).__name__, mti=message.mti)
            return
        if response is not None:
            await self._send_reply(conn, response, reply_header)

    async def _call_late(self, late: LateResponse) -> None:
        try:
            await self._late(late)
        except Exception as exc:
            self._metrics.network_frame_errors_total.labels(self._name, "internal").inc()
            self._log.error("late-response handler failed", error=type(exc).__name__, mti=late.response.mti)
