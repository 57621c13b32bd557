"""A typical 0200 purchase per dialect, shared by the benchmark, the dialect docs and their tests.

One source for the example keeps `docs/dialects.md` honest: its hex dumps are generated from these
messages and a test regenerates them and compares. The card is Visa's published test PAN
4761739001010010 (Luhn-valid, no real account); the PIN block and cryptogram are made-up bytes.
"""

from __future__ import annotations

from switch.iso.headers import CupsHeader, Header, Tpdu, VisaHeader
from switch.iso.message import Message
from switch.iso.tlv import Tlv, build_tlv

__all__ = ["SAMPLE_PAN", "hex_dump", "sample_icc_data", "typical_0200"]

SAMPLE_PAN = "4761739001010010"


def sample_icc_data() -> bytes:
    """Field 55 of a typical contact EMV purchase (ARQC request)."""
    return build_tlv(
        [
            Tlv("9F26", bytes.fromhex("1A2B3C4D5E6F7081")),
            Tlv("9F27", b"\x80"),
            Tlv("9F10", bytes.fromhex("06010A03A00000")),
            Tlv("9F37", bytes.fromhex("9BADBCAB")),
            Tlv("9F36", b"\x00\x01"),
            Tlv("95", bytes(5)),
            Tlv("9A", bytes.fromhex("261123")),
            Tlv("9C", b"\x00"),
            Tlv("9F02", bytes.fromhex("000000012345")),
            Tlv("5F2A", bytes.fromhex("0840")),
            Tlv("82", bytes.fromhex("1800")),
            Tlv("9F1A", bytes.fromhex("0840")),
            Tlv("9F03", bytes(6)),
            Tlv("9F33", bytes.fromhex("E0F8C8")),
            Tlv("9F34", bytes.fromhex("1E0300")),
            Tlv("9F35", b"\x22"),
            Tlv("84", bytes.fromhex("A0000000031010")),
            Tlv("5F34", b"\x01"),
            Tlv("9F1E", b"TERM0001"),
        ]
    )


def typical_0200(dialect: str) -> tuple[Message, Header | None]:
    """(message, header) of a typical PIN purchase with track 2 in `dialect`."""
    common: dict[int, str] = {
        2: SAMPLE_PAN,
        3: "000000",
        4: "000000012345",
        7: "1123193500",
        11: "000123",
        12: "193500",
        13: "1123",
        14: "2612",
        18: "5999",
        22: "051",
        25: "00",
        32: "476173",
        37: "633219000123",
        41: "TERM0001",
        42: "MERCHANT0000001",
        49: "840",
        52: "0123456789ABCDEF",
    }
    track2_tail = "26122011758928889"
    header: Header | None
    if dialect == "terminal":
        fields = {**common, 35: f"{SAMPLE_PAN}={track2_tail}", 55: sample_icc_data().hex().upper()}
        header = Tpdu(destination_nii="0001", source_nii="0000")
    elif dialect == "visa":
        fields = {**common, 22: "0510", 35: f"{SAMPLE_PAN}D{track2_tail}"}
        header = VisaHeader(destination_id="400000", source_id="123456")
    elif dialect == "cups":
        fields = {
            **common,
            33: "48020000",
            35: f"{SAMPLE_PAN}={track2_tail}",
            # Merchant name and location, 40 bytes of GBK: "UnionPay test merchant" in Chinese, then ASCII.
            43: "银联测试商户" + "SHANGHAI CN".rjust(28),
            49: "156",
            60: "0000" + "0" + "5" + "0" + "0" + "03",
        }
        header = CupsHeader(destination_id="00010000", source_id="48020000")
    elif dialect == "shetab":
        fields = {**common, 35: f"{SAMPLE_PAN}={track2_tail}", 49: "364"}
        header = None
    else:
        raise KeyError(dialect)
    return Message("0200", fields), header


def hex_dump(data: bytes, *, width: int = 16) -> str:
    """Offset, hex bytes, |ASCII|: one line per `width` bytes (the format used in docs/dialects.md)."""
    lines = []
    for start in range(0, len(data), width):
        chunk = data[start : start + width]
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        # ASCII column between bars, as `hexdump -C` does, so trailing spaces survive editors.
        lines.append(f"{start:04x}  {chunk.hex(' '):<{width * 3 - 1}}  |{text}|")
    return "\n".join(lines)
