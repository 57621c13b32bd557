"""Visa card verification values: CVV (magnetic stripe), CVV2 (printed, service code "000") and iCVV
(chip track-2 equivalent, service code "999"), all the same algorithm over different inputs.

The algorithm: PAN || expiry YYMM || service code, right-padded with zeros to 32 digits, split into two
blocks; block 1 is DES-encrypted under CVK A, XORed with block 2, and the result is TDES-encrypted under
CVK A || CVK B; the CVV is the first three digits of the Visa decimalisation scan of that ciphertext.
"""

from __future__ import annotations

import hmac

from hsm.crypto.des import tdes_ecb_encrypt
from hsm.crypto.errors import INVALID_INPUT, KEY_LENGTH, CryptoError
from hsm.crypto.pinverify import decimalize_visa

_CVK_PAIR_BYTES = 16
_CVV_DIGITS = 3
_PAN_DIGITS_MAX = 19
_DECIMAL_DIGITS = frozenset("0123456789")


def _check_decimal(value: str, what: str, length_min: int, length_max: int) -> None:
    if not length_min <= len(value) <= length_max or not _DECIMAL_DIGITS.issuperset(value):
        if length_min == length_max:
            raise CryptoError(INVALID_INPUT, f"{what} must be {length_min} decimal digits")
        raise CryptoError(INVALID_INPUT, f"{what} must be {length_min} to {length_max} decimal digits")


def card_verification_value(cvk_pair: bytes, pan: str, expiry_yymm: str, service_code: str) -> str:
    """The 3-digit CVV for these card data (use service code "000" for CVV2, "999" for iCVV)."""
    if len(cvk_pair) != _CVK_PAIR_BYTES:
        raise CryptoError(KEY_LENGTH, "CVK pair must be 16 bytes (CVK A || CVK B)")
    _check_decimal(pan, "PAN", 1, _PAN_DIGITS_MAX)
    _check_decimal(expiry_yymm, "expiry", 4, 4)
    _check_decimal(service_code, "service code", 3, 3)
    data = bytes.fromhex(f"{pan}{expiry_yymm}{service_code}".ljust(32, "0"))
    cvk_a = cvk_pair[:8]
    first = tdes_ecb_encrypt(cvk_a, data[:8])
    chained = (int.from_bytes(first, "big") ^ int.from_bytes(data[8:], "big")).to_bytes(8, "big")
    return decimalize_visa(tdes_ecb_encrypt(cvk_pair, chained).hex(), _CVV_DIGITS)


def verify_card_verification_value(
    cvk_pair: bytes, pan: str, expiry_yymm: str, service_code: str, value: str
) -> bool:
    """True when `value` is the CVV of these card data."""
    _check_decimal(value, "CVV", _CVV_DIGITS, _CVV_DIGITS)
    return hmac.compare_digest(card_verification_value(cvk_pair, pan, expiry_yymm, service_code), value)
