"""The ceiling for `make bench`: a bare trio ISO 8583 server that decodes each request and answers it.

No checks, no HSM, no database: framing, decode, build the response (39 = 00), encode, write. (A key
exchange gets fresh keys under the demo TMK, so the load generator's requests carry PIN blocks.) Whatever
the switch does on top costs throughput relative to this. Run: python -m bench.echo_server --port 9583
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import trio

from hsm.crypto.des import kcv_tdes, tdes_ecb_encrypt, with_odd_parity
from specs.demo import DEMO_TMK_HEX
from switch.iso.codec import Codec, Packet
from switch.iso.framing import prefix_frame

CODEC = Codec("terminal")


async def handle(stream: trio.SocketStream) -> None:
    framer = CODEC.framer(frame_bytes_max=8192)
    send_lock = trio.Lock()
    try:
        async with trio.open_nursery() as nursery:
            while data := await stream.receive_some(65536):
                framer.receive_data(data)
                while (payload := framer.next_frame()) is not None:
                    nursery.start_soon(answer, stream, send_lock, payload)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def _key_exchange_field() -> str:
    """Field 48 of a key exchange answer, as the switch builds it: fresh TPK and TAK under the demo TMK."""
    tmk = bytes.fromhex(DEMO_TMK_HEX)
    parts = []
    for name in ("TPK", "TAK"):
        key = with_odd_parity(os.urandom(16))
        parts.append(f"{name}{tdes_ecb_encrypt(tmk, key).hex().upper()}{kcv_tdes(key)}")
    return "".join(parts)


async def answer(stream: trio.SocketStream, send_lock: trio.Lock, payload: bytes) -> None:
    packet = CODEC.decode_payload(payload)
    assert isinstance(packet, Packet)
    response = CODEC.response(packet.message, response_code="00")
    if packet.message.mti == "0800" and packet.message.get(70) == "101":
        # So the load generator can build PIN blocks, as against the switch: same message sizes.
        response = response.with_fields({48: _key_exchange_field()})
    header = packet.header.reply() if packet.header is not None else None
    frame = prefix_frame(CODEC.dialect.framing, CODEC.encode_payload(response, header))
    async with send_lock:
        await stream.send_all(frame)


async def serve(
    host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9583)
    args = parser.parse_args(argv)

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(serve, args.host, args.port)
                print(f"echo server ready on {args.host}:{port}", flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
