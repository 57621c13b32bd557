"""hsmd's TCP server: trio, one task per connection, frames in and out through the command processor.

Limits on everything: frame size (`frame_bytes_max`), connections (`connections_max`), how long a
connection may sit without sending (`read_timeout_s`), and how long open connections get to finish on
shutdown (`drain_timeout_s`). Stopping closes the listeners first, then idle connections at once, and
busy ones after their current command (or at the drain deadline), as hypercorn drains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

from hsm.host.processor import CommandLogger, HostCommandProcessor
from hsm.host.protocol import FRAME_BYTES_MAX_DEFAULT, FrameDecoder, FrameTooLarge, encode_frame

__all__ = ["HsmServer", "ServerConfig"]

_RECEIVE_BYTES_MAX = 65536


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 1500
    frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT
    read_timeout_s: float = 300.0
    connections_max: int = 256
    drain_timeout_s: float = 5.0


class _NullLog:
    def info(self, event: str, **kw: Any) -> None:
        return None

    def error(self, event: str, **kw: Any) -> None:
        return None

    def warning(self, event: str, **kw: Any) -> None:
        return None


class HsmServer:
    """Serves one `HostCommandProcessor` on TCP until `stop()` (or cancellation)."""

    def __init__(
        self, processor: HostCommandProcessor, config: ServerConfig, *, log: CommandLogger | None = None
    ) -> None:
        self._processor = processor
        self._config = config
        self._log: Any = log if log is not None else _NullLog()
        self._listen_scope: trio.CancelScope | None = None
        self._stopping = trio.Event()
        self._idle_scopes: set[trio.CancelScope] = set()
        self._connections = 0

    async def run(self, *, task_status: trio.TaskStatus[list[int]] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, serve, and after `stop()` drain; `task_status.started` gets the bound ports."""
        listeners = await trio.open_tcp_listeners(self._config.port, host=self._config.host)
        ports = [listener.socket.getsockname()[1] for listener in listeners]
        async with trio.open_nursery() as connection_nursery:
            with trio.CancelScope() as listen_scope:
                self._listen_scope = listen_scope
                self._log.info("hsmd_listening", host=self._config.host, ports=ports)
                task_status.started(ports)
                await trio.serve_listeners(self._handle, listeners, handler_nursery=connection_nursery)
            # Listeners are closed: let busy connections finish their command, close idle ones now.
            self._stopping.set()
            for scope in list(self._idle_scopes):
                scope.cancel()
            connection_nursery.cancel_scope.deadline = trio.current_time() + self._config.drain_timeout_s
        self._log.info("hsmd_stopped")

    def stop(self) -> None:
        """Begin a graceful stop (safe to call more than once, and before `run` has started listening)."""
        self._stopping.set()
        if self._listen_scope is not None:
            self._listen_scope.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        self._connections += 1
        try:
            if self._connections > self._config.connections_max:
                self._log.warning("hsmd_connection_refused", reason="connections_max")
                return
            await self._serve_connection(stream)
        finally:
            self._connections -= 1
            await trio.aclose_forcefully(stream)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        decoder = FrameDecoder(self._config.frame_bytes_max)
        while not self._stopping.is_set():
            try:
                frame = decoder.next_frame()
            except FrameTooLarge:
                self._log.warning("hsmd_frame_too_large", frame_bytes_max=self._config.frame_bytes_max)
                return
            if frame is not None:
                response = self._processor.process(frame)
                try:
                    await stream.send_all(encode_frame(response))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                continue
            with trio.CancelScope() as idle_scope:
                idle_scope.deadline = trio.current_time() + self._config.read_timeout_s
                self._idle_scopes.add(idle_scope)
                try:
                    data = await stream.receive_some(_RECEIVE_BYTES_MAX)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                finally:
                    self._idle_scopes.discard(idle_scope)
            if idle_scope.cancelled_caught:
                if not self._stopping.is_set():
                    self._log.info("hsmd_connection_idle_timeout", read_timeout_s=self._config.read_timeout_s)
                return
            if not data:
                return
            decoder.feed(data)
