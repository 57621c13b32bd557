"""Message authentication codes: ISO/IEC 9797-1 MAC algorithms 1 and 3 over DES/TDES with padding
methods 1 and 2, and AES-CMAC (NIST SP 800-38B).

Algorithm 1 is plain CBC-MAC under the whole key (single DES for an 8-byte key, TDES for 16/24 bytes);
algorithm 3 is the retail MAC (ANSI X9.19): CBC-MAC under the left key K, then the last block decrypted
under K' and encrypted again under K. The switch MACs ISO 8583 messages with these.
"""

from __future__ import annotations

from hsm.crypto.des import DES_BLOCK_BYTES, aes_cmac_full, tdes_ecb_decrypt, tdes_ecb_encrypt
from hsm.crypto.errors import INVALID_INPUT, KEY_LENGTH, CryptoError

_AES_BLOCK_BYTES = 16


def _pad(data: bytes, padding: int) -> bytes:
    if padding == 1:
        # Method 1: zero bytes up to a block boundary; empty data becomes one zero block.
        missing = -len(data) % DES_BLOCK_BYTES
        if not data:
            missing = DES_BLOCK_BYTES
        return data + bytes(missing)
    if padding == 2:
        # Method 2: one 0x80 byte, then zero bytes up to a block boundary (always adds a byte).
        marked = data + b"\x80"
        return marked + bytes(-len(marked) % DES_BLOCK_BYTES)
    raise CryptoError(INVALID_INPUT, "MAC padding method must be 1 or 2")


def _cbc_mac(key: bytes, padded: bytes) -> bytes:
    # Chained block by block through the cached ECB cipher: cheaper than building a CBC context per call.
    chain = 0
    for offset in range(0, len(padded), DES_BLOCK_BYTES):
        block = int.from_bytes(padded[offset : offset + DES_BLOCK_BYTES], "big") ^ chain
        chain = int.from_bytes(tdes_ecb_encrypt(key, block.to_bytes(DES_BLOCK_BYTES, "big")), "big")
    return chain.to_bytes(DES_BLOCK_BYTES, "big")


def iso9797_mac(key: bytes, data: bytes, algorithm: int, padding: int, mac_length: int = 8) -> bytes:
    """ISO/IEC 9797-1 MAC (algorithm 1 or 3, padding 1 or 2), truncated to its leftmost `mac_length` bytes."""
    if not 4 <= mac_length <= DES_BLOCK_BYTES:
        raise CryptoError(INVALID_INPUT, "MAC length must be 4 to 8 bytes")
    padded = _pad(data, padding)
    if algorithm == 1:
        if len(key) not in (8, 16, 24):
            raise CryptoError(KEY_LENGTH, "MAC algorithm 1 key must be 8, 16 or 24 bytes")
        return _cbc_mac(key, padded)[:mac_length]
    if algorithm == 3:
        if len(key) != 16:
            raise CryptoError(KEY_LENGTH, "MAC algorithm 3 key must be 16 bytes (K || K')")
        left, right = key[:8], key[8:]
        mac = tdes_ecb_encrypt(left, tdes_ecb_decrypt(right, _cbc_mac(left, padded)))
        return mac[:mac_length]
    raise CryptoError(INVALID_INPUT, "MAC algorithm must be 1 or 3")


def aes_cmac(key: bytes, data: bytes, mac_length: int = 16) -> bytes:
    """AES-CMAC (NIST SP 800-38B) truncated to its leftmost `mac_length` bytes (4 to 16)."""
    if not 4 <= mac_length <= _AES_BLOCK_BYTES:
        raise CryptoError(INVALID_INPUT, "CMAC length must be 4 to 16 bytes")
    return aes_cmac_full(key, data)[:mac_length]
