"""DUKPT key derivation, TDES (ANSI X9.24-1:2009) and AES (ANSI X9.24-3:2017) (hsm.crypto.dukpt)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.crypto.des import tdes_cbc_encrypt, tdes_ecb_decrypt, tdes_ecb_encrypt
from hsm.crypto.dukpt import (
    aes_initial_key,
    aes_working_key,
    tdes_data_key,
    tdes_ipek,
    tdes_mac_key,
    tdes_pin_key,
    tdes_transaction_key,
)
from hsm.crypto.errors import CryptoError
from hsm.crypto.mac import iso9797_mac

H = bytes.fromhex

# ANSI X9.24-1:2009 Annex A.4 test data.
TDES_BDK = H("0123456789ABCDEFFEDCBA9876543210")
TDES_IKSN = H("FFFF9876543210E00000")
TDES_IPEK = H("6AC292FAA1315B4D858AB3A3D7D5933A")
CLEAR_PIN_BLOCK = H("041274EDCBA9876F")  # PIN 1234, PAN 4012345678909, ISO format 0
DATA = b"4012345678909D987"

# ANSI X9.24-3:2017 Annex B.1 / supplement test data (AES-128 BDK).
AES_BDK = H("FEDCBA9876543210F1F1F1F1F1F1F1F1")
AES_IKID = H("1234567890123456")
AES_IK = H("1273671EA26AC29AFA4D1084127652A1")


def _tdes_ksn(counter: int) -> bytes:
    return (int.from_bytes(TDES_IKSN, "big") | counter).to_bytes(10, "big")


def _aes_ksn(counter: int) -> bytes:
    return AES_IKID + counter.to_bytes(4, "big")


def test_tdes_ipek_matches_x9_24_1() -> None:
    """If the IPEK is derived from the annex BDK and KSN, then it is 6AC292FAA1315B4D858AB3A3D7D5933A."""
    # ANSI X9.24-1:2009 A.6 (derivation of the initial key), A.4 test data.
    assert tdes_ipek(TDES_BDK, TDES_IKSN) == TDES_IPEK


def test_tdes_ipek_ignores_the_counter() -> None:
    """If the KSN carries a non-zero counter, then the IPEK is still derived from the counter-cleared KSN."""
    # ANSI X9.24-1:2009 A.6: the 21-bit counter is cleared before deriving the initial key.
    assert tdes_ipek(TDES_BDK, _tdes_ksn(0x1FFFFF)) == TDES_IPEK


# ANSI X9.24-1:2009 A.4.2 (initial sequence) and A.4.3 (rollover sequence): KSN counter, transaction key
# (before variants) and the clear PIN block encrypted under its PIN variant. Reproduced in
# openemv/dukpt test/dukpt_tdes_test.c.
TDES_SEQUENCE = [
    (0x000001, "042666B49184CFA368DE9628D0397BC9", "1B9C1845EB993A7A"),
    (0x000002, "C46551CEF9FD24B0AA9AD834130D3BC7", "10A01C8D02C69107"),
    (0x000003, "0DF3D9422ACA56E547676D07AD6BADFA", "18DC07B94797B466"),
    (0x000004, "279C0F6AEED0BE652B2C733E1383AE91", "0BC79509D5645DF7"),
    (0x000005, "5F8DC6D2C845C125508DDC048093B83F", "5BC0AF22AD87B327"),
    (0x000006, "5E415CB0BAF9F03CD0C14B63FB62FF43", "A16DF70AE36158D8"),
    (0x000007, "0C8F780B7C8B49D0AE84A9EB2A6CE660", "27711C16CB257F8E"),
    (0x000008, "27F66D5244FF62E1AA6F6120EDEB4280", "50E55547A5027551"),
    (0x000009, "27E31064FDC565698900E2057F658E7E", "536CF7F678ACFC8D"),
    (0x00000A, "6CF2500A22507C7CC776CEADC1E33014", "EDABBA23221833FE"),
    (0x0FF800, "F9CDFEBF4F5B1D9EB3EC12454527E176", "33365F5CC6F23C35"),
    (0x0FF801, "5BEE92627E97825C911BF619DF72CA3B", "3A86BF003F835C9D"),
    (0x0FFC00, "F9430DF975082491C77BE4EF4FDB91EE", "DEFC6F09F8927B71"),
    (0x100000, "AA4D58DB653EC74A48C75F2F047DD2B5", "73EC88AD0AC5830E"),
]


@pytest.mark.parametrize(("counter", "transaction_key", "encrypted_pin_block"), TDES_SEQUENCE)
def test_tdes_transaction_key_matches_x9_24_1(
    counter: int, transaction_key: str, encrypted_pin_block: str
) -> None:
    """If the transaction key is derived for an annex KSN, then it matches the published key."""
    assert tdes_transaction_key(TDES_IPEK, _tdes_ksn(counter)) == H(transaction_key)


@pytest.mark.parametrize(("counter", "transaction_key", "encrypted_pin_block"), TDES_SEQUENCE)
def test_tdes_pin_key_encrypts_annex_pin_block(
    counter: int, transaction_key: str, encrypted_pin_block: str
) -> None:
    """If the annex PIN block is encrypted under the PIN key, then the published ciphertext comes out."""
    pin_key = tdes_pin_key(TDES_IPEK, _tdes_ksn(counter))
    assert tdes_ecb_encrypt(pin_key, CLEAR_PIN_BLOCK) == H(encrypted_pin_block)
    assert tdes_ecb_decrypt(pin_key, H(encrypted_pin_block)) == CLEAR_PIN_BLOCK


# ANSI X9.24-1:2009 A.4 data encryption and MAC examples over ASCII "4012345678909D987" (zero-padded;
# data: TDES-CBC zero IV; MAC: ISO 9797-1 algorithm 3), as reproduced in moov-io/dukpt
# pkg/des/des_test.go: request/response data ciphertexts, request/response MACs.
TDES_DATA_MAC = [
    (
        1,
        "FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F",
        "1FCC89AF66222F27B903898BB2BC8589CDBFDE5EC6AFCC25",
        "9CCC78173FC4FB64",
        "20364223C1FF00FA",
    ),
    (
        2,
        "A2B4E70F846E63D68775B7215EB4563DFD3037244C61CC13",
        "5B692A6B1FDD5E25B0DEFAFDE1672E402F8011360CFF3508",
        "F608A9BCA6FFC311",
        "D1FCA6BEF05D24D2",
    ),
    (
        5,
        "9FD7BD1EC28845ACA93367A9DA9317BD555C6B33AE22D365",
        "7D4C109E49E83355A556AE949EED359F4404E7A2F0167C00",
        "0202B96339022058",
        "5CBE3E81D1D2A0FB",
    ),
]


@pytest.mark.parametrize(
    ("counter", "request_data", "response_data", "request_mac", "response_mac"), TDES_DATA_MAC
)
def test_tdes_data_key_matches_published_ciphertexts(
    counter: int, request_data: str, response_data: str, request_mac: str, response_mac: str
) -> None:
    """If the annex data is encrypted under the request and response data keys, then the published ciphertexts come out."""
    padded = DATA + bytes(-len(DATA) % 8)
    ksn = _tdes_ksn(counter)
    assert tdes_cbc_encrypt(tdes_data_key(TDES_IPEK, ksn), padded) == H(request_data)
    assert tdes_cbc_encrypt(tdes_data_key(TDES_IPEK, ksn, response=True), padded) == H(response_data)


@pytest.mark.parametrize(
    ("counter", "request_data", "response_data", "request_mac", "response_mac"), TDES_DATA_MAC
)
def test_tdes_mac_key_matches_published_macs(
    counter: int, request_data: str, response_data: str, request_mac: str, response_mac: str
) -> None:
    """If the annex data is MACed under the request and response MAC keys, then the published MACs come out."""
    ksn = _tdes_ksn(counter)
    assert iso9797_mac(tdes_mac_key(TDES_IPEK, ksn), DATA, 3, 1) == H(request_mac)
    assert iso9797_mac(tdes_mac_key(TDES_IPEK, ksn, response=True), DATA, 3, 1) == H(response_mac)


@given(st.integers(min_value=1, max_value=0x1FFFFF))
def test_tdes_usage_keys_are_distinct(counter: int) -> None:
    """If the PIN, MAC and data keys are derived for one KSN, then they are all different."""
    ksn = _tdes_ksn(counter)
    keys = {
        tdes_pin_key(TDES_IPEK, ksn),
        tdes_mac_key(TDES_IPEK, ksn),
        tdes_mac_key(TDES_IPEK, ksn, response=True),
        tdes_data_key(TDES_IPEK, ksn),
        tdes_data_key(TDES_IPEK, ksn, response=True),
    }
    assert len(keys) == 5


def test_aes_initial_key_matches_x9_24_3() -> None:
    """If the AES initial key is derived from the annex BDK and ID, then it is 1273671EA26AC29AFA4D1084127652A1."""
    # ANSI X9.24-3:2017 Annex B.1 sample test vectors (AES-128 BDK).
    assert aes_initial_key(AES_BDK, AES_IKID) == AES_IK


def test_aes256_initial_key_matches_x9_24_3_supplement() -> None:
    """If an AES-256 BDK is used, then the initial key matches the supplement's AES-256 value."""
    # ANSI X9.24-3:2017 supplement test vectors, AES-256 BDK (as reproduced in openemv/dukpt
    # test/dukpt_aes_test.c).
    bdk = AES_BDK * 2
    expected = H("CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F")
    assert aes_initial_key(bdk, AES_IKID) == expected


# ANSI X9.24-3:2017 supplement test vectors, AES-128 working keys for counter 1 (all usages) and PIN /
# MAC-generation / data-encryption keys for counters 2, 3 and 8. Reproduced by several independent
# implementations (e.g. paysec-dukpt, and a CryptoScript suite "AnnexBAllUsageVectorsForAes128CounterOne").
AES_WORKING_KEYS = [
    (1, "pin", "AF8CB133A78F8DC2D1359F18527593FB"),
    (1, "mac_generate", "A2DC23DE6FDE0824A2BC321E08E4B8B7"),
    (1, "mac_verify", "DBB463945B286C07CD3AD82EE96FD9C9"),
    (1, "mac_both", "85675439D18D7F1158BD8E3EAA3D502B"),
    (1, "data_encrypt", "A35C412EFD41FDB98B69797C02DCD08F"),
    (1, "data_decrypt", "16292C6EA8F64C5420A0584BFBC577BE"),
    (1, "data_both", "A308E080DD15A1B741F1721BF67DE11C"),
    (2, "pin", "D30BDC73EC9714B000BEC66BDB7B6D09"),
    (2, "mac_generate", "484C3B06E8562704528CD5B46FB12FB6"),
    (2, "data_encrypt", "D639514AA33AC43AD9229E433D6D4E5B"),
    (3, "pin", "7D69F01F3B45449F62C7816ECE723268"),
    (3, "mac_generate", "A5DF7D9D800CA769766F0C77CA4E6E6C"),
    (3, "data_encrypt", "EF17F6AB45B4820C93A3DCB21BC491AD"),
    (8, "pin", "4D9DF3FBEE3448FC3E676D04320A90F5"),
    (8, "mac_generate", "6FD572E5D59E618875F193484F9178FB"),
    (8, "data_encrypt", "650F34204ABD4E57764D61AC3D266FB1"),
]


@pytest.mark.parametrize(("counter", "usage", "expected"), AES_WORKING_KEYS)
def test_aes128_working_keys_match_x9_24_3(counter: int, usage: str, expected: str) -> None:
    """If an AES-128 working key is derived for an annex KSN and usage, then it matches the published key."""
    assert aes_working_key(AES_IK, _aes_ksn(counter), usage) == H(expected)


def test_aes_working_key_from_bdk_path() -> None:
    """If the initial key is derived from the BDK first, then the PIN key for counter 1 is the annex value."""
    ik = aes_initial_key(AES_BDK, AES_IKID)
    assert aes_working_key(ik, _aes_ksn(1), "pin") == H("AF8CB133A78F8DC2D1359F18527593FB")


@given(st.integers(min_value=1, max_value=0xFFFFFFFF).filter(lambda c: c.bit_count() <= 16))
def test_aes_working_key_lengths(counter: int) -> None:
    """If an AES-256 working key is asked of an AES-128 initial key, then it is refused; AES-128 keys are 16 bytes."""
    ksn = _aes_ksn(counter)
    assert len(aes_working_key(AES_IK, ksn, "mac_generate")) == 16
    with pytest.raises(CryptoError) as raised:
        aes_working_key(AES_IK, ksn, "pin", "AES256")
    assert raised.value.code == "27"


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda: tdes_ipek(TDES_BDK[:8], TDES_IKSN), "27"),
        (lambda: tdes_ipek(TDES_BDK, TDES_IKSN[:9]), "15"),
        (lambda: tdes_transaction_key(TDES_IPEK + bytes(8), TDES_IKSN), "27"),
        (lambda: tdes_pin_key(TDES_IPEK, bytes(12)), "15"),
        (lambda: aes_initial_key(AES_BDK[:10], AES_IKID), "27"),
        (lambda: aes_initial_key(AES_BDK, AES_IKID[:7]), "15"),
        (lambda: aes_working_key(AES_IK, _aes_ksn(1)[:10], "pin"), "15"),
        (lambda: aes_working_key(AES_IK, _aes_ksn(1), "kek"), "15"),
        (lambda: aes_working_key(AES_IK, _aes_ksn(1), "key_encryption"), "15"),
        (lambda: aes_working_key(AES_IK, _aes_ksn(1), "pin", "DES"), "15"),
        (lambda: aes_working_key(AES_IK, _aes_ksn(0), "pin"), "15"),
        (lambda: aes_working_key(AES_IK, _aes_ksn(0x1FFFF), "pin"), "15"),
    ],
)
def test_bad_input_raises_crypto_error_with_code(call, code: str) -> None:
    """If an argument is malformed, then CryptoError carries the documented payShield code."""
    with pytest.raises(CryptoError) as raised:
        call()
    assert raised.value.code == code
