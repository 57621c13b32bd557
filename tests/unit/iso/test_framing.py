"""The sans-IO framer: need-more-data, limits, malformed prefixes, keep-alives."""

from __future__ import annotations

import pytest

from switch.iso import KEEPALIVE, Codec, FramingError
from switch.iso.dialect import FramingSpec
from switch.iso.framing import Framer, prefix_frame

BINARY2 = FramingSpec("binary", 2, 0, False)
VISA = FramingSpec("binary", 2, 2, True)
ASCII4 = FramingSpec("ascii", 4, 0, False)


def test_partial_frame_needs_more_data() -> None:
    """If only part of a frame has arrived, then next_frame returns None and keeps the bytes."""
    framer = Framer(BINARY2, frame_bytes_max=100)
    framer.receive_data(b"\x00\x05abc")
    assert framer.next_frame() is None
    framer.receive_data(b"de")
    assert framer.next_frame() == b"abcde"
    assert framer.next_frame() is None


def test_oversize_prefix_fails_before_the_body_arrives() -> None:
    """If a prefix announces more than frame_bytes_max, then receive_data raises at once."""
    framer = Framer(BINARY2, frame_bytes_max=100)
    with pytest.raises(FramingError) as info:
        framer.receive_data(b"\x00\x65")
    assert info.value.offset == 0


def test_framer_stays_failed() -> None:
    """If a framer has failed, then every later call raises again (the stream must be closed)."""
    framer = Framer(BINARY2, frame_bytes_max=10)
    with pytest.raises(FramingError):
        framer.receive_data(b"\xff\xff")
    with pytest.raises(FramingError):
        framer.next_frame()
    with pytest.raises(FramingError):
        framer.receive_data(b"")


def test_ascii_prefix_must_be_digits() -> None:
    """If an ASCII length prefix holds a non-digit, then FramingError is raised."""
    framer = Framer(ASCII4, frame_bytes_max=9999)
    with pytest.raises(FramingError):
        framer.receive_data(b"00a5hello")


def test_ascii_prefix_frames() -> None:
    """If two ASCII-prefixed frames arrive together, then both come out in order."""
    framer = Framer(ASCII4, frame_bytes_max=9999)
    framer.receive_data(b"0003abc0002de")
    assert list(framer) == [b"abc", b"de"]


def test_visa_filler_must_be_zero() -> None:
    """If the two bytes after the Visa length are not zero, then FramingError is raised."""
    framer = Framer(VISA, frame_bytes_max=100)
    with pytest.raises(FramingError) as info:
        framer.receive_data(b"\x00\x01\x00\x01x")
    assert info.value.offset == 2


def test_zero_length_is_error_without_keepalive() -> None:
    """If a zero-length frame arrives on a dialect without keep-alives, then FramingError is raised."""
    framer = Framer(BINARY2, frame_bytes_max=100)
    with pytest.raises(FramingError):
        framer.receive_data(b"\x00\x00")


def test_visa_zero_length_frame_is_keepalive() -> None:
    """If Visa sends a zero-length frame, then the codec reports a keep-alive."""
    codec = Codec("visa")
    framer = codec.framer(frame_bytes_max=100)
    framer.receive_data(codec.encode_keepalive())
    frame = framer.next_frame()
    assert frame == b""
    assert codec.decode_payload(frame) is KEEPALIVE


def test_buffer_is_bounded() -> None:
    """If a caller keeps feeding data without taking frames, then the buffer limit stops it."""
    framer = Framer(BINARY2, frame_bytes_max=10, buffer_bytes_max=30)
    one = prefix_frame(BINARY2, b"0123456789")
    framer.receive_data(one * 3)
    with pytest.raises(FramingError):
        framer.receive_data(one)


def test_one_large_read_of_many_frames_is_accepted() -> None:
    """If one read holds more small frames than the buffer limit, then all are yielded when drained."""
    framer = Framer(BINARY2, frame_bytes_max=10, buffer_bytes_max=30)
    one = prefix_frame(BINARY2, b"0123456789")
    framer.receive_data(one * 20)
    assert list(framer) == [b"0123456789"] * 20
    framer.receive_data(one)
    assert list(framer) == [b"0123456789"]


def test_error_offset_counts_stream_bytes() -> None:
    """If the second frame's prefix is bad, then the error offset is where that prefix starts."""
    framer = Framer(ASCII4, frame_bytes_max=100)
    framer.receive_data(b"0002ab")
    assert framer.next_frame() == b"ab"
    with pytest.raises(FramingError) as info:
        framer.receive_data(b"XXXX")
    assert info.value.offset == 6


def test_prefix_frame_refuses_what_does_not_fit() -> None:
    """If a payload is longer than the prefix can express, then FramingError is raised."""
    with pytest.raises(FramingError):
        prefix_frame(ASCII4, bytes(10_000))
    with pytest.raises(FramingError):
        prefix_frame(BINARY2, bytes(70_000))


def test_decode_frame_rejects_trailing_data() -> None:
    """If a whole-frame decode gets bytes beyond the frame, then FramingError is raised."""
    with pytest.raises(FramingError):
        Codec("shetab").decode_frame(b"0002ab" + b"x")
