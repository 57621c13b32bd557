"""Errors of the wire layer: they name dialect, field, offset and MTI, and never carry card data."""

from __future__ import annotations

import pickle
import traceback

import pytest

from switch.iso import Codec, DecodeError, IsoError, MandatoryFieldError, Message
from switch.iso.samples import SAMPLE_PAN, typical_0200

TRACK2_DIGITS = "26122011758928889"


def _broken_terminal_frame() -> bytes:
    """A typical terminal 0200 whose last field (55) is cut short, after the PAN and track 2."""
    codec = Codec("terminal")
    message, header = typical_0200("terminal")
    payload = codec.encode_payload(message, header)[:-10]
    return len(payload).to_bytes(2, "big") + payload


def _decode_error() -> DecodeError:
    with pytest.raises(DecodeError) as info:
        Codec("terminal").decode_frame(_broken_terminal_frame())
    return info.value


def test_decode_error_names_field_offset_and_mti() -> None:
    """If a field is truncated, then the error names the dialect, the field, a byte offset and the MTI."""
    err = _decode_error()
    assert (err.dialect, err.field, err.mti) == ("terminal", 55, "0200")
    assert err.offset is not None
    assert 0 < err.offset < len(_broken_terminal_frame())


def test_decode_error_text_has_no_card_data() -> None:
    """If a frame with PAN and track 2 fails to decode, then str, repr and traceback show neither."""
    err = _decode_error()
    text = str(err) + repr(err) + "".join(traceback.format_exception(err))
    assert SAMPLE_PAN not in text
    assert TRACK2_DIGITS not in text
    assert "0123456789ABCDEF" not in text.upper()  # the sample PIN block


def test_decode_error_does_not_chain_pyiso8583_error() -> None:
    """If pyiso8583 fails, then our error has neither __cause__ nor __context__ (which hold raw bytes)."""
    err = _decode_error()
    assert err.__cause__ is None
    assert err.__context__ is None


def test_decode_error_holds_no_bytes_or_values() -> None:
    """If a decode error is inspected, then none of its attributes holds bytes or a field value."""
    err = _decode_error()
    for value in vars(err).values():
        assert not isinstance(value, (bytes, bytearray, dict))
        assert SAMPLE_PAN not in str(value)


def test_error_pickles_with_its_parts() -> None:
    """If an error is pickled (sent to another process), then it comes back with the same parts."""
    err = _decode_error()
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is DecodeError
    assert (back.dialect, back.field, back.offset, back.mti, str(back)) == (
        err.dialect,
        err.field,
        err.offset,
        err.mti,
        str(err),
    )


def test_mandatory_field_error_pickles_with_missing_fields() -> None:
    """If a mandatory-field error is pickled, then the missing field numbers survive."""
    err = MandatoryFieldError("mandatory fields missing", dialect="visa", mti="0200", missing=(11, 41))
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), back.missing, back.mti, str(back)) == (
        MandatoryFieldError,
        (11, 41),
        "0200",
        str(err),
    )


def test_mti_not_exposed_when_unreadable() -> None:
    """If the MTI itself is garbage, then the error carries no MTI."""
    with pytest.raises(DecodeError) as info:
        Codec("terminal").decode_message(b"02X0" + bytes(8))
    assert info.value.mti is None


def test_bitmap_announcing_undefined_fields_is_a_decode_error() -> None:
    """If the secondary bitmap sets bit 65 (tertiary bitmap), then fields 129+ give a DecodeError."""
    body = (
        b"0200"
        + bytes.fromhex("8000000000000000")
        + bytes.fromhex("8000000000000000")
        + bytes.fromhex("8000000000000000")
    )
    with pytest.raises(DecodeError) as info:
        Codec("terminal").decode_message(body)
    assert info.value.field == 129
    assert info.value.mti == "0200"
    assert info.value.offset == 4  # where the bitmaps start


def test_extra_bytes_after_last_field_is_a_decode_error() -> None:
    """If bytes follow the last field, then decoding fails at that offset."""
    codec = Codec("shetab")
    body = codec.encode_message(Message("0800", {11: "000001"}))
    with pytest.raises(DecodeError) as info:
        codec.decode_message(body + b"9")
    assert info.value.offset == len(body)


def test_encode_error_names_field_without_value() -> None:
    """If a field has the wrong length, then EncodeError names the field and not the value."""
    from switch.iso import EncodeError

    with pytest.raises(EncodeError) as info:
        Codec("terminal").encode_message(Message("0200", {2: SAMPLE_PAN, 4: "12"}))
    assert info.value.field == 4
    assert SAMPLE_PAN not in str(info.value)
    assert info.value.__context__ is None


def test_all_errors_share_one_base() -> None:
    """If any wire-layer error type is caught as IsoError, then it is caught."""
    from switch.iso import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), IsoError)
