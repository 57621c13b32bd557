"""The load generator's shortcuts: pre-encoded request templates and the STAN/code response reader."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from simulators.loadgen import _stan_and_code, _Template
from simulators.terminal import CODEC, DEFAULT_TPDU
from switch.iso.message import Message

RESPONSE = Message(
    "0210",
    {
        3: "000000",
        4: "000000000100",
        7: "1201211500",
        11: "000123",
        35: "9900010000000019=30121011234567",
        37: "123456789012",
        38: "A00001",
        39: "05",
        41: "POS00001",
        42: "DEMOMERCHANT001",
        49: "840",
        54: "0001840C000000010000",
    },
)


def _payload(message: Message) -> bytes:
    return CODEC.encode_payload(message, DEFAULT_TPDU.reply())


def test_stan_and_code_read_without_a_full_decode():
    """If a response is read by the shortcut, then its MTI, STAN and code equal the full decode's."""
    quick = _stan_and_code(_payload(RESPONSE))
    assert quick is not None
    assert (quick.mti, quick.get(11), quick.get(39)) == ("0210", "000123", "05")


@pytest.mark.parametrize(
    "payload",
    [
        _payload(RESPONSE.with_fields({64: "00" * 8})),  # a MAC to check: the full path must see it
        _payload(RESPONSE)[:30],  # cut short
        _payload(RESPONSE.with_fields({11: None})),  # nothing to match it by
    ],
)
def test_unusual_responses_fall_back_to_the_full_decode(payload: bytes):
    """If a response carries a MAC, is cut short or has no STAN, then the shortcut declines it."""
    assert _stan_and_code(payload) is None


def test_template_fill_changes_only_the_varying_fields():
    """If a template is filled, then its frame decodes to the request with the new STAN and times."""
    request = Message(
        "0200",
        {
            3: "000000",
            4: "000000000100",
            7: "0101000000",
            11: "000001",
            12: "000000",
            13: "0101",
            41: "POS00001",
        },
    )
    frame = CODEC.encode_frame(request, DEFAULT_TPDU)
    spans: dict[int, tuple[int, int]] = {}
    for number in (7, 11, 12, 13):
        start = frame.index(request[number].encode(), spans[max(spans)][1] if spans else 0)
        spans[number] = (start, start + len(request[number]))
    template = _Template(frame, spans)
    stan, filled = template.fill(
        "000042", datetime(2026, 12, 1, 21, 15, 30, tzinfo=UTC), datetime(2026, 12, 1, 22, 15, 30)
    )
    decoded = CODEC.decode_frame(filled)
    assert stan == "000042"
    assert (
        decoded.message.fields
        == request.with_fields({7: "1201211530", 11: "000042", 12: "221530", 13: "1201"}).fields
    )
