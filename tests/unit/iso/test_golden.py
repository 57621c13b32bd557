"""Golden vectors: one frame per dialect assembled byte by byte from the documented layouts.

The layouts are those in docs/dialects.md and the dialect definitions in specs/ (terminal: the
pyiso8583 `default` spec; visa: BASE I header as in jPOS BASE1Header, BCD/EBCDIC fields as in jPOS
Base1Packager; cups: the 46-byte CUPS header, both bitmaps always, F43 in GBK; shetab: our
documented assumptions). Each test decodes the hand-built frame and checks every field, then encodes
the fields and expects the same bytes.
"""

from __future__ import annotations

import specs
from switch.iso import Codec, CupsHeader, Message, Packet, Tlv, Tpdu, VisaHeader, parse_tlv
from switch.iso.dialect import build_dialect

PAN = "4761739001010010"  # Visa test card, Luhn-valid


def _decode(codec: Codec, frame: bytes) -> Packet:
    packet = codec.decode_frame(frame)
    assert isinstance(packet, Packet)
    return packet


def _terminal_frame() -> bytes:
    body = (
        b"0200"
        # bitmap: fields 2,3,4 -> 0x70; 11 -> 0x20; 41 -> 0x80 (byte 6); 52 -> 0x10 (byte 7)
        + bytes.fromhex("7020000000801000")
        + b"16"
        + PAN.encode()  # field 2, ASCII LL
        + b"000000"  # field 3
        + b"000000001000"  # field 4
        + b"000001"  # field 11
        + b"TERM0001"  # field 41
        + bytes.fromhex("1122334455667788")  # field 52, binary 8
    )
    tpdu = bytes.fromhex("6000010000")  # 0x60, destination NII 0001, source NII 0000
    payload = tpdu + body
    assert len(payload) == 75
    return b"\x00\x4b" + payload  # 2-byte big-endian length: 75


def test_terminal_golden_decodes_field_by_field() -> None:
    """If the hand-built terminal frame is decoded, then TPDU and each field have the expected values."""
    packet = _decode(Codec("terminal"), _terminal_frame())
    assert packet.header == Tpdu(destination_nii="0001", source_nii="0000")
    msg = packet.message
    assert msg.mti == "0200"
    assert msg.fields == {
        2: PAN,
        3: "000000",
        4: "000000001000",
        11: "000001",
        41: "TERM0001",
        52: "1122334455667788",
    }
    assert msg.amount == 1000


def test_terminal_golden_encodes_to_same_bytes() -> None:
    """If the golden terminal fields are encoded with the same TPDU, then the bytes match the vector."""
    codec = Codec("terminal")
    packet = _decode(codec, _terminal_frame())
    assert codec.encode_frame(packet.message, packet.header) == _terminal_frame()


ICC_HEX = "9F2701809C0100"  # 9F27 (CID) = 80, 9C (transaction type) = 00
MAC_HEX = "0102030405060708"


def _terminal_icc_mac_frame() -> bytes:
    body = (
        b"0200"
        # primary: 1 (secondary present), 3 -> 0xA0; 11 -> 0x20; 55 -> 0x02 (byte 6)
        + bytes.fromhex("A020000000000200")
        + bytes.fromhex("0000000000000001")  # secondary: 128
        + b"000000"  # field 3
        + b"000001"  # field 11
        + b"007"
        + bytes.fromhex(ICC_HEX)  # field 55: ASCII LLL counting bytes, then binary
        + bytes.fromhex(MAC_HEX)  # field 128: binary 8
    )
    payload = bytes.fromhex("6000010000") + body
    return len(payload).to_bytes(2, "big") + payload


def test_terminal_icc_and_mac_golden_decodes() -> None:
    """If a terminal frame carries F55 (binary LLL) and F128 (binary 8), then both decode as built."""
    packet = _decode(Codec("terminal"), _terminal_icc_mac_frame())
    assert packet.message.fields == {3: "000000", 11: "000001", 55: ICC_HEX, 128: MAC_HEX}
    assert parse_tlv(bytes.fromhex(packet.message[55])) == [Tlv("9F27", b"\x80"), Tlv("9C", b"\x00")]


def test_terminal_icc_and_mac_golden_encodes_to_same_bytes() -> None:
    """If F55 and F128 are encoded in a terminal frame, then the bytes match the vector."""
    codec = Codec("terminal")
    packet = _decode(codec, _terminal_icc_mac_frame())
    assert codec.encode_frame(packet.message, packet.header) == _terminal_icc_mac_frame()


def _visa_frame() -> bytes:
    body = (
        bytes.fromhex("0100")  # MTI, BCD
        # bitmap: 2,3,4 -> 0x70; 11 -> 0x20; 22 -> 0x04; 35 -> 0x20 (byte 5); 41 -> 0x80; 49 -> 0x80
        + bytes.fromhex("7020040020808000")
        + bytes.fromhex("10" + PAN)  # field 2: length 16 digits in one binary byte, BCD
        + bytes.fromhex("000000")  # field 3, n6
        + bytes.fromhex("000000001000")  # field 4, n12
        + bytes.fromhex("000001")  # field 11
        + bytes.fromhex("0510")  # field 22, n4 in Visa
        + bytes.fromhex("19" + "0" + PAN + "D26122011")  # field 35: 25 digits, left-padded, 'D' separator
        + bytes.fromhex("E3C5D9D4F0F0F0F1")  # field 41 "TERM0001" in EBCDIC (cp500)
        + bytes.fromhex("0840")  # field 49 "840" left-padded
    )
    assert len(body) == 57
    header = bytes.fromhex(
        "16"  # header length 22
        "01"  # header format
        "02"  # text format
        "004F"  # total length 22 + 57 = 79
        "400000"  # destination station ID, BCD
        "123456"  # source station ID, BCD
        "00"
        "0000"
        "000000"
        "00"
        "000000"
        "00"  # round trip, flags, status, batch, reserved, user
    )
    payload = header + body
    return b"\x00\x4f\x00\x00" + payload  # 2-byte length 79 and two zero bytes


def test_visa_golden_decodes_field_by_field() -> None:
    """If the hand-built Visa frame is decoded, then header and each BCD/EBCDIC field are as built."""
    packet = _decode(Codec("visa"), _visa_frame())
    assert packet.header == VisaHeader(destination_id="400000", source_id="123456")
    msg = packet.message
    assert msg.mti == "0100"
    assert msg.fields == {
        2: PAN,
        3: "000000",
        4: "000000001000",
        11: "000001",
        22: "0510",
        35: PAN + "D26122011",
        41: "TERM0001",
        49: "840",
    }


def test_visa_golden_encodes_to_same_bytes() -> None:
    """If the golden Visa fields are encoded with the same header, then the bytes match the vector."""
    codec = Codec("visa")
    packet = _decode(codec, _visa_frame())
    assert codec.encode_frame(packet.message, packet.header) == _visa_frame()


def _visa_reject_frame() -> bytes:
    original = _visa_frame()[4:]
    reject_header = bytes.fromhex(
        "1A"
        "01"
        "02"  # header length 26, formats
        + f"{26 + len(original):04X}"  # total length: reject header + original header + message
        + "123456"
        "400000"
        "00"
        "0000"
        "000000"
        "00"
        "000000"
        "00"
        + "8000"  # header field 13: bitmap, first bit = reject group present
        + "0012"  # header field 14: reject code 0012, BCD
    )
    payload = reject_header + original
    return len(payload).to_bytes(2, "big") + b"\x00\x00" + payload


def test_visa_reject_golden_decodes() -> None:
    """If VisaNet prepends a 26-byte reject header, then the reject code, original header and message decode."""
    packet = _decode(Codec("visa"), _visa_reject_frame())
    assert isinstance(packet.header, VisaHeader)
    assert packet.header.reject_code == "0012"
    assert packet.original_header == VisaHeader(destination_id="400000", source_id="123456")
    assert packet.message.mti == "0100"


def test_visa_reject_golden_encodes_to_same_bytes() -> None:
    """If a reject is encoded from its decoded parts, then lengths are recomputed to the vector's bytes."""
    codec = Codec("visa")
    packet = _decode(codec, _visa_reject_frame())
    assert codec.encode_frame(packet.message, packet.header, packet.original_header) == _visa_reject_frame()


def _cups_frame() -> bytes:
    body = (
        b"0200"
        # primary: 1 (secondary present),2,3,4 -> 0xF0; 11 -> 0x20; 32 -> 0x01; 33 -> 0x80; 41; 49; 60 -> 0x10
        + bytes.fromhex("F020000180808010")
        # secondary: 100 -> byte 5, 0x10
        + bytes.fromhex("0000000010000000")
        + b"16"
        + PAN.encode()
        + b"000000"
        + b"000000001000"
        + b"000001"
        + b"08"
        b"00010000"  # field 32, acquiring institution, LL
         + b"08"
        b"48020000"  # field 33, forwarding institution, LL
        + b"TERM0001"
        + b"156"  # field 49, CNY
        + b"010"
        b"0000050003"  # field 60, LLL: reason 0000, owner 0, read cap 5, IC 0, reserved 0, type 03
         + b"08"
        b"00010344"  # field 100, receiving institution, LL
    )
    assert len(body) == 116
    header = (
        b"\x2e"  # header length 46
        + b"\x02"  # flag and version
        + b"0162"  # total length 46 + 116, ASCII
        + b"00010344   "  # destination ID, 11 bytes
        + b"48020000   "  # source ID
        + b"\x00\x00\x00"  # reserved
        + b"\x00"  # batch number
        + b"00000000"  # transaction information
        + b"\x00"  # user information
        + b"00000"  # reject code
    )
    return b"0162" + header + body  # 4 ASCII digits of length


def test_cups_golden_decodes_field_by_field() -> None:
    """If the hand-built CUPS frame is decoded, then header, each field and F60 subfields are as built."""
    codec = Codec("cups")
    packet = _decode(codec, _cups_frame())
    assert packet.header == CupsHeader(destination_id="00010344", source_id="48020000")
    msg = packet.message
    assert msg.fields == {
        2: PAN,
        3: "000000",
        4: "000000001000",
        11: "000001",
        32: "00010000",
        33: "48020000",
        41: "TERM0001",
        49: "156",
        60: "0000050003",
        100: "00010344",
    }
    assert codec.subfields(msg, 60) == {
        "message_reason_code": "0000",
        "account_owner_type": "0",
        "terminal_read_capability": "5",
        "ic_card_condition_code": "0",
        "reserved": "0",
        "terminal_type": "03",
    }


def test_cups_golden_encodes_to_same_bytes() -> None:
    """If the golden CUPS fields are encoded with the same header, then the bytes match the vector."""
    codec = Codec("cups")
    packet = _decode(codec, _cups_frame())
    assert codec.encode_frame(packet.message, packet.header) == _cups_frame()


# "银联测试商户" (UnionPay test merchant) in GBK, two bytes per character, then ASCII to 40 bytes.
MERCHANT_GBK = bytes.fromhex("D2F8C1AAB2E2CAD4C9CCBBA7") + b" SHANGHAI CN".ljust(28)
MERCHANT_TEXT = "银联测试商户" + " SHANGHAI CN".ljust(28)


def _cups_primary_only_body() -> bytes:
    """A CUPS 0200 with no field above 64, as the layout says it goes out: both bitmaps, F43 in GBK."""
    return (
        b"0200"
        # primary: 1 (secondary present),2,3,4 -> 0xF0; 11 -> 0x20; 32 -> 0x01; 33 -> 0x80;
        # 41 and 43 -> 0xA0; 49 -> 0x80; 60 -> 0x10
        + bytes.fromhex("F020000180A08010")
        + bytes(8)  # secondary bitmap, all zero: sent although no field 65-128 is present
        + b"16"
        + PAN.encode()
        + b"000000"
        + b"000000001000"
        + b"000001"
        + b"0800010000"  # field 32, LL
        + b"0848020000"  # field 33, LL
        + b"TERM0001"
        + MERCHANT_GBK  # field 43, 40 bytes
        + b"156"
        + b"0100000050003"  # field 60, LLL
    )


def _cups_primary_only_fields() -> dict[int, str]:
    return {
        2: PAN,
        3: "000000",
        4: "000000001000",
        11: "000001",
        32: "00010000",
        33: "48020000",
        41: "TERM0001",
        43: MERCHANT_TEXT,
        49: "156",
        60: "0000050003",
    }


def test_cups_always_sends_the_secondary_bitmap() -> None:
    """If a CUPS message has no field above 64, then it is still encoded with a zero secondary bitmap."""
    codec = Codec("cups")
    assert codec.encode_message(Message("0200", _cups_primary_only_fields())) == _cups_primary_only_body()


def test_cups_gbk_merchant_name_decodes() -> None:
    """If F43 carries Chinese in GBK, then the hand-built CUPS body decodes field by field."""
    msg = Codec("cups").decode_message(_cups_primary_only_body())
    assert msg.fields == _cups_primary_only_fields()


def test_cups_primary_bitmap_only_is_accepted() -> None:
    """If a CUPS peer sends only the primary bitmap, then the message still decodes to the same fields."""
    body = bytearray(_cups_primary_only_body())
    body[4] &= 0x7F  # bit 1 clear: no secondary bitmap
    del body[12:20]
    assert Codec("cups").decode_message(bytes(body)).fields == _cups_primary_only_fields()


def test_ascii_bitmap_dialect_can_always_send_the_secondary_bitmap() -> None:
    """If an ASCII-bitmap dialect says "always", then the secondary bitmap goes out as 16 zero characters."""
    raw = dict(specs.definition("shetab"))
    raw["secondary_bitmap"] = "always"
    codec = Codec(build_dialect(raw))
    body = codec.encode_message(Message("0800", {11: "000001"}))
    assert body == b"0800" + b"8020000000000000" + b"0" * 16 + b"000001"
    assert codec.decode_message(body) == Message("0800", {11: "000001"})


def _shetab_frame() -> bytes:
    body = (
        b"0800"
        + b"8220000000000000"  # primary bitmap as ASCII hex: 1 (secondary), 7, 11
        + b"0400000000000000"  # secondary: 70
        + b"1123193500"  # field 7
        + b"000001"  # field 11
        + b"001"  # field 70, sign-on
    )
    return b"0055" + body


def test_shetab_golden_decodes_field_by_field() -> None:
    """If the hand-built Shetab frame is decoded, then each field has the expected value and no header."""
    packet = _decode(Codec("shetab"), _shetab_frame())
    assert packet.header is None
    assert packet.message == Message("0800", {7: "1123193500", 11: "000001", 70: "001"})


def test_shetab_golden_encodes_to_same_bytes() -> None:
    """If the golden Shetab fields are encoded, then the bytes match the vector."""
    codec = Codec("shetab")
    assert codec.encode_frame(Message("0800", {7: "1123193500", 11: "000001", 70: "001"})) == _shetab_frame()


def test_cups_original_data_elements_split() -> None:
    """If a CUPS 0420 carries F90, then its five parts split at the ISO 8583:1987 positions."""
    codec = Codec("cups")
    f90 = "0200" + "000001" + "1123193500" + "00000010000" + "00048020000"
    parts = codec.subfields(Message("0420", {90: f90}), 90)
    assert parts == {
        "original_mti": "0200",
        "original_stan": "000001",
        "original_transmission_datetime": "1123193500",
        "original_acquirer_id": "00000010000",
        "original_forwarder_id": "00048020000",
    }
