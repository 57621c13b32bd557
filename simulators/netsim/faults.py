"""Fault modes of a simulated network: what they are, how they are set, and one draw per message.

docs/networks.md "netsim" lists them. They are set at start (flags) and changed while running (PUT
/faults with any subset of the keys); both go through `Faults.updated`, which checks every value and
raises `FaultError` naming the key, so a bad request answers 400 and changes nothing. `draw` turns the
shares into one decision per message with the caller's `random.Random`, always consuming the same
number of random values, so a seeded run repeats exactly. Pure code: no clock, no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

__all__ = ["FAULT_KEYS", "Draw", "FaultError", "Faults", "draw"]

DELAY_MS_MAX = 600_000  # ten minutes: longer than any deadline a switch would configure
DROP_AFTER_MAX = 1_000_000_000


class FaultError(ValueError):
    """A fault setting that is not accepted; the message names the key and the rule."""


@dataclass(frozen=True, slots=True)
class Faults:
    """The fault modes in force. Shares are probabilities per financial request (0 to 1)."""

    latency_ms: int = 0  # added to every answer, network management included
    latency_jitter_ms: int = 0  # plus a uniform 0..jitter
    no_answer_share: float = 0.0  # applied by the issuer, but the answer is never sent
    late_share: float = 0.0  # answered `late_ms` later than usual
    late_ms: int = 5000
    duplicate_share: float = 0.0  # the answer is sent twice
    decline_share: float = 0.0  # declined with `decline_code` before the issuer looks at it
    decline_code: str = "05"
    reject_share: float = 0.0  # sent back with a reject header (Visa, CUPS), not processed
    drop_after: int | None = None  # each connection is closed after it has carried N messages
    stale_key: bool = False  # originated PIN blocks under the previous ZPK (and its index)
    bad_kcv: bool = False  # the next key exchange answer carries a wrong check value (one shot)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def updated(self, changes: Mapping[str, object], *, has_header: bool = True) -> Faults:
        """A copy with `changes` applied; FaultError for an unknown key or a value out of its range."""
        values: dict[str, object] = {}
        for key, value in changes.items():
            if key not in _RULES:
                raise FaultError(f"unknown fault key {key!r}; known: {', '.join(FAULT_KEYS)}")
            values[key] = _RULES[key](key, value)
        result = replace(self, **values)  # type: ignore[arg-type]
        if result.reject_share and not has_header:
            raise FaultError("reject_share needs a network header, and this dialect has none")
        return result


def _share(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise FaultError(f"{key} must be a number from 0 to 1")
    return float(value)


def _delay_ms(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= DELAY_MS_MAX:
        raise FaultError(f"{key} must be an integer number of milliseconds from 0 to {DELAY_MS_MAX}")
    return value


def _flag(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise FaultError(f"{key} must be true or false")
    return value


def _drop_after(key: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= DROP_AFTER_MAX:
        raise FaultError(f"{key} must be null or a number of messages from 1 to {DROP_AFTER_MAX}")
    return value


def _code(key: str, value: object) -> str:
    # Any two characters but 00: a test may want a code the switch's table does not know (it maps to 91).
    if not isinstance(value, str) or len(value) != 2 or not value.isascii() or not value.isalnum():
        raise FaultError(f"{key} must be a 2-character response code")
    if value == "00":
        raise FaultError(f"{key} must not be 00 (an approval is not a decline)")
    return value


_RULES = {
    "latency_ms": _delay_ms,
    "latency_jitter_ms": _delay_ms,
    "no_answer_share": _share,
    "late_share": _share,
    "late_ms": _delay_ms,
    "duplicate_share": _share,
    "decline_share": _share,
    "decline_code": _code,
    "reject_share": _share,
    "drop_after": _drop_after,
    "stale_key": _flag,
    "bad_kcv": _flag,
}
FAULT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Faults))
assert set(FAULT_KEYS) == set(_RULES), "every fault needs a validation rule"


@dataclass(frozen=True, slots=True)
class Draw:
    """What happens to one message."""

    delay_s: float = 0.0  # before the (first) answer goes out
    reject: bool = False
    decline: bool = False
    answer: bool = True  # False: processed, never answered
    late: bool = False
    duplicate: bool = False


def draw(faults: Faults, rng: random.Random, *, financial: bool) -> Draw:
    """One message's fate. Network management gets latency only: link failures are drop/drop_after."""
    delay_ms = faults.latency_ms + (
        rng.randint(0, faults.latency_jitter_ms) if faults.latency_jitter_ms else 0
    )
    if not financial:
        return Draw(delay_s=delay_ms / 1000)
    # Five draws every time, whatever the outcome, so that a seed fixes the whole sequence.
    reject, decline, lost, late, duplicate = (rng.random() for _ in range(5))
    if reject < faults.reject_share:
        return Draw(delay_s=delay_ms / 1000, reject=True)
    is_late = late < faults.late_share
    if is_late:
        delay_ms += faults.late_ms
    return Draw(
        delay_s=delay_ms / 1000,
        decline=decline < faults.decline_share,
        answer=not (lost < faults.no_answer_share),
        late=is_late,
        duplicate=duplicate < faults.duplicate_share,
    )
