"""ISO 9564-1 PIN blocks: formats 0, 1, 2 and 3 (64-bit, TDES) and format 4 (128-bit, AES).

This module owns the layout of every PIN block format, their validation on decode, and translation of a
PIN block from one key/format to another, which is the HSM's hottest operation (every network-bound
transaction). The translation path therefore works on integers and cached ciphers, with one hex
formatting per block for validation and no bytes/hex round trips.

Error codes: a format outside 0-4 is "23"; a block whose content is not a valid PIN block of the
requested format (control nibble, digits, fill, PAN binding) is "20"; a PIN or a PIN length nibble outside
4-12 digits is "24"; a malformed PAN or PIN string is "15"; a wrong key length is "27".
"""

from __future__ import annotations

import secrets

from hsm.crypto.des import aes_ecb_decrypt, aes_ecb_encrypt, tdes_ecb_decrypt, tdes_ecb_encrypt
from hsm.crypto.errors import (
    INVALID_INPUT,
    INVALID_PIN_BLOCK,
    INVALID_PIN_BLOCK_FORMAT,
    PIN_LENGTH,
    CryptoError,
)

PIN_DIGITS_MIN = 4
PIN_DIGITS_MAX = 12
PAN_DIGITS_MIN = 8  # ISO/IEC 7812-1 bounds on a PAN's length
PAN_DIGITS_MAX = 19
FORMATS = (0, 1, 2, 3, 4)
_PAN_BOUND_FORMATS = (0, 3, 4)  # formats whose PIN field is bound to the PAN
_DES_BLOCK_BYTES = 8
_AES_BLOCK_BYTES = 16
_NIBBLES_64 = 16
_DECIMAL_DIGITS = frozenset("0123456789")
_FORMAT3_FILL = "ABCDEF"
_FORMAT4_FILL = "A"


def _check_format(fmt: int) -> None:
    if fmt not in FORMATS:
        raise CryptoError(INVALID_PIN_BLOCK_FORMAT, "PIN block format must be 0, 1, 2, 3 or 4")


def _check_pin(pin: str) -> None:
    if not PIN_DIGITS_MIN <= len(pin) <= PIN_DIGITS_MAX:
        raise CryptoError(PIN_LENGTH, f"PIN must be {PIN_DIGITS_MIN} to {PIN_DIGITS_MAX} digits")
    if not _DECIMAL_DIGITS.issuperset(pin):
        raise CryptoError(INVALID_INPUT, "PIN must contain decimal digits only")


def _check_pan(pan: str) -> None:
    if not PAN_DIGITS_MIN <= len(pan) <= PAN_DIGITS_MAX or not _DECIMAL_DIGITS.issuperset(pan):
        raise CryptoError(INVALID_INPUT, f"PAN must be {PAN_DIGITS_MIN} to {PAN_DIGITS_MAX} decimal digits")


def pan_12(pan: str) -> str:
    """The 12 rightmost PAN digits excluding the check digit, left-padded with zeros (ISO 9564-1 format 0)."""
    _check_pan(pan)
    return pan[:-1][-12:].rjust(12, "0")


def _pan_field_64(pan: str) -> int:
    # Not cached on purpose: a cache would keep clear PANs in memory, and a parse costs well under 1 us.
    return int(pan_12(pan), 16)


def _pan_field_128(pan: str) -> bytes:
    # ISO 9564-1:2017 format 4 PAN field: nibble M = PAN length - 12 (0 when shorter, the PAN then being
    # left-padded with zeros to 12 digits), the PAN digits, then zero nibbles to 32.
    _check_pan(pan)
    padded = pan.rjust(12, "0")
    return bytes.fromhex(f"{len(padded) - 12:X}{padded}".ljust(32, "0"))


def _random_fill(count: int, alphabet: str) -> str:
    # One CSPRNG draw for the whole fill: a uniform number below len(alphabet)**count written in that base.
    # (secrets.choice per nibble costs ~1 us each and dominated format 1/3 translation.)
    base = len(alphabet)
    value = secrets.randbelow(base**count)
    digits = []
    for _ in range(count):
        value, digit = divmod(value, base)
        digits.append(alphabet[digit])
    return "".join(digits)


def _pin_field_64(pin: str, fmt: int) -> int:
    fill_nibbles = _NIBBLES_64 - 2 - len(pin)
    if fmt == 0 or fmt == 2:
        fill = "F" * fill_nibbles
    elif fmt == 1:
        # Format 1 fill is a transaction field: any hex digit, here random so no two blocks repeat.
        fill = f"{secrets.randbits(4 * fill_nibbles):0{fill_nibbles}X}"
    else:
        fill = _random_fill(fill_nibbles, _FORMAT3_FILL)
    return int(f"{fmt}{len(pin):X}{pin}{fill}", 16)


def encode_pin_field(pin: str, pan: str, fmt: int) -> bytes:
    """The clear 8-byte PIN block for ISO formats 0-3 (PIN field XOR PAN field for formats 0 and 3)."""
    _check_format(fmt)
    if fmt == 4:
        raise CryptoError(
            INVALID_PIN_BLOCK_FORMAT, "format 4 has no clear 8-byte block; use encrypt_pin_block"
        )
    _check_pin(pin)
    field = _pin_field_64(pin, fmt)
    if fmt in _PAN_BOUND_FORMATS:
        field ^= _pan_field_64(pan)
    return field.to_bytes(_DES_BLOCK_BYTES, "big")


def _pin_from_field_hex(field: str, fmt: int) -> str:
    """Validate a 16-nibble (or the first 16 nibbles of a 32-nibble) PIN field and return the PIN."""
    if field[0] != str(fmt):
        raise CryptoError(INVALID_PIN_BLOCK, "PIN block control field does not match the format")
    pin_length = int(field[1], 16)
    if not PIN_DIGITS_MIN <= pin_length <= PIN_DIGITS_MAX:
        raise CryptoError(PIN_LENGTH, "PIN length in the PIN block is outside 4-12")
    pin = field[2 : 2 + pin_length]
    if not _DECIMAL_DIGITS.issuperset(pin):
        raise CryptoError(INVALID_PIN_BLOCK, "PIN block holds a non-decimal PIN digit")
    fill = field[2 + pin_length : _NIBBLES_64]
    if fmt == 0 or fmt == 2:
        valid_fill = fill == "F" * len(fill)
    elif fmt == 3:
        valid_fill = set(fill).issubset(_FORMAT3_FILL)
    elif fmt == 4:
        valid_fill = fill == _FORMAT4_FILL * len(fill)
    else:
        valid_fill = True  # format 1 fill is a free transaction field
    if not valid_fill:
        raise CryptoError(INVALID_PIN_BLOCK, "PIN block fill digits are not valid for the format")
    return pin


def _check_block_bytes(block: bytes, expected_bytes: int) -> None:
    if len(block) != expected_bytes:
        raise CryptoError(INVALID_PIN_BLOCK, f"PIN block must be {expected_bytes} bytes, got {len(block)}")


def _pin_from_block_64(clear: bytes, pan: str, fmt: int) -> str:
    field = int.from_bytes(clear, "big")
    if fmt in _PAN_BOUND_FORMATS:
        field ^= _pan_field_64(pan)
    return _pin_from_field_hex(f"{field:016X}", fmt)


def decode_pin_field(block: bytes, pan: str, fmt: int) -> str:
    """The PIN from a clear 8-byte ISO format 0-3 block, after checking control, length, fill and PAN binding."""
    _check_format(fmt)
    if fmt == 4:
        raise CryptoError(
            INVALID_PIN_BLOCK_FORMAT, "format 4 has no clear 8-byte block; use decrypt_pin_block"
        )
    _check_block_bytes(block, _DES_BLOCK_BYTES)
    return _pin_from_block_64(block, pan, fmt)


def _xor16(left: bytes, right: bytes) -> bytes:
    return (int.from_bytes(left, "big") ^ int.from_bytes(right, "big")).to_bytes(_AES_BLOCK_BYTES, "big")


def _format4_pin_field(pin: str) -> bytes:
    # ISO 9564-1:2017 format 4 plain text PIN field: control 4, length, PIN, fill A to nibble 16, then
    # 64 random bits.
    head = f"4{len(pin):X}{pin}".ljust(_NIBBLES_64, _FORMAT4_FILL)
    return bytes.fromhex(head) + secrets.token_bytes(8)


def _encrypt_format4(pin: str, pan: str, key: bytes) -> bytes:
    # ISO 9564-1:2017 format 4 encipherment: E(K, E(K, PIN field) XOR PAN field).
    intermediate = aes_ecb_encrypt(key, _format4_pin_field(pin))
    return aes_ecb_encrypt(key, _xor16(intermediate, _pan_field_128(pan)))


def _decrypt_format4(block: bytes, pan: str, key: bytes) -> str:
    _check_block_bytes(block, _AES_BLOCK_BYTES)
    intermediate = _xor16(aes_ecb_decrypt(key, block), _pan_field_128(pan))
    field = aes_ecb_decrypt(key, intermediate).hex().upper()
    return _pin_from_field_hex(field, 4)


def encrypt_pin_block(pin: str, pan: str, fmt: int, key: bytes) -> bytes:
    """Build and encrypt a PIN block: formats 0-3 under TDES ECB (8 bytes), format 4 under AES (16 bytes)."""
    _check_format(fmt)
    if fmt == 4:
        _check_pin(pin)
        return _encrypt_format4(pin, pan, key)
    return tdes_ecb_encrypt(key, encode_pin_field(pin, pan, fmt))


def decrypt_pin_block(block: bytes, pan: str, fmt: int, key: bytes) -> str:
    """Decrypt a PIN block and return the PIN after full validation of the clear block."""
    _check_format(fmt)
    if fmt == 4:
        return _decrypt_format4(block, pan, key)
    _check_block_bytes(block, _DES_BLOCK_BYTES)
    return _pin_from_block_64(tdes_ecb_decrypt(key, block), pan, fmt)


def translate_pin_block(
    block: bytes,
    pan: str,
    src_key: bytes,
    src_fmt: int,
    dst_key: bytes,
    dst_fmt: int,
    dst_pan: str | None = None,
) -> bytes:
    """Re-encrypt a PIN block from one key and format to another (e.g. TPK to ZPK), PIN never leaving here.

    `dst_pan` is the PAN to bind the output to when it differs from the input's (defaults to `pan`).
    """
    _check_format(src_fmt)
    _check_format(dst_fmt)
    out_pan = pan if dst_pan is None else dst_pan
    if src_fmt == 4 or dst_fmt == 4:
        pin = decrypt_pin_block(block, pan, src_fmt, src_key)
        return encrypt_pin_block(pin, out_pan, dst_fmt, dst_key)
    _check_block_bytes(block, _DES_BLOCK_BYTES)
    clear = tdes_ecb_decrypt(src_key, block)
    field = int.from_bytes(clear, "big")
    if src_fmt in _PAN_BOUND_FORMATS:
        field ^= _pan_field_64(pan)
    pin = _pin_from_field_hex(f"{field:016X}", src_fmt)
    # Same layout: keep the validated PIN field (and its fill) and only rebind it to the output PAN.
    out_field = field if src_fmt == dst_fmt else _pin_field_64(pin, dst_fmt)
    if dst_fmt in _PAN_BOUND_FORMATS:
        out_field ^= _pan_field_64(out_pan)
    return tdes_ecb_encrypt(dst_key, out_field.to_bytes(_DES_BLOCK_BYTES, "big"))
