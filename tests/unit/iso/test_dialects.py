"""Dialect definitions load, validate, and expand to the pyiso8583 spec each wire needs."""

from __future__ import annotations

import copy
from typing import Any

import iso8583.specs
import pytest

import specs
from switch.iso import DIALECT_NAMES, SpecError, load_dialect
from switch.iso.dialect import build_dialect


def _raw(name: str) -> dict[str, Any]:
    return copy.deepcopy(dict(specs.definition(name)))


@pytest.mark.parametrize("name", DIALECT_NAMES)
def test_every_shipped_dialect_loads(name: str) -> None:
    """If a shipped definition is loaded, then it validates and defines fields 2..128."""
    dialect = load_dialect(name)
    assert dialect.name == name
    assert set(dialect.fields) == set(range(2, 129))


def test_terminal_is_pyiso8583_default_layout() -> None:
    """If the terminal dialect is expanded, then every field matches pyiso8583's `default` spec."""
    ours = load_dialect("terminal").iso_spec
    for key, field in iso8583.specs.default.items():
        for attr in ("data_enc", "len_enc", "len_type", "max_len"):
            assert ours[key][attr] == field[attr], (key, attr)


def test_visa_numeric_fields_are_bcd_digit_counted() -> None:
    """If the Visa dialect is expanded, then field 2 is BCD counted in digits with a one-byte binary length."""
    f2 = load_dialect("visa").iso_spec["2"]
    assert (f2["data_enc"], f2["len_enc"], f2["len_type"], f2["len_count"], f2["left_pad"]) == (
        "b",
        "b",
        1,
        "nibbles",
        "0",
    )
    assert load_dialect("visa").iso_spec["41"]["data_enc"] == "cp500"


def test_unknown_dialect_is_spec_error() -> None:
    """If an unknown dialect is asked for, then SpecError names it."""
    with pytest.raises(SpecError) as info:
        load_dialect("amex")
    assert info.value.dialect == "amex"


def test_bad_field_type_names_dialect_and_field() -> None:
    """If an override uses an unknown field type, then SpecError names the dialect and the field."""
    raw = _raw("cups")
    raw["fields"] = {60: ["xyz", 3, 100, "Bad"]}
    with pytest.raises(SpecError) as info:
        build_dialect(raw)
    assert (info.value.dialect, info.value.field) == ("cups", 60)


def test_max_length_must_fit_prefix() -> None:
    """If a variable field's maximum exceeds its ASCII LL prefix, then SpecError names the field."""
    raw = _raw("terminal")
    raw["fields"] = {2: ["n", 2, 120, "PAN"]}
    with pytest.raises(SpecError) as info:
        build_dialect(raw)
    assert info.value.field == 2


def test_unknown_text_encoding_refused() -> None:
    """If a type rule names an encoding Python does not know, then SpecError is raised at load."""
    raw = _raw("visa")
    raw["types"] = {**raw["types"], "ans": {"data": "ebcdic-xyz", "length": "binary"}}
    with pytest.raises(SpecError) as info:
        build_dialect(raw)
    assert info.value.dialect == "visa"


def test_mandatory_field_65_refused() -> None:
    """If a mandatory list names field 65 (the tertiary bitmap bit), then SpecError is raised."""
    raw = _raw("shetab")
    raw["mandatory"] = {"0200": [3, 65]}
    with pytest.raises(SpecError) as info:
        build_dialect(raw)
    assert info.value.field == 65


def test_bad_mti_in_mandatory_refused() -> None:
    """If a mandatory table key is not a 4-digit MTI, then SpecError is raised."""
    raw = _raw("terminal")
    raw["mandatory"] = {"02X0": [3]}
    with pytest.raises(SpecError):
        build_dialect(raw)


def test_unknown_header_kind_refused() -> None:
    """If a definition names an unknown header kind, then SpecError is raised."""
    raw = _raw("terminal")
    raw["header"] = {"kind": "iso-header-9"}
    with pytest.raises(SpecError):
        build_dialect(raw)


def test_fixed_value_must_have_field_length() -> None:
    """If a fixed value's length differs from its fixed-length field, then SpecError names the field."""
    raw = _raw("shetab")
    raw["fixed_values"] = {49: "36"}
    with pytest.raises(SpecError) as info:
        build_dialect(raw)
    assert info.value.field == 49


def test_echo_table_never_includes_sensitive_fields() -> None:
    """If a definition's echo table lists track 2 or the PIN block, then the loaded table drops them."""
    raw = _raw("terminal")
    raw["echo"] = {"2": [11, 35, 52, 41]}
    assert build_dialect(raw).echo["2"] == (11, 41)


def test_subfields_longer_than_field_refused() -> None:
    """If a subfield layout is longer than its field, then SpecError names the field."""
    raw = _raw("cups")
    raw["subfields"] = {90: [["a", 40], ["b", 10]]}
    with pytest.raises(SpecError) as info:
        build_dialect(raw)
    assert info.value.field == 90


def test_misspelt_definition_key_refused() -> None:
    """If a definition has a key the loader does not know (a typo of "mandatory"), then SpecError names it."""
    raw = _raw("visa")
    raw["mandatroy"] = raw.pop("mandatory")
    with pytest.raises(SpecError) as info:
        build_dialect(raw)
    assert info.value.dialect == "visa"
    assert "mandatroy" in str(info.value)


def test_unknown_framing_key_refused() -> None:
    """If the framing names a key the framer does not know, then SpecError is raised at load."""
    raw = _raw("terminal")
    raw["framing"] = {**raw["framing"], "prefix_byte": 2}
    with pytest.raises(SpecError):
        build_dialect(raw)


def test_header_option_of_another_kind_refused() -> None:
    """If a TPDU header is given a CUPS option, then SpecError is raised instead of ignoring it."""
    raw = _raw("terminal")
    raw["header"] = {"kind": "tpdu", "flag_version": 2}
    with pytest.raises(SpecError):
        build_dialect(raw)


def test_cups_merchant_name_is_gbk() -> None:
    """If the CUPS dialect is expanded, then field 43 is GBK and the other text fields stay ASCII."""
    spec = load_dialect("cups").iso_spec
    assert (spec["43"]["data_enc"], spec["42"]["data_enc"]) == ("gbk", "ascii")


@pytest.mark.parametrize(
    ("number", "encoding"),
    [(4, "gbk"), (52, "gbk"), (43, "no-such-codec"), (43, "hex"), (43, "binary")],
)
def test_bad_field_encoding_refused(number: int, encoding: str) -> None:
    """If a field encoding targets a non-text field or is no text codec, then SpecError names the field."""
    raw = _raw("cups")
    raw["field_encodings"] = {number: encoding}
    with pytest.raises(SpecError) as info:
        build_dialect(raw)
    assert (info.value.dialect, info.value.field) == ("cups", number)


def test_secondary_bitmap_rule_checked() -> None:
    """If secondary_bitmap is neither "always" nor "when_needed", then SpecError is raised."""
    raw = _raw("cups")
    raw["secondary_bitmap"] = "sometimes"
    with pytest.raises(SpecError):
        build_dialect(raw)
