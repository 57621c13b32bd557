"""Host protocol framing (sans-IO) and the PIN-under-LMK storage form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.crypto.errors import CryptoError
from hsm.host.protocol import FrameDecoder, FrameTooLarge, encode_frame, response_code
from hsm.pin_lmk import decrypt_pin_from_lmk, encrypt_pin_under_lmk

PIN_KEY = bytes.fromhex("20202020202020203131313131313131")  # test LMK pair 02-03


@pytest.mark.parametrize(
    ("command", "reply"), [("A0", "A1"), ("CA", "CB"), ("NC", "ND"), ("M8", "M9"), ("B2", "B3")]
)
def test_response_code_increments_second_character(command: str, reply: str) -> None:
    """If a command code is answered, then the response code is its second character incremented."""
    assert response_code(command) == reply


@given(payloads=st.lists(st.binary(max_size=300), max_size=5), cut=st.integers(min_value=1, max_value=50))
def test_frames_survive_arbitrary_splitting(payloads: list[bytes], cut: int) -> None:
    """If framed payloads arrive in arbitrary chunks, then the decoder yields exactly the payloads in order."""
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    received: list[bytes] = []
    for start in range(0, len(stream), cut):
        decoder.feed(stream[start : start + cut])
        while (frame := decoder.next_frame()) is not None:
            received.append(frame)
    assert received == payloads
    assert decoder.buffered_bytes == 0


def test_oversized_frame_is_refused_before_it_is_buffered() -> None:
    """If a peer announces a frame over the limit, then FrameTooLarge is raised from the length prefix alone."""
    decoder = FrameDecoder(frame_bytes_max=100)
    decoder.feed((101).to_bytes(2, "big"))
    with pytest.raises(FrameTooLarge):
        decoder.next_frame()


def test_incomplete_frame_waits_for_more() -> None:
    """If only part of a frame has arrived, then no frame is returned yet."""
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"HDR1NC")[:-1])
    assert decoder.next_frame() is None


@given(
    pin=st.text(alphabet="0123456789", min_size=4, max_size=12),
    account=st.text(alphabet="0123456789", min_size=12, max_size=12),
)
def test_pin_under_lmk_round_trip(pin: str, account: str) -> None:
    """If a PIN is encrypted under the LMK for an account, then it decrypts back and is one digit longer."""
    encrypted = encrypt_pin_under_lmk(PIN_KEY, pin, account)
    assert len(encrypted) == len(pin) + 1
    assert encrypted.isdigit()
    assert decrypt_pin_from_lmk(PIN_KEY, encrypted, account) == pin


def test_pin_under_lmk_depends_on_the_account() -> None:
    """If the same PIN is encrypted for two accounts, then the two encrypted forms differ."""
    forms = {encrypt_pin_under_lmk(PIN_KEY, "1234", f"{n:012d}") for n in range(20)}
    assert len(forms) > 15


def test_pin_under_lmk_with_wrong_account_is_mostly_detected() -> None:
    """If PINs are decrypted with the wrong account, then most attempts fail the check digit with error 20."""
    failures = 0
    for n in range(50):
        encrypted = encrypt_pin_under_lmk(PIN_KEY, f"{n:04d}", "111122223333")
        try:
            decrypt_pin_from_lmk(PIN_KEY, encrypted, "111122223334")
        except CryptoError as exc:
            assert exc.code == "20"
            failures += 1
    assert failures >= 35


@pytest.mark.parametrize(
    ("encrypted", "account", "code"),
    [
        ("123", "111122223333", "24"),
        ("12345678901234", "111122223333", "24"),
        ("12A45", "111122223333", "15"),
        ("12345", "1111", "15"),
    ],
)
def test_malformed_pin_under_lmk_is_refused(encrypted: str, account: str, code: str) -> None:
    """If a PIN under LMK or its account is malformed, then the documented error code results."""
    with pytest.raises(CryptoError) as caught:
        decrypt_pin_from_lmk(PIN_KEY, encrypted, account)
    assert caught.value.code == code
