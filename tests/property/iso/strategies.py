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
# Characters of two bytes each in GBK (and other CJK encodings a dialect may give a text field).
_CJK = "银联商户测试北京上海深圳消费"
_NARROW_ENCODINGS = ("ascii", "cp500")


def _alphabet(fd: FieldDef) -> str:
    if fd.type == "n":
        return string.digits
    if fd.type == "z":
        return string.digits + "D" if fd.data == "bcd" else string.digits + "=D"
    if fd.data == "cp500":
        return _CP500_PRINTABLE if fd.type == "ans" else _ALNUM + " "
    return _ASCII_PRINTABLE if fd.type == "ans" else _ALNUM + " "


@st.composite
def _wide_text(draw: st.DrawFn, fd: FieldDef) -> str:
    """Text mixing one- and two-byte characters whose encoded size fits the field (lengths count bytes)."""
    fixed = fd.length_digits == 0
    size = fd.max_len if fixed else draw(st.integers(0, min(fd.max_len, _TEXT_LEN_CAP)))
    wide = draw(st.integers(0, size // 2))
    parts = draw(st.lists(st.sampled_from(_CJK), min_size=wide, max_size=wide))
    parts += list(draw(st.text(_ASCII_PRINTABLE, min_size=size - 2 * wide, max_size=size - 2 * wide)))
    return "".join(draw(st.permutations(parts)))


def field_values(fd: FieldDef) -> st.SearchStrategy[str]:
    """Any value the field may carry in its dialect."""
    if fd.data not in (*_NARROW_ENCODINGS, "bcd", "binary"):
        return _wide_text(fd)
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
