"""Masking of card data: first 6 + last 4, and the Luhn safety net over free text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switch.masking import luhn_valid, mask_pan, scrub_text


def with_check_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_valid(body + d):
            return body + d
    raise AssertionError("unreachable: one check digit always fits")


pans = st.integers(min_value=12, max_value=18).flatmap(
    lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n).map(with_check_digit)
)


def test_luhn_known_values():
    """If a well-known test PAN is checked, then Luhn accepts it and rejects a changed digit."""
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("")
    assert not luhn_valid("41111111111x1111")


def test_mask_pan_keeps_first_six_last_four():
    """If a 16-digit PAN is masked, then only the first 6 and last 4 digits remain."""
    assert mask_pan("4761739001010010") == "476173******0010"


def test_short_numbers_keep_only_last_four():
    """If the number is shorter than 13 digits, then only the last four are kept."""
    assert mask_pan("123456789") == "*****6789"


@given(pans, st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=20))
def test_scrub_masks_any_luhn_valid_pan_in_text(pan, around):
    """If free text holds a Luhn-valid 13-19 digit PAN, then the clear PAN is gone after scrubbing."""
    text = f"{around} {pan} {around}"
    scrubbed = scrub_text(text)
    assert pan not in scrubbed
    assert mask_pan(pan) in scrubbed


def test_scrub_leaves_non_luhn_numbers():
    """If a long digit run fails Luhn (an RRN, a timestamp), then it is left alone."""
    assert scrub_text("rrn 4111111111111112 ok") == "rrn 4111111111111112 ok"


def test_scrub_removes_track2():
    """If text holds track 2 equivalent data, then neither the PAN nor the discretionary data remain."""
    scrubbed = scrub_text("t2=4761739001010010D25122011143878089 end")
    assert "4761739001010010" not in scrubbed
    assert "2011143878089" not in scrubbed
