"""Visa CVV / CVV2 / iCVV generation and verification (hsm.crypto.cvv)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.crypto.cvv import card_verification_value, verify_card_verification_value
from hsm.crypto.des import tdes_ecb_decrypt, tdes_ecb_encrypt
from hsm.crypto.errors import CryptoError

H = bytes.fromhex
CVK_PAIR = H("0123456789ABCDEFFEDCBA9876543210")


def test_cvv_matches_published_worked_example() -> None:
    """If the published CVV example is recomputed, then every intermediate and the CVV 856 match."""
    # Worked CVN example (topic.alibabacloud.com "algorithm generation 7: CVN"): PAN 4123456789012345,
    # expiry 8701, service code 111, CVK A 0123456789ABCDEF, CVK B FEDCBA9876543210.
    key_a, key_b = CVK_PAIR[:8], CVK_PAIR[8:]
    enc_a = tdes_ecb_encrypt(key_a, H("4123456789012345"))
    assert enc_a == H("B76ADDCE71CCC6BE")
    enc_b = bytes(x ^ y for x, y in zip(enc_a, H("8701111000000000"), strict=True))
    assert enc_b == H("306BCCDE71CCC6BE")
    assert tdes_ecb_encrypt(key_a, enc_b) == H("BAE6746F6DE1F0E6")
    assert tdes_ecb_decrypt(key_b, H("BAE6746F6DE1F0E6")) == H("B262ABCB9DE99A63")
    assert tdes_ecb_encrypt(key_a, H("B262ABCB9DE99A63")) == H("8D5625FA78011A0C")
    assert card_verification_value(CVK_PAIR, "4123456789012345", "8701", "111") == "856"


def test_cvv2_and_icvv_use_fixed_service_codes() -> None:
    """If CVV2 and iCVV are computed, then they are the CVV algorithm with service codes 000 and 999."""
    # Visa convention (payShield CW/CY notes): CVV2 uses service code 000, iCVV 999; the values differ
    # from the stripe CVV because the input differs.
    cvv = card_verification_value(CVK_PAIR, "4123456789012345", "8701", "101")
    cvv2 = card_verification_value(CVK_PAIR, "4123456789012345", "8701", "000")
    icvv = card_verification_value(CVK_PAIR, "4123456789012345", "8701", "999")
    assert len({cvv, cvv2, icvv}) > 1
    assert verify_card_verification_value(CVK_PAIR, "4123456789012345", "8701", "000", cvv2)


@given(
    pan=st.text(alphabet="0123456789", min_size=12, max_size=19),
    expiry=st.text(alphabet="0123456789", min_size=4, max_size=4),
    service=st.text(alphabet="0123456789", min_size=3, max_size=3),
)
def test_generate_then_verify(pan: str, expiry: str, service: str) -> None:
    """If a CVV is generated, then it is 3 digits and verifies, and another value does not."""
    cvv = card_verification_value(CVK_PAIR, pan, expiry, service)
    assert len(cvv) == 3 and cvv.isdigit()
    assert verify_card_verification_value(CVK_PAIR, pan, expiry, service, cvv)
    assert not verify_card_verification_value(CVK_PAIR, pan, expiry, service, f"{(int(cvv) + 1) % 1000:03d}")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ((CVK_PAIR[:8], "4123456789012345", "8701", "101"), "27"),
        ((CVK_PAIR, "41234567890123456789", "8701", "101"), "15"),
        ((CVK_PAIR, "412345678901234X", "8701", "101"), "15"),
        ((CVK_PAIR, "4123456789012345", "870", "101"), "15"),
        ((CVK_PAIR, "4123456789012345", "8701", "1011"), "15"),
    ],
)
def test_bad_input_raises_crypto_error_with_code(args, code: str) -> None:
    """If an argument is malformed, then CryptoError carries the documented payShield code."""
    with pytest.raises(CryptoError) as raised:
        card_verification_value(*args)
    assert raised.value.code == code


def test_verify_rejects_malformed_value() -> None:
    """If the value to verify is not 3 digits, then CryptoError "15" is raised."""
    with pytest.raises(CryptoError) as raised:
        verify_card_verification_value(CVK_PAIR, "4123456789012345", "8701", "101", "12")
    assert raised.value.code == "15"
