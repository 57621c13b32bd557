"""The terminal listener's connection rules over real TCP against switchd in this process (no demo data:
these rules hold before any card is involved): idle connections time out, a frame whose MTI cannot be
read closes its connection with the reason logged, and neither disturbs another connection."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator

import pytest
import structlog
import trio

from switch.app import ReadyInfo
from switch.config import load_config
from switch.iso.codec import Codec, Packet
from switch.iso.headers import Tpdu
from switch.iso.message import Message
from switch.logs import configure_logging
from tests.fixtures.switch import serving

CODEC = Codec("terminal")
TPDU = Tpdu(destination_nii="0001", source_nii="0000")
READ_TIMEOUT_S = 0.5


@pytest.fixture
def log_output():
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    yield stream
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest.fixture
async def switch(database_url, tmp_path, lmk_env, monkeypatch, log_output) -> AsyncIterator[ReadyInfo]:
    monkeypatch.setenv("HSM_LMK_PASSPHRASE", lmk_env["HSM_LMK_PASSPHRASE"])
    config = load_config(
        None,
        environ={
            "SWITCH_HSM_LMK_FILE": lmk_env["SWITCH_HSM_LMK_FILE"],
            "SWITCH_DATABASE_URL": database_url,
            "SWITCH_TERMINAL_PORT": "0",
            "SWITCH_METRICS_PORT": "0",
            "SWITCH_TERMINAL_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
            "SWITCH_SWITCH_VAR_DIR": str(tmp_path),
        },
    )
    async with serving(config) as info:
        yield info


async def connect(info: ReadyInfo) -> trio.SocketStream:
    assert info.terminal_address is not None
    host, port = info.terminal_address.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def echo(stream: trio.SocketStream, stan: str) -> Message:
    request = Message("0800", {7: "1123193500", 11: stan, 41: "TERM0001", 70: "301"})
    await stream.send_all(CODEC.encode_frame(request, TPDU))
    framer = CODEC.framer(frame_bytes_max=8192)
    with trio.fail_after(5):
        while (payload := framer.next_frame()) is None:
            data = await stream.receive_some(65536)
            assert data, "the switch closed the connection instead of answering"
            framer.receive_data(data)
    packet = CODEC.decode_payload(payload)
    assert isinstance(packet, Packet)
    return packet.message


async def closed_by_peer(stream: trio.SocketStream, within_s: float) -> bool:
    with trio.move_on_after(within_s):
        while await stream.receive_some(65536):
            pass
        return True
    return False


def closes(log_output: io.StringIO) -> list[str]:
    lines = [json.loads(line) for line in log_output.getvalue().splitlines() if line.startswith("{")]
    return [line.get("reason", "") for line in lines if line.get("event") == "connection closed"]


async def close_reasons(log_output: io.StringIO) -> list[str]:
    """The reasons logged for closed connections, once there is one: the server logs a close just after
    the peer has seen it."""
    with trio.fail_after(5):
        while True:
            if reasons := closes(log_output):
                return reasons
            await trio.sleep(0.01)


async def test_idle_connection_is_closed_after_the_read_timeout(switch, log_output):
    """If a terminal sends nothing for read_timeout_s, then switchd closes that connection and says why."""
    idle = await connect(switch)
    async with idle:
        assert await closed_by_peer(idle, within_s=READ_TIMEOUT_S + 5)
    assert "read timeout" in await close_reasons(log_output)


async def test_connection_that_keeps_talking_is_not_timed_out(switch):
    """If a terminal sends within each read timeout, then its connection stays open past the timeout."""
    busy = await connect(switch)
    async with busy:
        for i in range(4):
            assert (await echo(busy, f"{i + 1:06d}")).get(39) == "00"
            await trio.sleep(READ_TIMEOUT_S / 2)


async def test_frame_with_unreadable_mti_closes_only_its_connection(switch, log_output):
    """If a frame's MTI cannot be read, then its connection is closed with the reason logged; others go on."""
    bystander = await connect(switch)
    offender = await connect(switch)
    async with bystander, offender:
        body = b"\xff\xfe??" + bytes(8)
        payload = TPDU.encode(len(body)) + body
        await offender.send_all(len(payload).to_bytes(2, "big") + payload)
        assert await closed_by_peer(offender, within_s=READ_TIMEOUT_S / 2)
        assert (await echo(bystander, "000001")).get(39) == "00"
    assert any(reason and reason != "peer closed" for reason in await close_reasons(log_output))
