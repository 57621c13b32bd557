"""The host command wire format, without sockets: framing, header, command and response codes.

A frame is a 2-byte big-endian length followed by that many bytes: a message header of configurable
length (default 4 characters, echoed back unchanged), a 2-character command code, then the command's
fields. A response carries the same header, the response code (the command code with its second character
incremented: A0 -> A1, NC -> ND) and a 2-digit error code, then the response fields.

Everything is ASCII except M6/M8 binary message data, so frames are decoded as Latin-1: one character per
byte, nothing lost. `FrameDecoder` is sans-IO (feed bytes, take frames) and bounded, in the h11 manner.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FRAME_BYTES_MAX_DEFAULT",
    "HEADER_LENGTH_DEFAULT",
    "FrameDecoder",
    "FrameTooLarge",
    "encode_frame",
    "response_code",
]

HEADER_LENGTH_DEFAULT = 4
LENGTH_PREFIX_BYTES = 2
# payShield host messages are at most a few kilobytes; the prefix would allow 64 KiB.
FRAME_BYTES_MAX_DEFAULT = 32 * 1024


class FrameTooLarge(Exception):
    """A peer announced a frame longer than the configured maximum; the connection must be closed."""


def encode_frame(payload: bytes) -> bytes:
    """Prefix `payload` with its 2-byte big-endian length."""
    if len(payload) > 0xFFFF:
        raise ValueError("frame payload exceeds 65535 bytes")
    return len(payload).to_bytes(LENGTH_PREFIX_BYTES, "big") + payload


def response_code(command_code: str) -> str:
    """The response code for a command code: second character incremented (A0 -> A1, CA -> CB, NC -> ND)."""
    if len(command_code) != 2 or not (command_code.isascii() and command_code.isalnum()):
        # Not a command code at all (binary garbage): answer with the generic error reply code.
        return "ZZ"
    return command_code[0] + chr(ord(command_code[1]) + 1)


@dataclass
class FrameDecoder:
    """Accumulates received bytes and yields complete frame payloads; refuses frames over the limit."""

    frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT

    def __post_init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next complete frame payload, or None when more bytes are needed."""
        if len(self._buffer) < LENGTH_PREFIX_BYTES:
            return None
        length = int.from_bytes(self._buffer[:LENGTH_PREFIX_BYTES], "big")
        if length > self.frame_bytes_max:
            raise FrameTooLarge(f"frame of {length} bytes exceeds the limit of {self.frame_bytes_max}")
        end = LENGTH_PREFIX_BYTES + length
        if len(self._buffer) < end:
            return None
        payload = bytes(self._buffer[LENGTH_PREFIX_BYTES:end])
        del self._buffer[:end]
        return payload

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)
