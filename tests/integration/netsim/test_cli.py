"""The `netsim` command as a real process: ready line with its ports, a sign-on over TCP, clean stops."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from simulators.netsim.keys import parse_field48
from specs.demo_networks import network
from switch.iso.codec import Codec, Packet
from switch.iso.message import Message
from tests.integration.test_switchd import ProcessOutput, base_env, stop_process

READY_S = 20.0


def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], ProcessOutput]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.netsim.cli", "--port", "0", "--control-port", "0", *args],
        env=base_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    return proc, ProcessOutput(proc)


async def sign_on_and_exchange_keys(port: int) -> tuple[Message, Message]:
    codec = Codec("shetab")
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    answers: list[Message] = []
    async with stream:
        framer = codec.framer(frame_bytes_max=8192)
        for stan, code in (("000001", "001"), ("000002", "101")):
            await stream.send_all(codec.encode_frame(Message("0800", {7: "0101000000", 11: stan, 70: code})))
            with trio.fail_after(5):
                while (payload := framer.next_frame()) is None:
                    framer.receive_data(await stream.receive_some(65536))
            packet = codec.decode_payload(payload)
            assert isinstance(packet, Packet)
            answers.append(packet.message)
    return answers[0], answers[1]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_netsim_process_serves_the_link_and_stops_cleanly(tmp_path, stop):
    """If netsim runs as a process, then its ready line names free ports, it answers a sign-on, and a signal stops it with 0."""
    proc, output = start(tmp_path, "--network", "shetab", "--log-format", "json")
    try:
        ready = output.ready(READY_S)
        assert ready["network"] == "shetab"
        host, port = ready["link"].rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        sign_on, key_exchange = trio.run(sign_on_and_exchange_keys, int(port))
        assert sign_on.get(39) == "00"
        assert parse_field48(key_exchange.get(48), bytes.fromhex(network("shetab").zmk_hex)).index == 1
        proc.send_signal(stop)
        assert proc.wait(timeout=10) == 0
        assert "netsim stopping" in output.events()
    finally:
        stop_process(proc, output)


def test_a_fault_the_dialect_cannot_have_is_refused_at_start(tmp_path):
    """If netsim is started with --reject-share on Shetab, then it exits 2 explaining that Shetab has no header."""
    proc, output = start(tmp_path, "--network", "shetab", "--reject-share", "0.5")
    try:
        assert proc.wait(timeout=20) == 2
        text = "".join(output.finish(10))
        assert "reject_share needs a network header" in text
    finally:
        stop_process(proc, output)
