"""The PAN vault: how a PAN is stored (AES-256-GCM) and found again (HMAC-SHA256 keyed hash).

Pure: it holds two clear 32-byte keys handed in by the caller (the vault key store unwraps them through
the HSM at start) and does no I/O. The database holds only `lookup_hash(pan)` (unique, indexed: exact
lookups without decrypting anything) and `encrypt(pan)`; first 6 and last 4 are stored beside them for
display. Separate keys for hashing and encryption so one leaking does not give the other away.

Ciphertext layout: version byte (1) + nonce (12, random) + AES-GCM ciphertext and tag. The AAD names
the purpose, so a blob made for another purpose with the same key does not decrypt as a PAN. No error or
repr here contains a PAN or a key.
"""

from __future__ import annotations

import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from switch.domain.model import Pan

__all__ = ["PanVault", "PanVaultError"]

_VERSION = 1
_NONCE_BYTES = 12  # 96-bit random nonce: safe for far more than 2**32 encryptions per key
_KEY_BYTES = 32
_AAD = b"cardswitch:pan:v1"
_HASH_DOMAIN = b"cardswitch:pan-lookup:v1:"


class PanVaultError(Exception):
    """A blob could not be decrypted to a PAN, or a key is unusable. The message never holds card data."""


class PanVault:
    """Encrypts, decrypts and hashes PANs with a data key and a hash key (32 bytes each)."""

    __slots__ = ("_aead", "_hash_key")

    def __init__(self, data_key: bytes, hash_key: bytes) -> None:
        if len(data_key) != _KEY_BYTES or len(hash_key) != _KEY_BYTES:
            raise PanVaultError("PAN vault keys must be 32 bytes each")
        if hmac.compare_digest(data_key, hash_key):
            raise PanVaultError("PAN vault data key and hash key must differ")
        self._aead = AESGCM(data_key)
        self._hash_key = hash_key

    def __repr__(self) -> str:
        return "PanVault(<keys hidden>)"

    def lookup_hash(self, pan: Pan) -> bytes:
        """HMAC-SHA256 of the PAN digits (32 bytes): stable for a given hash key, useless without it."""
        # hmac.digest is the one-shot C path: several times faster than hmac.new(...).digest().
        return hmac.digest(self._hash_key, _HASH_DOMAIN + pan.digits.encode("ascii"), "sha256")

    def encrypt(self, pan: Pan) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return bytes([_VERSION]) + nonce + self._aead.encrypt(nonce, pan.digits.encode("ascii"), _AAD)

    def decrypt(self, blob: bytes) -> Pan:
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[0] != _VERSION:
            raise PanVaultError("encrypted PAN has an unknown format")
        nonce, body = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            clear = self._aead.decrypt(nonce, body, _AAD)
        except InvalidTag:
            raise PanVaultError(
                "encrypted PAN does not decrypt under this key (wrong key or altered)"
            ) from None
        try:
            return Pan(clear.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise PanVaultError("decrypted value is not a PAN") from None
