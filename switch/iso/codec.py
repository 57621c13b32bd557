"""The codec of one dialect: frame payload <-> header + `Message`, over pyiso8583 and `specs/` data.

Sans-IO: `Codec.framer()` splits a byte stream into frames, `decode_payload` turns a frame into a
`Packet` (header, message) or a `KeepAlive`, `encode_frame` turns a message back into bytes with its
header and length prefix. The hot path is one pyiso8583 call over a spec dict prebuilt at load time,
plus the header; nothing else loops over fields (pyiso8583 already checks lengths and encodings).

pyiso8583's errors carry the raw message and the partly decoded values, which may include a PAN or
track data. They never leave this module: the codec keeps only the field, offset, MTI and a reason
made of fixed words and numbers, and raises its own error outside the `except` block so that neither
`__cause__` nor `__context__` refers to the original.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import iso8583

from switch.iso.dialect import Dialect, load_dialect
from switch.iso.errors import DecodeError, EncodeError, FramingError, IsoError, MandatoryFieldError
from switch.iso.framing import Framer, prefix_frame
from switch.iso.headers import Header, HeaderCodec
from switch.iso.message import Message

__all__ = ["KEEPALIVE", "Codec", "KeepAlive", "Packet"]


@dataclass(frozen=True, slots=True)
class Packet:
    """One decoded frame: the message, its network header, and for a Visa reject the original header."""

    message: Message
    header: Header | None = None
    original_header: Header | None = None


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A zero-length frame on a dialect whose framing uses them to keep the link alive."""


KEEPALIVE = KeepAlive()

# pyiso8583 names the MTI and bitmaps with letters; our errors use words.
_FIELD_NAMES = {"t": "mti", "p": "bitmap", "1": "secondary bitmap", "h": "header"}
# A reason may keep words and small numbers (lengths); anything else is dropped, as a guard should
# pyiso8583 ever put data into a message.
_UNSAFE = re.compile(r"[^A-Za-z ,.\-0-9]|\d{5,}")


def _safe_reason(text: str) -> str:
    head = text.split(":", 1)[0]
    return _UNSAFE.sub("", head)[:120] or "malformed message"


def _field_ref(key: str) -> int | str:
    return int(key) if key.isdigit() else _FIELD_NAMES.get(key, "unknown")


class Codec:
    """Encode and decode one dialect. Build once per dialect and share: it holds no per-stream state."""

    def __init__(self, dialect: Dialect | str) -> None:
        self.dialect: Dialect = load_dialect(dialect) if isinstance(dialect, str) else dialect
        self.name = self.dialect.name
        self._spec = self.dialect.iso_spec
        self._headers = HeaderCodec(self.dialect.header.kind, self.dialect.header.options, dialect=self.name)
        self._bcd_mti = self.dialect.mti_encoding == "bcd"
        self._secondary_always = self.dialect.secondary_bitmap_always
        self._bitmap_at = 2 if self._bcd_mti else 4
        self._ascii_bitmap = self.dialect.bitmap_encoding == "ascii"

    @property
    def default_header(self) -> Header | None:
        return self._headers.default

    # -- message body ------------------------------------------------------------------------------

    def decode_message(self, data: bytes, *, base_offset: int = 0) -> Message:
        """Decode a message body (MTI, bitmaps, fields; no header). Offsets in errors add `base_offset`."""
        err: IsoError
        try:
            doc, _ = iso8583.decode(data, self._spec)
        except iso8583.DecodeError as exc:
            err = DecodeError(
                _safe_reason(exc.msg),
                dialect=self.name,
                field=_field_ref(exc.field),
                offset=base_offset + exc.pos,
                mti=exc.doc_dec.get("t"),
            )
        except KeyError as exc:
            # The bitmaps announce a field the spec lacks (a tertiary bitmap's fields 129-192).
            key = str(exc.args[0]) if exc.args else ""
            err = DecodeError(
                "bitmap announces a field the dialect does not define",
                dialect=self.name,
                field=_field_ref(key),
                # The bitmaps start right after the MTI; pyiso8583 does not say which byte it was at.
                offset=base_offset + self._bitmap_at,
                mti=self._peek_mti(data),
            )
        else:
            mti = doc.pop("t")
            del doc["p"]
            doc.pop("1", None)
            # One cheap check keeps the Message invariant (4 digits) for every dialect.
            if not (mti.isdigit() and mti.isascii()):
                err = DecodeError("MTI is not 4 digits", dialect=self.name, field="mti", offset=base_offset)
            else:
                return Message._from_decoded(mti, doc)
        raise err

    def _peek_mti(self, data: bytes) -> str | None:
        raw = data[:2].hex() if self._bcd_mti else data[:4].decode("ascii", "replace")
        return raw if raw.isdigit() else None

    def encode_message(self, message: Message) -> bytes:
        """Encode a message body (no header, no length prefix)."""
        err: IsoError
        try:
            body, _ = iso8583.encode(message.iso_dict(), self._spec)
        except iso8583.EncodeError as exc:
            err = EncodeError(
                _safe_reason(exc.msg), dialect=self.name, field=_field_ref(exc.field), mti=message.mti
            )
        else:
            if self._secondary_always:
                return self._with_secondary_bitmap(body)
            return bytes(body)
        raise err

    def _with_secondary_bitmap(self, body: bytearray) -> bytes:
        """The body with an all-zero secondary bitmap when pyiso8583 left it out (no field above 64).

        pyiso8583 adds the secondary bitmap only when a field 65-128 is present; a dialect whose
        network always sends 128 bits (CUPS) needs bit 1 set and eight zero bytes after the primary.
        """
        at = self._bitmap_at
        if self._ascii_bitmap:
            first = int(chr(body[at]), 16)
            if not first & 0x8:
                body[at] = ord(f"{first | 0x8:X}")
                body[at + 16 : at + 16] = b"0" * 16
        elif not body[at] & 0x80:
            body[at] |= 0x80
            body[at + 8 : at + 8] = bytes(8)
        return bytes(body)

    # -- frames ------------------------------------------------------------------------------------

    def framer(self, *, frame_bytes_max: int) -> Framer:
        """A fresh framer for one connection (the length prefix of this dialect)."""
        return Framer(self.dialect.framing, frame_bytes_max=frame_bytes_max, dialect=self.name)

    def decode_payload(self, payload: bytes) -> Packet | KeepAlive:
        """Decode one frame as the framer yields it: header then message, or a keep-alive."""
        if not payload:
            if self.dialect.framing.keepalive:
                return KEEPALIVE
            raise FramingError("zero-length frame", dialect=self.name, offset=0)
        header, original, offset = self._headers.decode(payload)
        message = self.decode_message(payload[offset:] if offset else payload, base_offset=offset)
        return Packet(message, header, original)

    def encode_payload(
        self, message: Message, header: Header | None = None, original_header: Header | None = None
    ) -> bytes:
        """Header (lengths computed; None means the dialect's default) plus the encoded message."""
        body = self.encode_message(message)
        return self._headers.encode(header, original_header, len(body)) + body

    def encode_frame(
        self, message: Message, header: Header | None = None, original_header: Header | None = None
    ) -> bytes:
        """A whole frame, ready to write: length prefix, header, message."""
        payload = self.encode_payload(message, header, original_header)
        return prefix_frame(self.dialect.framing, payload, dialect=self.name)

    def encode_keepalive(self) -> bytes:
        if not self.dialect.framing.keepalive:
            raise EncodeError("this dialect has no keep-alive frame", dialect=self.name)
        return prefix_frame(self.dialect.framing, b"", dialect=self.name)

    def decode_frame(self, frame: bytes) -> Packet | KeepAlive:
        """Decode exactly one whole frame (length prefix included), e.g. from a capture or the CLI."""
        framing = self.dialect.framing
        framer = Framer(framing, frame_bytes_max=max(1, len(frame)), dialect=self.name)
        framer.receive_data(frame)
        payload = framer.next_frame()
        if payload is None:
            raise FramingError(
                "frame is shorter than its length prefix says", dialect=self.name, offset=len(frame)
            )
        if framer.buffered_bytes:
            consumed = len(frame) - framer.buffered_bytes
            raise FramingError("data after the end of the frame", dialect=self.name, offset=consumed)
        head = framing.prefix_bytes + framing.filler_bytes
        try:
            return self.decode_payload(payload)
        except IsoError as exc:
            # Re-base offsets on the whole frame; the error holds no data, so copying its parts is safe.
            if exc.offset is not None:
                exc.offset += head
                exc.args = (exc._text(),)
            raise

    # -- message rules -----------------------------------------------------------------------------

    def response(
        self,
        request: Message,
        *,
        response_code: str | None = None,
        updates: Mapping[int, str | None] | None = None,
    ) -> Message:
        """The response to `request` with this dialect's echo table."""
        return request.response(response_code=response_code, echo=self.dialect.echo, updates=updates)

    def validate(self, message: Message) -> None:
        """Raise MandatoryFieldError if fields the MTI requires are missing or a fixed value differs.

        An MTI the dialect lists no rule for passes; routing decides whether it is supported.
        """
        missing: list[int] = []
        for entry in self.dialect.mandatory.get(message.mti, ()):
            if isinstance(entry, int):
                if entry not in message:
                    missing.append(entry)
            elif not any(n in message for n in entry):
                missing.append(entry[0])
        if missing:
            raise MandatoryFieldError(
                "mandatory fields missing", dialect=self.name, mti=message.mti, missing=tuple(missing)
            )
        for number, fixed in self.dialect.fixed_values.items():
            value = message.get(number)
            if value is not None and value != fixed:
                raise MandatoryFieldError(
                    "field value not allowed by the dialect", dialect=self.name, mti=message.mti, field=number
                )

    def subfields(self, message: Message, number: int) -> dict[str, str]:
        """Split a structured field (e.g. 60, 90) by the dialect's layout; missing trailing parts are absent."""
        layout = self.dialect.subfields.get(number)
        if layout is None:
            raise DecodeError("field has no subfield layout in this dialect", dialect=self.name, field=number)
        value = message.get(number)
        if value is None:
            return {}
        parts: dict[str, str] = {}
        position = 0
        for name, size in layout:
            if position >= len(value):
                break
            parts[name] = value[position : position + size]
            position += size
        if position < len(value):
            parts["remainder"] = value[position:]
        return parts
