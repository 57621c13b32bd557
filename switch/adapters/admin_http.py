"""The admin endpoint: Prometheus metrics at /metrics and a liveness answer at /healthz.

A deliberately tiny HTTP/1.0 server on trio (GET only, one request per connection, bounded request
size, every read under a timeout): it serves scrapers and load balancers, never the public.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from switch.logs import get_logger

__all__ = ["AdminServer"]

_REQUEST_BYTES_MAX = 8192
_READ_TIMEOUT_S = 5.0
_WRITE_TIMEOUT_S = 5.0

log = get_logger("admin")


def _response(status: str, content_type: str, body: bytes, *, head_only: bool = False) -> bytes:
    head = (
        f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    # HEAD: the headers GET would send (Content-Length included), without the body.
    return head.encode("ascii") + (b"" if head_only else body)


class AdminServer:
    """Serves /metrics and /healthz. `health()` returns (healthy, text) for /healthz."""

    def __init__(self, registry: CollectorRegistry, health: Callable[[], tuple[bool, str]]) -> None:
        self.registry = registry
        self.health = health

    def respond(self, request_head: bytes) -> bytes:
        line = request_head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _response("400 Bad Request", "text/plain", b"bad request\n")
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return _response("405 Method Not Allowed", "text/plain", b"GET only\n")
        head_only = method == "HEAD"
        if target == "/metrics":
            body = generate_latest(self.registry)
            return _response("200 OK", CONTENT_TYPE_LATEST, body, head_only=head_only)
        if target == "/healthz":
            ok, text = self.health()
            status = "200 OK" if ok else "503 Service Unavailable"
            return _response(status, "text/plain", (text + "\n").encode(), head_only=head_only)
        return _response(
            "404 Not Found", "text/plain", b"not found: try /metrics or /healthz\n", head_only=head_only
        )

    async def handle(self, stream: trio.abc.Stream) -> None:
        try:
            buf = bytearray()
            with trio.move_on_after(_READ_TIMEOUT_S):
                while b"\r\n\r\n" not in buf and len(buf) < _REQUEST_BYTES_MAX:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    buf += chunk
            if b"\r\n" not in buf:
                return
            # A scraper that stops reading must not hold this task (and its socket) for ever.
            with trio.move_on_after(_WRITE_TIMEOUT_S):
                await stream.send_all(self.respond(bytes(buf)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        task_status.started(listeners)
        await trio.serve_listeners(self.handle, listeners)
