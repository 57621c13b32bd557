"""The PAN vault: encryption round trip, key separation, stable keyed hash, and no PAN in errors or reprs."""

from __future__ import annotations

import pytest

from switch.domain.model import Pan
from switch.domain.pan_vault import PanVault, PanVaultError

PAN = Pan("9900010000000019")
DATA_KEY = bytes(range(32))
HASH_KEY = bytes(range(32, 64))


def _vault(data_key: bytes = DATA_KEY, hash_key: bytes = HASH_KEY) -> PanVault:
    return PanVault(data_key, hash_key)


def test_encrypt_then_decrypt_gives_the_pan_back() -> None:
    """If a PAN is encrypted and decrypted with the same keys, then the same PAN comes back."""
    vault = _vault()
    assert vault.decrypt(vault.encrypt(PAN)) == PAN


def test_ciphertext_does_not_contain_the_pan_and_differs_each_time() -> None:
    """If the same PAN is encrypted twice, then the blobs differ (random nonce) and neither holds the digits."""
    vault = _vault()
    a, b = vault.encrypt(PAN), vault.encrypt(PAN)
    assert a != b
    assert PAN.digits.encode() not in a
    assert PAN.digits[-4:].encode() not in a


def test_wrong_data_key_fails_without_revealing_the_pan() -> None:
    """If a blob is decrypted with another data key, then PanVaultError is raised and names no PAN."""
    blob = _vault().encrypt(PAN)
    with pytest.raises(PanVaultError) as info:
        _vault(data_key=bytes(32)).decrypt(blob)
    assert PAN.digits not in str(info.value)
    assert PAN.digits not in repr(info.value)


def test_altered_blob_fails() -> None:
    """If one byte of the ciphertext is changed, then decryption fails (GCM tag)."""
    blob = bytearray(_vault().encrypt(PAN))
    blob[-1] ^= 1
    with pytest.raises(PanVaultError):
        _vault().decrypt(bytes(blob))


def test_truncated_blob_fails_with_a_format_error() -> None:
    """If the blob is too short to hold nonce and tag, then PanVaultError says the format is unknown."""
    with pytest.raises(PanVaultError, match="format"):
        _vault().decrypt(b"\x01abc")


def test_lookup_hash_is_stable_and_keyed() -> None:
    """If the same PAN is hashed twice, then the hash is equal; another hash key gives another hash."""
    assert _vault().lookup_hash(PAN) == _vault().lookup_hash(PAN)
    assert len(_vault().lookup_hash(PAN)) == 32
    assert _vault(hash_key=bytes(32)).lookup_hash(PAN) != _vault().lookup_hash(PAN)


def test_lookup_hash_differs_between_pans() -> None:
    """If two PANs differ, then their lookup hashes differ."""
    assert _vault().lookup_hash(PAN) != _vault().lookup_hash(Pan("9900010000000027"))


def test_repr_shows_no_key_material() -> None:
    """If the vault is printed, then no key bytes appear."""
    text = repr(_vault())
    assert DATA_KEY.hex() not in text
    assert "hidden" in text


@pytest.mark.parametrize(("data_key", "hash_key"), [(bytes(16), HASH_KEY), (DATA_KEY, DATA_KEY)])
def test_unusable_keys_are_refused(data_key: bytes, hash_key: bytes) -> None:
    """If a key is not 32 bytes, or both keys are the same, then the vault refuses them."""
    with pytest.raises(PanVaultError):
        PanVault(data_key, hash_key)
