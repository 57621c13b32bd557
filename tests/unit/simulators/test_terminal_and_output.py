"""The terminal client over an in-memory stream (STAN matching, timeouts, STAN wrap) and result printing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import trio
import trio.testing

from simulators import output
from simulators.messages import AdditionalAmount, TerminalIdentity, TransactionRequest, TxnType, demo_card
from simulators.terminal import CODEC, Result, TerminalClient
from switch.iso.codec import Packet
from switch.iso.headers import Tpdu

IDENTITY = TerminalIdentity(terminal_id="POS00001", merchant_id="DEMOMERCHANT001")
TMK = bytes(16)
CARD = demo_card()


async def read_requests(stream: trio.abc.Stream, count: int) -> list[Packet]:
    framer = CODEC.framer(frame_bytes_max=8192)
    packets: list[Packet] = []
    while len(packets) < count:
        framer.receive_data(bytes(await stream.receive_some(65536)))
        for payload in framer:
            decoded = CODEC.decode_payload(payload)
            assert isinstance(decoded, Packet)
            packets.append(decoded)
    return packets


def client(stream: trio.abc.Stream, **options: object) -> TerminalClient:
    fixed = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    return TerminalClient(
        stream,
        identity=IDENTITY,
        tmk=TMK,
        stan_start=1,
        now_utc=lambda: fixed,
        now_local=lambda: fixed.replace(tzinfo=None),
        **options,  # type: ignore[arg-type]
    )


async def test_responses_in_any_order_are_matched_by_stan():
    """If the switch answers two in-flight requests in reverse order, then each result gets its own response."""
    ours, theirs = trio.testing.memory_stream_pair()
    terminal = client(ours)
    results: dict[str, Result] = {}

    async def send(amount: int) -> None:
        result = await terminal.transact(TransactionRequest(TxnType.PURCHASE, amount_minor=amount), CARD)
        results[result.stan] = result

    async def switch() -> None:
        first, second = await read_requests(theirs, 2)
        for packet, code in ((second, "51"), (first, "00")):
            response = CODEC.response(packet.message, response_code=code)
            await theirs.send_all(CODEC.encode_frame(response, Tpdu().reply()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(terminal.run)
        nursery.start_soon(switch)
        async with trio.open_nursery() as senders:
            senders.start_soon(send, 100)
            await trio.testing.wait_all_tasks_blocked()
            senders.start_soon(send, 200)
        nursery.cancel_scope.cancel()
    assert {stan: (r.amount_minor, r.response_code) for stan, r in results.items()} == {
        "000001": (100, "00"),
        "000002": (200, "51"),
    }


async def test_no_answer_is_a_timeout_result_not_an_exception(autojump_clock):
    """If the switch never answers, then after the timeout the result has no code and says why."""
    ours, _theirs = trio.testing.memory_stream_pair()
    terminal = client(ours, timeout_s=30.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(terminal.run)
        result = await terminal.echo()
        nursery.cancel_scope.cancel()
    assert result.response_code is None and result.error == "no response within 30 s"


def test_stan_wraps_from_999999_to_000001():
    """If the STAN reaches 999999, then the next one is 000001 (never 000000)."""
    ours, _ = trio.testing.memory_stream_pair()
    terminal = client(ours)
    terminal._stan = 999_999
    assert [terminal.next_stan(), terminal.next_stan()] == ["999999", "000001"]


def approved_balance() -> Result:
    return Result(
        type=TxnType.BALANCE,
        request_mti="0200",
        stan="000007",
        transmission="1123120000",
        latency_ms=1.5,
        response_code="00",
        response_mti="0210",
        auth_code="123456",
        rrn="633012000001",
        masked_pan=CARD.masked_pan,
        balances=(AdditionalAmount("00", "02", 840, 123456),),
    )


def test_human_line_shows_meaning_auth_rrn_and_balances():
    """If an approved balance is printed, then the line has code, meaning, auth code, RRN and the balance."""
    text = output.human(approved_balance())
    assert "00 approved" in text and "auth 123456" in text and "rrn 633012000001" in text
    assert "available" in text and "1234.56 USD" in text and CARD.pan not in text


def test_json_has_masked_card_and_balances():
    """If a result is printed as JSON, then it has the masked card and balances, and no clear PAN."""
    doc = json.loads(output.to_json(approved_balance()))
    assert doc["card"] == CARD.masked_pan and doc["balances"][0]["amount_minor"] == 123456
    assert CARD.pan not in json.dumps(doc)


def test_unknown_and_missing_codes_have_meanings():
    """If the code is unknown or absent, then the meaning says so instead of failing."""
    assert output.meaning("ZZ") == "unknown response code" and output.meaning(None) == "no response"
