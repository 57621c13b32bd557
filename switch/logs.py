"""Structured logging: configured once at start, JSON lines on stdout, card data masked on the way out.

Two layers of protection, because one forgotten field is a PCI incident:
1. by key: values under PAN-like keys become first6+last4; values under track/PIN block/CVV/key keys are
   dropped to a fixed marker whatever their content;
2. the safety net: any Luhn-valid 13-19 digit run and any track-2-like string in ANY string value (event
   text and formatted exceptions included) is masked too.
Context (connection, trace id) is bound with contextvars, which trio tasks inherit.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import orjson
import structlog

from switch.masking import PAN_KEYS, SENSITIVE_KEYS, mask_pan, scrub_text

__all__ = ["REDACTED", "configure_logging", "get_logger", "mask_card_data"]

REDACTED = "[redacted]"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


# Key -> how its value is treated: _PLAIN, _PAN or _SENSITIVE. Keys repeat on every line (the canonical
# transaction line has ~20), so the lower-casing and set lookups are done once per distinct key.
_PLAIN, _PAN, _SENSITIVE = 0, 1, 2
_KEY_KINDS: dict[str, int] = {}
_KEY_KINDS_MAX = 4096  # keys are names from code, but a bound dict could bring arbitrary ones


def _key_kind(key: str) -> int:
    kind = _KEY_KINDS.get(key)
    if kind is None:
        lowered = key.lower()
        kind = _SENSITIVE if lowered in SENSITIVE_KEYS else _PAN if lowered in PAN_KEYS else _PLAIN
        if len(_KEY_KINDS) < _KEY_KINDS_MAX:
            _KEY_KINDS[key] = kind
    return kind


def _mask_value(key: str, value: Any, depth: int = 0) -> Any:
    kind = _key_kind(key)
    if kind == _SENSITIVE:
        return REDACTED
    cls = type(value)
    if cls is str:
        if kind == _PAN:
            digits = value.strip()
            return mask_pan(digits) if digits.isdigit() else scrub_text(value)
        return scrub_text(value) if len(value) >= 13 else value
    if value is None or cls is bool or cls is float:
        return value
    if cls is int:
        return mask_pan(str(value)) if kind == _PAN else value
    if isinstance(value, str):  # a str subclass (an enum member, say): render it as plain text
        return _mask_value(key, str.__str__(value), depth)
    if isinstance(value, (bytes, bytearray, memoryview)):
        # Raw bytes may be a frame or a PIN block; never render them.
        return f"[{len(value)} bytes]"
    if depth > 8:
        return "[nested]"
    if isinstance(value, Mapping):
        # Keys are scrubbed too: a dict keyed by card number would otherwise print the PAN in clear.
        return {scrub_text(str(k)): _mask_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_mask_value(key, v, depth + 1) for v in value]
    if isinstance(value, (int, float)):
        return mask_pan(str(int(value))) if kind == _PAN and isinstance(value, int) else value
    # Anything else is rendered with str() by the renderer: scrub that text now.
    return scrub_text(str(value))


def mask_card_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask PANs, drop sensitive fields, scrub every string value."""
    for key, value in event_dict.items():
        event_dict[key] = _mask_value(key, value)
    return event_dict


def _json_line(value: Any, **_kw: Any) -> str:
    # orjson is several times faster than json.dumps on the canonical line; after mask_card_data every
    # value is a plain JSON type, and anything else still renders as (already scrubbed) text.
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        # orjson refuses integers beyond 64 bits and strings holding lone surrogates; a log call must
        # never raise, so such a line takes the slower standard encoder, which handles both.
        return json.dumps(value, default=str)


class _UtcTimestamp:
    """structlog processor: `timestamp` as ISO 8601 UTC with microseconds and a Z, like TimeStamper's.

    The date and time up to the second are formatted once per second; TimeStamper builds a datetime and
    formats all of it on every line, which showed up in profiles of the canonical transaction line.
    """

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
        now_ns = time.time_ns()
        second, rest_ns = divmod(now_ns, 1_000_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event_dict["timestamp"] = f"{self._prefix}.{rest_ns // 1000:06d}Z"
        return event_dict


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog (and route stdlib logging through it). Call once, at process start."""
    out = stream if stream is not None else sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if use_console
        else structlog.processors.JSONRenderer(serializer=_json_line)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _UtcTimestamp(),
        structlog.processors.format_exc_info,
        mask_card_data,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        # One write per line (message and newline together): with PYTHONUNBUFFERED, print() would write
        # them separately, and lines of processes sharing stdout (switchd workers, make run) could merge.
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through stdlib logging; send their warnings through the same masking chain.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(_LEVELS[level], logging.WARNING))


def get_logger(name: str | None = None, **initial: Any) -> Any:
    """A bound logger; `name` becomes the `logger_name` field."""
    # Stays a lazy proxy: modules create loggers at import time, before configure_logging runs.
    if name is not None:
        initial["logger_name"] = name
    return structlog.get_logger(**initial)
