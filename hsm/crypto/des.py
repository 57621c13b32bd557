"""Block cipher primitives (DES/TDES, AES), odd parity and key check values, on clear keys.

Every other module of `hsm.crypto` goes through here, so the cipher contexts are cached per key: building
one costs about ten times as much as using it, and the host translates thousands of PIN blocks a second
under the same few keys. ECB contexts are reused (ECB keeps no state between whole blocks); CBC contexts
carry chaining state and are built per call. A cached context is used under the GIL by one call at a time
(the host runs on trio, one thread); `clear_cipher_cache` drops the cached contexts, and with them the
clear keys they hold, e.g. when the LMK is unloaded.
"""

from __future__ import annotations

import functools

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from hsm.crypto.errors import INVALID_INPUT, KEY_LENGTH, CryptoError

DES_BLOCK_BYTES = 8
AES_BLOCK_BYTES = 16
_TDES_KEY_BYTES = (8, 16, 24)
_AES_KEY_BYTES = (16, 24, 32)
_CIPHER_CACHE_KEYS_MAX = 4096


def _tdes_key24(key: bytes) -> bytes:
    # cryptography deprecates 8-byte TDES keys; K,K,K and K1,K2,K1 are the same ciphers spelled in full.
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    if len(key) == 24:
        return key
    raise CryptoError(KEY_LENGTH, f"TDES key must be 8, 16 or 24 bytes, got {len(key)}")


def _check_blocks(data: bytes, block_bytes: int) -> None:
    if len(data) % block_bytes:
        raise CryptoError(INVALID_INPUT, f"data length {len(data)} is not a multiple of {block_bytes}")


def _check_aes_key(key: bytes) -> None:
    if len(key) not in _AES_KEY_BYTES:
        raise CryptoError(KEY_LENGTH, f"AES key must be 16, 24 or 32 bytes, got {len(key)}")


@functools.lru_cache(maxsize=_CIPHER_CACHE_KEYS_MAX)
def _tdes_ecb(key24: bytes) -> tuple[CipherContext, CipherContext]:
    cipher = Cipher(TripleDES(key24), modes.ECB())
    return cipher.encryptor(), cipher.decryptor()


@functools.lru_cache(maxsize=_CIPHER_CACHE_KEYS_MAX)
def _aes_ecb(key: bytes) -> tuple[CipherContext, CipherContext]:
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    return cipher.encryptor(), cipher.decryptor()


def clear_cipher_cache() -> None:
    """Forget every cached cipher context (and so the clear keys inside them)."""
    _tdes_ecb.cache_clear()
    _aes_ecb.cache_clear()


def tdes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """Encrypt whole 8-byte blocks under a single, double or triple length DES key in ECB mode."""
    _check_blocks(data, DES_BLOCK_BYTES)
    return _tdes_ecb(_tdes_key24(key))[0].update(data)


def tdes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    """Decrypt whole 8-byte blocks under a single, double or triple length DES key in ECB mode."""
    _check_blocks(data, DES_BLOCK_BYTES)
    return _tdes_ecb(_tdes_key24(key))[1].update(data)


def _check_iv(iv: bytes, block_bytes: int) -> None:
    if len(iv) != block_bytes:
        raise CryptoError(INVALID_INPUT, f"IV must be {block_bytes} bytes, got {len(iv)}")


def tdes_cbc_encrypt(key: bytes, data: bytes, iv: bytes = bytes(8)) -> bytes:
    """Encrypt whole 8-byte blocks in CBC mode (zero IV unless given)."""
    _check_blocks(data, DES_BLOCK_BYTES)
    _check_iv(iv, DES_BLOCK_BYTES)
    encryptor = Cipher(TripleDES(_tdes_key24(key)), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def tdes_cbc_decrypt(key: bytes, data: bytes, iv: bytes = bytes(8)) -> bytes:
    """Decrypt whole 8-byte blocks in CBC mode (zero IV unless given)."""
    _check_blocks(data, DES_BLOCK_BYTES)
    _check_iv(iv, DES_BLOCK_BYTES)
    decryptor = Cipher(TripleDES(_tdes_key24(key)), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def aes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """Encrypt whole 16-byte blocks under an AES-128/192/256 key in ECB mode."""
    _check_aes_key(key)
    _check_blocks(data, AES_BLOCK_BYTES)
    return _aes_ecb(key)[0].update(data)


def aes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    """Decrypt whole 16-byte blocks under an AES-128/192/256 key in ECB mode."""
    _check_aes_key(key)
    _check_blocks(data, AES_BLOCK_BYTES)
    return _aes_ecb(key)[1].update(data)


def aes_cbc_encrypt(key: bytes, data: bytes, iv: bytes = bytes(16)) -> bytes:
    """Encrypt whole 16-byte blocks in AES CBC mode (zero IV unless given)."""
    _check_aes_key(key)
    _check_blocks(data, AES_BLOCK_BYTES)
    _check_iv(iv, AES_BLOCK_BYTES)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def aes_cbc_decrypt(key: bytes, data: bytes, iv: bytes = bytes(16)) -> bytes:
    """Decrypt whole 16-byte blocks in AES CBC mode (zero IV unless given)."""
    _check_aes_key(key)
    _check_blocks(data, AES_BLOCK_BYTES)
    _check_iv(iv, AES_BLOCK_BYTES)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def _has_odd_parity_byte(byte: int) -> bool:
    return byte.bit_count() % 2 == 1


def has_odd_parity(key: bytes) -> bool:
    """True when every byte of a DES/TDES key has an odd number of set bits (an empty key has none)."""
    return bool(key) and all(_has_odd_parity_byte(byte) for byte in key)


def with_odd_parity(key: bytes) -> bytes:
    """The same key with each byte's low bit set so that the byte has odd parity."""
    return bytes(byte if _has_odd_parity_byte(byte) else byte ^ 0x01 for byte in key)


def _check_kcv_length(length: int, digits_max: int) -> None:
    if not 1 <= length <= digits_max:
        raise CryptoError(INVALID_INPUT, f"check value length must be 1..{digits_max} hex digits")


def kcv_tdes(key: bytes, length: int = 6) -> str:
    """Key check value of a DES/TDES key: encrypt 8 zero bytes, first `length` hex digits, upper case."""
    _check_kcv_length(length, 2 * DES_BLOCK_BYTES)
    return tdes_ecb_encrypt(key, bytes(DES_BLOCK_BYTES)).hex().upper()[:length]


def aes_cmac_full(key: bytes, data: bytes) -> bytes:
    """Full 16-byte AES-CMAC (NIST SP 800-38B); `hsm.crypto.mac.aes_cmac` is the truncating public form."""
    _check_aes_key(key)
    signer = cmac.CMAC(algorithms.AES(key))
    signer.update(data)
    return signer.finalize()


def kcv_aes(key: bytes, length: int = 6) -> str:
    """Key check value of an AES key as X9.24 and TR-31 define it: AES-CMAC of 16 zero bytes, first hex digits."""
    _check_kcv_length(length, 2 * AES_BLOCK_BYTES)
    return aes_cmac_full(key, bytes(AES_BLOCK_BYTES)).hex().upper()[:length]
