"""ANSI X9 TR-31:2018 key blocks, versions B (TDES) and D (AES): wrap and unwrap under a clear KBPK.

A key block binds a key to its attributes (the header) with a MAC, so a key cannot be reused for another
purpose. Both versions derive an encryption key (KBEK) and an authentication key (KBAK) from the KBPK with
a CMAC-based KDF (NIST SP 800-108 counter mode), MAC the header and the clear payload with CMAC, and
encrypt the payload in CBC mode with the MAC as IV. Payload = 2-byte key length in bits || key || random
padding to a whole number of cipher blocks.

Errors: a malformed block or header is "15"; a MAC that does not verify is also "15" (the MAC compare is
constant-time); a KBPK of the wrong length for the version is "27".
"""

from __future__ import annotations

import hmac
import secrets

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import cmac

from hsm.crypto.des import aes_cbc_decrypt, aes_cbc_encrypt, aes_cmac_full, tdes_cbc_decrypt, tdes_cbc_encrypt
from hsm.crypto.errors import INVALID_INPUT, KEY_LENGTH, CryptoError

HEADER_CHARS_MIN = 16
_LENGTH_DIGITS = slice(1, 5)
_OPT_BLOCK_COUNT = slice(12, 14)
_VERSIONS = ("B", "D")
_KEY_USAGE_ENCRYPTION = 0x0000
_KEY_USAGE_MAC = 0x0001
_BLOCK_CHARS_MAX = 9999
_HEX_DIGITS = frozenset("0123456789ABCDEF")
# TR-31:2018 5.3.2 algorithm indicator and derived key length per KBPK length.
_TDES_KDF = {16: (0x0000, 128), 24: (0x0001, 192)}
_AES_KDF = {16: (0x0002, 128), 24: (0x0003, 192), 32: (0x0004, 256)}


def _tdes_cmac(key: bytes, data: bytes) -> bytes:
    # cryptography deprecates 8-byte TDES keys only; KBPKs here are 16 or 24 bytes.
    key24 = key + key[:8] if len(key) == 16 else key
    signer = cmac.CMAC(TripleDES(key24))
    signer.update(data)
    return signer.finalize()


def _derive(kbpk: bytes, version: str, key_usage: int) -> bytes:
    """TR-31:2018 5.3.2.1 (B) / 5.3.2.3 (D): counter || usage || 00 || algorithm || length, CMAC'd per block."""
    table = _TDES_KDF if version == "B" else _AES_KDF
    if len(kbpk) not in table:
        raise CryptoError(KEY_LENGTH, f"KBPK length {len(kbpk)} is not valid for version {version}")
    algorithm, length_bits = table[len(kbpk)]
    prf = _tdes_cmac if version == "B" else aes_cmac_full
    output = b""
    counter = 1
    while len(output) * 8 < length_bits:
        data = bytes((counter,)) + key_usage.to_bytes(2, "big") + b"\x00"
        data += algorithm.to_bytes(2, "big") + length_bits.to_bytes(2, "big")
        output += prf(kbpk, data)
        counter += 1
    return output[: length_bits // 8]


def _block_bytes(version: str) -> int:
    return 8 if version == "B" else 16


def _mac_bytes(version: str) -> int:
    return 8 if version == "B" else 16


def _mac(kbak: bytes, version: str, data: bytes) -> bytes:
    return _tdes_cmac(kbak, data) if version == "B" else aes_cmac_full(kbak, data)


def _header_chars(header: str) -> int:
    """Length of the header including its optional blocks, after checking their structure."""
    if len(header) < HEADER_CHARS_MIN or not header.isascii() or not header.isprintable():
        raise CryptoError(INVALID_INPUT, "key block header must be at least 16 printable ASCII characters")
    if header[0] not in _VERSIONS:
        raise CryptoError(INVALID_INPUT, "key block version must be B or D")
    count_text = header[_OPT_BLOCK_COUNT]
    if not count_text.isdigit():
        raise CryptoError(INVALID_INPUT, "key block optional block count is not numeric")
    position = HEADER_CHARS_MIN
    for _ in range(int(count_text)):
        length_text = header[position + 2 : position + 4]
        if len(length_text) != 2 or not _HEX_DIGITS.issuperset(length_text.upper()):
            raise CryptoError(INVALID_INPUT, "key block optional block length is malformed")
        block_chars = int(length_text, 16)
        # A length of 00 announces an extended length; TR-31 keeps those for blocks over 255 chars.
        if block_chars < 4:
            raise CryptoError(INVALID_INPUT, "key block optional block length is not supported")
        position += block_chars
        if position > len(header):
            raise CryptoError(INVALID_INPUT, "key block optional block overruns the header")
    return position


def tr31_wrap(kbpk: bytes, header: str, key: bytes, *, padding: bytes | None = None) -> str:
    """Wrap `key` under `kbpk` with `header` (version from header[0]); the length digits are filled in here.

    `padding` pins the random padding bytes, for reproducing published examples in tests only.
    """
    header_chars = _header_chars(header)
    if header_chars != len(header):
        raise CryptoError(INVALID_INPUT, "key block header has characters after its optional blocks")
    version = header[0]
    block_bytes = _block_bytes(version)
    if header_chars % block_bytes:
        raise CryptoError(INVALID_INPUT, f"key block header must be a multiple of {block_bytes} characters")
    if not key or len(key) > 64:
        raise CryptoError(KEY_LENGTH, "wrapped key must be 1 to 64 bytes")
    kbek = _derive(kbpk, version, _KEY_USAGE_ENCRYPTION)
    kbak = _derive(kbpk, version, _KEY_USAGE_MAC)
    clear_length = 2 + len(key)
    pad_bytes = -clear_length % block_bytes
    if padding is None:
        padding = secrets.token_bytes(pad_bytes)
    elif len(padding) != pad_bytes:
        raise CryptoError(INVALID_INPUT, f"padding must be {pad_bytes} bytes")
    payload = (len(key) * 8).to_bytes(2, "big") + key + padding
    total_chars = header_chars + 2 * len(payload) + 2 * _mac_bytes(version)
    if total_chars > _BLOCK_CHARS_MAX:
        raise CryptoError(INVALID_INPUT, "key block would be longer than 9999 characters")
    full_header = f"{header[0]}{total_chars:04d}{header[5:]}"
    mac = _mac(kbak, version, full_header.encode("ascii") + payload)
    if version == "B":
        encrypted = tdes_cbc_encrypt(kbek, payload, mac)
    else:
        encrypted = aes_cbc_encrypt(kbek, payload, mac)
    return full_header + encrypted.hex().upper() + mac.hex().upper()


def tr31_unwrap(kbpk: bytes, block: str) -> tuple[str, bytes]:
    """Check and open a key block: returns (header, key); a bad MAC or malformed block raises CryptoError."""
    header_chars = _header_chars(block)
    version = block[0]
    length_text = block[_LENGTH_DIGITS]
    if not length_text.isdigit() or int(length_text) != len(block):
        raise CryptoError(INVALID_INPUT, "key block length field does not match the block")
    block_bytes = _block_bytes(version)
    mac_chars = 2 * _mac_bytes(version)
    payload_hex = block[header_chars:-mac_chars]
    mac_hex = block[-mac_chars:]
    if (
        header_chars % block_bytes
        or not payload_hex
        or len(payload_hex) % (2 * block_bytes)
        or not _HEX_DIGITS.issuperset(payload_hex)
        or not _HEX_DIGITS.issuperset(mac_hex)
    ):
        raise CryptoError(INVALID_INPUT, "key block payload or MAC is malformed")
    header = block[:header_chars]
    kbek = _derive(kbpk, version, _KEY_USAGE_ENCRYPTION)
    kbak = _derive(kbpk, version, _KEY_USAGE_MAC)
    mac = bytes.fromhex(mac_hex)
    encrypted = bytes.fromhex(payload_hex)
    if version == "B":
        payload = tdes_cbc_decrypt(kbek, encrypted, mac)
    else:
        payload = aes_cbc_decrypt(kbek, encrypted, mac)
    expected = _mac(kbak, version, header.encode("ascii") + payload)
    if not hmac.compare_digest(expected, mac):
        raise CryptoError(INVALID_INPUT, "key block MAC does not verify")
    key_bits = int.from_bytes(payload[:2], "big")
    if key_bits % 8 or not 0 < key_bits // 8 <= len(payload) - 2:
        raise CryptoError(INVALID_INPUT, "key block key length field is invalid")
    return header, payload[2 : 2 + key_bits // 8]
