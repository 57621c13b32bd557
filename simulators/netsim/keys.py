"""The network's zone PIN keys: key exchange answers (field 48), key names (field 53), the grace period.

docs/networks.md "Key exchange and PIN blocks" is the contract. The network generates each working ZPK,
sends it under the ZMK it shares with the member with a check value and a key index (01-99, counting up
and wrapping), and keeps the previous key accepted for `grace_s` after the exchange so that PIN blocks
already in flight under it still verify. A simulator plays the network, so it holds the keys in clear;
their reprs never show them. Pure code: the caller passes the (monotonic) time.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from hsm.crypto.des import kcv_tdes, tdes_ecb_decrypt, tdes_ecb_encrypt, with_odd_parity

__all__ = [
    "FIELD48_TAG",
    "KEY_INDEX_MAX",
    "KeyExchangeError",
    "ZoneKey",
    "ZpkRing",
    "corrupted_kcv",
    "field48",
    "field53",
    "parse_field48",
    "parse_field53",
]

FIELD48_TAG = "ZPK"
KEY_INDEX_MAX = 99
KCV_DIGITS = 6
_KEY_HEX_DIGITS = 32  # double-length TDES
_FIELD48_LENGTH = len(FIELD48_TAG) + 2 + _KEY_HEX_DIGITS + KCV_DIGITS
# Field 53: security format 20 (zone PIN key), algorithm 01 (TDES), PIN block format 01 (ISO format 0).
_FIELD53_PREFIX = "200101"
_FIELD53_FILLER = "00000000"


class KeyExchangeError(Exception):
    """A key exchange answer is malformed or its key fails the check value. The message holds no key."""


@dataclass(frozen=True, slots=True)
class ZoneKey:
    """One working ZPK and the index that names it in field 53."""

    index: int
    key: bytes = field(repr=False)
    kcv: str

    @classmethod
    def of(cls, index: int, key: bytes) -> ZoneKey:
        return cls(index=index, key=key, kcv=kcv_tdes(key, KCV_DIGITS))


def field53(index: int) -> str:
    """Field 53 naming the ZPK of `index` (n16)."""
    if not 1 <= index <= KEY_INDEX_MAX:
        raise ValueError("key index must be 1..99")
    return f"{_FIELD53_PREFIX}{index:02d}{_FIELD53_FILLER}"


def parse_field53(value: str | None) -> int | None:
    """The key index field 53 names; None when the field is absent or not the contract's layout."""
    if value is None or len(value) != 16 or not (value.isascii() and value.isdigit()):
        return None
    if not value.startswith(_FIELD53_PREFIX):
        return None
    index = int(value[6:8])
    return index if 1 <= index <= KEY_INDEX_MAX else None


def corrupted_kcv(kcv: str) -> str:
    """A check value that is certainly not `kcv` (for the bad_kcv fault)."""
    return "000000" if kcv != "000000" else "FFFFFF"


def field48(zone_key: ZoneKey, zmk: bytes, *, kcv: str | None = None) -> str:
    """Field 48 of a key exchange answer: ZPK + index + the key under the ZMK (each half ECB) + KCV."""
    wrapped = tdes_ecb_encrypt(zmk, zone_key.key).hex().upper()
    return f"{FIELD48_TAG}{zone_key.index:02d}{wrapped}{kcv if kcv is not None else zone_key.kcv}"


def parse_field48(value: str | None, zmk: bytes) -> ZoneKey:
    """Unwrap the ZPK of a key exchange answer and check it against its check value.

    This is what a member does with the answer (the switch does it in its HSM); netsim's tests use it.
    Raises KeyExchangeError naming what is wrong, never the key.
    """
    if value is None:
        raise KeyExchangeError("key exchange answer has no field 48")
    if len(value) != _FIELD48_LENGTH or not value.startswith(FIELD48_TAG):
        raise KeyExchangeError(f"field 48 must be {FIELD48_TAG} + index + key + check value")
    index_text = value[3:5]
    if not index_text.isdigit() or not 1 <= int(index_text) <= KEY_INDEX_MAX:
        raise KeyExchangeError("field 48 key index must be 01..99")
    try:
        wrapped = bytes.fromhex(value[5 : 5 + _KEY_HEX_DIGITS])
    except ValueError:
        raise KeyExchangeError("field 48 key is not hex") from None
    key = tdes_ecb_decrypt(zmk, wrapped)
    kcv = value[5 + _KEY_HEX_DIGITS :].upper()
    if kcv_tdes(key, KCV_DIGITS) != kcv:
        raise KeyExchangeError("the key does not match its check value")
    return ZoneKey(index=int(index_text), key=key, kcv=kcv)


def _random_key() -> bytes:
    return with_odd_parity(secrets.token_bytes(16))


class ZpkRing:
    """The current ZPK and the previous one with the time its grace ends.

    `candidate()` makes the next key without using it; `adopt()` makes a candidate current (the previous
    current key stays valid for `grace_s`). Keeping the two apart lets a corrupted key exchange answer
    (bad_kcv fault) leave both sides on the old key, as the contract wants of the member.
    """

    def __init__(self, *, grace_s: float, new_key: Callable[[], bytes] = _random_key) -> None:
        if grace_s < 0:
            raise ValueError("grace_s must not be negative")
        self.grace_s = grace_s
        self._new_key = new_key
        self.current: ZoneKey | None = None
        self.previous: ZoneKey | None = None
        self.previous_until: float | None = None

    def __repr__(self) -> str:
        current = self.current.index if self.current else None
        previous = self.previous.index if self.previous else None
        return f"ZpkRing(current={current}, previous={previous})"

    def next_index(self) -> int:
        if self.current is None:
            return 1
        return self.current.index % KEY_INDEX_MAX + 1

    def candidate(self) -> ZoneKey:
        """A fresh key under the next index, not yet in use."""
        return ZoneKey.of(self.next_index(), self._new_key())

    def adopt(self, zone_key: ZoneKey, now: float) -> None:
        """Make `zone_key` current; the key it replaces stays accepted until `now + grace_s`."""
        if self.current is not None and self.current.index != zone_key.index:
            self.previous = self.current
            self.previous_until = now + self.grace_s
        self.current = zone_key

    def key_for(self, index: int, now: float) -> ZoneKey | None:
        """The key of `index` if it is accepted at `now`: the current one, or the previous within grace."""
        if self.current is not None and self.current.index == index:
            return self.current
        previous = self.previous
        if (
            previous is not None
            and previous.index == index
            and self.previous_until is not None
            and now < self.previous_until
        ):
            return previous
        return None

    def status(self, now: float) -> dict[str, object]:
        """Key indexes and check values (never keys), and how long the previous key stays accepted."""
        left = None
        if self.previous is not None and self.previous_until is not None:
            left = round(max(0.0, self.previous_until - now), 3)
        return {
            "index": self.current.index if self.current else None,
            "kcv": self.current.kcv if self.current else None,
            "previous_index": self.previous.index if self.previous else None,
            "previous_accepted_for_s": left,
            "grace_s": self.grace_s,
        }
