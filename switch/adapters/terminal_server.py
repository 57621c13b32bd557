"""The terminal listener: TCP connections from POS/ATM terminals, framed ISO 8583 in, responses out.

Thin trio driver around sans-IO pieces (a framer and a frame handler). Per connection: every read runs
under `read_timeout_s`; frames over `frame_bytes_max` or with a broken prefix close that connection
only; several requests may be in flight and each answer is written as soon as it is ready (a lock keeps
frames whole). The accept loop caps open connections at `connections_max` and survives EMFILE/ENFILE by
pausing, as trio's own serve_listeners does.

Several switchd processes (switch.workers) accept from one listening socket, the primary's, which its
workers inherit; a `ConnectionBoard` in memory they all map spreads the connections evenly over them
(see `ConnectionBoard`).

Drain (SIGTERM): stop accepting, stop reading new requests, let in-flight ones be answered, close; what
is still running at the deadline is cancelled.
"""

from __future__ import annotations

import errno
import itertools
import mmap
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from switch.config import TerminalListenerConfig
from switch.iso.codec import Codec, KeepAlive, Packet
from switch.iso.errors import FramingError, IsoError
from switch.iso.framing import prefix_frame
from switch.iso.headers import Header, HeaderCodec
from switch.iso.message import Message, response_mti
from switch.logs import get_logger
from switch.metrics import Metrics

__all__ = ["FORMAT_ERROR", "ConnectionBoard", "ListenerShare", "MessageHandler", "TerminalServer"]

log = get_logger("terminal")

_ACCEPT_PAUSE_S = 0.1
FORMAT_ERROR = "30"
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


# Given a decoded request, return the response to send (None: nothing to send, e.g. an advice
# acknowledged elsewhere). Declines are responses, not exceptions.
MessageHandler = Callable[[Message], Awaitable[Message | None]]


# trio's own list (SocketListener.accept): errors of one failed handshake, not of the listener.
_IGNORED_ACCEPT_ERRNOS = {
    getattr(errno, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
    )
    if hasattr(errno, name)
}


class ConnectionBoard:
    """How many terminal connections each process of a switchd set holds, in memory all of them map.

    The processes accept from one listening socket, so a new connection wakes every one of them. A
    process that holds more connections than another accepting process leaves it to that one for
    `DEFER_S`, and takes it itself only if it is still waiting then (the other process is busy, stuck or
    gone). Connections therefore spread evenly whatever their source ports, which SO_REUSEPORT's hash
    does not do: 16 terminals over 2 processes often split 10/6 or worse, and an acquirer host's 2
    connections land on one process half the time, leaving the other core idle.

    One signed 64-bit count per process (slot 0 the primary, slot i worker i), `NOT_ACCEPTING` while it
    starts, drains or after it has exited. Each slot is written by its own process (and by the primary
    once a worker has exited) with one aligned 8-byte store and read without a lock: a stale read only
    changes which process takes one connection. The memory is a memfd the workers inherit.
    """

    NOT_ACCEPTING = -1
    DEFER_S = 0.2  # long enough for a busy process to come round to accepting

    def __init__(self, memory: mmap.mmap | bytearray, *, fd: int | None = None) -> None:
        self._memory = memory
        self._counts = memoryview(memory).cast("q")
        self.fd = fd  # the memfd to pass to workers; None for a board in plain memory (tests)

    @classmethod
    def create(cls, processes: int) -> ConnectionBoard:
        """A new board for `processes` processes, every slot not accepting yet."""
        if processes < 1:
            raise ValueError("a board needs at least one process")
        fd = os.memfd_create("switchd-connections")
        try:
            os.ftruncate(fd, 8 * processes)
            board = cls(mmap.mmap(fd, 8 * processes), fd=fd)
        except BaseException:
            os.close(fd)
            raise
        for slot in range(processes):
            board.stop_accepting(slot)
        return board

    @classmethod
    def attach(cls, fd: int) -> ConnectionBoard:
        """The board a primary created, from the descriptor this process inherited."""
        size = os.fstat(fd).st_size
        if size < 8 or size % 8:
            raise ValueError("not a connection board (its size is not a whole number of slots)")
        return cls(mmap.mmap(fd, size), fd=fd)

    @property
    def processes(self) -> int:
        return len(self._counts)

    def post(self, slot: int, connections: int) -> None:
        """`slot`'s process accepts and holds `connections` terminal connections."""
        self._counts[slot] = connections

    def stop_accepting(self, slot: int) -> None:
        self._counts[slot] = self.NOT_ACCEPTING

    def counts(self) -> list[int]:
        return list(self._counts)

    def others_have_fewer(self, slot: int) -> bool:
        """Whether another accepting process holds fewer connections than `slot`'s."""
        mine = self._counts[slot]
        return any(0 <= count < mine for other, count in enumerate(self._counts) if other != slot)

    def close(self) -> None:
        self._counts.release()
        if isinstance(self._memory, mmap.mmap):
            self._memory.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass(frozen=True)
class ListenerShare:
    """This process's part in a set of switchd processes that accept terminals from one socket."""

    board: ConnectionBoard
    slot: int
    # Listening sockets inherited from the primary; empty for the primary, which opens them itself.
    sockets: tuple[socket.socket, ...] = ()


class _Replies:
    """A connection's answers waiting to be written. A writer task sends whatever is ready in one write:
    answers that complete together (a group commit releases many) share one system call."""

    __slots__ = ("_broken", "_closed", "_frames", "_ready")

    def __init__(self) -> None:
        self._frames: list[bytes] = []
        self._ready = trio.Event()
        self._closed = False
        self._broken = False

    def put(self, frame: bytes) -> None:
        if self._broken:
            log.info("reply not sent: connection gone")
            return
        self._frames.append(frame)
        self._ready.set()

    def close(self) -> None:
        """No more answers: the writer sends what is queued and returns."""
        self._closed = True
        self._ready.set()

    async def run(self, stream: trio.SocketStream, sent: Any) -> None:
        while True:
            await self._ready.wait()
            self._ready = trio.Event()
            frames, self._frames = self._frames, []
            if frames:
                try:
                    await stream.send_all(frames[0] if len(frames) == 1 else b"".join(frames))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._broken = True
                    log.info("reply not sent: connection gone", replies=len(frames))
                    return
                sent.inc(len(frames))
            if self._closed and not self._frames:
                return


class _Closing:
    """Why a connection is being closed by one of its request tasks, and how to stop its read loop."""

    __slots__ = ("read_scope", "reason")

    def __init__(self) -> None:
        self.reason: str | None = None
        self.read_scope: trio.CancelScope | None = None

    def why(self) -> str | None:
        # A method, not the attribute: the read loop re-reads it after each await (type checkers would
        # narrow the attribute to its value at the loop condition).
        return self.reason

    def close(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self.read_scope is not None:
            self.read_scope.cancel()


class TerminalServer:
    def __init__(
        self,
        config: TerminalListenerConfig,
        metrics: Metrics,
        *,
        name: str,
        codec: Codec,
        handler: MessageHandler,
        share: ListenerShare | None = None,
    ) -> None:
        self.config = config
        # One of several switchd processes accepting from one socket (switch.workers), or alone.
        self.share = share
        self.metrics = metrics
        self.name = name
        self.codec = codec
        self._headers = HeaderCodec(
            codec.dialect.header.kind, codec.dialect.header.options, dialect=codec.name
        )
        self.handler = handler
        self._ids = itertools.count(1)
        self._accepting = trio.CancelScope()
        self._connections: trio.Nursery | None = None
        self._read_scopes: set[trio.CancelScope] = set()
        self._draining = False
        self._open = 0
        self._starting = 0  # accepted from a shared socket, its task not started yet
        self._slots = trio.CapacityLimiter(config.connections_max)
        self._all_closed = trio.Event()
        # Children of the per-frame metrics, resolved once (labels() locks and looks up on every call).
        self._frames_in = metrics.frames_total.labels(name, "in")
        self._frames_out = metrics.frames_total.labels(name, "out")
        self._inflight = metrics.inflight.labels(name)

    async def serve(
        self, *, task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if self.share is not None and self.share.sockets:
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in self.share.sockets]
        else:
            listeners = await trio.open_tcp_listeners(self.config.port, host=self.config.host)
        try:
            async with trio.open_nursery() as connections:
                self._connections = connections
                self.metrics.listener_up.labels(self.name).set(1)
                task_status.started(listeners)
                with self._accepting:
                    self._post_connections()
                    async with trio.open_nursery() as acceptors:
                        for listener in listeners:
                            acceptors.start_soon(self._accept_loop, listener)
                self._stop_accepting()
                self.metrics.listener_up.labels(self.name).set(0)
                # Accepting stopped (drain): close the listening sockets now, so a terminal that dials in
                # during the drain is refused at once (and tries another switch) instead of waiting in
                # the accept queue (with workers, once every process of the set has closed its copy);
                # the connections nursery waits for the open ones.
                for listener in listeners:
                    await trio.aclose_forcefully(listener)
        finally:
            self._stop_accepting()
            self.metrics.listener_up.labels(self.name).set(0)
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    def _post_connections(self) -> None:
        if self.share is not None and not self._accepting.cancel_called:
            self.share.board.post(self.share.slot, self._open + self._starting)

    def _stop_accepting(self) -> None:
        if self.share is not None:
            self.share.board.stop_accepting(self.share.slot)

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        assert self._connections is not None
        shared = self.share is not None and self.share.board.processes > 1
        # The shared socket is polled by every process: accept() itself must not wait (a waiting accept
        # would take the next connection without looking at the board), so it runs on a duplicate
        # stdlib socket in non-blocking mode.
        raw = socket.socket(fileno=os.dup(listener.socket.fileno())) if shared else None
        if raw is not None:
            raw.setblocking(False)
        try:
            while True:
                await self._slots.acquire_on_behalf_of(listener)  # waits while connections_max are open
                try:
                    stream = await (self._accept_balanced(raw) if raw is not None else listener.accept())
                except OSError as exc:
                    self._slots.release_on_behalf_of(listener)
                    if exc.errno in _RESOURCE_ERRNOS:
                        log.error(
                            "accept failed; pausing", listener=self.name, errno=errno.errorcode[exc.errno]
                        )
                        await trio.sleep(_ACCEPT_PAUSE_S)
                        continue
                    raise
                except BaseException:
                    self._slots.release_on_behalf_of(listener)
                    raise
                self._slots.release_on_behalf_of(listener)
                token = object()
                await self._slots.acquire_on_behalf_of(token)
                self._connections.start_soon(self._run_connection, stream, token)
        finally:
            if raw is not None:
                raw.close()

    async def _accept_balanced(self, raw: socket.socket) -> trio.SocketStream:
        """The next connection on a socket shared with other processes, left to a process that holds
        fewer connections when there is one (see `ConnectionBoard`)."""
        assert self.share is not None
        board, slot = self.share.board, self.share.slot
        while True:
            await trio.lowlevel.wait_readable(raw)
            if board.others_have_fewer(slot):
                await trio.sleep(board.DEFER_S)
            try:
                conn, _address = raw.accept()
            except BlockingIOError:
                continue  # another process took it
            except OSError as exc:
                if exc.errno in _IGNORED_ACCEPT_ERRNOS:
                    continue
                raise
            # Counted at once, before its task starts, so that the next wake-up already sees it.
            self._starting += 1
            self._post_connections()
            return trio.SocketStream(trio.socket.from_stdlib_socket(conn))

    async def drain(self, timeout_s: float) -> None:
        """Stop accepting and reading; wait up to `timeout_s` for in-flight answers, then cut the rest."""
        self._draining = True
        self._accepting.cancel()
        self._stop_accepting()  # now: the other processes must stop leaving connections to this one
        for scope in list(self._read_scopes):
            scope.cancel()
        if self._open:
            with trio.move_on_after(timeout_s) as waited:
                await self._all_closed.wait()
            if waited.cancelled_caught and self._connections is not None:
                log.warning("drain deadline reached; closing connections", open_connections=self._open)
                self._connections.cancel_scope.cancel()

    async def _run_connection(self, stream: trio.SocketStream, token: object) -> None:
        conn_id = next(self._ids)
        try:
            peer = stream.socket.getpeername()
            peer_text = f"{peer[0]}:{peer[1]}"
        except OSError:
            peer_text = "unknown"
        structlog.contextvars.bind_contextvars(conn=f"{self.name}-{conn_id}", peer=peer_text)
        self._open += 1
        if self._starting:  # only ever counted up for a shared socket
            self._starting -= 1
        self._post_connections()
        self._all_closed = trio.Event() if self._open == 1 and self._all_closed.is_set() else self._all_closed
        self.metrics.connections_open.labels(self.name).inc()
        self.metrics.connections_total.labels(self.name).inc()
        log.info("connection opened")
        reason = "peer closed"
        replies = _Replies()
        framer = self.codec.framer(frame_bytes_max=self.config.frame_bytes_max)
        closing = _Closing()
        try:
            async with trio.open_nursery() as connection:
                connection.start_soon(replies.run, stream, self._frames_out)
                async with trio.open_nursery() as requests:
                    reason = await self._read_requests(stream, framer, closing, requests, replies)
                    if (why := closing.why()) is not None:
                        reason = why
                # Every request read is answered (or failed): the writer sends what is queued, then ends.
                replies.close()
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            self._open -= 1
            self._post_connections()
            self._slots.release_on_behalf_of(token)
            self.metrics.connections_open.labels(self.name).dec()
            log.info("connection closed", reason=reason)
            structlog.contextvars.unbind_contextvars("conn", "peer")
            if self._open == 0:
                self._all_closed.set()

    async def _read_requests(
        self,
        stream: trio.SocketStream,
        framer: Any,
        closing: _Closing,
        requests: trio.Nursery,
        replies: _Replies,
    ) -> str:
        """Read frames and start one task per request until the connection should close; returns why.

        Errors of the connection itself end the loop here (a reset by the peer is "connection broken"):
        raised inside the nursery they would reach the server as an exception group and stop it.
        """
        while not self._draining and closing.reason is None:
            read_scope = trio.CancelScope(deadline=trio.current_time() + self.config.read_timeout_s)
            self._read_scopes.add(read_scope)
            closing.read_scope = read_scope
            data = b""
            try:
                with read_scope:
                    data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return "connection broken"
            finally:
                self._read_scopes.discard(read_scope)
                closing.read_scope = None
            if (why := closing.why()) is not None:
                return why
            if read_scope.cancelled_caught:
                return "draining" if self._draining else "read timeout"
            if not data:
                return "peer closed"
            try:
                framer.receive_data(data)
                frames = []
                while (frame := framer.next_frame()) is not None:
                    frames.append(frame)
            except FramingError as exc:
                # The error text names only offsets and limits, never content.
                self.metrics.frame_errors_total.labels(self.name, "framing").inc()
                return f"framing error: {exc}"
            for frame in frames:
                self._frames_in.inc()
                requests.start_soon(self._answer, replies, frame, closing)
        return closing.why() or "draining"

    def _decode(self, frame: bytes, closing: _Closing) -> tuple[Packet | None, bytes | None]:
        """(packet, None) for a good frame; (None, reply payload or None) for one that cannot be served."""
        try:
            decoded = self.codec.decode_payload(frame)
        except IsoError as exc:
            self.metrics.frame_errors_total.labels(self.name, "decode").inc()
            # The error names dialect, field and offset only (never data), so it is safe to log.
            log.warning("undecodable request", error=str(exc), mti=exc.mti)
            if exc.mti is None:
                # Nothing to answer (not even a response MTI): a peer that sends this does not speak
                # the dialect. Stop reading from it; requests already read are still answered.
                closing.close(f"undecodable frame: {exc}")
                return None, None
            try:
                reply = Message(response_mti(exc.mti), {39: FORMAT_ERROR})
                return None, self.codec.encode_payload(reply, self._reply_header(frame))
            except IsoError:
                return None, None
        if isinstance(decoded, KeepAlive):
            return None, None
        return decoded, None

    def _reply_header(self, frame: bytes) -> Header | None:
        """The reply header for a frame whose message could not be decoded (its header may still be good)."""
        try:
            header, _original, _offset = self._headers.decode(frame)
        except IsoError:
            return None
        return header.reply() if header is not None else None

    async def _answer(self, replies: _Replies, frame: bytes, closing: _Closing) -> None:
        try:
            await self._answer_one(replies, frame, closing)
        except Exception as exc:
            # A bug answering one request must not take the connection (and its other requests) down.
            self.metrics.frame_errors_total.labels(self.name, "internal").inc()
            log.error("request not answered", error=type(exc).__name__)

    async def _answer_one(self, replies: _Replies, frame: bytes, closing: _Closing) -> None:
        packet, payload = self._decode(frame, closing)
        if packet is not None:
            self._inflight.inc()
            try:
                response = await self.handler(packet.message)
            finally:
                self._inflight.dec()
            if response is not None:
                header = packet.header.reply() if packet.header is not None else None
                payload = self.codec.encode_payload(response, header)
        if payload is None:
            return
        replies.put(prefix_frame(self.codec.dialect.framing, payload, dialect=self.codec.name))
