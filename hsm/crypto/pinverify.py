"""Issuer PIN generation and verification: IBM 3624 (natural PIN and offset) and Visa PVV.

These are the algorithms an issuer HSM runs to check a cardholder's PIN without storing it: the PIN is
recomputed from a PIN verification key and card data and compared with what the terminal sent. Verify
functions return a bool (a mismatch is a normal outcome, payShield's "01"); only malformed input raises.
"""

from __future__ import annotations

import hmac
import secrets

from hsm.crypto.des import tdes_ecb_encrypt
from hsm.crypto.errors import INVALID_INPUT, KEY_LENGTH, PIN_LENGTH, CryptoError

PIN_DIGITS_MIN = 4
PIN_DIGITS_MAX = 12
_VALIDATION_DATA_NIBBLES = 16
_VALIDATION_PAD = "F"  # IBM 3624 pad character when validation data is shorter than 16 digits
_PVK_PAIR_BYTES = 16
_PVV_DIGITS = 4
_PVKI_MAX = 9
_HEX_DIGITS = frozenset("0123456789ABCDEF")
_DECIMAL_DIGITS = frozenset("0123456789")


def _check_digits(value: str, what: str) -> None:
    if not value or not _DECIMAL_DIGITS.issuperset(value):
        raise CryptoError(INVALID_INPUT, f"{what} must be decimal digits")


def _check_pin(pin: str) -> None:
    _check_digits(pin, "PIN")
    if not PIN_DIGITS_MIN <= len(pin) <= PIN_DIGITS_MAX:
        raise CryptoError(PIN_LENGTH, f"PIN must be {PIN_DIGITS_MIN} to {PIN_DIGITS_MAX} digits")


def _check_decimalization_table(table: str) -> None:
    if len(table) != 16 or not _DECIMAL_DIGITS.issuperset(table):
        raise CryptoError(INVALID_INPUT, "decimalisation table must be 16 decimal digits")


def _intermediate_pin(pvk: bytes, validation_data: str, decimalization_table: str) -> str:
    """IBM 3624: encrypt the padded validation data under the PVK and decimalise all 16 nibbles."""
    upper = validation_data.upper()
    if not 1 <= len(upper) <= _VALIDATION_DATA_NIBBLES or not _HEX_DIGITS.issuperset(upper):
        raise CryptoError(INVALID_INPUT, "validation data must be 1 to 16 hex digits")
    _check_decimalization_table(decimalization_table)
    block = bytes.fromhex(upper.ljust(_VALIDATION_DATA_NIBBLES, _VALIDATION_PAD))
    ciphertext = tdes_ecb_encrypt(pvk, block).hex().upper()
    return "".join(decimalization_table[int(nibble, 16)] for nibble in ciphertext)


def ibm3624_natural_pin(pvk: bytes, validation_data: str, pin_length: int, decimalization_table: str) -> str:
    """The IBM 3624 natural (intermediate) PIN of `pin_length` digits for this validation data.

    Validation data shorter than 16 hex digits is right-padded with "F" (IBM's default pad character).
    """
    if not PIN_DIGITS_MIN <= pin_length <= PIN_DIGITS_MAX:
        raise CryptoError(PIN_LENGTH, f"PIN length must be {PIN_DIGITS_MIN} to {PIN_DIGITS_MAX}")
    return _intermediate_pin(pvk, validation_data, decimalization_table)[:pin_length]


def _check_check_length(check_length: int, pin_length: int) -> None:
    if not PIN_DIGITS_MIN <= check_length <= pin_length:
        raise CryptoError(INVALID_INPUT, "check length must be from 4 to the PIN length")


def ibm3624_offset(
    pvk: bytes, validation_data: str, pin: str, decimalization_table: str, check_length: int
) -> str:
    """The IBM 3624 offset for a customer PIN: the rightmost `check_length` digits of (PIN - natural PIN) mod 10."""
    _check_pin(pin)
    _check_check_length(check_length, len(pin))
    natural = ibm3624_natural_pin(pvk, validation_data, len(pin), decimalization_table)
    full_offset = "".join(str((int(c) - int(n)) % 10) for c, n in zip(pin, natural, strict=True))
    return full_offset[-check_length:]


def ibm3624_verify(
    pvk: bytes, validation_data: str, pin: str, offset: str, decimalization_table: str, check_length: int
) -> bool:
    """True when the rightmost `check_length` digits of the PIN equal those of natural PIN + offset (mod 10)."""
    _check_pin(pin)
    _check_check_length(check_length, len(pin))
    _check_digits(offset, "offset")
    if len(offset) < check_length:
        raise CryptoError(INVALID_INPUT, "offset is shorter than the check length")
    natural = ibm3624_natural_pin(pvk, validation_data, len(pin), decimalization_table)
    natural_tail = natural[-check_length:]
    offset_tail = offset[-check_length:]
    expected = "".join(str((int(n) + int(o)) % 10) for n, o in zip(natural_tail, offset_tail, strict=True))
    return hmac.compare_digest(expected, pin[-check_length:])


def _check_pvk_pair(pvk_pair: bytes) -> None:
    if len(pvk_pair) != _PVK_PAIR_BYTES:
        raise CryptoError(KEY_LENGTH, "PVK pair must be 16 bytes (PVK A || PVK B)")


_ONLY_DIGITS = str.maketrans("", "", "ABCDEFabcdef")
_ONLY_LETTERS_AS_DIGITS = str.maketrans("ABCDEFabcdef", "012345012345", "0123456789")


def decimalize_visa(ciphertext_hex: str, digits: int) -> str:
    """Visa's scan of a hex string: its decimal digits left to right, then (if short) its letters left to
    right minus 10; the first `digits` of that."""
    decimals = ciphertext_hex.translate(_ONLY_DIGITS)
    if len(decimals) >= digits:
        return decimals[:digits]
    return (decimals + ciphertext_hex.translate(_ONLY_LETTERS_AS_DIGITS))[:digits]


def visa_pvv(pvk_pair: bytes, pan: str, pvki: int, pin: str) -> str:
    """The 4-digit Visa PVV: TDES of TSP = 11 PAN digits before the check digit, PVKI, first 4 PIN digits."""
    _check_pvk_pair(pvk_pair)
    _check_pin(pin)
    _check_digits(pan, "PAN")
    if len(pan) < 12:
        raise CryptoError(INVALID_INPUT, "PAN must have at least 12 digits")
    if not 0 <= pvki <= _PVKI_MAX:
        raise CryptoError(INVALID_INPUT, "PVKI must be a single digit")
    tsp = f"{pan[-12:-1]}{pvki}{pin[:4]}"
    ciphertext = tdes_ecb_encrypt(pvk_pair, bytes.fromhex(tsp)).hex().upper()
    return decimalize_visa(ciphertext, _PVV_DIGITS)


def visa_pvv_verify(pvk_pair: bytes, pan: str, pvki: int, pin: str, pvv: str) -> bool:
    """True when the PVV recomputed from the PIN equals the stored one."""
    _check_digits(pvv, "PVV")
    if len(pvv) != _PVV_DIGITS:
        raise CryptoError(INVALID_INPUT, "PVV must be 4 digits")
    return hmac.compare_digest(visa_pvv(pvk_pair, pan, pvki, pin), pvv)


def random_pin(length: int) -> str:
    """A uniformly random PIN of `length` (4-12) digits from the `secrets` CSPRNG."""
    if not PIN_DIGITS_MIN <= length <= PIN_DIGITS_MAX:
        raise CryptoError(PIN_LENGTH, f"PIN length must be {PIN_DIGITS_MIN} to {PIN_DIGITS_MAX}")
    return f"{secrets.randbelow(10**length):0{length}d}"
