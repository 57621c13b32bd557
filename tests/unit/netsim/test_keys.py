"""Zone PIN keys: fields 48 and 53, key indexes counting up and wrapping, the previous key's grace."""

from __future__ import annotations

import pytest

from hsm.crypto.des import kcv_tdes
from simulators.netsim.keys import (
    KeyExchangeError,
    ZoneKey,
    ZpkRing,
    corrupted_kcv,
    field48,
    field53,
    parse_field48,
    parse_field53,
)

ZMK = bytes.fromhex("2315208C9110AD4040791CDC6E6EA885")
KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def test_field53_names_the_index_in_the_contract_layout():
    """If field 53 is built for index 7, then it is 20 01 01 07 and eight zeros, and parses back to 7."""
    assert field53(7) == "2001010700000000"
    assert parse_field53(field53(7)) == 7


@pytest.mark.parametrize(
    "value", [None, "2001010000000000", "1001010100000000", "20010101", "20010101000000AB"]
)
def test_malformed_field53_names_no_key(value):
    """If field 53 is absent, index 00, another security format or not 16 digits, then it names no key."""
    assert parse_field53(value) is None


def test_field48_round_trips_and_carries_the_kcv():
    """If a key is sent in field 48, then the member unwraps the same key and index under the ZMK."""
    zone_key = ZoneKey.of(12, KEY)
    value = field48(zone_key, ZMK)
    assert value.startswith("ZPK12") and value.endswith(kcv_tdes(KEY, 6))
    assert parse_field48(value, ZMK) == zone_key


def test_corrupted_kcv_fails_the_members_check():
    """If field 48 carries a corrupted check value, then unwrapping it raises KeyExchangeError."""
    zone_key = ZoneKey.of(1, KEY)
    with pytest.raises(KeyExchangeError, match="check value"):
        parse_field48(field48(zone_key, ZMK, kcv=corrupted_kcv(zone_key.kcv)), ZMK)
    assert corrupted_kcv("000000") != "000000"


def test_wrong_zmk_fails_the_check():
    """If the member unwraps under another ZMK, then the check value does not match."""
    with pytest.raises(KeyExchangeError):
        parse_field48(field48(ZoneKey.of(1, KEY), ZMK), bytes.fromhex("0D7F2A34A4E9D6B057674F15701F7667"))


def test_key_repr_does_not_show_the_key():
    """If a zone key is printed, then its key bytes are not."""
    assert KEY.hex() not in repr(ZoneKey.of(1, KEY)).lower()


def ring(grace_s: float = 60.0) -> ZpkRing:
    keys = iter(bytes([n]) * 16 for n in range(1, 300))
    return ZpkRing(grace_s=grace_s, new_key=lambda: next(keys))


def test_indexes_count_up_from_01_and_wrap_after_99():
    """If keys are adopted one after another, then indexes run 1..99 and then 1 again."""
    r = ring()
    seen = []
    for _ in range(100):
        key = r.candidate()
        r.adopt(key, 0.0)
        seen.append(key.index)
    assert seen[:3] == [1, 2, 3] and seen[98:] == [99, 1]


def test_candidate_is_not_used_until_adopted():
    """If a candidate is made but not adopted, then the current key stays and the candidate's index is unknown."""
    r = ring()
    first = r.candidate()
    r.adopt(first, 0.0)
    second = r.candidate()
    assert r.current == first
    assert r.key_for(second.index, 1.0) is None


def test_previous_key_is_accepted_until_its_grace_ends():
    """If a new key is adopted at t=100 with 60 s of grace, then the old one works before t=160 and not from then on."""
    r = ring(60.0)
    old = r.candidate()
    r.adopt(old, 0.0)
    new = r.candidate()
    r.adopt(new, 100.0)
    assert r.key_for(old.index, 159.9) == old
    assert r.key_for(old.index, 160.0) is None
    assert r.key_for(new.index, 10_000.0) == new


def test_status_shows_indexes_and_check_values_only():
    """If the ring's status is shown, then it has indexes, check values and the grace left, and no key."""
    r = ring(60.0)
    r.adopt(r.candidate(), 0.0)
    r.adopt(r.candidate(), 10.0)
    status = r.status(40.0)
    assert (status["index"], status["previous_index"], status["previous_accepted_for_s"]) == (2, 1, 30.0)
    assert (bytes([2]) * 16).hex() not in str(status).lower()
