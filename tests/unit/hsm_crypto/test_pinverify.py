"""IBM 3624 and Visa PVV PIN generation and verification (hsm.crypto.pinverify)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.crypto.des import tdes_ecb_encrypt
from hsm.crypto.errors import CryptoError
from hsm.crypto.pinverify import (
    ibm3624_natural_pin,
    ibm3624_offset,
    ibm3624_verify,
    random_pin,
    visa_pvv,
    visa_pvv_verify,
)

H = bytes.fromhex
DOUBLE_PVK = H("0123456789ABCDEFFEDCBA9876543210")
TABLE = "0123456789012345"

pins = st.text(alphabet="0123456789", min_size=4, max_size=12)


def test_ibm3624_natural_pin_of_published_example() -> None:
    """If the published 3624 example is recomputed, then the ciphertext and natural PIN 9046 match."""
    # IBM 3624 worked example (mamicode.com/info-detail-865237, example 2): card 1234567890123445, PIN key
    # 0123456789ABCDEF, encrypted card number 9A466AD30DFE0381, natural PIN 9046.
    key = H("0123456789ABCDEF")
    assert tdes_ecb_encrypt(key, H("1234567890123445")) == H("9A466AD30DFE0381")
    assert ibm3624_natural_pin(key, "1234567890123445", 4, TABLE) == "9046"


def test_ibm3624_offset_of_published_example() -> None:
    """If customer PIN 1234 is offset against natural PIN 9046, then the offset is the published 2298."""
    # Same source, example 2: offset 2298 for customer PIN 1234 (digit-wise subtraction mod 10).
    assert ibm3624_offset(H("0123456789ABCDEF"), "1234567890123445", "1234", TABLE, 4) == "2298"


def test_ibm3624_six_digit_published_example() -> None:
    """If the 6-digit published example is recomputed, then natural PIN 643085 and offset 456789 match."""
    # Same source, example 1: account 1234567890123456, PVK 1313131313131313, natural PIN 643085;
    # offset 456789 gives customer PIN 099764.
    key = H("1313131313131313")
    assert ibm3624_natural_pin(key, "1234567890123456", 6, TABLE) == "643085"
    assert ibm3624_offset(key, "1234567890123456", "099764", TABLE, 6) == "456789"
    assert ibm3624_verify(key, "1234567890123456", "099764", "456789", TABLE, 6)


def test_ibm3624_double_length_pvk_cross_check() -> None:
    """If a double-length PVK is used, then results match an independent implementation (psec)."""
    # Cross-check, not a standards vector: knovichikhin/psec tests/test_pin.py (PVK 0123...3210, table
    # 1234567890123456, validation data 1122334455667788): natural PIN 4524, offset 7710 for PIN 1234.
    table = "1234567890123456"
    assert ibm3624_natural_pin(DOUBLE_PVK, "1122334455667788", 4, table) == "4524"
    assert ibm3624_offset(DOUBLE_PVK, "1122334455667788", "1234", table, 4) == "7710"


def test_ibm3624_check_length_uses_rightmost_digits() -> None:
    """If the check length is shorter than the PIN, then only the rightmost digits are offset and checked."""
    # IBM z/OS ICSF "PIN offset generation algorithm": the rightmost m digits of the offset data form the
    # PIN offset, m being the PIN check length.
    full = ibm3624_offset(DOUBLE_PVK, "1122334455667788", "123456", TABLE, 6)
    short = ibm3624_offset(DOUBLE_PVK, "1122334455667788", "123456", TABLE, 4)
    assert short == full[-4:]
    assert ibm3624_verify(DOUBLE_PVK, "1122334455667788", "993456", short, TABLE, 4)


@given(pin=pins, data=st.text(alphabet="0123456789ABCDEF", min_size=1, max_size=16))
def test_ibm3624_offset_then_verify(pin: str, data: str) -> None:
    """If an offset is generated for a PIN, then that PIN verifies and a changed last digit does not."""
    offset = ibm3624_offset(DOUBLE_PVK, data, pin, TABLE, len(pin))
    assert ibm3624_verify(DOUBLE_PVK, data, pin, offset, TABLE, len(pin))
    wrong = pin[:-1] + str((int(pin[-1]) + 1) % 10)
    assert not ibm3624_verify(DOUBLE_PVK, data, wrong, offset, TABLE, len(pin))


def test_visa_pvv_decimalisation_of_published_ciphertext() -> None:
    """If the TSP of the published PVV example is encrypted, then ciphertext 517EF00CDEEDE498 gives PVV 5170."""
    # EFT Calculator discussion 265067 (codeplex): PVK A 4CA2161637D0133E, PVK B 5E151AEA45DA2A12, PVKI 1,
    # PIN 1234, TSP 9999789012311234 -> 517EF00CDEEDE498 -> PVV 5170. The PAN here is chosen so that its 11
    # digits left of the check digit are 99997890123 (the TSP convention of jPOS and psec; that thread's
    # calculator picks a different 11 digits from its PAN, so its PAN is not reused).
    pvk = H("4CA2161637D0133E5E151AEA45DA2A12")
    assert tdes_ecb_encrypt(pvk, H("9999789012311234")) == H("517EF00CDEEDE498")
    assert visa_pvv(pvk, "0999978901239", 1, "1234") == "5170"


def test_visa_pvv_second_published_example() -> None:
    """If the thread's second TSP is used, then ciphertext 07AFC9BF82CC172E gives PVV 0798."""
    # EFT Calculator discussion 265067 (codeplex): TSP 9978901234111234 -> 07AFC9BF82CC172E -> PVV 0798.
    pvk = H("4CA2161637D0133E5E151AEA45DA2A12")
    assert tdes_ecb_encrypt(pvk, H("9978901234111234")) == H("07AFC9BF82CC172E")
    assert visa_pvv(pvk, "0997890123419", 1, "1234") == "0798"


def test_visa_pvv_second_scan_uses_letters_minus_ten() -> None:
    """If the ciphertext has fewer than four decimal digits, then letters minus ten complete the PVV."""
    # IBM z/OS ICSF "PVV generation algorithm", second scan rule; no published vector exercises it, so a
    # TSP that needs it is searched for and the rule is restated independently here.
    pvk = H("4CA2161637D0133E5E151AEA45DA2A12")
    for candidate in range(100000):
        pin = f"{candidate % 10000:04d}"
        pan = f"4{candidate:011d}7"
        ciphertext = tdes_ecb_encrypt(pvk, H(f"{pan[-12:-1]}1{pin}")).hex().upper()
        decimals = [c for c in ciphertext if c.isdigit()]
        if len(decimals) < 4:
            letters = [str(int(c, 16) - 10) for c in ciphertext if not c.isdigit()]
            expected = "".join(decimals + letters)[:4]
            assert visa_pvv(pvk, pan, 1, pin) == expected
            break
    else:
        pytest.fail("no TSP with fewer than four decimal digits found")


def test_visa_pvv_cross_check() -> None:
    """If the PVV is computed for known inputs, then it matches an independent implementation (psec)."""
    # Cross-check, not a standards vector: knovichikhin/psec tests/test_pin.py (PVK 0123...3210).
    assert visa_pvv(DOUBLE_PVK, "1122334455667788", 1, "4524") == "8523"
    assert visa_pvv(DOUBLE_PVK, "1122334455667788", 2, "1912") == "3244"
    assert visa_pvv(DOUBLE_PVK, "1122334455667718", 1, "0570") == "3144"


@given(pin=pins, pvki=st.integers(min_value=0, max_value=9))
def test_visa_pvv_verify_round_trip(pin: str, pvki: int) -> None:
    """If a PVV is generated for a PIN, then that PIN verifies against it and the PVV is 4 digits."""
    pvv = visa_pvv(DOUBLE_PVK, "4111111111111111", pvki, pin)
    assert len(pvv) == 4 and pvv.isdigit()
    assert visa_pvv_verify(DOUBLE_PVK, "4111111111111111", pvki, pin, pvv)


def test_visa_pvv_verify_rejects_wrong_pvv() -> None:
    """If the stored PVV differs, then verification returns False instead of raising."""
    pvv = visa_pvv(DOUBLE_PVK, "4111111111111111", 1, "1234")
    wrong = f"{(int(pvv) + 1) % 10000:04d}"
    assert not visa_pvv_verify(DOUBLE_PVK, "4111111111111111", 1, "1234", wrong)


@given(st.integers(min_value=4, max_value=12))
def test_random_pin_has_requested_length(length: int) -> None:
    """If a random PIN is requested, then it has that many decimal digits."""
    pin = random_pin(length)
    assert len(pin) == length and pin.isdigit()


def test_random_pins_vary() -> None:
    """If many random PINs are drawn, then they are not all the same."""
    assert len({random_pin(12) for _ in range(20)}) > 1


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda: ibm3624_natural_pin(DOUBLE_PVK, "1234", 3, TABLE), "24"),
        (lambda: ibm3624_natural_pin(DOUBLE_PVK, "1234", 13, TABLE), "24"),
        (lambda: ibm3624_natural_pin(DOUBLE_PVK, "12G4", 4, TABLE), "15"),
        (lambda: ibm3624_natural_pin(DOUBLE_PVK, "12345678901234567", 4, TABLE), "15"),
        (lambda: ibm3624_natural_pin(DOUBLE_PVK, "1234", 4, "012345678901234"), "15"),
        (lambda: ibm3624_natural_pin(DOUBLE_PVK, "1234", 4, "012345678901234A"), "15"),
        (lambda: ibm3624_natural_pin(bytes(7), "1234", 4, TABLE), "27"),
        (lambda: ibm3624_offset(DOUBLE_PVK, "1234", "12345", TABLE, 6), "15"),
        (lambda: ibm3624_offset(DOUBLE_PVK, "1234", "123", TABLE, 3), "24"),
        (lambda: ibm3624_verify(DOUBLE_PVK, "1234", "1234", "12", TABLE, 4), "15"),
        (lambda: ibm3624_verify(DOUBLE_PVK, "1234", "1234", "12A4", TABLE, 4), "15"),
        (lambda: visa_pvv(DOUBLE_PVK[:8], "4111111111111111", 1, "1234"), "27"),
        (lambda: visa_pvv(DOUBLE_PVK, "41111111111", 1, "1234"), "15"),
        (lambda: visa_pvv(DOUBLE_PVK, "4111111111111111", 10, "1234"), "15"),
        (lambda: visa_pvv(DOUBLE_PVK, "4111111111111111", 1, "12a4"), "15"),
        (lambda: visa_pvv(DOUBLE_PVK, "4111111111111111", 1, "123"), "24"),
        (lambda: visa_pvv_verify(DOUBLE_PVK, "4111111111111111", 1, "1234", "123"), "15"),
        (lambda: random_pin(3), "24"),
    ],
)
def test_bad_input_raises_crypto_error_with_code(call, code: str) -> None:
    """If an argument is malformed, then CryptoError carries the documented payShield code."""
    with pytest.raises(CryptoError) as raised:
        call()
    assert raised.value.code == code
