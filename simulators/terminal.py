"""A POS/ATM terminal as a trio client: one TCP connection, sign-on, key exchange, transactions.

This owns the terminal's session state (STAN counter, working keys, DUKPT PIN pad, pending requests) and
its I/O; the bytes of each message come from `simulators.messages` and the wire layer from `switch.iso`.
Several requests may be in flight on the one connection: a reader task matches each response to its
request by STAN (the switch answers in any order), and every wait is bounded by `timeout_s`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import trio

from simulators.messages import (
    AdditionalAmount,
    Card,
    ConnectionFailed,
    DukptPinPad,
    Keys,
    Original,
    SimulatorError,
    TerminalIdentity,
    TransactionRequest,
    TxnType,
    add_mac,
    build_request,
    carries_pin,
    original_from,
    parse_additional_amounts,
    parse_key_exchange,
    verify_mac,
)
from switch.iso.codec import Codec, Packet
from switch.iso.errors import IsoError
from switch.iso.headers import Tpdu
from switch.iso.message import Message

__all__ = ["Result", "TerminalClient", "leaves", "open_terminal"]

CODEC = Codec("terminal")
FRAME_BYTES_MAX = 8192
RECEIVE_BYTES = 65536
STAN_MAX = 999_999
DEFAULT_TPDU = Tpdu(destination_nii="0001", source_nii="0000")


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one request: what came back (or the timeout), how long it took. Safe to print."""

    type: TxnType
    request_mti: str
    stan: str
    transmission: str
    latency_ms: float
    response_code: str | None = None  # None: no answer within the timeout
    response_mti: str | None = None
    auth_code: str | None = None
    rrn: str | None = None
    amount_minor: int | None = None
    currency: int | None = None
    masked_pan: str | None = None
    balances: tuple[AdditionalAmount, ...] = ()
    mac_ok: bool | None = None  # None: not checked (no TAK, or the response carries no MAC)
    error: str | None = None
    request: Message | None = field(default=None, repr=False, compare=False)
    response: Message | None = field(default=None, repr=False, compare=False)

    @property
    def approved(self) -> bool:
        return self.response_code == "00"

    def original(self) -> Original:
        """This transaction as the original of a void, completion, cancel or reversal."""
        if self.request is None:
            raise SimulatorError("this result has no request to refer to")
        return original_from(self.request, self.response)


@dataclass(slots=True)
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    response: Message | None = None
    mac_ok: bool | None = None


class TerminalClient:
    """One connected terminal. Use `open_terminal` (it runs the reader task); then `transact`."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        identity: TerminalIdentity,
        tmk: bytes,
        timeout_s: float = 10.0,
        mac: bool = False,
        entry_mode: str = "021",
        tpdu: Tpdu = DEFAULT_TPDU,
        stan_start: int | None = None,
        now_utc: Callable[[], datetime] | None = None,
        now_local: Callable[[], datetime] | None = None,
        pin_pad: DukptPinPad | None = None,
        on_pin_pad_used: Callable[[DukptPinPad], None] | None = None,
    ) -> None:
        self.stream = stream
        # A DUKPT PIN pad encrypts the PINs (field 53 carries its KSN); without one, the TPK does.
        self.pin_pad = pin_pad
        # Called after each counter step, before the message is sent: a PIN pad keeps its counter in
        # non-volatile memory so that no KSN is ever used twice, even across power cycles.
        self._on_pin_pad_used = on_pin_pad_used
        self.identity = identity
        self._tmk = tmk
        self.timeout_s = timeout_s
        self.mac = mac
        self.entry_mode = entry_mode
        self.tpdu = tpdu
        # A random first STAN, so two runs within one second do not reuse an identity (41 + 11 + 7).
        self._stan = stan_start if stan_start is not None else secrets.randbelow(STAN_MAX) + 1
        self._now_utc = now_utc or (lambda: datetime.now(UTC))
        self._now_local = now_local or datetime.now
        self.keys: Keys | None = None
        self._pending: dict[str, _Pending] = {}
        # Frames waiting for the writer task: requests sent while it is busy go out together in one
        # send (a load generator keeps many in flight; one system call each would be most of its CPU).
        self._outbox: list[bytes] = []
        self._outbox_ready = trio.Event()
        self.unmatched_responses = 0
        self.closed_reason: str | None = None
        # A cheaper decoder for responses (payload -> message, or None to decode in full): the load
        # generator only needs a response's STAN and code, and a full decode is most of its CPU.
        self.response_decoder: Callable[[bytes], Message | None] | None = None

    def next_stan(self) -> str:
        stan = self._stan
        self._stan = 1 if stan >= STAN_MAX else stan + 1
        return f"{stan:06d}"

    # -- I/O --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """The connection's reader and writer; runs until the connection ends or is cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.write_loop)
            await self.read_loop()  # returns when the connection ends: then nothing is left to write
            nursery.cancel_scope.cancel()

    async def write_loop(self) -> None:
        """Send queued frames, all that are waiting in one write, until the connection breaks."""
        try:
            while True:
                await self._outbox_ready.wait()
                self._outbox_ready = trio.Event()
                frames, self._outbox = self._outbox, []
                if frames:
                    await self.stream.send_all(frames[0] if len(frames) == 1 else b"".join(frames))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed_reason = self.closed_reason or "connection lost"
            for pending in self._pending.values():
                pending.done.set()

    async def read_loop(self) -> None:
        """Match responses to pending requests until the peer closes or breaks the framing."""
        framer = CODEC.framer(frame_bytes_max=FRAME_BYTES_MAX)
        try:
            while True:
                data = await self.stream.receive_some(RECEIVE_BYTES)
                if not data:
                    self.closed_reason = "the switch closed the connection"
                    return
                framer.receive_data(bytes(data))
                for payload in framer:
                    quick = self.response_decoder(payload) if self.response_decoder is not None else None
                    if quick is not None:
                        self._deliver(quick)
                        continue
                    decoded = CODEC.decode_payload(payload)
                    if isinstance(decoded, Packet):
                        self._deliver(decoded.message)
        except IsoError as exc:
            self.closed_reason = f"undecodable response ({exc.__class__.__name__})"
        except trio.BrokenResourceError:
            self.closed_reason = "connection lost"
        except trio.ClosedResourceError:
            self.closed_reason = "connection closed"
        finally:
            for pending in self._pending.values():
                pending.done.set()

    def _deliver(self, message: Message) -> None:
        stan = message.get(11)
        pending = self._pending.get(stan) if stan is not None else None
        if pending is None or pending.done.is_set():
            self.unmatched_responses += 1
            return
        if self.keys is not None and message.get(64) is not None:
            pending.mac_ok = verify_mac(CODEC, message, self.keys.tak)
        pending.response = message
        pending.done.set()

    async def send_message(self, message: Message) -> tuple[Message | None, float, bool | None]:
        """Send one built request, wait for its response: (response or None on timeout, latency ms, MAC ok)."""
        return await self.send_frame(message[11], CODEC.encode_frame(message, self.tpdu))

    async def send_frame(self, stan: str, frame: bytes) -> tuple[Message | None, float, bool | None]:
        """`send_message` for a request already encoded and framed (the load generator's templates)."""
        if stan in self._pending:
            raise SimulatorError("STAN already in flight on this connection")
        if self.closed_reason is not None:
            raise ConnectionFailed(self.closed_reason)
        pending = _Pending()
        self._pending[stan] = pending
        started = time.perf_counter()
        try:
            self._outbox.append(frame)
            self._outbox_ready.set()
            # Woken by the response, or by the reader or writer when the connection ends.
            with trio.move_on_after(self.timeout_s):
                await pending.done.wait()
        finally:
            del self._pending[stan]
        latency_ms = (time.perf_counter() - started) * 1000.0
        return pending.response, latency_ms, pending.mac_ok

    # -- transactions ----------------------------------------------------------------------------------

    def build(self, request: TransactionRequest, card: Card | None) -> Message:
        dukpt_use = None
        if self.pin_pad is not None and card is not None and carries_pin(request):
            dukpt_use = self.pin_pad.next()
            if self._on_pin_pad_used is not None:
                self._on_pin_pad_used(self.pin_pad)
        message = build_request(
            request,
            identity=self.identity,
            card=card,
            stan=self.next_stan(),
            now_utc=self._now_utc(),
            local_now=self._now_local(),
            entry_mode=self.entry_mode,
            keys=self.keys,
            dukpt_use=dukpt_use,
        )
        if self.mac and self.keys is not None and message.mti != "0800":
            message = add_mac(CODEC, message, self.keys.tak)
        return message

    async def transact(self, request: TransactionRequest, card: Card | None = None) -> Result:
        """Build, send and wait for one transaction. Declines and timeouts are results, not exceptions."""
        message = self.build(request, card)
        response, latency_ms, mac_ok = await self.send_message(message)
        return self._result(request, message, response, latency_ms, mac_ok, card)

    def _result(
        self,
        request: TransactionRequest,
        message: Message,
        response: Message | None,
        latency_ms: float,
        mac_ok: bool | None,
        card: Card | None,
    ) -> Result:
        error = None
        balances: tuple[AdditionalAmount, ...] = ()
        if response is None:
            error = self.closed_reason or f"no response within {self.timeout_s:g} s"
        else:
            try:
                balances = tuple(parse_additional_amounts(response.get(54)))
            except SimulatorError as exc:
                error = str(exc)
        amount = message.get(4)
        currency = message.get(49)
        return Result(
            type=request.type,
            request_mti=message.mti,
            stan=message[11],
            transmission=message[7],
            latency_ms=latency_ms,
            response_code=response.get(39) if response is not None else None,
            response_mti=response.mti if response is not None else None,
            auth_code=response.get(38) if response is not None else None,
            rrn=response.get(37) if response is not None else None,
            amount_minor=int(amount) if amount is not None else None,
            currency=int(currency) if currency is not None else None,
            masked_pan=card.masked_pan if card is not None and request.type not in _NETWORK_TYPES else None,
            balances=balances,
            mac_ok=mac_ok,
            error=error,
            request=message,
            response=response,
        )

    async def sign_on(self) -> Result:
        return await self.transact(TransactionRequest(TxnType.SIGN_ON))

    async def echo(self) -> Result:
        return await self.transact(TransactionRequest(TxnType.ECHO))

    async def key_exchange(self) -> Result:
        """Ask for new TPK/TAK; on approval unwrap them under the TMK and check their KCVs.

        Raises KeyExchangeError if an approved answer carries keys that fail their check values.
        """
        result = await self.transact(TransactionRequest(TxnType.KEY_EXCHANGE))
        if result.approved:
            assert result.response is not None
            self.keys = parse_key_exchange(result.response.get(48), self._tmk)
        return result

    async def aclose(self) -> None:
        await self.stream.aclose()


_NETWORK_TYPES = frozenset({TxnType.SIGN_ON, TxnType.SIGN_OFF, TxnType.ECHO, TxnType.KEY_EXCHANGE})


@asynccontextmanager
async def open_terminal(
    host: str,
    port: int,
    *,
    identity: TerminalIdentity,
    tmk: bytes,
    connect_timeout_s: float = 5.0,
    timeout_s: float = 10.0,
    mac: bool = False,
    entry_mode: str = "021",
    stan_start: int | None = None,
    pin_pad: DukptPinPad | None = None,
    on_pin_pad_used: Callable[[DukptPinPad], None] | None = None,
) -> AsyncIterator[TerminalClient]:
    """Connect and run the reader; the connection closes when the block exits."""
    try:
        with trio.fail_after(connect_timeout_s):
            stream = await trio.open_tcp_stream(host, port)
    except trio.TooSlowError:
        raise ConnectionFailed(
            f"cannot connect to {host}:{port}: no answer in {connect_timeout_s:g} s"
        ) from None
    except OSError as exc:
        raise ConnectionFailed(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    client = TerminalClient(
        stream,
        identity=identity,
        tmk=tmk,
        timeout_s=timeout_s,
        mac=mac,
        entry_mode=entry_mode,
        stan_start=stan_start,
        pin_pad=pin_pad,
        on_pin_pad_used=on_pin_pad_used,
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The reader never raises, so a group holds the caller's one error: give it back unwrapped.
        errors = leaves(group)
        if len(errors) == 1:
            raise errors[0] from None
        raise
    finally:
        # Shielded: closing must happen even when the caller is being cancelled.
        with trio.CancelScope(shield=True):
            await client.aclose()


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions inside a (nested) exception group, flattened."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
