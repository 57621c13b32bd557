"""netsim's control API: a tiny HTTP/1.1 server, one request per connection, JSON in and out.

The parsing is sans-IO (`parse_request`: bytes in, a request or "need more" out) and bounded (head
and body sizes); the trio part only reads, calls the handler and writes. Every answer closes the
connection, which keeps the server a few dozen lines and is all a test or an operator's curl needs.
Errors answer `{"error": "..."}` with a message naming what was wrong, never the body's values (a
body may hold a card number).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

__all__ = [
    "BODY_BYTES_MAX",
    "HttpError",
    "HttpRequest",
    "json_body",
    "parse_request",
    "render_response",
    "serve_control",
]

HEAD_BYTES_MAX = 8192
BODY_BYTES_MAX = 65536
READ_TIMEOUT_S = 10.0
RECEIVE_BYTES = 65536
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    500: "Internal Server Error",
}


class HttpError(Exception):
    """An answer other than 200; `message` is safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def parse_request(data: bytes) -> HttpRequest | None:
    """The request in `data`, or None when more bytes are needed. HttpError for a malformed one."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > HEAD_BYTES_MAX:
            raise HttpError(413, "request head too large")
        return None
    if end > HEAD_BYTES_MAX:
        raise HttpError(413, "request head too large")
    try:
        head = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "request head is not ASCII") from None
    request_line, *header_lines = head.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "malformed request line")
    method, target, _version = parts
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise HttpError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise HttpError(400, "chunked bodies are not supported; send Content-Length")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise HttpError(400, "Content-Length must be a number")
    length = int(length_text)
    if length > BODY_BYTES_MAX:
        raise HttpError(413, f"body larger than {BODY_BYTES_MAX} bytes")
    body_start = end + 4
    if len(data) - body_start < length:
        return None
    path = target.split("?", 1)[0]
    return HttpRequest(method=method, path=path, headers=headers, body=data[body_start : body_start + length])


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The body as a JSON object; HttpError 400 if it is not one."""
    if not request.body.strip():
        return {}
    try:
        value = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        # The position only: the decoder's message would quote the document.
        raise HttpError(400, f"body is not valid JSON (at character {getattr(exc, 'pos', 0)})") from None
    if not isinstance(value, dict):
        raise HttpError(400, "body must be a JSON object")
    return value


def render_response(status: int, payload: object) -> bytes:
    body = json.dumps(payload, sort_keys=False).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


Handler = Callable[[HttpRequest], Awaitable[tuple[int, object]]]


async def _read_request(stream: trio.SocketStream) -> HttpRequest:
    data = b""
    with trio.move_on_after(READ_TIMEOUT_S):
        while True:
            request = parse_request(data)
            if request is not None:
                return request
            chunk = await stream.receive_some(RECEIVE_BYTES)
            if not chunk:
                raise HttpError(400, "connection closed before the request was complete")
            data += chunk
    raise HttpError(408, f"no complete request within {READ_TIMEOUT_S:g} s")


async def _connection(stream: trio.SocketStream, handler: Handler, on_error: Callable[[str], None]) -> None:
    async with stream:
        try:
            request = await _read_request(stream)
            status, payload = await handler(request)
        except HttpError as exc:
            status, payload = exc.status, {"error": exc.message}
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        except Exception as exc:  # a handler bug must not take the control port down
            on_error(exc.__class__.__name__)
            status, payload = 500, {"error": f"internal error ({exc.__class__.__name__})"}
        try:
            await stream.send_all(render_response(status, payload))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


async def serve_control(
    listeners: list[trio.SocketListener],
    handler: Handler,
    *,
    on_error: Callable[[str], None] = lambda _name: None,
) -> None:
    """Serve the control API on `listeners` until cancelled."""

    async def connection(stream: trio.SocketStream) -> None:
        await _connection(stream, handler, on_error)

    await trio.serve_listeners(connection, listeners)
