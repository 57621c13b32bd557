"""Structured logs: JSON lines, context binding, and card data masked by key and by the safety net."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
import structlog

from switch.logs import REDACTED, configure_logging, get_logger

PAN = "4761739001010010"
TRACK2 = "4761739001010010=25122011143878089"


@pytest.fixture
def out():
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    yield stream
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_line_has_level_time_and_event(out):
    """If something is logged, then one JSON object with level, timestamp and event is written."""
    get_logger("t").info("hello", answer=42)
    (line,) = lines(out)
    assert line["event"] == "hello"
    assert line["level"] == "info"
    assert line["answer"] == 42
    assert line["timestamp"].endswith("Z")


def test_pan_key_is_masked_first6_last4(out):
    """If a PAN is logged under a PAN key, then only first 6 and last 4 digits appear."""
    get_logger().info("auth", pan=PAN)
    (line,) = lines(out)
    assert line["pan"] == "476173******0010"
    assert PAN not in out.getvalue()


@pytest.mark.parametrize("key", ["track2", "pin_block", "cvv", "key", "f52", "f35", "clear_key"])
def test_sensitive_keys_are_dropped(out, key):
    """If track, PIN block, CVV or key material is logged under its key, then its value is replaced."""
    get_logger().info("x", **{key: "0123456789ABCDEF"})
    (line,) = lines(out)
    assert line[key] == REDACTED
    assert "0123456789ABCDEF" not in out.getvalue()


def test_safety_net_masks_pan_in_any_string(out):
    """If a PAN hides in the event text or an unrelated key, then it is still masked."""
    get_logger().info(f"declined card {PAN}", note=f"see {PAN}", nested={"deep": [PAN]})
    text = out.getvalue()
    assert PAN not in text
    assert "476173******0010" in text


def test_safety_net_masks_track2_in_any_string(out):
    """If track 2 data appears in a free-text value, then none of it remains."""
    get_logger().info("raw", detail=f"got {TRACK2}")
    assert "25122011143878089" not in out.getvalue()
    assert PAN not in out.getvalue()


def test_bytes_are_never_rendered(out):
    """If raw bytes (a frame, a PIN block) are logged, then only their length appears."""
    get_logger().info("frame", data=bytes.fromhex("0412AC89FFEEDD11"))
    (line,) = lines(out)
    assert line["data"] == "[8 bytes]"


def test_exception_text_is_masked(out):
    """If an exception message carries a PAN, then the logged traceback has it masked."""
    try:
        raise ValueError(f"bad card {PAN}")
    except ValueError:
        get_logger().exception("failed")
    assert PAN not in out.getvalue()
    assert "476173******0010" in out.getvalue()


def test_context_is_bound_through_contextvars(out):
    """If a connection id is bound, then every line carries it until it is unbound."""
    structlog.contextvars.bind_contextvars(conn="terminal-7", trace_id="abc")
    get_logger().info("one")
    structlog.contextvars.unbind_contextvars("conn")
    get_logger().info("two")
    first, second = lines(out)
    assert first["conn"] == "terminal-7"
    assert "conn" not in second
    assert second["trace_id"] == "abc"


def test_stdlib_logging_goes_through_masking(out):
    """If a third-party library logs a PAN through stdlib logging, then it is masked too."""
    logging.getLogger("thirdparty").warning("card %s", PAN)
    assert PAN not in out.getvalue()
    assert "476173******0010" in out.getvalue()


def test_level_filter(out):
    """If the level is info, then debug lines are not written."""
    configure_logging("info", "json", out)
    get_logger().debug("quiet")
    assert out.getvalue() == ""


def test_pan_as_a_mapping_key_is_masked(out):
    """If a logged mapping is keyed by card number, then the key is masked like any other string."""
    get_logger().info("balances", by_card={PAN: 100})
    (line,) = lines(out)
    assert line["by_card"] == {"476173******0010": 100}
    assert PAN not in out.getvalue()


def test_integer_beyond_64_bits_is_still_logged(out):
    """If a value is an integer too large for 64 bits, then the line is written instead of the call raising."""
    get_logger().info("big", trace=2**70)
    (line,) = lines(out)
    assert line["trace"] == 2**70


def test_string_with_lone_surrogate_is_still_logged_and_masked(out):
    """If a string holds a lone surrogate (undecodable bytes), then the line is written with the PAN masked."""
    get_logger().info("odd", name=f"\udcff card {PAN}")
    (line,) = lines(out)
    assert line["name"] == "\udcff card 476173******0010"
