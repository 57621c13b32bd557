"""The command table over both transports (real sockets on 127.0.0.1), and the server's connection handling."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from hsm.client import HsmClient, HsmTransportError, InProcessTransport, TcpTransport
from hsm.host.protocol import encode_frame
from hsm.server import HsmServer, ServerConfig
from tests.unit.hsm.cases import CASES, Case
from tests.unit.hsm.support import processor

TRANSPORTS = ["in-process", "tcp"]


async def start_server(nursery: trio.Nursery, **config: float | int) -> tuple[HsmServer, int]:
    server = HsmServer(processor(), ServerConfig(host="127.0.0.1", port=0, **config))  # type: ignore[arg-type]
    ports = await nursery.start(server.run)
    return server, ports[0]


@pytest.fixture
async def server_port(nursery: trio.Nursery) -> AsyncIterator[int]:
    server, port = await start_server(nursery)
    yield port
    server.stop()


async def raw_exchange(stream: trio.SocketStream, payload: bytes) -> bytes:
    await stream.send_all(encode_frame(payload))
    buffer = b""
    while len(buffer) < 2 or len(buffer) < 2 + int.from_bytes(buffer[:2], "big"):
        chunk = await stream.receive_some(65536)
        assert chunk, "server closed the connection"
        buffer += chunk
    return buffer[2:]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_command_case_over_transport(case: Case, transport: str, nursery: trio.Nursery) -> None:
    """If a command case is sent over either transport, then the answer equals the processor's own answer."""
    if transport == "tcp":
        server, port = await start_server(nursery)
        client = HsmClient(TcpTransport("127.0.0.1", port))
    else:
        client = HsmClient(InProcessTransport(processor()))
    error, data = await client.call(case.command, case.fields)
    await client.aclose()
    assert error == case.error
    if case.check is not None:
        case.check(data)
    direct = processor().process(("0000" + case.command + case.fields).encode("latin-1")).decode("latin-1")
    if case.deterministic:
        assert direct[8:] == data
    else:
        assert len(direct[8:]) == len(data)
    if transport == "tcp":
        server.stop()


async def test_connection_survives_every_kind_of_bad_input(server_port: int) -> None:
    """If a connection sends every failing case in turn, then it stays open and still answers NC afterwards."""
    stream = await trio.open_tcp_stream("127.0.0.1", server_port)
    for case in CASES:
        if case.error == "00":
            continue
        reply = await raw_exchange(stream, ("0001" + case.command + case.fields).encode("latin-1"))
        assert reply[6:8].decode() == case.error
    assert (await raw_exchange(stream, b"0001"))[4:8] == b"ZZ15"
    assert (await raw_exchange(stream, b"0002NC"))[4:8] == b"ND00"
    await stream.aclose()


async def test_two_requests_in_one_segment_get_two_answers(server_port: int) -> None:
    """If two frames arrive in one TCP segment, then both are answered in order."""
    stream = await trio.open_tcp_stream("127.0.0.1", server_port)
    await stream.send_all(encode_frame(b"0001B20001A") + encode_frame(b"0002B20001B"))
    received = b""
    while len(received) < 2 * (2 + 9):
        received += await stream.receive_some(1024)
    assert received == encode_frame(b"0001B300A") + encode_frame(b"0002B300B")
    await stream.aclose()


async def test_oversized_frame_closes_only_that_connection(nursery: trio.Nursery) -> None:
    """If a peer announces a frame over the limit, then its connection is closed and others keep working."""
    server, port = await start_server(nursery, frame_bytes_max=64)
    good = await trio.open_tcp_stream("127.0.0.1", port)
    bad = await trio.open_tcp_stream("127.0.0.1", port)
    await bad.send_all((1000).to_bytes(2, "big") + b"x" * 10)
    assert await bad.receive_some(10) == b""
    assert (await raw_exchange(good, b"0001NC"))[4:8] == b"ND00"
    await good.aclose()
    await bad.aclose()
    server.stop()


async def test_idle_connection_is_closed_after_read_timeout(nursery: trio.Nursery) -> None:
    """If a connection sends nothing for read_timeout_s, then the server closes it."""
    server, port = await start_server(nursery, read_timeout_s=0.2)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    with trio.fail_after(5):
        assert await stream.receive_some(10) == b""
    await stream.aclose()
    server.stop()


async def test_many_concurrent_connections_are_served(server_port: int) -> None:
    """If 20 clients send at once, then every one gets its own answer."""
    answers: list[bytes] = []

    async def one(n: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", server_port)
        answers.append(await raw_exchange(stream, f"{n:04d}B20004{n:04d}".encode()))
        await stream.aclose()

    async with trio.open_nursery() as clients:
        for n in range(20):
            clients.start_soon(one, n)
    assert sorted(answers) == sorted(f"{n:04d}B300{n:04d}".encode() for n in range(20))


async def test_connections_over_the_limit_are_refused(nursery: trio.Nursery) -> None:
    """If more connections than connections_max are open, then the extra one is closed at once."""
    server, port = await start_server(nursery, connections_max=1)
    first = await trio.open_tcp_stream("127.0.0.1", port)
    assert (await raw_exchange(first, b"0001NC"))[4:8] == b"ND00"
    second = await trio.open_tcp_stream("127.0.0.1", port)
    with trio.fail_after(5):
        assert await second.receive_some(10) == b""
    await first.aclose()
    await second.aclose()
    server.stop()


async def test_stop_closes_idle_connections_and_returns(nursery: trio.Nursery) -> None:
    """If the server is stopped, then idle connections are closed and run() returns."""
    server = HsmServer(processor(), ServerConfig(host="127.0.0.1", port=0))
    done = trio.Event()

    async def run_and_flag(task_status: trio.TaskStatus[list[int]] = trio.TASK_STATUS_IGNORED) -> None:
        await server.run(task_status=task_status)
        done.set()

    ports = await nursery.start(run_and_flag)
    stream = await trio.open_tcp_stream("127.0.0.1", ports[0])
    assert (await raw_exchange(stream, b"0001NC"))[4:8] == b"ND00"
    server.stop()
    with trio.fail_after(5):
        await done.wait()
        assert await stream.receive_some(10) == b""
    await stream.aclose()
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", ports[0])


async def test_client_times_out_on_a_silent_server(nursery: trio.Nursery) -> None:
    """If the HSM never answers, then the call fails with HsmTransportError after timeout_s."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    nursery.start_soon(trio.serve_listeners, silent, listeners)
    client = HsmClient(TcpTransport("127.0.0.1", port, timeout_s=0.2))
    with trio.fail_after(5), pytest.raises(HsmTransportError):
        await client.call("NC", "")
    await client.aclose()


async def test_client_reconnects_after_the_server_dropped_its_connection(nursery: trio.Nursery) -> None:
    """If the server closed a pooled connection while it was idle, then the next call succeeds on a new one."""
    server, port = await start_server(nursery, read_timeout_s=0.1)
    client = HsmClient(TcpTransport("127.0.0.1", port, pool_size=1))
    assert (await client.call("NC", ""))[0] == "00"
    await trio.sleep(0.3)  # the server closes the idle pooled connection
    assert (await client.call("NC", ""))[0] == "00"
    await client.aclose()
    server.stop()


async def test_client_reports_an_unreachable_hsm() -> None:
    """If nothing listens on the port, then the call fails with HsmTransportError."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    client = HsmClient(TcpTransport("127.0.0.1", port, connect_timeout_s=1.0))
    with pytest.raises(HsmTransportError):
        await client.call("NC", "")


async def test_cancelled_call_does_not_leave_its_answer_for_the_next_call(nursery: trio.Nursery) -> None:
    """If a call is cancelled while waiting, then the next call on the pool gets its own answer, not the old one."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    release = trio.Event()

    async def slow_echo(stream: trio.SocketStream) -> None:
        # Answers every request, but the first one only after `release`.
        decoder_buffer = b""
        first = True
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            decoder_buffer += chunk
            while len(decoder_buffer) >= 2 and len(decoder_buffer) >= 2 + int.from_bytes(
                decoder_buffer[:2], "big"
            ):
                length = int.from_bytes(decoder_buffer[:2], "big")
                payload, decoder_buffer = decoder_buffer[2 : 2 + length], decoder_buffer[2 + length :]
                if first:
                    first = False
                    await release.wait()
                await stream.send_all(encode_frame(processor().process(payload)))

    nursery.start_soon(trio.serve_listeners, slow_echo, listeners)
    client = HsmClient(TcpTransport("127.0.0.1", port, pool_size=1, timeout_s=5.0))
    with trio.move_on_after(0.2):
        await client.echo("first")
    release.set()
    assert await client.echo("second") == "second"
    await client.aclose()
