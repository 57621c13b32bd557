"""The one error hierarchy of the ISO 8583 wire layer.

Every failure of framing, headers, the codec, TLV parsing, dialect loading or the message model raises
an `IsoError` subclass. The errors are built to be logged as they are: they name the dialect, the field
number and the byte offset, and never hold raw bytes or field values (pyiso8583's own errors hold both,
so the codec wraps them and raises outside the `except` block, leaving no `__cause__` or `__context__`).
When the MTI could be read, `mti` carries it so the caller can answer a format error (field 39 = 30).
"""

from __future__ import annotations

__all__ = [
    "DecodeError",
    "EncodeError",
    "FramingError",
    "HeaderError",
    "IsoError",
    "MandatoryFieldError",
    "MessageError",
    "SpecError",
    "TlvError",
]


class IsoError(Exception):
    """Base of every wire-layer error. Safe to log: no raw bytes, no field values."""

    def __init__(
        self,
        reason: str,
        *,
        dialect: str | None = None,
        field: int | str | None = None,
        offset: int | None = None,
        mti: str | None = None,
    ) -> None:
        self.reason = reason
        self.dialect = dialect
        self.field = field
        self.offset = offset
        # Only a well-formed MTI is exposed; a half-read one says nothing useful and might not be one.
        self.mti = mti if mti is not None and len(mti) == 4 and mti.isdigit() else None
        super().__init__(self._text())

    def _text(self) -> str:
        parts = [self.reason]
        if self.dialect is not None:
            parts.append(f"dialect={self.dialect}")
        if self.mti is not None:
            parts.append(f"mti={self.mti}")
        if self.field is not None:
            parts.append(f"field={self.field}")
        if self.offset is not None:
            parts.append(f"offset={self.offset}")
        return " ".join(parts)

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructor: rebuild through a helper so the error pickles (worker processes).
        return (
            _rebuild,
            (type(self), self.reason, self.dialect, self.field, self.offset, self.mti, self._extra()),
        )

    def _extra(self) -> dict[str, object]:
        return {}


def _rebuild(
    cls: type[IsoError],
    reason: str,
    dialect: str | None,
    field: int | str | None,
    offset: int | None,
    mti: str | None,
    extra: dict[str, object],
) -> IsoError:
    err = cls.__new__(cls)
    # Extras first: a subclass's message text may use them.
    for key, value in extra.items():
        setattr(err, key, value)
    IsoError.__init__(err, reason, dialect=dialect, field=field, offset=offset, mti=mti)
    return err


class FramingError(IsoError):
    """The length prefix is malformed or announces a frame over the caller's limit. Close the stream."""


class HeaderError(IsoError):
    """The network header (TPDU, BASE I, CUPS) is malformed or disagrees with the frame."""


class DecodeError(IsoError):
    """The message body does not match the dialect's field table."""


class MandatoryFieldError(DecodeError):
    """The message decoded but lacks fields its MTI requires, or a field has a value the dialect forbids."""

    def __init__(
        self,
        reason: str,
        *,
        dialect: str | None = None,
        mti: str | None = None,
        missing: tuple[int, ...] = (),
        field: int | None = None,
    ) -> None:
        self.missing = missing
        super().__init__(reason, dialect=dialect, field=field, mti=mti)

    def _text(self) -> str:
        text = super()._text()
        if self.missing:
            text += " missing=" + ",".join(str(n) for n in self.missing)
        return text

    def _extra(self) -> dict[str, object]:
        return {"missing": self.missing}


class TlvError(DecodeError):
    """BER-TLV data (field 55) is malformed; offset counts from the start of the TLV data."""


class EncodeError(IsoError):
    """A message cannot be encoded in the dialect (wrong length, bad characters, unknown field)."""


class MessageError(IsoError):
    """The message model was asked for something it cannot do (bad MTI, field number, response class)."""


class SpecError(IsoError):
    """A dialect definition is invalid; raised when it loads, naming the dialect and the field."""
