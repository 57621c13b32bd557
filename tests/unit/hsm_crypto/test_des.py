"""Block ciphers, odd parity and key check values of hsm.crypto.des."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.crypto.des import (
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    aes_ecb_decrypt,
    aes_ecb_encrypt,
    clear_cipher_cache,
    has_odd_parity,
    kcv_aes,
    kcv_tdes,
    tdes_cbc_decrypt,
    tdes_cbc_encrypt,
    tdes_ecb_decrypt,
    tdes_ecb_encrypt,
    with_odd_parity,
)
from hsm.crypto.errors import CryptoError

H = bytes.fromhex


def test_des_ecb_matches_fips81_example() -> None:
    """If single DES ECB encrypts "Now is the time for all ", then it gives FIPS 81 Appendix B table B1's ciphertext."""
    # FIPS PUB 81 (DES modes of operation), Appendix B, Table B1: ECB mode, key 0123456789ABCDEF.
    ciphertext = tdes_ecb_encrypt(H("0123456789ABCDEF"), b"Now is the time for all ")
    assert ciphertext == H("3FA40E8A984D48156A271787AB8883F9893D51EC4B563B53")


def test_aes_ecb_matches_fips197_example() -> None:
    """If AES-128 encrypts the FIPS 197 example block, then it gives the published ciphertext."""
    # FIPS 197, Appendix C.1 (AES-128 example vector).
    key = H("000102030405060708090A0B0C0D0E0F")
    assert aes_ecb_encrypt(key, H("00112233445566778899AABBCCDDEEFF")) == H(
        "69C4E0D86A7B0430D8CDB78070B4C55A"
    )


def test_kcv_tdes_of_the_classic_test_key() -> None:
    """If the KCV of key 0123456789ABCDEF FEDCBA9876543210 is computed, then it is the widely published 08D7B4."""
    # The classic payShield/EFTlab test key; its KCV (TDES of 8 zero bytes) is published as 08D7B4FB629D0885.
    assert kcv_tdes(H("0123456789ABCDEFFEDCBA9876543210")) == "08D7B4"
    assert kcv_tdes(H("0123456789ABCDEFFEDCBA9876543210"), 16) == "08D7B4FB629D0885"


def test_kcv_tdes_matches_tr31_annex_key() -> None:
    """If the KCV of the TR-31:2018 A.7.2.2 wrapped key is computed, then it is the annex's 57C409."""
    # ANSI X9 TR-31:2018 Annex A.7.2.2 (as reproduced in openemv/tr31 test/tr31_decrypt_test.c).
    assert kcv_tdes(H("3F419E1CB7079442AA37474C2EFBF8B8")) == "57C409"


def test_kcv_aes_is_cmac_of_zero_block_per_tr31_annex() -> None:
    """If the AES KCV of the TR-31:2018 A.7.4 key is computed, then it is the annex's CMAC-based 08793E."""
    # ANSI X9 TR-31:2018 Annex A.7.4: AES key 3F419E1C... with KCV 08793E (CMAC of a zero block).
    assert kcv_aes(H("3F419E1CB7079442AA37474C2EFBF8B8")) == "08793E"


@given(st.binary(min_size=8, max_size=8).map(lambda b: b * 2), st.binary(min_size=8, max_size=64))
def test_tdes_ecb_round_trip(key: bytes, raw: bytes) -> None:
    """If whole blocks are TDES-ECB encrypted then decrypted under one key, then the input comes back."""
    data = raw[: len(raw) - len(raw) % 8]
    if not data:
        data = bytes(8)
    assert tdes_ecb_decrypt(key, tdes_ecb_encrypt(key, data)) == data


@given(
    st.sampled_from([8, 16, 24]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    st.binary(min_size=8, max_size=8),
)
def test_tdes_cbc_round_trip(key: bytes, iv: bytes) -> None:
    """If data is TDES-CBC encrypted then decrypted with the same key and IV, then it comes back."""
    data = bytes(range(32))
    assert tdes_cbc_decrypt(key, tdes_cbc_encrypt(key, data, iv), iv) == data


def test_single_length_key_equals_k_k_k() -> None:
    """If an 8-byte key is used, then it behaves as the triple-length key K,K,K (single DES)."""
    key = H("0123456789ABCDEF")
    assert tdes_ecb_encrypt(key, bytes(8)) == tdes_ecb_encrypt(key * 3, bytes(8))


@given(st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_aes_round_trips(key: bytes) -> None:
    """If data is AES encrypted then decrypted (ECB and CBC), then it comes back."""
    data = bytes(range(48))
    assert aes_ecb_decrypt(key, aes_ecb_encrypt(key, data)) == data
    assert aes_cbc_decrypt(key, aes_cbc_encrypt(key, data)) == data


@given(st.binary(min_size=1, max_size=24))
def test_with_odd_parity_gives_odd_parity_and_touches_only_low_bits(key: bytes) -> None:
    """If a key is given odd parity, then every byte has odd parity and only parity bits changed."""
    fixed = with_odd_parity(key)
    assert has_odd_parity(fixed)
    assert all((a ^ b) in (0, 1) for a, b in zip(key, fixed, strict=True))


def test_has_odd_parity_rejects_even_byte() -> None:
    """If one byte of a key has even parity, then the key fails the parity check."""
    assert has_odd_parity(H("0123456789ABCDEF"))
    assert not has_odd_parity(H("0123456789ABCDEE"))


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda: tdes_ecb_encrypt(bytes(7), bytes(8)), "27"),
        (lambda: tdes_ecb_encrypt(bytes(32), bytes(8)), "27"),
        (lambda: tdes_ecb_encrypt(bytes(16), bytes(7)), "15"),
        (lambda: tdes_cbc_encrypt(bytes(16), bytes(8), bytes(7)), "15"),
        (lambda: aes_ecb_encrypt(bytes(15), bytes(16)), "27"),
        (lambda: aes_ecb_decrypt(bytes(16), bytes(15)), "15"),
        (lambda: kcv_tdes(bytes(16), 0), "15"),
        (lambda: kcv_aes(bytes(16), 33), "15"),
    ],
)
def test_bad_input_raises_crypto_error_with_code(call, code: str) -> None:
    """If a key or data length is wrong, then CryptoError carries the documented payShield code."""
    with pytest.raises(CryptoError) as raised:
        call()
    assert raised.value.code == code


def test_error_message_never_contains_key_material() -> None:
    """If a key of the wrong length is refused, then the error text does not contain the key's hex."""
    key = H("0123456789ABCDEF0123")
    with pytest.raises(CryptoError) as raised:
        tdes_ecb_encrypt(key, bytes(8))
    assert key.hex() not in str(raised.value).lower()
    assert key.hex() not in repr(raised.value).lower()


def test_clear_cipher_cache_keeps_results_correct() -> None:
    """If the cipher cache is cleared between two calls, then the second call still gives the same result."""
    key = H("0123456789ABCDEFFEDCBA9876543210")
    before = tdes_ecb_encrypt(key, bytes(8))
    clear_cipher_cache()
    assert tdes_ecb_encrypt(key, bytes(8)) == before
