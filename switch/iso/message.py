"""The ISO 8583 message as a value: an MTI and its data elements, immutable, safe to print.

Field values are text exactly as pyiso8583 gives them (digits, text, or upper-case hex for binary and
BCD-coded fields), keyed by field number. Typed accessors give the common fields as the pipeline wants
them (amount as int minor units, currency as its ISO 4217 numeric code). ISO 8583 dates and times carry
no year, so they stay text; the caller resolves the year against its clock.

`repr` shows the PAN as first 6 + last 4 and leaves out track data, PIN block and ICC data entirely
(fields 35, 36, 45, 52, 55), so a message can be logged or shown in a traceback without leaking them.
Responses are built from requests: the MTI class decides the response MTI and which fields are echoed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

from specs import iso1987
from switch.iso.errors import DecodeError, MessageError
from switch.masking import mask_pan

__all__ = ["DEFAULT_ECHO", "Message", "response_mti"]

HIDDEN_FIELDS: frozenset[int] = frozenset({35, 36, 45, 52, 55})
# Field keys as pyiso8583 spells them, prebuilt so the hot path does no int/str conversions.
_KEY: tuple[str, ...] = tuple(str(n) for n in range(129))
# For lookups by a caller's number: a dict, so -1 or 200 finds nothing instead of wrapping to field 128
# or raising IndexError; "" is never a field key.
_KEY_OF: dict[int, str] = {n: str(n) for n in range(2, 129) if n != 65}
_VALID_NUMBERS: frozenset[int] = frozenset(range(2, 129)) - {65}
DEFAULT_ECHO: Mapping[str, tuple[int, ...]] = {
    klass: tuple(n for n in numbers if n not in HIDDEN_FIELDS) for klass, numbers in iso1987.ECHO.items()
}
# Request function digit (third MTI digit) -> response function digit: request -> response,
# advice -> advice response. Notifications and responses have no response.
_RESPONSE_FUNCTION = {"0": "1", "2": "3"}


def response_mti(mti: str) -> str:
    """The MTI answering `mti`: 0100->0110, 0220->0230, 0421->0430 (a repeat is answered as the original)."""
    if len(mti) != 4 or not mti.isdigit() or mti[2] not in _RESPONSE_FUNCTION:
        raise MessageError("MTI has no response", mti=mti if mti.isdigit() else None)
    origin = int(mti[3])
    # The last digit names the originator; odd means "repeat", and a repeat is answered like the first.
    return mti[:2] + _RESPONSE_FUNCTION[mti[2]] + str(origin & ~1)


class Message:
    """An immutable ISO 8583 message. Build with `Message(mti, {field: value})`."""

    __slots__ = ("_fields", "mti")

    mti: str
    _fields: dict[str, str]

    def __init__(self, mti: str, fields: Mapping[int, str] | None = None) -> None:
        if not isinstance(mti, str) or len(mti) != 4 or not (mti.isascii() and mti.isdigit()):
            raise MessageError("MTI must be 4 digits")
        checked: dict[str, str] = {}
        for number, value in (fields or {}).items():
            if not isinstance(number, int) or number not in _VALID_NUMBERS:
                raise MessageError("field number must be 2..128 and not 65", field=str(number), mti=mti)
            if not isinstance(value, str):
                raise MessageError("field value must be text", field=number, mti=mti)
            checked[_KEY[number]] = value
        object.__setattr__(self, "mti", mti)
        object.__setattr__(self, "_fields", checked)

    @classmethod
    def _from_decoded(cls, mti: str, fields: dict[str, str]) -> Message:
        """Adopt a dict decoded by pyiso8583 (bitmaps and MTI already removed). No copy, no checks."""
        msg = object.__new__(cls)
        object.__setattr__(msg, "mti", mti)
        object.__setattr__(msg, "_fields", fields)
        return msg

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Message is immutable; use with_fields()")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Message is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Message, (self.mti, self.fields))

    # -- mapping-like access ---------------------------------------------------------------------

    def get(self, number: int) -> str | None:
        return self._fields.get(_KEY_OF.get(number, ""))

    def __getitem__(self, number: int) -> str:
        return self._fields[_KEY_OF[number]]

    def __contains__(self, number: object) -> bool:
        return isinstance(number, int) and _KEY_OF.get(number, "") in self._fields

    @property
    def numbers(self) -> tuple[int, ...]:
        """Present field numbers, ascending."""
        return tuple(sorted(map(int, self._fields)))

    def items(self) -> Iterator[tuple[int, str]]:
        """(field number, value) pairs, ascending by field number."""
        for number in self.numbers:
            yield number, self._fields[_KEY[number]]

    @property
    def fields(self) -> dict[int, str]:
        """A copy of the fields keyed by number."""
        return dict(self.items())

    def iso_dict(self) -> dict[str, str]:
        """A fresh pyiso8583 document (it mutates what it encodes, so each call gets its own)."""
        doc = self._fields.copy()
        doc["t"] = self.mti
        return doc

    def with_fields(
        self, updates: Mapping[int, str | None] | None = None, *, mti: str | None = None
    ) -> Message:
        """A copy with fields set (a None value removes the field) and optionally another MTI."""
        new_mti = self.mti
        if mti is not None:
            if not isinstance(mti, str) or len(mti) != 4 or not (mti.isascii() and mti.isdigit()):
                raise MessageError("MTI must be 4 digits")
            new_mti = mti
        # This message's fields are valid already: copy them as they are and check only the updates
        # (every response is built this way, so re-validating the whole message showed in profiles).
        fields = self._fields.copy()
        for number, value in (updates or {}).items():
            if not isinstance(number, int) or number not in _VALID_NUMBERS:
                raise MessageError("field number must be 2..128 and not 65", field=str(number), mti=new_mti)
            if value is None:
                fields.pop(_KEY[number], None)
            elif not isinstance(value, str):
                raise MessageError("field value must be text", field=number, mti=new_mti)
            else:
                fields[_KEY[number]] = value
        return Message._from_decoded(new_mti, fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.mti == other.mti and self._fields == other._fields

    def __hash__(self) -> int:
        return hash((self.mti, frozenset(self._fields.items())))

    def __repr__(self) -> str:
        shown: list[str] = []
        hidden: list[int] = []
        for number, value in self.items():
            if number in HIDDEN_FIELDS:
                hidden.append(number)
            elif number == 2:
                shown.append(f"2: {mask_pan(value)!r}")
            else:
                shown.append(f"{number}: {value!r}")
        text = f"Message(mti={self.mti!r}, fields={{{', '.join(shown)}}}"
        if hidden:
            text += f", hidden={tuple(hidden)}"
        return text + ")"

    # -- typed access to common fields -------------------------------------------------------------

    def _digits(self, number: int) -> str | None:
        value = self._fields.get(_KEY[number])
        if value is not None and not (value.isascii() and value.isdigit()):
            raise DecodeError("field is not numeric", field=number, mti=self.mti)
        return value

    @property
    def pan(self) -> str | None:
        """Field 2. Never log it; `switch.masking.mask_pan` gives the displayable form."""
        return self._digits(2)

    @property
    def processing_code(self) -> str | None:
        return self._digits(3)

    @property
    def amount(self) -> int | None:
        """Field 4 as an integer in minor units of `currency`."""
        value = self._digits(4)
        return int(value) if value is not None else None

    @property
    def transmission_datetime(self) -> str | None:
        """Field 7, MMDDhhmmss (UTC by convention)."""
        return self._digits(7)

    @property
    def stan(self) -> str | None:
        return self._digits(11)

    @property
    def local_time(self) -> str | None:
        """Field 12, hhmmss."""
        return self._digits(12)

    @property
    def local_date(self) -> str | None:
        """Field 13, MMDD."""
        return self._digits(13)

    @property
    def expiry(self) -> str | None:
        """Field 14, YYMM."""
        return self._digits(14)

    @property
    def pos_entry_mode(self) -> str | None:
        return self._digits(22)

    @property
    def rrn(self) -> str | None:
        return self.get(37)

    @property
    def response_code(self) -> str | None:
        return self.get(39)

    @property
    def terminal_id(self) -> str | None:
        return self.get(41)

    @property
    def merchant_id(self) -> str | None:
        return self.get(42)

    @property
    def currency(self) -> str | None:
        """Field 49, ISO 4217 numeric code."""
        return self._digits(49)

    # -- responses ---------------------------------------------------------------------------------

    def response(
        self,
        *,
        response_code: str | None = None,
        echo: Mapping[str, tuple[int, ...]] = DEFAULT_ECHO,
        updates: Mapping[int, str | None] | None = None,
    ) -> Message:
        """The response to this request: response MTI, echoed fields, field 39, then `updates`."""
        mti = response_mti(self.mti)
        fields: dict[int, str] = {}
        for number in echo.get(self.mti[1], ()):
            value = self._fields.get(_KEY[number])
            if value is not None and number not in HIDDEN_FIELDS:
                fields[number] = value
        if response_code is not None:
            fields[39] = response_code
        for number, value in (updates or {}).items():
            if value is None:
                fields.pop(number, None)
            else:
                fields[number] = value
        return Message(mti, fields)
