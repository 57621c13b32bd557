"""Load a dialect definition from `specs/`, validate it, and expand it into what the codec needs.

A definition is data (see `specs/__init__.py`): framing, header kind, how each ISO 8583 field type is
encoded on this wire, per-field overrides of the ISO 8583:1987 table, mandatory fields per MTI. This
module checks every part when the dialect loads, with a `SpecError` naming the dialect and the field,
so a bad edit fails at start-up and never in the middle of traffic. The result is a frozen `Dialect`
holding a ready pyiso8583 spec dict, built once, so the hot path does no per-message lookups.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import specs
from specs import iso1987
from switch.iso.errors import SpecError

__all__ = [
    "DIALECT_NAMES",
    "Dialect",
    "FieldDef",
    "FramingSpec",
    "HeaderSpec",
    "build_dialect",
    "load_dialect",
]

DIALECT_NAMES: tuple[str, ...] = specs.NAMES

FIELD_TYPES = ("n", "an", "ans", "z", "b")
DATA_ENCODINGS = ("ascii", "cp500", "bcd", "binary")
TEXT_DATA = ("ascii", "cp500")
LENGTH_ENCODINGS = ("ascii", "cp500", "binary", "bcd")
HEADER_KINDS = ("none", "tpdu", "visa", "cups")
PREFIX_KINDS = ("binary", "ascii")
# A misspelt key would otherwise be ignored silently (a "mandatroy" table would check nothing).
DEFINITION_KEYS = frozenset(
    {
        "name",
        "title",
        "framing",
        "header",
        "mti",
        "bitmap",
        "secondary_bitmap",
        "types",
        "fields",
        "field_encodings",
        "mandatory",
        "echo",
        "subfields",
        "fixed_values",
    }
)
FRAMING_KEYS = frozenset({"prefix", "prefix_bytes", "filler_bytes", "keepalive"})
# The default values each header layout takes from its definition (see switch.iso.headers.HeaderCodec).
HEADER_OPTIONS: Mapping[str, frozenset[str]] = {
    "none": frozenset(),
    "tpdu": frozenset({"tpdu_id"}),
    "visa": frozenset({"header_format", "text_format"}),
    "cups": frozenset({"flag_version"}),
}
SECONDARY_BITMAP_RULES = ("when_needed", "always")
# Fields that never leave the process in clear: dropped from reprs, redacted by the decode tool.
SENSITIVE_FIELDS: frozenset[int] = frozenset({35, 36, 45, 52, 55})
PAN_FIELD = 2


@dataclass(frozen=True, slots=True)
class FieldDef:
    """One data element as this dialect carries it."""

    number: int
    type: str  # "n", "an", "ans", "z" or "b"
    length_digits: int  # 0 fixed, 2 LLVAR, 3 LLLVAR (the standard's notion, whatever the wire encoding)
    max_len: int  # characters, digits, or bytes for "b" and for a multi-byte text encoding such as GBK
    name: str
    data: str  # "ascii", "cp500", "bcd", "binary", or a text encoding the dialect gives this field


@dataclass(frozen=True, slots=True)
class FramingSpec:
    """How frames are delimited on the stream: a length prefix, optional zero filler, keep-alives."""

    prefix: str  # "binary" (big-endian unsigned) or "ascii" (decimal digits)
    prefix_bytes: int
    filler_bytes: int
    keepalive: bool  # a zero-length frame is a keep-alive rather than an error


@dataclass(frozen=True, slots=True)
class HeaderSpec:
    """Which network header sits between the length prefix and the MTI, and its default values."""

    kind: str
    options: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Dialect:
    """A validated, expanded dialect. `iso_spec` is the pyiso8583 spec dict, built once."""

    name: str
    title: str
    framing: FramingSpec
    header: HeaderSpec
    mti_encoding: str
    bitmap_encoding: str
    # True: every message carries the secondary bitmap (128 bits), even with no field above 64.
    secondary_bitmap_always: bool
    fields: Mapping[int, FieldDef]
    iso_spec: Mapping[str, Mapping[str, Any]]
    mandatory: Mapping[str, tuple[int | tuple[int, ...], ...]]
    echo: Mapping[str, tuple[int, ...]]
    subfields: Mapping[int, tuple[tuple[str, int], ...]]
    fixed_values: Mapping[int, str]

    def field_name(self, number: int) -> str:
        fd = self.fields.get(number)
        return fd.name if fd is not None else f"Field {number}"


@functools.cache
def load_dialect(name: str) -> Dialect:
    """The validated dialect called `name`; SpecError if unknown or invalid. Cached: load once."""
    try:
        raw = specs.definition(name)
    except KeyError:
        raise SpecError(f"unknown dialect; known: {', '.join(DIALECT_NAMES)}", dialect=name) from None
    return build_dialect(raw)


def build_dialect(raw: Mapping[str, object]) -> Dialect:
    """Validate one raw definition and expand it. Public so tests can feed broken definitions."""
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError("definition has no name")
    v = _Validator(name)
    title = raw.get("title", name)
    if not isinstance(title, str):
        raise v.error("title must be text")
    unknown = sorted(str(key) for key in raw if key not in DEFINITION_KEYS)
    if unknown:
        raise v.error(f"unknown definition keys: {', '.join(unknown)}")
    framing = v.framing(raw.get("framing"))
    header = v.header(raw.get("header"))
    mti_encoding = v.choice(raw.get("mti"), ("ascii", "bcd"), "mti")
    bitmap_encoding = v.choice(raw.get("bitmap"), ("binary", "ascii"), "bitmap")
    secondary = v.choice(
        raw.get("secondary_bitmap", "when_needed"), SECONDARY_BITMAP_RULES, "secondary_bitmap"
    )
    types = v.types(raw.get("types"))
    fields = v.fields(raw.get("fields", {}), types, raw.get("field_encodings", {}))
    iso_spec = _expand(fields, types, mti_encoding, bitmap_encoding)
    mandatory = v.mandatory(raw.get("mandatory", {}))
    echo = v.echo(raw.get("echo", iso1987.ECHO))
    subfields = v.subfields(raw.get("subfields", {"90": iso1987.ORIGINAL_DATA_ELEMENTS}), fields)
    fixed_values = v.fixed_values(raw.get("fixed_values", {}), fields)
    return Dialect(
        name=name,
        title=title,
        framing=framing,
        header=header,
        mti_encoding=mti_encoding,
        bitmap_encoding=bitmap_encoding,
        secondary_bitmap_always=secondary == "always",
        fields=fields,
        iso_spec=iso_spec,
        mandatory=mandatory,
        echo=echo,
        subfields=subfields,
        fixed_values=fixed_values,
    )


def _expand(
    fields: Mapping[int, FieldDef],
    types: Mapping[str, Mapping[str, object]],
    mti_encoding: str,
    bitmap_encoding: str,
) -> dict[str, dict[str, Any]]:
    """The pyiso8583 spec dict for the validated parts."""
    bitmap: dict[str, Any] = (
        {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8}
        if bitmap_encoding == "binary"
        else {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 16}
    )
    spec: dict[str, dict[str, Any]] = {
        # Headers are handled by switch.iso.headers, so pyiso8583 sees none.
        "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0, "desc": "Message header"},
        "t": {
            "data_enc": "b" if mti_encoding == "bcd" else "ascii",
            "len_enc": "ascii",
            "len_type": 0,
            "max_len": 2 if mti_encoding == "bcd" else 4,
            "desc": "Message type indicator",
        },
        "p": {**bitmap, "desc": "Bitmap, primary"},
        "1": {**bitmap, "desc": "Bitmap, secondary"},
    }
    for number, fd in fields.items():
        rule = types[fd.type]
        spec[str(number)] = _field_spec(fd, rule)
    return spec


def _field_spec(fd: FieldDef, rule: Mapping[str, object]) -> dict[str, Any]:
    length = rule["length"]
    entry: dict[str, Any] = {"desc": fd.name}
    if fd.data == "bcd":
        entry.update(data_enc="b", len_count="nibbles", max_len=fd.max_len)
        entry["left_pad" if rule.get("pad", "left") == "left" else "right_pad"] = "0"
    elif fd.data == "binary":
        entry.update(data_enc="b", max_len=fd.max_len)
    else:
        entry.update(data_enc=fd.data, max_len=fd.max_len)
    if fd.length_digits == 0:
        entry.update(len_enc="ascii", len_type=0)
    elif length == "binary":
        entry.update(len_enc="b", len_type=1 if fd.max_len <= 0xFF else 2)
    elif length == "bcd":
        entry.update(len_enc="bcd", len_type=1 if fd.length_digits <= 2 else 2)
    else:
        entry.update(len_enc=length, len_type=fd.length_digits)
    return entry


class _Validator:
    """Checks one raw definition part by part; every error names the dialect and where it is."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    def error(self, reason: str, field: int | str | None = None) -> SpecError:
        return SpecError(reason, dialect=self.dialect, field=field)

    def mapping(self, value: object, where: str) -> Mapping[str, object]:
        if not isinstance(value, Mapping):
            raise self.error(f"{where} must be a mapping")
        return value

    def choice(self, value: object, allowed: tuple[str, ...], where: str) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.error(f"{where} must be one of {', '.join(allowed)}")
        return value

    def integer(self, value: object, where: str, low: int, high: int, field: int | str | None = None) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.error(f"{where} must be an integer in {low}..{high}", field)
        return value

    def framing(self, value: object) -> FramingSpec:
        m = self.mapping(value, "framing")
        unknown = sorted(str(key) for key in m if key not in FRAMING_KEYS)
        if unknown:
            raise self.error(f"unknown framing keys: {', '.join(unknown)}")
        prefix = self.choice(m.get("prefix"), PREFIX_KINDS, "framing.prefix")
        prefix_bytes = self.integer(
            m.get("prefix_bytes"), "framing.prefix_bytes", 1, 4 if prefix == "binary" else 6
        )
        filler_bytes = self.integer(m.get("filler_bytes", 0), "framing.filler_bytes", 0, 4)
        keepalive = m.get("keepalive", False)
        if not isinstance(keepalive, bool):
            raise self.error("framing.keepalive must be true or false")
        return FramingSpec(prefix, prefix_bytes, filler_bytes, keepalive)

    def header(self, value: object) -> HeaderSpec:
        m = self.mapping(value, "header")
        kind = self.choice(m.get("kind"), HEADER_KINDS, "header.kind")
        options: dict[str, int] = {}
        for key, opt in m.items():
            if key == "kind":
                continue
            if key not in HEADER_OPTIONS[kind]:
                raise self.error(f"header kind {kind} has no option {key!r}")
            options[key] = self.integer(opt, f"header.{key}", 0, 0xFF)
        return HeaderSpec(kind, options)

    def types(self, value: object) -> dict[str, Mapping[str, object]]:
        m = self.mapping(value, "types")
        out: dict[str, Mapping[str, object]] = {}
        for t in FIELD_TYPES:
            rule = self.mapping(m.get(t), f"types.{t}")
            data = self.choice(rule.get("data"), DATA_ENCODINGS, f"types.{t}.data")
            self.choice(rule.get("length"), LENGTH_ENCODINGS, f"types.{t}.length")
            if data == "bcd" and t not in ("n", "z"):
                raise self.error(f"types.{t}: BCD can only carry numeric or track data")
            if data == "binary" and t != "b":
                raise self.error(f"types.{t}: only type b may be binary")
            if t == "b" and data != "binary":
                raise self.error("types.b must be binary")
            if "pad" in rule:
                self.choice(rule["pad"], ("left", "right"), f"types.{t}.pad")
            if "max_len_cap" in rule:
                self.integer(rule["max_len_cap"], f"types.{t}.max_len_cap", 1, 9999)
            for key in rule:
                if key not in ("data", "length", "pad", "max_len_cap"):
                    raise self.error(f"types.{t}: unknown key {key!r}")
            self.codec_exists(data, f"types.{t}.data")
            self.codec_exists(str(rule["length"]), f"types.{t}.length")
            out[t] = rule
        return out

    def codec_exists(self, encoding: str, where: str) -> None:
        if encoding in ("bcd", "binary"):
            return
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise self.error(f"{where}: unknown text encoding") from None

    def fields(
        self, value: object, types: Mapping[str, Mapping[str, object]], encodings: object
    ) -> dict[int, FieldDef]:
        overrides = self.mapping(value, "fields")
        per_field = self.field_encodings(encodings)
        rows: dict[int, tuple[str, int, int, str]] = dict(iso1987.FIELDS)
        for key, row in overrides.items():
            number = self.field_number(key)
            if not isinstance(row, (list, tuple)) or len(row) != 4:
                raise self.error("override must be [type, length digits, max length, name]", number)
            ftype, digits, max_len, fname = row
            if not isinstance(ftype, str) or not isinstance(fname, str):
                raise self.error("override type and name must be text", number)
            rows[number] = (ftype, digits, max_len, fname)
        out: dict[int, FieldDef] = {}
        for number in range(2, 129):
            if number not in rows:
                raise self.error("field missing from the table", number)
            ftype, digits, max_len, fname = rows[number]
            if ftype not in FIELD_TYPES:
                raise self.error(f"type must be one of {', '.join(FIELD_TYPES)}", number)
            self.integer(digits, "length digits", 0, 3, number)
            if digits == 1:
                raise self.error("length digits must be 0 (fixed), 2 or 3", number)
            self.integer(max_len, "max length", 1, 9999, number)
            rule = types[ftype]
            cap = rule.get("max_len_cap")
            if digits and isinstance(cap, int):
                max_len = min(max_len, cap)
            data = str(rule["data"])
            if number in per_field:
                if ftype not in ("an", "ans") or data not in TEXT_DATA:
                    raise self.error("only a text field (an, ans) can take its own encoding", number)
                data = per_field[number]
            fd = FieldDef(number, ftype, digits, max_len, fname, data)
            self.check_fits(fd, str(rule["length"]))
            out[number] = fd
        return out

    def field_encodings(self, value: object) -> dict[int, str]:
        """Per-field text encodings that replace the type rule's (CUPS merchant names are GBK)."""
        m = self.mapping(value, "field_encodings")
        out: dict[int, str] = {}
        for key, encoding in m.items():
            number = self.field_number(key)
            if not isinstance(encoding, str) or encoding in ("bcd", "binary"):
                raise self.error("field encoding must name a text encoding", number)
            try:
                info = codecs.lookup(encoding)
            except LookupError:
                raise self.error("field encoding: unknown text encoding", number) from None
            # pyiso8583 calls str.encode/bytes.decode: a bytes-to-bytes codec (hex, zlib) would break it.
            if not info._is_text_encoding:
                raise self.error("field encoding: not a text encoding", number)
            out[number] = encoding
        return out

    def check_fits(self, fd: FieldDef, length: str) -> None:
        """A variable field's maximum must be expressible in its length prefix."""
        if fd.length_digits == 0:
            return
        if length == "binary":
            limit = 0xFFFF
        elif length == "bcd":
            limit = 99 if fd.length_digits <= 2 else 9999
        else:
            limit = 10**fd.length_digits - 1
        if fd.max_len > limit:
            raise self.error(f"max length {fd.max_len} does not fit the {length} length prefix", fd.number)

    def field_number(self, key: object, low: int = 2) -> int:
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise self.error("field key must be a number", str(key))
        try:
            number = int(key)
        except ValueError:
            raise self.error("field key must be a number", str(key)) from None
        if not low <= number <= 128 or number == 65:
            raise self.error("field number must be 2..128 and not 65", number)
        return number

    def mti(self, value: object) -> str:
        if not isinstance(value, str) or len(value) != 4 or not value.isdigit():
            raise self.error("MTI must be 4 digits", "mti")
        return value

    def mandatory(self, value: object) -> dict[str, tuple[int | tuple[int, ...], ...]]:
        m = self.mapping(value, "mandatory")
        out: dict[str, tuple[int | tuple[int, ...], ...]] = {}
        for mti, entries in m.items():
            self.mti(mti)
            if not isinstance(entries, (list, tuple)):
                raise self.error(f"mandatory.{mti} must be a list")
            items: list[int | tuple[int, ...]] = []
            for entry in entries:
                if isinstance(entry, (list, tuple)):
                    if not entry:
                        raise self.error(f"mandatory.{mti}: empty one-of group")
                    items.append(tuple(self.field_number(n) for n in entry))
                else:
                    items.append(self.field_number(entry))
            out[mti] = tuple(items)
        return out

    def echo(self, value: object) -> dict[str, tuple[int, ...]]:
        m = self.mapping(value, "echo")
        out: dict[str, tuple[int, ...]] = {}
        for klass, numbers in m.items():
            if not isinstance(klass, str) or len(klass) != 1 or not klass.isdigit():
                raise self.error("echo keys are one MTI class digit", "echo")
            if not isinstance(numbers, (list, tuple)):
                raise self.error(f"echo.{klass} must be a list")
            # Sensitive data is never copied into a response, whatever the table says.
            out[klass] = tuple(
                n for n in (self.field_number(x) for x in numbers) if n not in SENSITIVE_FIELDS
            )
        return out

    def subfields(
        self, value: object, fields: Mapping[int, FieldDef]
    ) -> dict[int, tuple[tuple[str, int], ...]]:
        m = self.mapping(value, "subfields")
        out: dict[int, tuple[tuple[str, int], ...]] = {}
        for key, parts in m.items():
            number = self.field_number(key)
            if not isinstance(parts, (list, tuple)) or not parts:
                raise self.error("subfields must be a list of [name, length]", number)
            layout: list[tuple[str, int]] = []
            for part in parts:
                if not isinstance(part, (list, tuple)) or len(part) != 2 or not isinstance(part[0], str):
                    raise self.error("subfield must be [name, length]", number)
                layout.append((part[0], self.integer(part[1], "subfield length", 1, 999, number)))
            if sum(n for _, n in layout) > fields[number].max_len:
                raise self.error("subfields are longer than the field", number)
            out[number] = tuple(layout)
        return out

    def fixed_values(self, value: object, fields: Mapping[int, FieldDef]) -> dict[int, str]:
        m = self.mapping(value, "fixed_values")
        out: dict[int, str] = {}
        for key, fixed in m.items():
            number = self.field_number(key)
            if not isinstance(fixed, str):
                raise self.error("fixed value must be text", number)
            fd = fields[number]
            if fd.length_digits == 0 and len(fixed) != fd.max_len:
                raise self.error("fixed value does not have the field's length", number)
            out[number] = fixed
        return out
