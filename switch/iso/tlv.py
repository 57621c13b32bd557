"""BER-TLV for field 55 (EMV ICC data): parse, build, and a readable view of common EMV tags.

Tags are 1 to 3 bytes (EMV Book 3, Annex B1: a first byte with the low five bits all set announces
more tag bytes; each following byte with its high bit set announces another), lengths are one byte
below 0x80 or 0x81/0x82/0x83 followed by one to three length bytes (Annex B2). Zero bytes between
objects are padding and are skipped (Annex B). Only the top level is parsed: field 55 is a flat list
of primitive objects; a constructed object's value stays as bytes and can be parsed again.

Tags 57 (track 2 equivalent data) and 5A (application PAN) are card data: the readable view masks
them unless the caller asks for clear values, and `Tlv`'s repr never shows their value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from switch.iso.errors import TlvError
from switch.masking import mask_pan

__all__ = ["EMV_TAGS", "SENSITIVE_TAGS", "EmvTag", "Tlv", "build_tlv", "describe_emv", "parse_tlv"]

TAG_BYTES_MAX = 3
LENGTH_BYTES_MAX = 3


@dataclass(frozen=True, slots=True)
class EmvTag:
    name: str
    format: str  # "n" BCD digits, "b" binary, "an" text, "cn" compressed numeric


EMV_TAGS: dict[str, EmvTag] = {
    "9F02": EmvTag("Amount, authorised", "n"),
    "9F03": EmvTag("Amount, other", "n"),
    "9F26": EmvTag("Application cryptogram (ARQC)", "b"),
    "9F27": EmvTag("Cryptogram information data", "b"),
    "82": EmvTag("Application interchange profile (AIP)", "b"),
    "95": EmvTag("Terminal verification results (TVR)", "b"),
    "9A": EmvTag("Transaction date (YYMMDD)", "n"),
    "9C": EmvTag("Transaction type", "n"),
    "5F2A": EmvTag("Transaction currency code", "n"),
    "9F36": EmvTag("Application transaction counter (ATC)", "b"),
    "9F37": EmvTag("Unpredictable number", "b"),
    "9F10": EmvTag("Issuer application data (IAD)", "b"),
    "9F1A": EmvTag("Terminal country code", "n"),
    "84": EmvTag("Dedicated file (DF) name", "b"),
    "9F33": EmvTag("Terminal capabilities", "b"),
    "9F34": EmvTag("Cardholder verification method (CVM) results", "b"),
    "9F35": EmvTag("Terminal type", "n"),
    "5F34": EmvTag("Application PAN sequence number", "n"),
    "9F1E": EmvTag("Interface device (IFD) serial number", "an"),
    "57": EmvTag("Track 2 equivalent data", "b"),
    "5A": EmvTag("Application primary account number (PAN)", "cn"),
}
# Card data that is never displayed in clear by default.
SENSITIVE_TAGS: frozenset[str] = frozenset({"57", "5A", "56", "9F6B", "9F1F", "5F20"})


@dataclass(frozen=True, slots=True)
class Tlv:
    """One data object: tag as upper-case hex ("9F02"), value as bytes."""

    tag: str
    value: bytes

    def __repr__(self) -> str:
        if self.tag in SENSITIVE_TAGS:
            return f"Tlv(tag={self.tag!r}, value=<{len(self.value)} bytes hidden>)"
        return f"Tlv(tag={self.tag!r}, value={self.value.hex().upper()!r})"


def parse_tlv(data: bytes) -> list[Tlv]:
    """The top-level data objects in `data`, in order. TlvError names the offset of the fault."""
    items: list[Tlv] = []
    i = 0
    n = len(data)
    while i < n:
        if data[i] == 0x00:  # padding between objects
            i += 1
            continue
        start = i
        first = data[i]
        i += 1
        if first & 0x1F == 0x1F:
            while True:
                if i >= n:
                    raise TlvError("tag runs past the end", offset=start)
                if i - start >= TAG_BYTES_MAX:
                    raise TlvError(f"tag longer than {TAG_BYTES_MAX} bytes", offset=start)
                b = data[i]
                i += 1
                if not b & 0x80:
                    break
        tag = data[start:i].hex().upper()
        if i >= n:
            raise TlvError("length missing", offset=i)
        length = data[i]
        i += 1
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > LENGTH_BYTES_MAX:
                raise TlvError("unsupported length form", offset=i - 1)
            if i + count > n:
                raise TlvError("length runs past the end", offset=i - 1)
            length = int.from_bytes(data[i : i + count], "big")
            i += count
        if i + length > n:
            raise TlvError("value runs past the end", offset=i)
        items.append(Tlv(tag, bytes(data[i : i + length])))
        i += length
    return items


def _encode_tag(tag: str) -> bytes:
    try:
        raw = bytes.fromhex(tag)
    except ValueError:
        raise TlvError("tag is not hex") from None
    if not 1 <= len(raw) <= TAG_BYTES_MAX:
        raise TlvError(f"tag must be 1..{TAG_BYTES_MAX} bytes")
    if raw[0] == 0x00:
        raise TlvError("tag 00 is padding, not a tag")
    multi = raw[0] & 0x1F == 0x1F
    if (len(raw) > 1) != multi:
        raise TlvError("tag's first byte disagrees with its length")
    if any(not b & 0x80 for b in raw[1:-1]) or (len(raw) > 1 and raw[-1] & 0x80):
        raise TlvError("tag continuation bits are wrong")
    return raw


def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    for count in range(1, LENGTH_BYTES_MAX + 1):
        if length < 1 << (8 * count):
            return bytes((0x80 | count,)) + length.to_bytes(count, "big")
    raise TlvError("value too long")


def build_tlv(items: Iterable[Tlv]) -> bytes:
    """Serialise data objects (definite, shortest length form)."""
    out = bytearray()
    for item in items:
        out += _encode_tag(item.tag)
        out += _encode_length(len(item.value))
        out += item.value
    return bytes(out)


def _display(item: Tlv, info: EmvTag | None, unmasked: bool) -> str:
    value = item.value
    if item.tag in SENSITIVE_TAGS and not unmasked:
        if item.tag == "5A":
            digits = value.hex().upper().rstrip("F")
            return mask_pan(digits) if digits.isdigit() else f"<{len(value)} bytes hidden>"
        return f"<{len(value)} bytes hidden>"
    fmt = info.format if info is not None else "b"
    if fmt == "an":
        text = value.decode("ascii", "replace")
        return text if text.isprintable() else value.hex().upper()
    if fmt == "n":
        digits = value.hex()
        return digits if digits.isdigit() else digits.upper()
    if fmt == "cn":
        return value.hex().upper().rstrip("F")
    return value.hex().upper()


def describe_emv(items: Iterable[Tlv], *, unmasked: bool = False) -> list[tuple[str, str, str]]:
    """(tag, name, displayable value) for each object; card data masked unless `unmasked`."""
    rows: list[tuple[str, str, str]] = []
    for item in items:
        info = EMV_TAGS.get(item.tag)
        rows.append(
            (item.tag, info.name if info is not None else "Unknown tag", _display(item, info, unmasked))
        )
    return rows
