"""Card-data masking: the one place that decides how a PAN looks outside the vault.

PCI DSS allows at most the first six and last four digits of a PAN to be shown. Everything that
leaves the process (logs, errors, metrics, the journal, CLI output) goes through these functions.
Pure code: no I/O, no third-party imports, so every layer may use it.
"""

from __future__ import annotations

import re

__all__ = [
    "PAN_KEYS",
    "SENSITIVE_KEYS",
    "TRACK2_REDACTED",
    "luhn_valid",
    "mask_pan",
    "scrub_text",
]

# Field names whose values are never shown at all (track data, PIN blocks, card codes, keys).
# Lower-case; compared against lower-cased keys.
SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "track",
        "track1",
        "track2",
        "track3",
        "track_1",
        "track_2",
        "track_3",
        "track1_data",
        "track2_data",
        "pin",
        "pin_block",
        "pinblock",
        "clear_pin",
        "cvv",
        "cvv2",
        "cvc",
        "cvc2",
        "icvv",
        "key",
        "clear_key",
        "key_material",
        "lmk",
        "passphrase",
        "password",
        "secret",
        "icc_data",
        "emv_data",
        "f35",
        "f36",
        "f45",
        "f52",
        "f55",
    }
)

# Field names whose value is a PAN: shown as first 6 + last 4.
PAN_KEYS: frozenset[str] = frozenset({"pan", "card_number", "f2", "primary_account_number"})

# Digit runs of 13-19 that are not part of a longer digit run.
_DIGIT_RUN = re.compile(r"(?<!\d)\d{13,19}(?!\d)")
# Track 2 equivalent data: PAN, separator ('=' or 'D'), expiry, service code, discretionary data.
_TRACK2 = re.compile(r"(?<![0-9A-Za-z])\d{12,19}[=Dd]\d{4,}[0-9A-Fa-f]*")
TRACK2_REDACTED = "[track2]"
_TWELVE_DIGITS = re.compile(r"\d{12}")


def luhn_valid(digits: str) -> bool:
    """True if the all-digit string passes the Luhn (mod 10) check."""
    if not digits or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def mask_pan(pan: str) -> str:
    """First six and last four digits with the middle replaced by '*'.

    PANs too short to keep 10 digits visible safely (under 13) keep only the last four.
    """
    n = len(pan)
    if n >= 13:
        return pan[:6] + "*" * (n - 10) + pan[-4:]
    if n > 4:
        return "*" * (n - 4) + pan[-4:]
    return "*" * n


def _mask_match(m: re.Match[str]) -> str:
    run = m.group(0)
    return mask_pan(run) if luhn_valid(run) else run


def scrub_text(text: str) -> str:
    """Mask every Luhn-valid 13-19 digit run in free text (the safety net for log values)."""
    # Both patterns need 12 digits in a row; most log text has none, and one search is cheaper than
    # two substitutions.
    if len(text) < 13 or _TWELVE_DIGITS.search(text) is None:
        return text
    return _DIGIT_RUN.sub(_mask_match, _TRACK2.sub(TRACK2_REDACTED, text))
