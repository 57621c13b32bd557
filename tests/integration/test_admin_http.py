"""The admin endpoint over real TCP: /metrics in Prometheus text format, /healthz, and bad requests."""

from __future__ import annotations

import trio

from switch.adapters.admin_http import AdminServer
from switch.metrics import Metrics


async def http_get(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def start(nursery: trio.Nursery, healthy: bool = True) -> tuple[int, Metrics]:
    metrics = Metrics.create(version="test", node_name="n1")
    server = AdminServer(metrics.registry, lambda: (healthy, "ok" if healthy else "draining"))
    listeners = await nursery.start(server.serve, "127.0.0.1", 0)
    return listeners[0].socket.getsockname()[1], metrics


async def test_metrics_are_prometheus_text():
    """If /metrics is fetched, then it answers 200 with process and listener metrics in text format."""
    async with trio.open_nursery() as nursery:
        port, metrics = await start(nursery)
        metrics.connections_open.labels("terminal").set(3)
        reply = await http_get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        nursery.cancel_scope.cancel()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200")
    assert b"Content-Type: text/plain; version=" in head
    assert b'switch_connections_open{listener="terminal"} 3.0' in body
    assert b"process_cpu_seconds_total" in body
    assert b'switch_build_info{node="n1",version="test"} 1.0' in body


async def test_healthz_reports_draining_as_503():
    """If the switch is draining, then /healthz answers 503."""
    async with trio.open_nursery() as nursery:
        port, _ = await start(nursery, healthy=False)
        reply = await http_get(port, b"GET /healthz HTTP/1.0\r\n\r\n")
        nursery.cancel_scope.cancel()
    assert reply.startswith(b"HTTP/1.0 503")
    assert reply.endswith(b"draining\n")


async def test_unknown_path_and_method():
    """If the path is unknown or the method is not GET, then 404 or 405 comes back and the server lives on."""
    async with trio.open_nursery() as nursery:
        port, _ = await start(nursery)
        assert (await http_get(port, b"GET /nope HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 404")
        assert (await http_get(port, b"POST /metrics HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 405")
        assert (await http_get(port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.0 400")
        assert (await http_get(port, b"GET /healthz HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 200")
        nursery.cancel_scope.cancel()


async def test_head_sends_headers_without_body():
    """If /healthz is asked with HEAD, then the status and Content-Length come back and no body."""
    async with trio.open_nursery() as nursery:
        port, _ = await start(nursery)
        reply = await http_get(port, b"HEAD /healthz HTTP/1.0\r\n\r\n")
        nursery.cancel_scope.cancel()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200")
    assert b"Content-Length: 3" in head
    assert body == b""
