"""Network headers between the length prefix and the MTI: terminal TPDU, Visa BASE I, CUPS.

Each header is a frozen value with `encode(body_bytes)`, which computes any length field from the size
of what follows it, a `decode` class method, which checks the length fields against the frame and
raises `HeaderError` naming the header field, and `reply()`, which builds the header of the answer
(source and destination swapped). Which header a dialect uses, and its default values, are data in
`specs/`; the layouts themselves are fixed by the networks and live here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from switch.iso.errors import HeaderError

__all__ = [
    "CupsHeader",
    "Header",
    "HeaderCodec",
    "Tpdu",
    "VisaHeader",
]


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


@dataclass(frozen=True, slots=True)
class Tpdu:
    """Transport protocol data unit of terminal traffic: 0x60, destination NII, source NII (BCD)."""

    destination_nii: str = "0000"
    source_nii: str = "0000"
    tpdu_id: int = 0x60

    LENGTH = 5

    def reply(self) -> Tpdu:
        return replace(self, destination_nii=self.source_nii, source_nii=self.destination_nii)

    def encode(self, body_bytes: int, *, dialect: str | None = None) -> bytes:
        for name, nii in (("destination_nii", self.destination_nii), ("source_nii", self.source_nii)):
            if len(nii) != 4 or not _is_digits(nii):
                raise HeaderError("NII must be 4 digits", dialect=dialect, field=f"tpdu.{name}")
        if not 0 <= self.tpdu_id <= 0xFF:
            raise HeaderError("TPDU id must be one byte", dialect=dialect, field="tpdu.tpdu_id")
        return bytes((self.tpdu_id,)) + bytes.fromhex(self.destination_nii + self.source_nii)

    @classmethod
    def decode(cls, data: bytes, *, tpdu_id: int = 0x60, dialect: str | None = None) -> Tpdu:
        if len(data) < cls.LENGTH:
            raise HeaderError("frame shorter than the TPDU", dialect=dialect, offset=len(data))
        if data[0] != tpdu_id:
            raise HeaderError(
                f"TPDU id is not 0x{tpdu_id:02X}", dialect=dialect, field="tpdu.tpdu_id", offset=0
            )
        hexed = data[1:5].hex()
        if not hexed.isdigit():
            raise HeaderError("NII is not BCD", dialect=dialect, field="tpdu.nii", offset=1)
        return cls(destination_nii=hexed[:4], source_nii=hexed[4:], tpdu_id=data[0])


@dataclass(frozen=True, slots=True)
class VisaHeader:
    """The 22-byte BASE I header; with `reject_code` set, the 26-byte reject header VisaNet prepends.

    Layout (byte offsets): 0 header length (22, or 26 for a reject), 1 header format, 2 text format,
    3-4 total length (binary: this header plus everything after it), 5-7 destination station ID (6 BCD
    digits), 8-10 source station ID, 11 round-trip control, 12-13 BASE I flags, 14-16 message status
    flags, 17 batch number, 18-20 reserved, 21 user information; a reject adds 22-23 header bitmap
    (field 13, first bit set) and 24-25 the reject code (field 14, 4 BCD digits). A rejected message
    arrives as the reject header, then the original header and the original message.
    """

    destination_id: str = "000000"
    source_id: str = "000000"
    header_format: int = 0x01
    text_format: int = 0x02
    round_trip_control: int = 0
    base1_flags: int = 0
    status_flags: int = 0
    batch_number: int = 0
    reserved: int = 0
    user_info: int = 0
    reject_code: str | None = None

    LENGTH = 22
    REJECT_LENGTH = 26

    @property
    def length(self) -> int:
        return self.REJECT_LENGTH if self.reject_code is not None else self.LENGTH

    def reply(self) -> VisaHeader:
        return replace(self, destination_id=self.source_id, source_id=self.destination_id, reject_code=None)

    def encode(self, body_bytes: int, *, dialect: str | None = None) -> bytes:
        for name, sid in (("destination_id", self.destination_id), ("source_id", self.source_id)):
            if len(sid) != 6 or not _is_digits(sid):
                raise HeaderError("station ID must be 6 digits", dialect=dialect, field=f"visa.{name}")
        total = self.length + body_bytes
        if total > 0xFFFF:
            raise HeaderError(
                "message too long for the header length field", dialect=dialect, field="visa.length"
            )
        try:
            out = bytearray((self.length, self.header_format, self.text_format))
            out += total.to_bytes(2, "big")
            out += bytes.fromhex(self.destination_id + self.source_id)
            out.append(self.round_trip_control)
            out += self.base1_flags.to_bytes(2, "big")
            out += self.status_flags.to_bytes(3, "big")
            out.append(self.batch_number)
            out += self.reserved.to_bytes(3, "big")
            out.append(self.user_info)
        except (ValueError, OverflowError):
            raise HeaderError("a header flag is out of range", dialect=dialect, field="visa.flags") from None
        if self.reject_code is not None:
            if len(self.reject_code) != 4 or not _is_digits(self.reject_code):
                raise HeaderError("reject code must be 4 digits", dialect=dialect, field="visa.reject_code")
            out += b"\x80\x00" + bytes.fromhex(self.reject_code)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes, *, dialect: str | None = None, base: int = 0) -> VisaHeader:
        """Decode the header at the start of `data`; `base` is its offset in the frame, for errors."""
        if len(data) < cls.LENGTH:
            raise HeaderError(
                "frame shorter than the BASE I header", dialect=dialect, offset=base + len(data)
            )
        length = data[0]
        reject_code: str | None = None
        if length == cls.REJECT_LENGTH:
            if len(data) < cls.REJECT_LENGTH:
                raise HeaderError(
                    "frame shorter than the reject header", dialect=dialect, offset=base + len(data)
                )
            if not data[22] & 0x80:
                raise HeaderError(
                    "26-byte header without the reject flag",
                    dialect=dialect,
                    field="visa.bitmap",
                    offset=base + 22,
                )
            reject_code = data[24:26].hex()
            if not reject_code.isdigit():
                raise HeaderError(
                    "reject code is not BCD", dialect=dialect, field="visa.reject_code", offset=base + 24
                )
        elif length != cls.LENGTH:
            raise HeaderError(
                "header length is neither 22 nor 26", dialect=dialect, field="visa.header_length", offset=base
            )
        total = int.from_bytes(data[3:5], "big")
        if total != len(data):
            raise HeaderError(
                "header total length disagrees with the frame",
                dialect=dialect,
                field="visa.length",
                offset=base + 3,
            )
        ids = data[5:11].hex()
        if not ids.isdigit():
            raise HeaderError(
                "station ID is not BCD", dialect=dialect, field="visa.station_id", offset=base + 5
            )
        return cls(
            destination_id=ids[:6],
            source_id=ids[6:],
            header_format=data[1],
            text_format=data[2],
            round_trip_control=data[11],
            base1_flags=int.from_bytes(data[12:14], "big"),
            status_flags=int.from_bytes(data[14:17], "big"),
            batch_number=data[17],
            reserved=int.from_bytes(data[18:21], "big"),
            user_info=data[21],
            reject_code=reject_code,
        )


@dataclass(frozen=True, slots=True)
class CupsHeader:
    """The 46-byte CUPS header.

    Layout (byte offsets): 0 header length 0x2E, 1 header flag and version, 2-5 total message length
    (4 ASCII digits: header plus message), 6-16 destination ID, 17-27 source ID (11 ASCII characters,
    left-justified, space-filled), 28-30 reserved, 31 batch number, 32-39 transaction information
    (8 ASCII), 40 user information, 41-45 reject code (5 ASCII digits, "00000" when not rejected).
    """

    destination_id: str = ""
    source_id: str = ""
    flag_version: int = 0x02
    reserved: int = 0
    batch_number: int = 0
    transaction_info: str = "00000000"
    user_info: int = 0
    reject_code: str = "00000"

    LENGTH = 46

    def reply(self) -> CupsHeader:
        return replace(
            self, destination_id=self.source_id, source_id=self.destination_id, reject_code="00000"
        )

    def encode(self, body_bytes: int, *, dialect: str | None = None) -> bytes:
        total = self.LENGTH + body_bytes
        if total > 9999:
            raise HeaderError(
                "message too long for the header length field", dialect=dialect, field="cups.length"
            )
        for name, value, size in (
            ("destination_id", self.destination_id, 11),
            ("source_id", self.source_id, 11),
            ("transaction_info", self.transaction_info, 8),
        ):
            if len(value) > size or not value.isascii() or not value.isprintable():
                raise HeaderError(
                    f"must be at most {size} printable ASCII characters",
                    dialect=dialect,
                    field=f"cups.{name}",
                )
        if len(self.reject_code) != 5 or not _is_digits(self.reject_code):
            raise HeaderError("reject code must be 5 digits", dialect=dialect, field="cups.reject_code")
        try:
            return b"".join(
                (
                    bytes((self.LENGTH, self.flag_version)),
                    b"%04d" % total,
                    self.destination_id.encode("ascii").ljust(11),
                    self.source_id.encode("ascii").ljust(11),
                    self.reserved.to_bytes(3, "big"),
                    bytes((self.batch_number,)),
                    self.transaction_info.encode("ascii").ljust(8),
                    bytes((self.user_info,)),
                    self.reject_code.encode("ascii"),
                )
            )
        except (ValueError, OverflowError):
            raise HeaderError("a header flag is out of range", dialect=dialect, field="cups.flags") from None

    @classmethod
    def decode(cls, data: bytes, *, dialect: str | None = None) -> CupsHeader:
        if len(data) < cls.LENGTH:
            raise HeaderError("frame shorter than the CUPS header", dialect=dialect, offset=len(data))
        if data[0] != cls.LENGTH:
            raise HeaderError(
                "header length is not 0x2E", dialect=dialect, field="cups.header_length", offset=0
            )
        total = data[2:6]
        if not (total.isdigit() and total.isascii()) or int(total) != len(data):
            raise HeaderError(
                "header total length disagrees with the frame", dialect=dialect, field="cups.length", offset=2
            )
        texts: list[str] = []
        for name, start, end in (
            ("destination_id", 6, 17),
            ("source_id", 17, 28),
            ("transaction_info", 32, 40),
        ):
            raw = data[start:end]
            if not raw.isascii():
                raise HeaderError("not ASCII", dialect=dialect, field=f"cups.{name}", offset=start)
            texts.append(raw.decode("ascii").rstrip(" "))
        reject = data[41:46]
        if not (reject.isdigit() and reject.isascii()):
            raise HeaderError(
                "reject code is not 5 digits", dialect=dialect, field="cups.reject_code", offset=41
            )
        return cls(
            destination_id=texts[0],
            source_id=texts[1],
            flag_version=data[1],
            reserved=int.from_bytes(data[28:31], "big"),
            batch_number=data[31],
            transaction_info=texts[2],
            user_info=data[40],
            reject_code=reject.decode("ascii"),
        )


Header = Tpdu | VisaHeader | CupsHeader


class HeaderCodec:
    """The header handling of one dialect: default header, decode from a frame, encode before a body."""

    def __init__(self, kind: str, options: Mapping[str, int], *, dialect: str) -> None:
        self.kind = kind
        self.dialect = dialect
        self._options = dict(options)
        self.default: Header | None
        if kind == "tpdu":
            self.default = Tpdu(tpdu_id=options.get("tpdu_id", 0x60))
        elif kind == "visa":
            self.default = VisaHeader(
                header_format=options.get("header_format", 0x01), text_format=options.get("text_format", 0x02)
            )
        elif kind == "cups":
            self.default = CupsHeader(flag_version=options.get("flag_version", 0x02))
        else:
            self.default = None

    def decode(self, payload: bytes) -> tuple[Header | None, Header | None, int]:
        """(header, original header of a Visa reject or None, offset where the message starts)."""
        kind = self.kind
        if kind == "tpdu":
            return (
                Tpdu.decode(payload, tpdu_id=self._options.get("tpdu_id", 0x60), dialect=self.dialect),
                None,
                5,
            )
        if kind == "visa":
            outer = VisaHeader.decode(payload, dialect=self.dialect)
            if outer.reject_code is None:
                return outer, None, VisaHeader.LENGTH
            inner_data = payload[VisaHeader.REJECT_LENGTH :]
            inner = VisaHeader.decode(inner_data, dialect=self.dialect, base=VisaHeader.REJECT_LENGTH)
            if inner.reject_code is not None:
                raise HeaderError(
                    "reject header inside a reject header",
                    dialect=self.dialect,
                    offset=VisaHeader.REJECT_LENGTH,
                )
            return outer, inner, VisaHeader.REJECT_LENGTH + VisaHeader.LENGTH
        if kind == "cups":
            return CupsHeader.decode(payload, dialect=self.dialect), None, CupsHeader.LENGTH
        return None, None, 0

    def encode(self, header: Header | None, original: Header | None, body_bytes: int) -> bytes:
        """Header bytes for a body of `body_bytes`, lengths computed; None means the dialect default."""
        if self.kind == "none":
            if header is not None:
                raise HeaderError("this dialect has no header", dialect=self.dialect)
            return b""
        use = header if header is not None else self.default
        expected = {"tpdu": Tpdu, "visa": VisaHeader, "cups": CupsHeader}[self.kind]
        if use is None or not isinstance(use, expected):
            raise HeaderError(f"this dialect needs a {expected.__name__}", dialect=self.dialect)
        if original is not None:
            if (
                not isinstance(use, VisaHeader)
                or use.reject_code is None
                or not isinstance(original, VisaHeader)
            ):
                raise HeaderError(
                    "only a Visa reject header carries an original header", dialect=self.dialect
                )
            inner = original.encode(body_bytes, dialect=self.dialect)
            return use.encode(len(inner) + body_bytes, dialect=self.dialect) + inner
        if isinstance(use, VisaHeader) and use.reject_code is not None:
            raise HeaderError("a Visa reject header needs the original header", dialect=self.dialect)
        return use.encode(body_bytes, dialect=self.dialect)
