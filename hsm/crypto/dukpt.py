"""DUKPT key derivation: ANSI X9.24-1:2009 (TDES) and ANSI X9.24-3:2017 (AES), host side.

The host holds the base derivation key (the host layer keeps it under the LMK), derives the terminal's
initial key from the key serial number, then the transaction key for the KSN's counter, then the working
key for the usage (PIN, MAC, data). Terminals hold only their own initial key and one-way derived keys,
so a key taken from one terminal exposes neither past transactions nor the BDK.
"""

from __future__ import annotations

from hsm.crypto.des import aes_ecb_encrypt, tdes_ecb_encrypt
from hsm.crypto.errors import INVALID_INPUT, KEY_LENGTH, CryptoError

# --- TDES DUKPT (ANSI X9.24-1:2009 Annex A) -------------------------------------------------------------

_TDES_KSN_BYTES = 10
_TDES_KEY_BYTES = 16
_TDES_COUNTER_BITS = 21
_TDES_COUNTER_MASK = (1 << _TDES_COUNTER_BITS) - 1
_KEY_MASK_C0 = bytes.fromhex("C0C0C0C000000000C0C0C0C000000000")
# X9.24-1:2009 A.4.1 table A-1 variants of the current key.
_PIN_VARIANT = bytes.fromhex("00000000000000FF00000000000000FF")
_MAC_REQUEST_VARIANT = bytes.fromhex("000000000000FF00000000000000FF00")
_MAC_RESPONSE_VARIANT = bytes.fromhex("00000000FF00000000000000FF000000")
_DATA_REQUEST_VARIANT = bytes.fromhex("0000000000FF00000000000000FF0000")
_DATA_RESPONSE_VARIANT = bytes.fromhex("000000FF00000000000000FF00000000")


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def _check_tdes(key: bytes, ksn: bytes, what: str) -> None:
    if len(key) != _TDES_KEY_BYTES:
        raise CryptoError(KEY_LENGTH, f"{what} must be 16 bytes")
    if len(ksn) != _TDES_KSN_BYTES:
        raise CryptoError(INVALID_INPUT, "TDES DUKPT KSN must be 10 bytes")


def _tdes_ksn_base(ksn: bytes) -> int:
    # The KSN's rightmost 64 bits with the 21-bit transaction counter cleared.
    return int.from_bytes(ksn[2:], "big") & ~_TDES_COUNTER_MASK


def tdes_ipek(bdk: bytes, ksn: bytes) -> bytes:
    """Initial key (IPEK) for a terminal: X9.24-1:2009 A.6, from the BDK and the KSN with its counter cleared."""
    _check_tdes(bdk, ksn, "BDK")
    masked = ksn[:2] + _tdes_ksn_base(ksn).to_bytes(8, "big")
    left_input = masked[:8]
    return tdes_ecb_encrypt(bdk, left_input) + tdes_ecb_encrypt(_xor(bdk, _KEY_MASK_C0), left_input)


def _non_reversible_key(key: bytes, ksn_register: bytes) -> bytes:
    # X9.24-1:2009 A.2 "non-reversible key generation process" (single-DES halves).
    left, right = key[:8], key[8:]
    right_half = _xor(tdes_ecb_encrypt(left, _xor(ksn_register, right)), right)
    variant = _xor(key, _KEY_MASK_C0)
    v_left, v_right = variant[:8], variant[8:]
    left_half = _xor(tdes_ecb_encrypt(v_left, _xor(ksn_register, v_right)), v_right)
    return left_half + right_half


def tdes_transaction_key(ipek: bytes, ksn: bytes) -> bytes:
    """The current transaction key for the KSN's counter (X9.24-1:2009 A.3), before any usage variant."""
    _check_tdes(ipek, ksn, "IPEK")
    counter = int.from_bytes(ksn[-3:], "big") & _TDES_COUNTER_MASK
    register = _tdes_ksn_base(ksn)
    key = ipek
    # Walk the counter's set bits from the most significant down, deriving one key per bit.
    for bit in range(_TDES_COUNTER_BITS - 1, -1, -1):
        shift_bit = 1 << bit
        if counter & shift_bit:
            register |= shift_bit
            key = _non_reversible_key(key, register.to_bytes(8, "big"))
    return key


def tdes_pin_key(ipek: bytes, ksn: bytes) -> bytes:
    """PIN encryption key for this KSN: transaction key XOR the PIN variant."""
    return _xor(tdes_transaction_key(ipek, ksn), _PIN_VARIANT)


def tdes_mac_key(ipek: bytes, ksn: bytes, *, response: bool = False) -> bytes:
    """MAC key for this KSN: the request variant (or the response variant when `response`)."""
    variant = _MAC_RESPONSE_VARIANT if response else _MAC_REQUEST_VARIANT
    return _xor(tdes_transaction_key(ipek, ksn), variant)


def tdes_data_key(ipek: bytes, ksn: bytes, *, response: bool = False) -> bytes:
    """Data encryption key for this KSN: the data variant, then each half encrypted under the variant
    itself (the one-way step X9.24-1:2009 added so the data key does not reveal the transaction key)."""
    variant = _DATA_RESPONSE_VARIANT if response else _DATA_REQUEST_VARIANT
    variant_key = _xor(tdes_transaction_key(ipek, ksn), variant)
    return tdes_ecb_encrypt(variant_key, variant_key)


# --- AES DUKPT (ANSI X9.24-3:2017) ----------------------------------------------------------------------

_AES_KSN_BYTES = 12
_AES_INITIAL_KEY_ID_BYTES = 8
_AES_COUNTER_BITS = 32
_AES_COUNTER_SET_BITS_MAX = 16
# X9.24-3:2017 6.2 key usage indicators (derivation data bytes 2-3).
_USAGE_INDICATORS = {
    "key_encryption": 0x0002,  # not a working usage: derives intermediate keys
    "pin": 0x1000,
    "mac_generate": 0x2000,
    "mac_verify": 0x2001,
    "mac_both": 0x2002,
    "data_encrypt": 0x3000,
    "data_decrypt": 0x3001,
    "data_both": 0x3002,
}
_INITIAL_KEY_USAGE = 0x8001
_DERIVATION_KEY_USAGE = 0x8000
# X9.24-3:2017 6.2 algorithm indicators and key lengths in bits.
_KEY_TYPES = {
    "TDES2": (0x0000, 128),
    "TDES3": (0x0001, 192),
    "AES128": (0x0002, 128),
    "AES192": (0x0003, 192),
    "AES256": (0x0004, 256),
}
_BDK_TYPE_BY_LENGTH = {16: "AES128", 24: "AES192", 32: "AES256"}


def _derivation_data(usage: int, key_type: str, payload: bytes) -> bytes:
    """X9.24-3:2017 table 2: version 01, counter 01, usage, algorithm, length, then 8 bytes of payload.

    The block counter byte (index 1) is set per block by `_derive`.
    """
    algorithm, length_bits = _KEY_TYPES[key_type]
    return (
        bytes((0x01, 0x01))
        + usage.to_bytes(2, "big")
        + algorithm.to_bytes(2, "big")
        + length_bits.to_bytes(2, "big")
        + payload
    )


def _derive(derivation_key: bytes, usage: int, key_type: str, payload: bytes) -> bytes:
    # NIST SP 800-108 counter mode with AES-ECB as the PRF, as X9.24-3:2017 6.3 specifies.
    data = bytearray(_derivation_data(usage, key_type, payload))
    length_bytes = _KEY_TYPES[key_type][1] // 8
    output = b""
    block_counter = 1
    while len(output) < length_bytes:
        data[1] = block_counter
        output += aes_ecb_encrypt(derivation_key, bytes(data))
        block_counter += 1
    return output[:length_bytes]


def _check_aes_key(key: bytes, what: str) -> str:
    key_type = _BDK_TYPE_BY_LENGTH.get(len(key))
    if key_type is None:
        raise CryptoError(KEY_LENGTH, f"{what} must be 16, 24 or 32 bytes")
    return key_type


def aes_initial_key(bdk: bytes, initial_key_id: bytes) -> bytes:
    """The terminal's initial key from the BDK and its 8-byte initial key ID (X9.24-3:2017 6.3.1)."""
    key_type = _check_aes_key(bdk, "BDK")
    if len(initial_key_id) != _AES_INITIAL_KEY_ID_BYTES:
        raise CryptoError(INVALID_INPUT, "initial key ID must be 8 bytes")
    return _derive(bdk, _INITIAL_KEY_USAGE, key_type, initial_key_id)


def _aes_transaction_key(initial_key: bytes, key_type: str, ksn: bytes) -> bytes:
    """The intermediate derivation key for the KSN's counter (X9.24-3:2017 6.3.3, host side)."""
    initial_key_id = ksn[:_AES_INITIAL_KEY_ID_BYTES]
    counter = int.from_bytes(ksn[_AES_INITIAL_KEY_ID_BYTES:], "big")
    register = 0
    key = initial_key
    for bit in range(_AES_COUNTER_BITS - 1, -1, -1):
        shift_bit = 1 << bit
        if counter & shift_bit:
            register |= shift_bit
            payload = initial_key_id[4:] + register.to_bytes(4, "big")
            key = _derive(key, _DERIVATION_KEY_USAGE, key_type, payload)
    return key


def aes_working_key(initial_key: bytes, ksn: bytes, usage: str, key_type: str = "AES128") -> bytes:
    """The working key of `key_type` for `usage` at this 12-byte KSN (initial key ID || 32-bit counter)."""
    derivation_type = _check_aes_key(initial_key, "initial key")
    if len(ksn) != _AES_KSN_BYTES:
        raise CryptoError(INVALID_INPUT, "AES DUKPT KSN must be 12 bytes")
    usage_indicator = _USAGE_INDICATORS.get(usage)
    if usage_indicator is None or usage == "key_encryption":
        raise CryptoError(INVALID_INPUT, "unknown AES DUKPT key usage")
    if key_type not in _KEY_TYPES:
        raise CryptoError(INVALID_INPUT, "unknown AES DUKPT working key type")
    if _KEY_TYPES[key_type][1] > _KEY_TYPES[derivation_type][1]:
        raise CryptoError(KEY_LENGTH, "working key cannot be longer than the derivation key")
    counter = int.from_bytes(ksn[_AES_INITIAL_KEY_ID_BYTES:], "big")
    if counter == 0 or counter.bit_count() > _AES_COUNTER_SET_BITS_MAX:
        raise CryptoError(INVALID_INPUT, "KSN transaction counter is not a valid AES DUKPT counter")
    transaction_key = _aes_transaction_key(initial_key, derivation_type, ksn)
    payload = ksn[4:_AES_INITIAL_KEY_ID_BYTES] + ksn[_AES_INITIAL_KEY_ID_BYTES:]
    return _derive(transaction_key, usage_indicator, key_type, payload)
