"""Network headers: lengths computed and checked, replies swap addresses, rejects recognised."""

from __future__ import annotations

import pytest

from switch.iso import Codec, CupsHeader, HeaderError, Message, Tpdu, VisaHeader


def test_tpdu_reply_swaps_nii() -> None:
    """If a TPDU is answered, then destination and source NII swap."""
    assert Tpdu(destination_nii="0001", source_nii="0123").reply() == Tpdu(
        destination_nii="0123", source_nii="0001"
    )


def test_tpdu_id_checked() -> None:
    """If a terminal frame does not start with 0x60, then HeaderError names the TPDU id."""
    with pytest.raises(HeaderError) as info:
        Tpdu.decode(bytes.fromhex("6800010000"))
    assert info.value.field == "tpdu.tpdu_id"


def test_visa_reply_swaps_stations_and_clears_reject() -> None:
    """If a Visa header is answered, then station IDs swap and any reject code is dropped."""
    header = VisaHeader(destination_id="400000", source_id="123456", reject_code="0012")
    assert header.reply() == VisaHeader(destination_id="123456", source_id="400000")


def test_visa_total_length_is_computed() -> None:
    """If a Visa header is encoded for a 57-byte body, then bytes 3-4 hold 22 + 57."""
    raw = VisaHeader().encode(57)
    assert len(raw) == 22
    assert int.from_bytes(raw[3:5], "big") == 79


def test_visa_total_length_is_checked() -> None:
    """If the Visa header's total length disagrees with the frame, then HeaderError names it."""
    codec = Codec("visa")
    payload = bytearray(codec.encode_payload(Message("0800", {11: "000001"})))
    payload[4] ^= 0x01
    with pytest.raises(HeaderError) as info:
        codec.decode_payload(bytes(payload))
    assert info.value.field == "visa.length"


def test_visa_26_byte_header_without_reject_flag() -> None:
    """If a 26-byte Visa header lacks the reject bit, then HeaderError is raised."""
    raw = bytearray(VisaHeader(reject_code="0012").encode(0))
    raw[22] = 0x00
    with pytest.raises(HeaderError):
        VisaHeader.decode(bytes(raw))


def test_visa_reject_needs_original_header() -> None:
    """If a reject header is encoded without the original header, then HeaderError is raised."""
    with pytest.raises(HeaderError):
        Codec("visa").encode_payload(Message("0800"), VisaHeader(reject_code="0012"))


def test_cups_reply_swaps_ids() -> None:
    """If a CUPS header is answered, then destination and source IDs swap and the reject code resets."""
    header = CupsHeader(destination_id="00010344", source_id="48020000", reject_code="00015")
    assert header.reply() == CupsHeader(destination_id="48020000", source_id="00010344")


def test_cups_header_length_byte_checked() -> None:
    """If a CUPS header does not start with 0x2E, then HeaderError names the header length."""
    raw = bytearray(CupsHeader().encode(0))
    raw[0] = 0x2F
    with pytest.raises(HeaderError) as info:
        CupsHeader.decode(bytes(raw))
    assert info.value.field == "cups.header_length"


def test_cups_total_length_is_computed() -> None:
    """If a CUPS header is encoded for a 116-byte body, then the ASCII total length reads 0162."""
    assert CupsHeader().encode(116)[2:6] == b"0162"


def test_cups_id_too_long_refused() -> None:
    """If a CUPS institution ID exceeds 11 characters, then HeaderError is raised on encode."""
    with pytest.raises(HeaderError):
        CupsHeader(destination_id="123456789012").encode(0)


def test_header_of_wrong_kind_refused() -> None:
    """If a terminal frame is encoded with a Visa header, then HeaderError is raised."""
    with pytest.raises(HeaderError):
        Codec("terminal").encode_payload(Message("0800"), VisaHeader())


def test_short_frame_is_header_error() -> None:
    """If a frame is shorter than its dialect's header, then HeaderError is raised."""
    for name in ("terminal", "visa", "cups"):
        with pytest.raises(HeaderError):
            Codec(name).decode_payload(b"\x60\x00")
