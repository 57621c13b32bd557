"""ISO 9564-1 PIN blocks: layouts, validation, encryption and translation (hsm.crypto.pinblock)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.crypto.des import aes_ecb_decrypt, aes_ecb_encrypt, tdes_ecb_decrypt, tdes_ecb_encrypt
from hsm.crypto.errors import CryptoError
from hsm.crypto.pinblock import (
    decode_pin_field,
    decrypt_pin_block,
    encode_pin_field,
    encrypt_pin_block,
    pan_12,
    translate_pin_block,
)

H = bytes.fromhex
TDES_KEY = H("0123456789ABCDEFFEDCBA9876543210")
OTHER_TDES_KEY = H("89E88CF7931444F334BD7547FC3F380C")
AES_KEY = H("00112233445566778899AABBCCDDEEFF")
OTHER_AES_KEY = H("D30D421EC808407A61972EDBA36482FF")
PAN = "4321987654321098"

pins = st.text(alphabet="0123456789", min_size=4, max_size=12)
pans = st.text(alphabet="0123456789", min_size=8, max_size=19)
formats = st.sampled_from([0, 1, 2, 3, 4])


def _key_for(fmt: int) -> bytes:
    return AES_KEY if fmt == 4 else TDES_KEY


def test_format0_matches_eftlab_example() -> None:
    """If PIN 1234 and PAN 43219876543210987 are encoded in format 0, then the clear block is 0412AC89ABCDEF67."""
    # EFTlab "Complete list of PIN blocks", ISO-0 example (also on the ID TECH knowledge base).
    assert encode_pin_field("1234", "43219876543210987", 0) == H("0412AC89ABCDEF67")


def test_format0_matches_x9_24_dukpt_annex_clear_block() -> None:
    """If PIN 1234 and PAN 4012345678909 are encoded in format 0, then the block is X9.24-1's 041274EDCBA9876F."""
    # ANSI X9.24-1:2009 Annex A.4 (DUKPT test data): clear PIN block for PIN 1234, PAN 4012345678909.
    assert encode_pin_field("1234", "4012345678909", 0) == H("041274EDCBA9876F")


def test_format0_decodes_the_published_example() -> None:
    """If the published format 0 block is decoded with its PAN, then the PIN is 1234."""
    # EFTlab "Complete list of PIN blocks", ISO-0 decode example.
    assert decode_pin_field(H("0412AC89ABCDEF67"), "43219876543210987", 0) == "1234"


def test_pan_12_excludes_check_digit() -> None:
    """If the 12-digit PAN field is taken, then it is the 12 digits left of the check digit."""
    # ISO 9564-1 format 0 account number field definition (12 rightmost digits excluding the check digit).
    assert pan_12("43219876543210987") == "987654321098"
    assert pan_12("123456789") == "000012345678"


def test_format1_layout() -> None:
    """If a PIN is encoded in format 1, then it is 1, length, PIN, then hex fill, with no PAN binding."""
    # ISO 9564-1:2017 format 1 layout: control 1, length, PIN digits, transaction field (any hex).
    field = encode_pin_field("123456", PAN, 1).hex().upper()
    assert field.startswith("16123456")
    assert decode_pin_field(bytes.fromhex(field), "", 1) == "123456"


def test_format2_layout() -> None:
    """If a PIN is encoded in format 2, then it is 2, length, PIN and F fill."""
    # ISO 9564-1:2017 format 2 layout (offline ICC): control 2, length, PIN, fill F.
    assert encode_pin_field("1234", PAN, 2) == H("241234FFFFFFFFFF")


def test_format3_layout() -> None:
    """If a PIN is encoded in format 3, then the fill (after removing the PAN) is A-F only."""
    # ISO 9564-1:2017 format 3: as format 0 but fill digits random from A to F.
    clear = int.from_bytes(encode_pin_field("1234", PAN, 3), "big") ^ int("0000" + pan_12(PAN), 16)
    field = f"{clear:016X}"
    assert field.startswith("341234")
    assert set(field[6:]) <= set("ABCDEF")


def test_format4_layout_matches_x9_24_3_supplement() -> None:
    """If PIN 1234 / PAN 4111111111111111 go into format 4, then the fields match the X9.24-3 supplement."""
    # ANSI X9.24-3:2017 Supplement test vectors, "Calculation of AES PIN Block Format 4" (as reproduced in
    # openemv/pinblock test/pinblock_format4_test.c): PIN field 441234AAAAAAAAAA||random, PAN field
    # 44111111111111111000000000000000. No standards-body ciphertext was found, so the AES step is checked
    # by decryption: the PIN field recovered from our block must have that layout.
    pan = "4111111111111111"
    pan_field = H("44111111111111111000000000000000")
    block = encrypt_pin_block("1234", pan, 4, AES_KEY)
    intermediate = aes_ecb_decrypt(AES_KEY, block)
    pin_field = aes_ecb_decrypt(AES_KEY, bytes(a ^ b for a, b in zip(intermediate, pan_field, strict=True)))
    assert pin_field[:8] == H("441234AAAAAAAAAA")


def test_format4_decrypts_third_party_calculator_block() -> None:
    """If a format 4 block made by an external calculator is decrypted, then PIN 1234 comes back."""
    # Not a standards vector: a third-party tool capture quoted in a public test suite (PIN field
    # 441234AAAAAAAAAA146C6601F4A8035C, intermediate A 2938DEEA..., B 4D0AC76D...). It checks our
    # ISO 9564-1:2017 format 4 encipherment E(K, E(K, PIN field) XOR PAN field) against another implementation.
    pan = "432198765432109870"
    key = H("00112233445566778899AABBCCDDEEFF")
    pin_field = H("441234AAAAAAAAAA146C6601F4A8035C")
    intermediate_a = aes_ecb_encrypt(key, pin_field)
    assert intermediate_a == H("2938DEEA32E4E3888BB452555DE9FFEB")
    intermediate_b = bytes(
        a ^ b for a, b in zip(intermediate_a, H("64321987654321098700000000000000"), strict=True)
    )
    assert intermediate_b == H("4D0AC76D57A7C2810CB452555DE9FFEB")
    assert aes_ecb_encrypt(key, intermediate_b) == H("88E33C3ACF404F234F10F889C364E377")
    assert decrypt_pin_block(H("88E33C3ACF404F234F10F889C364E377"), pan, 4, key) == "1234"


def test_format4_blocks_differ_each_time() -> None:
    """If the same PIN is encrypted twice in format 4, then the blocks differ (random field)."""
    assert encrypt_pin_block("1234", PAN, 4, AES_KEY) != encrypt_pin_block("1234", PAN, 4, AES_KEY)


@given(pin=pins, pan=pans, fmt=formats)
def test_encrypt_decrypt_round_trip(pin: str, pan: str, fmt: int) -> None:
    """If a PIN is encrypted in any format then decrypted with the same PAN and key, then it comes back."""
    key = _key_for(fmt)
    block = encrypt_pin_block(pin, pan, fmt, key)
    assert len(block) == (16 if fmt == 4 else 8)
    assert decrypt_pin_block(block, pan, fmt, key) == pin


@given(pin=pins, pan=pans, fmt=st.sampled_from([0, 1, 2, 3]))
def test_encode_decode_round_trip(pin: str, pan: str, fmt: int) -> None:
    """If a PIN is encoded to a clear block then decoded, then it comes back."""
    assert decode_pin_field(encode_pin_field(pin, pan, fmt), pan, fmt) == pin


@given(pin=pins, pan=pans, src_fmt=formats, dst_fmt=formats)
def test_translate_round_trip(pin: str, pan: str, src_fmt: int, dst_fmt: int) -> None:
    """If a block is translated to another key and format and back, then it still decrypts to the PIN."""
    src_key = AES_KEY if src_fmt == 4 else TDES_KEY
    dst_key = OTHER_AES_KEY if dst_fmt == 4 else OTHER_TDES_KEY
    block = encrypt_pin_block(pin, pan, src_fmt, src_key)
    translated = translate_pin_block(block, pan, src_key, src_fmt, dst_key, dst_fmt)
    assert decrypt_pin_block(translated, pan, dst_fmt, dst_key) == pin
    back = translate_pin_block(translated, pan, dst_key, dst_fmt, src_key, src_fmt)
    assert decrypt_pin_block(back, pan, src_fmt, src_key) == pin


def test_translate_format0_same_pan_is_a_pure_key_change() -> None:
    """If a format 0 block is translated TPK to ZPK, then the clear block under the new key is unchanged."""
    block = encrypt_pin_block("1234", PAN, 0, TDES_KEY)
    translated = translate_pin_block(block, PAN, TDES_KEY, 0, OTHER_TDES_KEY, 0)
    assert tdes_ecb_decrypt(OTHER_TDES_KEY, translated) == tdes_ecb_decrypt(TDES_KEY, block)


def test_translate_rebinds_to_destination_pan() -> None:
    """If a destination PAN is given, then the output block decrypts with that PAN and not the old one."""
    other_pan = "5500001234567896"
    block = encrypt_pin_block("98765", PAN, 0, TDES_KEY)
    translated = translate_pin_block(block, PAN, TDES_KEY, 0, OTHER_TDES_KEY, 0, dst_pan=other_pan)
    assert decrypt_pin_block(translated, other_pan, 0, OTHER_TDES_KEY) == "98765"


def test_decrypt_with_wrong_pan_fails_validation() -> None:
    """If a format 0 block is decrypted with another PAN, then the PIN block is rejected as invalid."""
    block = encrypt_pin_block("1234", PAN, 0, TDES_KEY)
    with pytest.raises(CryptoError) as raised:
        decrypt_pin_block(block, "5500001234567896", 0, TDES_KEY)
    assert raised.value.code in {"20", "24"}


def _encrypted_field(field_hex: str) -> bytes:
    return tdes_ecb_encrypt(TDES_KEY, H(field_hex))


@pytest.mark.parametrize(
    ("field_hex", "fmt", "code"),
    [
        ("141234FFFFFFFFFF", 2, "20"),  # control nibble is 1, format 2 requested
        ("231234FFFFFFFFFF", 2, "24"),  # PIN length 3
        ("2D1234567890123F", 2, "24"),  # PIN length 13
        ("2412A4FFFFFFFFFF", 2, "20"),  # non-decimal PIN digit
        ("241234FFFFFFFFFE", 2, "20"),  # fill not F
    ],
)
def test_bad_clear_block_is_rejected_with_code(field_hex: str, fmt: int, code: str) -> None:
    """If a decrypted block breaks the format's rules, then CryptoError carries the documented code."""
    with pytest.raises(CryptoError) as raised:
        decrypt_pin_block(_encrypted_field(field_hex), PAN, fmt, TDES_KEY)
    assert raised.value.code == code


def test_format3_fill_outside_a_to_f_is_rejected() -> None:
    """If a format 3 block's fill holds a digit below A, then it is rejected with "20"."""
    clear = int("3412349ABCDEFABC", 16) ^ int("0000" + pan_12(PAN), 16)
    with pytest.raises(CryptoError) as raised:
        decode_pin_field(clear.to_bytes(8, "big"), PAN, 3)
    assert raised.value.code == "20"


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda: encode_pin_field("1234", PAN, 5), "23"),
        (lambda: encrypt_pin_block("1234", PAN, -1, TDES_KEY), "23"),
        (lambda: encode_pin_field("1234", PAN, 4), "23"),
        (lambda: encode_pin_field("123", PAN, 0), "24"),
        (lambda: encode_pin_field("1234567890123", PAN, 0), "24"),
        (lambda: encode_pin_field("12a4", PAN, 0), "15"),
        (lambda: encode_pin_field("1234", "1234567", 0), "15"),
        (lambda: encode_pin_field("1234", "12345678901234567890", 0), "15"),
        (lambda: encode_pin_field("1234", "43219876543210X", 0), "15"),
        (lambda: encrypt_pin_block("1234", PAN, 0, bytes(10)), "27"),
        (lambda: encrypt_pin_block("1234", PAN, 4, TDES_KEY[:8]), "27"),
        (lambda: decrypt_pin_block(bytes(7), PAN, 0, TDES_KEY), "20"),
        (lambda: decrypt_pin_block(bytes(8), PAN, 4, AES_KEY), "20"),
        (lambda: decode_pin_field(bytes(9), PAN, 0), "20"),
        (lambda: translate_pin_block(bytes(8), PAN, TDES_KEY, 0, TDES_KEY, 7), "23"),
    ],
)
def test_bad_input_raises_crypto_error_with_code(call, code: str) -> None:
    """If an argument is malformed, then CryptoError carries the documented payShield code."""
    with pytest.raises(CryptoError) as raised:
        call()
    assert raised.value.code == code


@given(pin=pins)
def test_errors_never_contain_pin_or_pan(pin: str) -> None:
    """If a PIN block is rejected, then the error text holds neither the PIN nor the PAN nor the block."""
    block = encrypt_pin_block(pin, PAN, 0, TDES_KEY)
    with pytest.raises(CryptoError) as raised:
        decrypt_pin_block(block, "5500001234567896", 0, TDES_KEY)
    text = str(raised.value) + repr(raised.value)
    assert pin not in text
    assert "5500001234567896" not in text
    assert block.hex().upper() not in text.upper()
