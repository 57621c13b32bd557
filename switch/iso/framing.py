"""Length-prefix framing, sans-IO: bytes in, whole frames out, frames in, prefixed bytes out.

Like h11, this module owns no socket. The caller feeds whatever it read with `receive_data` and takes
complete frames with `next_frame` (None means "need more data", a normal state) or by iterating.
Every limit is the caller's: a prefix announcing more than `frame_bytes_max` raises `FramingError` as
soon as the prefix is readable, so a peer can neither make us wait for a frame we would refuse nor
make us buffer more than one frame plus one read; data the caller leaves undrained is bounded too. After a `FramingError` the
stream is out of step and the caller must close it; the framer keeps refusing.

Prefix kinds come from the dialect's `framing` data: a big-endian binary length (optionally followed by
zero filler bytes, as Visa's 4-byte prefix) or ASCII decimal digits. The length never counts the prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

from switch.iso.dialect import FramingSpec
from switch.iso.errors import FramingError

__all__ = ["Framer", "prefix_frame"]


class Framer:
    """Incremental splitter of one byte stream into frame payloads (prefix removed)."""

    def __init__(
        self,
        spec: FramingSpec,
        *,
        frame_bytes_max: int,
        dialect: str | None = None,
        buffer_bytes_max: int | None = None,
    ) -> None:
        if frame_bytes_max < 1:
            raise ValueError("frame_bytes_max must be positive")
        self._spec = spec
        self._dialect = dialect
        self._head_bytes = spec.prefix_bytes + spec.filler_bytes
        self.frame_bytes_max = frame_bytes_max
        # Room for a few whole frames: a caller that drains after each receive never comes near it.
        self.buffer_bytes_max = buffer_bytes_max or 4 * (frame_bytes_max + self._head_bytes)
        self._buf = bytearray()
        self._consumed_bytes = 0  # stream offset of _buf[0], for error messages
        self._failed: FramingError | None = None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the stream. Raises FramingError if the peer broke the framing."""
        if self._failed is not None:
            raise self._failed
        # The bound is on what the caller left undrained, checked before appending: one large read full
        # of small pipelined frames is fine, a caller that keeps feeding without taking frames is not.
        if len(self._buf) > self.buffer_bytes_max:
            self._fail("unconsumed data exceeds the buffer limit", self._consumed_bytes + len(self._buf))
        self._buf += data
        # Check the next prefix now, so an oversize announcement fails before any more is read.
        if len(self._buf) >= self._head_bytes:
            self._frame_length()

    def next_frame(self) -> bytes | None:
        """The next complete frame's payload, or None if more data is needed."""
        if self._failed is not None:
            raise self._failed
        head = self._head_bytes
        if len(self._buf) < head:
            return None
        length = self._frame_length()
        end = head + length
        if len(self._buf) < end:
            return None
        payload = bytes(self._buf[head:end])
        del self._buf[:end]
        self._consumed_bytes += end
        if self._buf and len(self._buf) >= head:
            self._frame_length()
        return payload

    def __iter__(self) -> Iterator[bytes]:
        """Every frame currently complete, in order."""
        while (frame := self.next_frame()) is not None:
            yield frame

    def _frame_length(self) -> int:
        spec = self._spec
        offset = self._consumed_bytes
        prefix = bytes(self._buf[: spec.prefix_bytes])
        if spec.prefix == "binary":
            length = int.from_bytes(prefix, "big")
        else:
            if not (prefix.isdigit() and prefix.isascii()):
                self._fail("length prefix is not decimal digits", offset)
            length = int(prefix)
        if spec.filler_bytes and any(self._buf[spec.prefix_bytes : self._head_bytes]):
            self._fail("length prefix filler bytes are not zero", offset + spec.prefix_bytes)
        if length > self.frame_bytes_max:
            self._fail(f"frame of {length} bytes exceeds frame_bytes_max={self.frame_bytes_max}", offset)
        if length == 0 and not spec.keepalive:
            self._fail("zero-length frame", offset)
        return length

    def _fail(self, reason: str, offset: int) -> NoReturn:
        self._failed = FramingError(reason, dialect=self._dialect, offset=offset)
        raise self._failed


def prefix_frame(spec: FramingSpec, payload: bytes, *, dialect: str | None = None) -> bytes:
    """The payload with this framing's length prefix (and filler) in front."""
    length = len(payload)
    if spec.prefix == "binary":
        if length >= 1 << (8 * spec.prefix_bytes):
            raise FramingError(f"payload of {length} bytes does not fit the length prefix", dialect=dialect)
        prefix = length.to_bytes(spec.prefix_bytes, "big")
    else:
        if length >= 10**spec.prefix_bytes:
            raise FramingError(f"payload of {length} bytes does not fit the length prefix", dialect=dialect)
        prefix = b"%0*d" % (spec.prefix_bytes, length)
    return prefix + bytes(spec.filler_bytes) + payload
