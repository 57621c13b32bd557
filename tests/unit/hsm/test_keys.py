"""Keys under the LMK and a ZMK: key types, schemes, variants, parsing and the unwrap cache."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.crypto.des import tdes_ecb_encrypt, with_odd_parity
from hsm.keys import (
    KEY_TYPES,
    ZMK,
    ZPK,
    KeyRejected,
    KeyVault,
    decrypt_under_key,
    encrypt_under_key,
    key_type,
    random_key,
    split_key_field,
)
from hsm.lmk import VariantLmk

from .support import CLEAR_ZMK, CLEAR_ZPK, vault

_SCHEMES = {"Z": 8, "U": 16, "X": 16, "T": 24, "Y": 24}


@pytest.mark.parametrize(
    ("code", "pair_label", "variant"),
    [
        ("000", "04-05", 0),
        ("001", "06-07", 0),
        ("002", "14-15", 0),
        ("402", "14-15", 4),
        ("003", "16-17", 0),
        ("008", "26-27", 0),
        ("009", "28-29", 0),
        ("00A", "30-31", 0),
    ],
)
def test_key_types_live_under_their_lmk_pair_and_variant(code: str, pair_label: str, variant: int) -> None:
    """If a key type code is looked up, then its LMK pair and variant are the payShield ones."""
    kt = key_type(code)
    assert kt.lmk_pair_label == pair_label
    assert kt.variant == variant


def test_unknown_key_type_is_error_04() -> None:
    """If an unknown key type code is used, then error 04 results."""
    with pytest.raises(KeyRejected) as caught:
        key_type("7FF")
    assert caught.value.code == "04"


@given(
    scheme=st.sampled_from(sorted(_SCHEMES)),
    code=st.sampled_from(sorted(KEY_TYPES)),
    seed=st.binary(min_size=24, max_size=24),
)
def test_wrap_unwrap_round_trip(scheme: str, code: str, seed: bytes) -> None:
    """If a key is wrapped under the LMK in any scheme and key type, then unwrapping gives it back."""
    v = vault()
    clear = with_odd_parity(seed[: _SCHEMES[scheme]])
    field = v.wrap(clear, key_type(code), scheme)
    unwrapped = v.unwrap(field, key_type(code))
    assert unwrapped.clear == clear
    assert unwrapped.parity_ok


def test_wire_form_carries_scheme_tag_except_for_single_length() -> None:
    """If keys are wrapped, then U/T/X/Y fields start with their tag and a Z key is 16 bare hex digits."""
    v = vault()
    assert v.wrap(CLEAR_ZPK, ZPK, "U")[0] == "U"
    assert len(v.wrap(CLEAR_ZPK, ZPK, "U")) == 33
    single = v.wrap(CLEAR_ZPK[:8], ZPK, "Z")
    assert len(single) == 16
    assert all(c in "0123456789ABCDEF" for c in single)


def test_key_type_separation() -> None:
    """If the same key is wrapped as a ZPK and as a ZMK, then the cryptograms differ and cross-unwrapping fails."""
    v = vault()
    as_zpk = v.wrap(CLEAR_ZPK, ZPK, "U")
    assert as_zpk != v.wrap(CLEAR_ZPK, ZMK, "U")
    assert v.unwrap(as_zpk, ZMK).clear != CLEAR_ZPK


def test_scheme_u_halves_are_not_interchangeable() -> None:
    """If a key with identical halves is wrapped under scheme U, then the two cryptogram halves differ."""
    v = vault()
    key = bytes.fromhex("0123456789ABCDEF0123456789ABCDEF")
    field = v.wrap(key, ZPK, "U")
    assert field[1:17] != field[17:]


def test_scheme_x_is_plain_ecb_under_the_variant_lmk() -> None:
    """If a key is wrapped under scheme X, then each half is TDES-ECB under the LMK pair without scheme variants."""
    v = vault()
    field = v.wrap(CLEAR_ZPK, ZPK, "X")
    assert field == "X" + tdes_ecb_encrypt(v.lmk_key(3, 0), CLEAR_ZPK).hex().upper()


@given(scheme=st.sampled_from(sorted(_SCHEMES)), seed=st.binary(min_size=24, max_size=24))
def test_zmk_encryption_round_trip(scheme: str, seed: bytes) -> None:
    """If a key is encrypted under a ZMK in any scheme, then decrypting with the same scheme gives it back."""
    clear = with_odd_parity(seed[: _SCHEMES[scheme]])
    assert decrypt_under_key(CLEAR_ZMK, encrypt_under_key(CLEAR_ZMK, clear, scheme), scheme) == clear


def test_bare_double_field_is_two_single_keys() -> None:
    """If a 32-hex field without tag is unwrapped, then each half is decrypted as a single-length key."""
    v = vault()
    kek = v.lmk_key(7, 4)
    left, right = CLEAR_ZPK[:8], CLEAR_ZPK[8:]
    field = (tdes_ecb_encrypt(kek, left) + tdes_ecb_encrypt(kek, right)).hex().upper()
    assert v.unwrap(field, key_type("402")).clear == CLEAR_ZPK


@pytest.mark.parametrize("field", ["U1234", "Z" + "G" * 16, "T" + "0" * 32, "0" * 15, ""])
def test_malformed_key_fields_are_error_15(field: str) -> None:
    """If a key field has the wrong length or non-hex characters, then error 15 results."""
    with pytest.raises(KeyRejected) as caught:
        split_key_field(field)
    assert caught.value.code == "15"


def test_scheme_length_mismatch_is_error_27() -> None:
    """If a key's length does not match the scheme it is wrapped in, then error 27 results."""
    with pytest.raises(KeyRejected) as caught:
        vault().wrap(CLEAR_ZPK, ZPK, "T")
    assert caught.value.code == "27"


def test_wrong_parity_is_reported_not_hidden() -> None:
    """If a key with even parity is wrapped, then unwrapping flags parity_ok False."""
    v = vault()
    bad = bytes.fromhex("0023456789ABCDEFFEDCBA9876543210")
    assert not v.unwrap(v.wrap(bad, ZPK, "U"), ZPK).parity_ok


def test_unwrap_is_cached_per_field() -> None:
    """If the same field is unwrapped twice, then the second call is served from the cache."""
    v = KeyVault(VariantLmk.test_lmk())
    field = v.wrap(CLEAR_ZPK, ZPK, "U")
    v.unwrap(field, ZPK)
    v.unwrap(field, ZPK)
    assert v.unwrap.cache_info().hits == 1


def test_unwrapped_key_repr_hides_key() -> None:
    """If an unwrapped key is printed, then its bytes do not appear."""
    v = vault()
    text = repr(v.unwrap(v.wrap(CLEAR_ZPK, ZPK, "U"), ZPK))
    assert CLEAR_ZPK.hex() not in text.lower()
    assert CLEAR_ZPK.hex().upper() not in text


def test_random_keys_have_parity_and_distinct_halves() -> None:
    """If keys are generated, then they have odd parity and a double key's halves differ."""
    for length in (8, 16, 24):
        key = random_key(length)
        assert len(key) == length
        assert key == with_odd_parity(key)
    double = random_key(16)
    assert double[:8] != double[8:]
