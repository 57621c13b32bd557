"""Reading terminal requests: transaction types, card data, amounts, original data, balances."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switch.domain.results import TERMINAL_RESPONSE_CODES, Result
from switch.domain.transactions import (
    AdditionalAmount,
    TransactionType,
    auth_code_for,
    classify,
    format_additional_amounts,
    parse_additional_amounts,
    parse_amount,
    parse_card_data,
    parse_original_data,
    parse_replacement_amount,
)

PAN = "9900010000000019"


def test_purchase_and_its_completion_variant():
    """If an 0200 has processing code 00, then it is a purchase, and a completion when 25 = 06."""
    assert classify("0200", "000000", "00").type is TransactionType.PURCHASE
    assert classify("0200", "000000", "06").type is TransactionType.COMPLETION


def test_authorization_messages():
    """If an 0100 asks 00 or 31, then it is a pre-authorization or a balance inquiry."""
    assert classify("0100", "000000", None).type is TransactionType.PREAUTH
    assert classify("0100", "310000", None).type is TransactionType.BALANCE
    assert classify("0100", "010000", None) is None


def test_reversal_and_repeat_are_reversals_of_the_type():
    """If an 0400, 0401 or 0421 arrives, then it is a reversal of the processing code's type."""
    for mti in ("0400", "0401", "0420", "0421"):
        c = classify(mti, "010000", None)
        assert c is not None and c.reversal and c.type is TransactionType.WITHDRAWAL


def test_accounts_come_from_processing_code():
    """If field 3 is 401020, then from-account is 10 and to-account 20."""
    c = classify("0200", "401020", None)
    assert c is not None and (c.type, c.from_account, c.to_account) == (TransactionType.TRANSFER, "10", "20")


def test_unknown_codes_are_none():
    """If the processing code is unknown or malformed, then there is no transaction."""
    assert classify("0200", "770000", None) is None
    assert classify("0200", "00", None) is None
    assert classify("0800", "000000", None) is None


def test_track2_with_equals_and_d_separators():
    """If track 2 uses '=' or 'D', then PAN, expiry, service code and discretionary data are split out."""
    for sep in "=D":
        data = parse_card_data(None, f"{PAN}{sep}30122011234567", None)
        assert data is not None
        assert (data.pan.digits, data.expiry_yymm, data.service_code, data.discretionary) == (
            PAN,
            "3012",
            "201",
            "1234567",
        )
        assert data.from_track2


def test_manual_entry_uses_fields_2_and_14():
    """If there is no track 2, then the PAN comes from field 2 and the expiry from 14."""
    data = parse_card_data(PAN, None, "3012")
    assert data is not None and data.expiry_yymm == "3012" and not data.from_track2


def test_malformed_card_data_is_none():
    """If track 2 has no separator or a short PAN, then there is no card data."""
    assert parse_card_data(None, "12345", None) is None
    assert parse_card_data(None, f"{PAN}30122011", None) is None
    assert parse_card_data("12ab", None, None) is None
    assert parse_card_data(None, None, None) is None


def test_pan_repr_is_masked():
    """If card data is printed, then the PAN shows as first 6 and last 4."""
    data = parse_card_data(PAN, None, None)
    assert PAN not in repr(data)
    assert "990001******0019" in repr(data)


def test_amounts():
    """If field 4 is 12 digits, then it is integer minor units; anything else is None."""
    assert parse_amount("000000012345") == 12345
    assert parse_amount("12.34") is None
    assert parse_amount(None) is None
    assert parse_amount("1234567890123") is None


def test_original_data_elements():
    """If field 90 has 42 digits, then MTI, STAN and transmission time are read from it."""
    original = parse_original_data("0200" + "000123" + "1123193500" + "0" * 22)
    assert original is not None and (original.mti, original.stan, original.transmission) == (
        "0200",
        "000123",
        "1123193500",
    )
    assert parse_original_data("0200") is None


def test_replacement_amount():
    """If field 95 is present, then its first 12 digits are the actual amount."""
    assert parse_replacement_amount("000000004000" + "0" * 30) == 4000
    assert parse_replacement_amount(None) is None


@given(
    st.lists(
        st.builds(
            AdditionalAmount,
            st.sampled_from(["00", "10", "20"]),
            st.sampled_from(["01", "02", "40"]),
            st.sampled_from([840, 364, 156]),
            st.integers(min_value=-(10**12) + 1, max_value=10**12 - 1),
        ),
        max_size=6,
    )
)
def test_additional_amounts_round_trip(amounts):
    """If balances are formatted into field 54, then parsing gives them back, signs included."""
    assert parse_additional_amounts(format_additional_amounts(amounts)) == amounts


def test_auth_code_is_stable_and_six_digits():
    """If the same transfer id is given twice, then the same 6-digit code comes back."""
    code = auth_code_for("POS00001:1123193500:000001")
    assert code == auth_code_for("POS00001:1123193500:000001")
    assert len(code) == 6 and code.isdigit()


def test_every_result_has_a_terminal_code():
    """If a result exists, then the terminal dialect has a 2-digit field 39 for it."""
    for result in Result:
        code = TERMINAL_RESPONSE_CODES[result]
        assert len(code) == 2 and code.isdigit()
