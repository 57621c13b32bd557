"""Keys under the LMK and under a ZMK: key types, key schemes, variants, and a cache of unwrapped keys.

This follows the payShield variant LMK (Host Programmer's Manual, chapter "Variant LMK key scheme"):
- a key type code is `[variant][pair code]`, e.g. `001` = ZPK = variant 0 of pair code 01 = LMK 06-07,
  `402` = CVK = variant 4 of LMK 14-15;
- the LMK pair variant (A6, 5A, 6A, DE, 2B, 50, 74, 9C, FA for variants 1-9) is XORed into the first byte of
  the pair's left key;
- a double-length key under scheme U has its left half encrypted under the LMK pair with A6 XORed into the
  first byte of the pair's right key and its right half with 5A there; triple-length scheme T uses 6A, DE,
  2B for its three parts; each part is one TDES-ECB block;
- scheme Z is a single-length key (no tag on the wire), X and Y are double and triple length keys encrypted
  in ECB under the (variant) LMK pair without key-scheme variants (the X9.17 form).
Keys exchanged under a ZMK use the same scheme rules with the ZMK in place of the LMK pair (no pair
variant). Clear keys never leave this module except to the command layer in the same process.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass

from hsm.crypto.des import has_odd_parity, tdes_ecb_decrypt, tdes_ecb_encrypt, with_odd_parity
from hsm.lmk import LMK_PAIR_VARIANTS, PIN_LMK_PAIR, VariantLmk

__all__ = [
    "BDK",
    "CVK",
    "KEY_TYPES",
    "PVK",
    "SCHEME_KEY_BYTES",
    "TAK",
    "TMK",
    "TPK",
    "ZAK",
    "ZEK",
    "ZMK",
    "ZPK",
    "KeyRejected",
    "KeyType",
    "KeyVault",
    "LmkKey",
    "decrypt_under_key",
    "encrypt_under_key",
    "format_key_field",
    "key_type",
    "random_key",
    "split_key_field",
]

# Scheme tag -> key length in bytes. "" is a single-length key written without a tag.
SCHEME_KEY_BYTES: dict[str, int] = {"": 8, "Z": 8, "U": 16, "X": 16, "T": 24, "Y": 24}
# Key-scheme variants per part, XORed into byte 8 of the encrypting key (first byte of its right/middle key).
_SCHEME_PART_VARIANTS: dict[str, tuple[int, ...]] = {"U": (0xA6, 0x5A), "T": (0x6A, 0xDE, 0x2B)}
_HEX = frozenset("0123456789ABCDEF")

# Pair code (last two characters of a key type code) -> LMK pair index (pair (2i)-(2i+1)).
# Not arithmetic: codes 00 and 01 are LMK 04-05 and 06-07, then 02 jumps to 14-15.
_PAIR_INDEX_BY_CODE: dict[str, int] = {
    "00": 2,
    "01": 3,
    "02": 7,
    "03": 8,
    "04": 9,
    "05": 10,
    "06": 11,
    "07": 12,
    "08": 13,
    "09": 14,
    "0A": 15,
    "0B": 16,
    "0C": 17,
    "0D": 18,
    "0E": 19,
}


class KeyRejected(Exception):
    """A key field or key operation was refused; `code` is the payShield error code (message safe to log)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class KeyType:
    """One row of the variant LMK key type table."""

    code: str
    name: str
    pair_index: int
    variant: int

    @property
    def lmk_pair_label(self) -> str:
        return f"{2 * self.pair_index:02d}-{2 * self.pair_index + 1:02d}"


def _kt(code: str, name: str) -> KeyType:
    return KeyType(code=code, name=name, pair_index=_PAIR_INDEX_BY_CODE[code[1:]], variant=int(code[0]))


# The key types this HSM issues and accepts (payShield variant LMK key type table, subset).
KEY_TYPES: dict[str, KeyType] = {
    kt.code: kt
    for kt in (
        _kt("000", "ZMK"),
        _kt("001", "ZPK"),
        _kt("002", "TPK/TMK/PVK"),
        _kt("402", "CVK"),
        _kt("003", "TAK"),
        _kt("008", "ZAK"),
        _kt("009", "BDK"),
        _kt("00A", "ZEK"),
        _kt("00B", "DEK/TEK"),
    )
}
ZMK = KEY_TYPES["000"]
ZPK = KEY_TYPES["001"]
TPK = KEY_TYPES["002"]
PVK = KEY_TYPES["002"]
TMK = KEY_TYPES["002"]
CVK = KEY_TYPES["402"]
TAK = KEY_TYPES["003"]
ZAK = KEY_TYPES["008"]
BDK = KEY_TYPES["009"]
ZEK = KEY_TYPES["00A"]


def key_type(code: str) -> KeyType:
    """The key type for a 3-character code; error 04 ("invalid key type code") when unknown."""
    found = KEY_TYPES.get(code.upper())
    if found is None:
        raise KeyRejected("04", "unknown or unsupported key type code")
    return found


def split_key_field(field: str) -> tuple[str, bytes]:
    """Parse a key field (`[scheme tag] hex`) into its scheme tag ("" for a bare key) and cryptogram bytes."""
    tag = field[:1] if field[:1] in SCHEME_KEY_BYTES else ""
    body = field[len(tag) :]
    expected = SCHEME_KEY_BYTES[tag] * 2
    if tag == "" and len(body) in (32, 48):
        expected = len(body)  # a bare double/triple-length field, accepted where a command allows it
    if len(body) != expected or not _HEX.issuperset(body):
        raise KeyRejected("15", "key field has the wrong length or is not hexadecimal")
    return tag, bytes.fromhex(body)


def _xor_byte(key: bytes, index: int, value: int) -> bytes:
    if value == 0:
        return key
    mutable = bytearray(key)
    mutable[index] ^= value
    return bytes(mutable)


def _scheme_of(tag: str, length: int) -> str:
    if tag:
        return tag
    return {8: "Z", 16: "X", 24: "Y"}[length]


def encrypt_under_key(kek: bytes, clear: bytes, scheme: str) -> bytes:
    """Encrypt a clear key under a key-encrypting key (an LMK pair with its variant, or a ZMK) per scheme."""
    if SCHEME_KEY_BYTES.get(scheme) != len(clear):
        raise KeyRejected("27", "key length does not match the key scheme")
    part_variants = _SCHEME_PART_VARIANTS.get(scheme)
    if part_variants is None:  # Z, X, Y: plain ECB under the key-encrypting key
        return tdes_ecb_encrypt(kek, clear)
    if len(kek) < 16:
        raise KeyRejected("26", "a variant key scheme needs a double or triple length encrypting key")
    return b"".join(
        tdes_ecb_encrypt(_xor_byte(kek, 8, v), clear[8 * i : 8 * i + 8]) for i, v in enumerate(part_variants)
    )


def decrypt_under_key(kek: bytes, cryptogram: bytes, scheme: str) -> bytes:
    """Inverse of `encrypt_under_key`."""
    if SCHEME_KEY_BYTES.get(scheme) != len(cryptogram):
        raise KeyRejected("27", "key length does not match the key scheme")
    part_variants = _SCHEME_PART_VARIANTS.get(scheme)
    if part_variants is None:
        return tdes_ecb_decrypt(kek, cryptogram)
    if len(kek) < 16:
        raise KeyRejected("26", "a variant key scheme needs a double or triple length encrypting key")
    return b"".join(
        tdes_ecb_decrypt(_xor_byte(kek, 8, v), cryptogram[8 * i : 8 * i + 8])
        for i, v in enumerate(part_variants)
    )


def random_key(length_bytes: int) -> bytes:
    """A fresh random DES/TDES key with odd parity (halves never equal, so a double key is truly double)."""
    while True:
        key = with_odd_parity(secrets.token_bytes(length_bytes))
        if length_bytes == 8 or key[:8] != key[8:16]:
            return key


def format_key_field(scheme: str, cryptogram: bytes) -> str:
    """Wire form of a key: scheme tag (none for scheme Z) followed by upper-case hex."""
    return ("" if scheme == "Z" else scheme) + cryptogram.hex().upper()


@dataclass(frozen=True, repr=False)
class LmkKey:
    """A key unwrapped from under the LMK. `repr` never shows the key."""

    clear: bytes
    scheme: str
    parity_ok: bool

    def __repr__(self) -> str:
        return f"LmkKey(scheme={self.scheme!r}, length={len(self.clear)}, parity_ok={self.parity_ok})"


class KeyVault:
    """Key operations under one LMK, with an LRU cache of unwrapped keys per (key type, key field).

    The cache is what makes PIN translation fast: a switch uses the same few TPKs and ZPKs for millions of
    transactions, and unwrapping costs two TDES setups per key.
    """

    def __init__(self, lmk: VariantLmk, *, cache_keys_max: int = 4096) -> None:
        self._lmk = lmk
        self._pair_keys: dict[tuple[int, int], bytes] = {}
        self.unwrap = functools.lru_cache(maxsize=cache_keys_max)(self._unwrap_uncached)

    @property
    def lmk(self) -> VariantLmk:
        return self._lmk

    def lmk_key(self, pair_index: int, variant: int) -> bytes:
        """LMK pair `pair_index` with pair variant `variant` applied to its first byte."""
        cached = self._pair_keys.get((pair_index, variant))
        if cached is None:
            cached = _xor_byte(self._lmk.pair(pair_index), 0, LMK_PAIR_VARIANTS[variant])
            self._pair_keys[(pair_index, variant)] = cached
        return cached

    @property
    def pin_lmk_key(self) -> bytes:
        return self.lmk_key(PIN_LMK_PAIR, 0)

    def wrap(self, clear: bytes, kt: KeyType, scheme: str) -> str:
        """Encrypt a clear key of type `kt` under the LMK; returns the wire field."""
        kek = self.lmk_key(kt.pair_index, kt.variant)
        return format_key_field(scheme, encrypt_under_key(kek, clear, scheme))

    def _unwrap_uncached(self, field: str, kt: KeyType) -> LmkKey:
        tag, cryptogram = split_key_field(field)
        kek = self.lmk_key(kt.pair_index, kt.variant)
        if tag == "" and len(cryptogram) > 8:
            # A bare 32/48-hex field is two/three single-length keys, each encrypted on its own
            # (how payShield takes CVK A + CVK B and PVK A + PVK B).
            clear = b"".join(
                tdes_ecb_decrypt(kek, cryptogram[i : i + 8]) for i in range(0, len(cryptogram), 8)
            )
            scheme = ""  # no single scheme describes separately encrypted halves
        else:
            scheme = _scheme_of(tag, len(cryptogram))
            clear = decrypt_under_key(kek, cryptogram, scheme)
        return LmkKey(clear=clear, scheme=scheme, parity_ok=has_odd_parity(clear))
