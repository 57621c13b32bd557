"""BER-TLV for field 55 (rules from EMV 4.x Book 3, Annex B: tag, length and padding coding)."""

from __future__ import annotations

import pytest

from switch.iso import Tlv, TlvError, build_tlv, describe_emv, parse_tlv
from switch.iso.samples import SAMPLE_PAN


def test_one_two_and_three_byte_tags() -> None:
    """If tags of 1, 2 and 3 bytes are parsed, then each is read whole (Annex B1 continuation bits)."""
    data = bytes.fromhex("8201189F020105DF81010107")
    assert parse_tlv(data) == [Tlv("82", b"\x18"), Tlv("9F02", b"\x05"), Tlv("DF8101", b"\x07")]


def test_long_form_lengths() -> None:
    """If values need 0x81 and 0x82 length forms (Annex B2), then build uses them and parse reads them."""
    items = [Tlv("9F10", bytes(200)), Tlv("70", bytes(300))]
    raw = build_tlv(items)
    assert raw[2:4] == b"\x81\xc8"
    assert raw[4 + 200 + 1 : 4 + 200 + 4] == b"\x82\x01\x2c"
    assert parse_tlv(raw) == items


def test_zero_padding_between_objects_is_skipped() -> None:
    """If 00 bytes sit between objects (Annex B), then they are skipped."""
    assert parse_tlv(bytes.fromhex("009C010000009A03261123")) == [
        Tlv("9C", b"\x00"),
        Tlv("9A", bytes.fromhex("261123")),
    ]


@pytest.mark.parametrize(
    ("hex_data", "offset"),
    [
        ("9F", 0),  # tag runs past the end
        ("9F02", 2),  # length missing
        ("9F0205AA", 3),  # value shorter than its length
        ("9F0280", 2),  # indefinite length form
        ("9F8181810100", 0),  # four-byte tag
    ],
)
def test_malformed_tlv_names_offset(hex_data: str, offset: int) -> None:
    """If BER-TLV is malformed, then TlvError names the offset of the fault."""
    with pytest.raises(TlvError) as info:
        parse_tlv(bytes.fromhex(hex_data))
    assert info.value.offset == offset


@pytest.mark.parametrize("tag", ["9F", "1F8101FF", "00", "9F82", "XY"])
def test_build_refuses_malformed_tags(tag: str) -> None:
    """If a tag's bytes break the continuation rules, then build refuses it."""
    with pytest.raises(TlvError):
        build_tlv([Tlv(tag, b"")])


def test_describe_names_common_tags() -> None:
    """If amount, currency and cryptogram are described, then names and readable values are shown."""
    rows = describe_emv(
        [
            Tlv("9F02", bytes.fromhex("000000012345")),
            Tlv("5F2A", bytes.fromhex("0840")),
            Tlv("9F26", b"\x01" * 8),
        ]
    )
    assert rows == [
        ("9F02", "Amount, authorised", "000000012345"),
        ("5F2A", "Transaction currency code", "0840"),
        ("9F26", "Application cryptogram (ARQC)", "0101010101010101"),
    ]


def test_describe_masks_pan_and_track2_equivalent() -> None:
    """If tags 5A and 57 are described without unmasked, then the PAN is masked and track 2 hidden."""
    pan_bcd = bytes.fromhex(SAMPLE_PAN)
    track = bytes.fromhex(SAMPLE_PAN + "D26122011F")
    rows = describe_emv([Tlv("5A", pan_bcd), Tlv("57", track)])
    text = repr(rows)
    assert SAMPLE_PAN not in text
    assert rows[0][2] == "476173******0010"
    assert rows[1][2] == "<13 bytes hidden>"
    assert SAMPLE_PAN not in repr(Tlv("57", track))


def test_describe_unmasked_shows_pan() -> None:
    """If describe is asked for clear values, then tag 5A shows the PAN digits."""
    assert describe_emv([Tlv("5A", bytes.fromhex(SAMPLE_PAN))], unmasked=True)[0][2] == SAMPLE_PAN
