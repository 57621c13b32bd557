"""Reading the fields of a host command, and the error every command handler raises.

Field layouts are positional (payShield style): fixed-length numeric/hex fields, key fields whose length
follows from their scheme tag, and a few variable fields ended by a delimiter or by the fixed-length tail
behind them. Every malformed field becomes a `HostError` with a payShield error code naming the problem
and the field, never its value.
"""

from __future__ import annotations

__all__ = ["FieldReader", "HostError"]

_HEX = frozenset("0123456789ABCDEF")
_DIGITS = frozenset("0123456789")
_TAGGED_KEY_HEX = {"Z": 16, "U": 32, "X": 32, "T": 48, "Y": 48}


class HostError(Exception):
    """A command failed with payShield error `code`; `data` is any response data sent after the code."""

    def __init__(self, code: str, message: str, data: str = "") -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.data = data


class FieldReader:
    """A cursor over a command's fields (the text after the command code)."""

    __slots__ = ("_pos", "_text")

    def __init__(self, text: str, pos: int = 0) -> None:
        self._text = text
        self._pos = pos

    def take(self, length: int, what: str) -> str:
        end = self._pos + length
        if end > len(self._text):
            raise HostError("15", f"message too short for field {what}")
        value = self._text[self._pos : end]
        self._pos = end
        return value

    def digits(self, length: int, what: str) -> str:
        value = self.take(length, what)
        if not _DIGITS.issuperset(value):
            raise HostError("15", f"field {what} must be decimal digits")
        return value

    def number(self, length: int, what: str) -> int:
        return int(self.digits(length, what))

    def hex(self, length: int, what: str) -> str:
        value = self.take(length, what).upper()
        if not _HEX.issuperset(value):
            raise HostError("15", f"field {what} must be hexadecimal")
        return value

    def key(self, what: str, *, bare_hex: int = 16) -> str:
        """A key field: a scheme tag and its hex (Z 16, U/X 32, T/Y 48) or `bare_hex` hex characters."""
        tag = self.peek(1)
        if tag == "S":
            raise HostError("26", f"key block LMK keys are not supported (field {what})")
        if tag in _TAGGED_KEY_HEX:
            self._pos += 1
            return tag + self.hex(_TAGGED_KEY_HEX[tag], what)
        return self.hex(bare_hex, what)

    def until(self, delimiter: str, what: str, length_max: int) -> str:
        """Characters up to (not including) `delimiter`, which is consumed."""
        end = self._text.find(delimiter, self._pos, self._pos + length_max + 1)
        if end < 0:
            raise HostError("15", f"field {what} is not followed by '{delimiter}'")
        value = self._text[self._pos : end]
        self._pos = end + 1
        return value

    def before_tail(self, tail_length: int, what: str) -> str:
        """The variable-length field that ends `tail_length` characters before the end of the message."""
        end = len(self._text) - tail_length
        if end <= self._pos:
            raise HostError("15", f"message too short for field {what}")
        value = self._text[self._pos : end]
        self._pos = end
        return value

    def peek(self, length: int = 1) -> str:
        return self._text[self._pos : self._pos + length]

    def rest(self) -> str:
        value = self._text[self._pos :]
        self._pos = len(self._text)
        return value

    def at_end(self) -> bool:
        return self._pos >= len(self._text)

    def optional(self, delimiter: str) -> bool:
        """Consume `delimiter` if it comes next; True when it did."""
        if self._text.startswith(delimiter, self._pos):
            self._pos += len(delimiter)
            return True
        return False
