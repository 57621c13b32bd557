"""The Local Master Key: a payShield-style variant LMK of 20 double-length TDES pairs, and its storage.

Every key the HSM hands out exists only encrypted under one LMK pair (with a variant per key type), so the
LMK is the one secret that makes all others safe at rest. On disk it exists only encrypted under an
operator passphrase (scrypt key derivation + AES-256-GCM); in memory it lives in a `VariantLmk` whose
repr shows a check value, never key bytes.

The well-known test LMK of payShield simulators (pair 00-01 = 0101010101010101 7902CD1FD36EF8BA ...) is
here for interoperability testing only: anything encrypted under it is public.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from hsm.crypto.des import tdes_ecb_encrypt, with_odd_parity

__all__ = [
    "LMK_PAIR_BYTES",
    "LMK_PAIR_COUNT",
    "LMK_PAIR_VARIANTS",
    "PIN_LMK_PAIR",
    "LmkFileError",
    "VariantLmk",
    "load_lmk_file",
    "write_lmk_file",
]

LMK_PAIR_COUNT = 20
LMK_PAIR_BYTES = 16
# The LMK pair variants 0-9, XORed into the first byte of the pair's left key (payShield variant LMK).
LMK_PAIR_VARIANTS: tuple[int, ...] = (0x00, 0xA6, 0x5A, 0x6A, 0xDE, 0x2B, 0x50, 0x74, 0x9C, 0xFA)
# Index of LMK pair 02-03, which protects PINs stored by the host ("PIN under LMK").
PIN_LMK_PAIR = 1

# The published test LMK set of payShield simulators, pairs 00-01 ... 38-39, in order.
_TEST_LMK_HEX: tuple[str, ...] = (
    "01010101010101017902CD1FD36EF8BA",
    "20202020202020203131313131313131",
    "40404040404040405151515151515151",
    "61616161616161617070707070707070",
    "80808080808080809191919191919191",
    "A1A1A1A1A1A1A1A1B0B0B0B0B0B0B0B0",
    "C1C1010101010101D0D0010101010101",
    "E0E0010101010101F1F1010101010101",
    "1C587F1C13924FEF0101010101010101",
    "01010101010101010101010101010101",
    "02020202020202020404040404040404",
    "07070707070707071010101010101010",
    "13131313131313131515151515151515",
    "16161616161616161919191919191919",
    "1A1A1A1A1A1A1A1A1C1C1C1C1C1C1C1C",
    "23232323232323232525252525252525",
    "26262626262626262929292929292929",
    "2A2A2A2A2A2A2A2A2C2C2C2C2C2C2C2C",
    "2F2F2F2F2F2F2F2F3131313131313131",
    "01010101010101010101010101010101",
)

_FILE_FORMAT = "cardswitch-hsm-lmk-v1"
_AAD = _FILE_FORMAT.encode()
# scrypt cost: 2**15 * 8 * 128 bytes = 32 MiB and ~0.1 s per unlock; an attacker pays that per guess.
_SCRYPT_N = 2**15
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
_NONCE_BYTES = 12


# Where `hsmd run` and switchd's in-process HSM read the LMK file's passphrase.
PASSPHRASE_ENV = "HSM_LMK_PASSPHRASE"
TEST_LMK_WARNING = (
    "THE PUBLIC TEST LMK IS LOADED: every key under it is known to anyone. "
    "For interoperability testing only; never use it with real cards or keys."
)


class LmkFileError(Exception):
    """The LMK file is missing, malformed, or the passphrase does not open it (message is safe to log)."""


@dataclass(frozen=True, repr=False, eq=False)
class VariantLmk:
    """Twenty double-length LMK pairs; `pair(i)` is pair (2i)-(2i+1). Never printed or compared by value."""

    pairs: tuple[bytes, ...]
    is_test: bool = False

    def __post_init__(self) -> None:
        if len(self.pairs) != LMK_PAIR_COUNT or any(len(p) != LMK_PAIR_BYTES for p in self.pairs):
            raise ValueError(f"a variant LMK is {LMK_PAIR_COUNT} pairs of {LMK_PAIR_BYTES} bytes")

    @classmethod
    def test_lmk(cls) -> VariantLmk:
        """The public payShield-simulator test LMK (for interoperability testing only)."""
        return cls(tuple(bytes.fromhex(h) for h in _TEST_LMK_HEX), is_test=True)

    @classmethod
    def generate(cls) -> VariantLmk:
        """A fresh random LMK with odd parity on every DES key."""
        return cls(tuple(with_odd_parity(secrets.token_bytes(LMK_PAIR_BYTES)) for _ in range(LMK_PAIR_COUNT)))

    def pair(self, index: int) -> bytes:
        return self.pairs[index]

    def check_value(self) -> str:
        """16-hex-digit check value identifying this LMK (reported by NC).

        Ours: pair 00-01 encrypts eight zero bytes, then each further pair encrypts the previous result,
        so a change to any pair changes the value. The payShield's own LMK check algorithm is not published.
        """
        block = bytes(8)
        for pair in self.pairs:
            block = tdes_ecb_encrypt(pair, block)
        return block.hex().upper()

    def __repr__(self) -> str:
        return f"VariantLmk(check_value={self.check_value()[:6]}, is_test={self.is_test})"


def _derive_wrapping_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def write_lmk_file(path: Path, lmk: VariantLmk, passphrase: str, *, scrypt_n: int = _SCRYPT_N) -> None:
    """Write `lmk` encrypted under `passphrase` (scrypt + AES-256-GCM); the file is created mode 0600."""
    if not passphrase:
        raise LmkFileError("the LMK passphrase must not be empty")
    salt = os.urandom(_SALT_BYTES)
    nonce = os.urandom(_NONCE_BYTES)
    wrapping_key = _derive_wrapping_key(passphrase, salt, scrypt_n, _SCRYPT_R, _SCRYPT_P)
    ciphertext = AESGCM(wrapping_key).encrypt(nonce, b"".join(lmk.pairs), _AAD)
    document = {
        "format": _FILE_FORMAT,
        "kdf": {"name": "scrypt", "n": scrypt_n, "r": _SCRYPT_R, "p": _SCRYPT_P},
        "salt": base64.b64encode(salt).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
        # Lets an operator confirm which LMK a file holds without opening it.
        "check_value": lmk.check_value(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")


def load_lmk_file(path: Path, passphrase: str) -> VariantLmk:
    """Open an LMK file written by `write_lmk_file`; raises `LmkFileError` on any failure."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise LmkFileError(f"LMK file not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise LmkFileError(f"LMK file unreadable: {path}") from exc
    try:
        if document["format"] != _FILE_FORMAT or document["kdf"]["name"] != "scrypt":
            raise LmkFileError("LMK file has an unknown format")
        kdf = document["kdf"]
        salt = base64.b64decode(document["salt"])
        nonce = base64.b64decode(document["nonce"])
        ciphertext = base64.b64decode(document["ciphertext"])
        wrapping_key = _derive_wrapping_key(passphrase, salt, int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise LmkFileError("LMK file is malformed") from exc
    try:
        clear = AESGCM(wrapping_key).decrypt(nonce, ciphertext, _AAD)
    except InvalidTag as exc:
        raise LmkFileError("wrong passphrase or damaged LMK file") from exc
    if len(clear) != LMK_PAIR_COUNT * LMK_PAIR_BYTES:
        raise LmkFileError("LMK file holds the wrong amount of key material")
    pairs = tuple(clear[i : i + LMK_PAIR_BYTES] for i in range(0, len(clear), LMK_PAIR_BYTES))
    lmk = VariantLmk(pairs)
    # The recorded check value sits outside the AES-GCM authentication; an operator trusts it to tell
    # which LMK a file holds, so a file whose value was edited is refused rather than believed.
    if document.get("check_value") != lmk.check_value():
        raise LmkFileError("LMK file check value does not match the LMK it holds")
    return lmk
