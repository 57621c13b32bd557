"""Hypothesis strategies: valid messages of any dialect, built from the dialect's own field table."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from switch.iso.dialect import Dialect, FieldDef
from switch.iso.message import Message

_CP500_PRINTABLE = "".join(sorted(c for c in bytes(range(256)).decode("cp500") if c.isprintable()))
_ASCII_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
_ALNUM = string.ascii_letters + string.digits
_HEX = "0123456789ABCDEF"
# Keep examples small: a message with every field at its maximum is valid but slow to shrink.
_TEXT_LEN_CAP = 60
_FIELDS_PER_MESSAGE_MAX = 20


def _alphabet(fd: FieldDef) -> str:
    if fd.type == "n":
        return string.digits
    if fd.type == "z":
        return string.digits + "D" if fd.data == "bcd" else string.digits + "=D"
    if fd.data == "cp500":
        return _CP500_PRINTABLE if fd.type == "ans" else _ALNUM + " "
    return _ASCII_PRINTABLE if fd.type == "ans" else _ALNUM + " "


def field_values(fd: FieldDef) -> st.SearchStrategy[str]:
    """Any value the field may carry in its dialect."""
    if fd.data == "binary":
        if fd.length_digits == 0:
            return st.binary(min_size=fd.max_len, max_size=fd.max_len).map(lambda b: b.hex().upper())
        return st.binary(max_size=min(fd.max_len, _TEXT_LEN_CAP)).map(lambda b: b.hex().upper())
    alphabet = _alphabet(fd)
    if fd.length_digits == 0:
        return st.text(alphabet, min_size=fd.max_len, max_size=fd.max_len)
    return st.text(alphabet, max_size=min(fd.max_len, _TEXT_LEN_CAP))


def mtis() -> st.SearchStrategy[str]:
    return st.text(string.digits, min_size=4, max_size=4)


@st.composite
def messages(draw: st.DrawFn, dialect: Dialect) -> Message:
    """A valid message of `dialect`: random MTI, random subset of fields, valid values."""
    numbers = draw(
        st.sets(
            st.sampled_from(sorted(n for n in dialect.fields if n != 65)), max_size=_FIELDS_PER_MESSAGE_MAX
        )
    )
    fields = {n: draw(field_values(dialect.fields[n])) for n in sorted(numbers)}
    return Message(draw(mtis()), fields)
