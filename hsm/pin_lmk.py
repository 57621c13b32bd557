"""PIN under LMK: how the HSM hands a host a PIN to store (JE/JA/EE outputs, JG/DE/DG inputs).

payShield encrypts a host-stored PIN under LMK pair 02-03 into a string of decimal digits one longer than
the PIN ("LN+1"), bound to the 12-digit account number. The payShield algorithm is not published, so
this is OUR OWN scheme with the same shape, and a PIN under LMK from a hardware payShield cannot be read
here (nor ours there). What we implement, exactly:

- plaintext: the PIN digits followed by one check digit (Luhn over the PIN), so n = PIN length + 1 digits;
- cipher: a balanced Feistel network over decimal digits (the FF1 structure of NIST SP 800-38G: halves of
  floor(n/2) and ceil(n/2) digits, 10 rounds, addition modulo 10^m), whose round function is a TDES
  CBC-MAC under LMK pair 02-03 of [round, n, account (6 bytes BCD)] || [the other half as a number];
- the account number is a tweak: the same PIN for another account encrypts differently, and decrypting
  with the wrong account fails the check digit (error 20) nine times out of ten.
The output has exactly the payShield field length, so existing hosts store it unchanged.
"""

from __future__ import annotations

from hsm.crypto.des import tdes_ecb_encrypt
from hsm.crypto.errors import CryptoError

__all__ = ["decrypt_pin_from_lmk", "encrypt_pin_under_lmk"]

_ROUNDS = 10
_DIGITS = frozenset("0123456789")


def _luhn_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def _round_value(pin_key: bytes, round_index: int, length: int, account: str, half: str) -> int:
    first = bytes((round_index, length)) + bytes.fromhex(account)
    mixed = int.from_bytes(tdes_ecb_encrypt(pin_key, first), "big") ^ int(half or "0")
    return int.from_bytes(tdes_ecb_encrypt(pin_key, mixed.to_bytes(8, "big")), "big")


def _check_account(account: str) -> None:
    if len(account) != 12 or not _DIGITS.issuperset(account):
        raise CryptoError("15", "account number must be 12 decimal digits")


def encrypt_pin_under_lmk(pin_key: bytes, pin: str, account: str) -> str:
    """Encrypt a clear PIN (4-12 digits) for host storage under LMK pair 02-03 (`pin_key`), bound to `account`."""
    _check_account(account)
    if not 4 <= len(pin) <= 12:
        raise CryptoError("24", "PIN must be 4 to 12 digits")
    if not _DIGITS.issuperset(pin):
        raise CryptoError("15", "PIN must be decimal digits")
    digits = pin + _luhn_digit(pin)
    n = len(digits)
    u = n // 2
    a, b = digits[:u], digits[u:]
    for i in range(_ROUNDS):
        m = u if i % 2 == 0 else n - u
        c = (int(a) + _round_value(pin_key, i, n, account, b)) % 10**m
        a, b = b, str(c).zfill(m)
    return a + b


def decrypt_pin_from_lmk(pin_key: bytes, encrypted: str, account: str) -> str:
    """Inverse of `encrypt_pin_under_lmk`; error 20 when the check digit fails, 24/15 on a malformed field."""
    _check_account(account)
    if not _DIGITS.issuperset(encrypted):
        raise CryptoError("15", "PIN under LMK must be decimal digits")
    n = len(encrypted)
    if not 5 <= n <= 13:
        raise CryptoError("24", "PIN under LMK has the wrong length")
    u = n // 2
    # After an even number of rounds the halves are back in their original sizes.
    a, b = encrypted[:u], encrypted[u:]
    for i in reversed(range(_ROUNDS)):
        m = u if i % 2 == 0 else n - u
        c = b
        b = a
        a = str((int(c) - _round_value(pin_key, i, n, account, b)) % 10**m).zfill(m)
    digits = a + b
    pin, check = digits[:-1], digits[-1]
    if _luhn_digit(pin) != check:
        raise CryptoError("20", "PIN under LMK does not decrypt to a valid PIN")
    return pin
