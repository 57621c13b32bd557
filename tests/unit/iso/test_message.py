"""The message model: immutability, typed access, responses per MTI class, a masked repr."""

from __future__ import annotations

import pytest

from switch.iso import Codec, DecodeError, MandatoryFieldError, Message, MessageError, response_mti
from switch.iso.samples import SAMPLE_PAN, typical_0200


@pytest.mark.parametrize(
    ("request_mti", "expected"),
    [
        ("0100", "0110"),
        ("0101", "0110"),
        ("0200", "0210"),
        ("0201", "0210"),
        ("0220", "0230"),
        ("0221", "0230"),
        ("0400", "0410"),
        ("0401", "0410"),
        ("0420", "0430"),
        ("0421", "0430"),
        ("0800", "0810"),
        ("0801", "0810"),
    ],
)
def test_response_mti(request_mti: str, expected: str) -> None:
    """If a request or its repeat is answered, then the response MTI is the base response of its class."""
    assert response_mti(request_mti) == expected


@pytest.mark.parametrize("mti", ["0110", "0210", "0430", "0240", "02X0"])
def test_response_to_non_request_is_refused(mti: str) -> None:
    """If a response or notification MTI is asked for its response, then MessageError is raised."""
    with pytest.raises(MessageError):
        response_mti(mti)


def test_response_echoes_class_fields_and_sets_39() -> None:
    """If a 0200 is answered, then STAN, terminal and amount are echoed, 39 is set, sensitive data is not."""
    request, _ = typical_0200("terminal")
    response = Codec("terminal").response(request, response_code="00")
    assert response.mti == "0210"
    assert response[39] == "00"
    for number in (3, 4, 11, 37, 41, 42, 49):
        assert response[number] == request[number]
    for number in (35, 52, 55):
        assert number not in response


def test_network_management_response_echoes_only_its_class() -> None:
    """If an 0800 is answered, then only the network-management echo fields are copied."""
    request = Message("0800", {7: "1123193500", 11: "000001", 70: "301", 4: "000000000100"})
    response = request.response(response_code="00")
    assert response.fields == {7: "1123193500", 11: "000001", 70: "301", 39: "00"}


def test_typed_accessors() -> None:
    """If common fields are present, then typed accessors return them in their natural types."""
    msg, _ = typical_0200("terminal")
    assert msg.amount == 12345
    assert msg.pan == SAMPLE_PAN
    assert (msg.processing_code, msg.stan, msg.rrn) == ("000000", "000123", "633219000123")
    assert (msg.transmission_datetime, msg.local_time, msg.local_date) == ("1123193500", "193500", "1123")
    assert (msg.terminal_id, msg.merchant_id, msg.currency) == ("TERM0001", "MERCHANT0000001", "840")
    assert Message("0800").amount is None


def test_non_numeric_amount_is_decode_error() -> None:
    """If field 4 holds non-digits, then reading the amount raises DecodeError naming field 4."""
    with pytest.raises(DecodeError) as info:
        _ = Message("0200", {4: "00000000A000"}).amount
    assert info.value.field == 4


def test_message_is_immutable() -> None:
    """If code tries to set an attribute on a message, then AttributeError is raised."""
    msg = Message("0200", {3: "000000"})
    with pytest.raises(AttributeError):
        msg.mti = "0100"


def test_with_fields_returns_new_message() -> None:
    """If fields are changed with with_fields, then the original message is unchanged."""
    msg = Message("0200", {3: "000000", 4: "000000000100"})
    changed = msg.with_fields({4: None, 11: "000001"})
    assert changed.fields == {3: "000000", 11: "000001"}
    assert msg.fields == {3: "000000", 4: "000000000100"}


@pytest.mark.parametrize("fields", [{1: "x"}, {65: "00"}, {129: "x"}, {3: 123}])
def test_invalid_fields_are_refused(fields: dict[int, object]) -> None:
    """If a field number is outside 2..128, is 65, or a value is not text, then MessageError is raised."""
    with pytest.raises(MessageError):
        Message("0200", fields)  # type: ignore[arg-type]


def test_repr_masks_pan_and_drops_sensitive_fields() -> None:
    """If a message is printed, then the PAN is first 6 + last 4 and track, PIN and ICC values are absent."""
    msg, _ = typical_0200("terminal")
    text = repr(msg)
    assert SAMPLE_PAN not in text
    assert "476173******0010" in text
    assert "26122011758928889" not in text
    assert msg[52] not in text
    assert msg[55][:20] not in text
    assert "hidden=(35, 52, 55)" in text


def test_mandatory_fields_missing() -> None:
    """If a 0200 lacks mandatory fields, then validate names exactly the missing ones and the MTI."""
    msg, _ = typical_0200("visa")
    with pytest.raises(MandatoryFieldError) as info:
        Codec("visa").validate(msg.with_fields({11: None, 41: None}))
    assert info.value.missing == (11, 41)
    assert info.value.mti == "0200"


def test_one_of_group_satisfied_by_track2() -> None:
    """If field 2 is absent but track 2 is present, then the card identification rule is met."""
    msg, _ = typical_0200("terminal")
    Codec("terminal").validate(msg.with_fields({2: None}))


def test_one_of_group_missing_entirely() -> None:
    """If neither field 2 nor track 2 is present, then validate reports field 2 missing."""
    msg, _ = typical_0200("terminal")
    with pytest.raises(MandatoryFieldError) as info:
        Codec("terminal").validate(msg.with_fields({2: None, 35: None}))
    assert info.value.missing == (2,)


def test_shetab_currency_must_be_rial() -> None:
    """If a Shetab message carries a currency other than 364, then validate rejects field 49."""
    msg, _ = typical_0200("shetab")
    Codec("shetab").validate(msg)
    with pytest.raises(MandatoryFieldError) as info:
        Codec("shetab").validate(msg.with_fields({49: "840"}))
    assert info.value.field == 49


@pytest.mark.parametrize("name", ["terminal", "visa", "cups", "shetab"])
def test_typical_samples_satisfy_their_dialect(name: str) -> None:
    """If the shared typical 0200 of a dialect is validated, then it passes (bench and docs rely on it)."""
    msg, _ = typical_0200(name)
    Codec(name).validate(msg)


@pytest.mark.parametrize("number", [-1, 0, 1, 65, 129, 200])
def test_lookup_of_a_number_that_is_no_field_finds_nothing(number: int) -> None:
    """If a message is asked for a number that is no data element (e.g. -1), then it finds no field."""
    msg = Message("0200", {128: "0011223344556677", 2: SAMPLE_PAN})
    assert msg.get(number) is None
    assert number not in msg
    with pytest.raises(KeyError):
        _ = msg[number]
