"""Structured logging: configured once at start, JSON lines on stdout, card data masked on the way out.

Two layers of protection, because one forgotten field is a PCI incident:
1. by key: values under PAN-like keys become first6+last4; values under track/PIN block/CVV/key keys are
   dropped to a fixed marker whatever their content;
2. the safety net: any Luhn-valid 13-19 digit run and any track-2-like string in ANY string value (event
   text and formatted exceptions included) is masked too.
Context (connection, trace id) is bound with contextvars, which trio tasks inherit.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from switch.masking import PAN_KEYS, SENSITIVE_KEYS, mask_pan, scrub_text

__all__ = ["REDACTED", "configure_logging", "get_logger", "mask_card_data"]

REDACTED = "[redacted]"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _mask_value(key: str, value: Any, depth: int = 0) -> Any:
    lowered = key.lower()
    if lowered in SENSITIVE_KEYS:
        return REDACTED
    if isinstance(value, str):
        if lowered in PAN_KEYS:
            digits = value.strip()
            return mask_pan(digits) if digits.isdigit() else scrub_text(value)
        return scrub_text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        # Raw bytes may be a frame or a PIN block; never render them.
        return f"[{len(value)} bytes]"
    if depth > 8:
        return "[nested]"
    if isinstance(value, Mapping):
        return {str(k): _mask_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_mask_value(key, v, depth + 1) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        if lowered in PAN_KEYS and isinstance(value, int):
            return mask_pan(str(value))
        return value
    # Anything else is rendered with str() by the renderer: scrub that text now.
    return scrub_text(str(value))


def mask_card_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask PANs, drop sensitive fields, scrub every string value."""
    for key in list(event_dict):
        event_dict[key] = _mask_value(key, event_dict[key])
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog (and route stdlib logging through it). Call once, at process start."""
    out = stream if stream is not None else sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if use_console else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_card_data,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
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
