"""The command processor: one frame payload in, one response payload out, no I/O.

Both transports use it: `hsmd` calls it for each frame read from a socket, and the in-process client calls
it directly, so the two give byte-identical answers. It never raises for bad input: a short message, an
unknown command, a malformed field or a refused key all become an error response, and the caller's
connection stays usable.

Logging: with a logger, each command yields one line with the command code, error code and duration in
microseconds; never a field value, key, PIN, PIN block or PAN.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from hsm.crypto.errors import CryptoError
from hsm.host.commands import COMMANDS
from hsm.host.fields import FieldReader, HostError
from hsm.host.protocol import HEADER_LENGTH_DEFAULT, response_code
from hsm.keys import KeyRejected, KeyVault

__all__ = ["CommandLogger", "HostCommandProcessor"]

UNKNOWN_COMMAND = "68"  # "command disabled" - what we answer for a command we do not implement
INVALID_INPUT = "15"
# Commands whose last field is free data, where a trailing "%nn" may be data rather than an LMK identifier.
_FREE_DATA_TAIL = frozenset({"B2", "M6", "M0", "M2"})


class CommandLogger(Protocol):
    def info(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...


class HostCommandProcessor:
    """Dispatches payShield host commands against one `KeyVault`."""

    def __init__(
        self,
        vault: KeyVault,
        *,
        header_length: int = HEADER_LENGTH_DEFAULT,
        disabled_commands: frozenset[str] = frozenset(),
        log: CommandLogger | None = None,
    ) -> None:
        self.vault = vault
        self.header_length = header_length
        self._handlers = {code: h for code, h in COMMANDS.items() if code not in disabled_commands}
        self._log = log

    @property
    def command_codes(self) -> tuple[str, ...]:
        return tuple(sorted(self._handlers))

    @staticmethod
    def _strip_lmk_identifier(code: str, text: str) -> str:
        # payShield requests may end with "%" and a 2-digit LMK identifier. We hold one LMK, number 00;
        # asking for another must not silently use ours.
        if code in _FREE_DATA_TAIL or len(text) < 3 or text[-3] != "%" or not text[-2:].isdigit():
            return text
        if text[-2:] != "00":
            raise HostError(INVALID_INPUT, "only LMK identifier 00 is loaded")
        return text[:-3]

    def process(self, payload: bytes) -> bytes:
        """Answer one request payload (header + command code + fields) with a response payload."""
        started_ns = time.perf_counter_ns() if self._log is not None else 0
        text = payload.decode("latin-1")
        header_end = self.header_length
        header = text[:header_end]
        code = text[header_end : header_end + 2]
        data = ""
        if len(code) < 2:
            reply, error = "ZZ", INVALID_INPUT
        else:
            reply = response_code(code)
            handler = self._handlers.get(code)
            if handler is None:
                error = UNKNOWN_COMMAND
            else:
                try:
                    data = handler(
                        self.vault, FieldReader(self._strip_lmk_identifier(code, text), header_end + 2)
                    )
                    error = "00"
                except HostError as exc:
                    error, data = exc.code, exc.data
                except (CryptoError, KeyRejected) as exc:
                    error = exc.code
                except Exception as exc:  # a bug must not take the connection down; report it, type only
                    error = INVALID_INPUT
                    if self._log is not None:
                        self._log.error("hsm_command_failed", command=code, exception=type(exc).__name__)
        if self._log is not None:
            self._log.info(
                "hsm_command",
                command=code if code.isalnum() else "??",
                error_code=error,
                duration_us=(time.perf_counter_ns() - started_ns) // 1000,
            )
        return (header + reply + error + data).encode("latin-1")
