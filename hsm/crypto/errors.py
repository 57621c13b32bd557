"""The single error type of `hsm.crypto`, carrying the payShield error code the host layer answers with.

Messages describe what was wrong (which field, which length) and never carry a key, PIN, PAN or PIN block,
so a caller may log them as they are.
"""

from __future__ import annotations

# payShield error codes used by this package, named so call sites read as intent.
SOURCE_KEY_PARITY = "10"
INVALID_INPUT = "15"
INVALID_PIN_BLOCK = "20"
INVALID_PIN_BLOCK_FORMAT = "23"
PIN_LENGTH = "24"
KEY_LENGTH = "27"


class CryptoError(Exception):
    """A primitive refused its input; `code` is the 2-digit payShield error code, `message` is safe to log."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"CryptoError({self.code!r}, {self.message!r})"
