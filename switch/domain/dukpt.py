"""DUKPT PIN pads as the pipeline sees them: the key serial number in field 53, whether it belongs to the
terminal, and whether its transaction counter was already used.

Field 53 of the terminal dialect is the ISO 8583:1987 "security related control information", fixed n16:
too short for a 20-hex-digit KSN, and digits only. So the terminal sends what the switch cannot know, the
PIN pad's device id and transaction counter, in decimal; the key set identifier (which BDK) is the
terminal's configuration. Layout (docs/transactions.md):

    FF R DDDDDD CCCCCCC
    FF       security format code, 02 = TDES DUKPT, PIN block ISO 9564 format 0 under the DUKPT PIN key
    R        0 (reserved)
    DDDDDD   the KSN's device id (its 19 bits after the key set identifier), 000000 to 524287
    CCCCCCC  the KSN's transaction counter (its last 21 bits), 0000001 to 2097151

The KSN the HSM gets is key set identifier (10 hex) + hex(device id << 21 | counter) (10 hex).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from switch.domain.model import DukptPinPad

__all__ = [
    "COUNTER_MAX",
    "DEVICE_ID_MAX",
    "REPLAY_WINDOW",
    "SECURITY_FORMAT_DUKPT",
    "KsnProblem",
    "KsnReplayGuard",
    "MemoryKsnCounters",
    "format_field53",
    "ksn_for_request",
    "parse_field53",
]

SECURITY_FORMAT_DUKPT = "02"
DEVICE_ID_BITS = 19
COUNTER_BITS = 21
DEVICE_ID_MAX = (1 << DEVICE_ID_BITS) - 1
COUNTER_MAX = (1 << COUNTER_BITS) - 1
# X9.24-1 originators never use a counter with more than 10 one-bits (they skip to the next valid one).
COUNTER_ONE_BITS_MAX = 10
_FIELD53_LENGTH = 16
# How far below a PIN pad's highest counter a new one may still come (requests in flight out of order).
REPLAY_WINDOW = 64


class KsnProblem(enum.Enum):
    """Why the KSN of a request is refused (none of these count as a wrong PIN)."""

    MALFORMED = "malformed"  # field 53 missing or not the layout above
    FOREIGN = "foreign"  # another PIN pad's KSN, or a DUKPT field 53 from a terminal not set up for DUKPT
    REPLAYED = "replayed"  # counter already used by another request, or too far behind


def parse_field53(value: str | None) -> tuple[int, int] | None:
    """(device id, transaction counter) of a DUKPT field 53, or None when it is not one."""
    if value is None or len(value) != _FIELD53_LENGTH or not (value.isascii() and value.isdigit()):
        return None
    if value[:2] != SECURITY_FORMAT_DUKPT or value[2] != "0":
        return None
    device_id, counter = int(value[3:9]), int(value[9:])
    if device_id > DEVICE_ID_MAX or not 1 <= counter <= COUNTER_MAX:
        return None
    if counter.bit_count() > COUNTER_ONE_BITS_MAX:
        return None
    return device_id, counter


def format_field53(device_id: int, counter: int) -> str:
    """Field 53 for this device id and counter (the inverse of `parse_field53`)."""
    if not 0 <= device_id <= DEVICE_ID_MAX or not 1 <= counter <= COUNTER_MAX:
        raise ValueError("device id or counter out of range")
    return f"{SECURITY_FORMAT_DUKPT}0{device_id:06d}{counter:07d}"


@dataclass(frozen=True, slots=True)
class Ksn:
    key_set_id: str
    device_id: int
    counter: int

    @property
    def pin_pad(self) -> str:
        """The PIN pad this KSN is of (key set id and device id): what its counters are kept under."""
        return f"{self.key_set_id}:{self.device_id}"

    @property
    def hex(self) -> str:
        """The 20-hex-digit KSN as the HSM takes it."""
        low = (self.device_id << COUNTER_BITS) | self.counter
        return f"{self.key_set_id}{low:010X}"


def ksn_for_request(pin_pad: DukptPinPad, field53: str | None) -> Ksn | KsnProblem:
    """The request's KSN, if field 53 is well formed and names this terminal's PIN pad."""
    parsed = parse_field53(field53)
    if parsed is None:
        return KsnProblem.MALFORMED
    device_id, counter = parsed
    if device_id != pin_pad.device_id:
        return KsnProblem.FOREIGN
    return Ksn(key_set_id=pin_pad.key_set_id, device_id=device_id, counter=counter)


@dataclass(slots=True)
class _Seen:
    highest: int
    # Recent counters -> the request that used each (so a retransmission of that request is not a replay).
    recent: dict[int, str]


class KsnReplayGuard:
    """Refuses a transaction counter a PIN pad already used, or one too far behind its highest.

    Per PIN pad (`Ksn.pin_pad`) it keeps the highest counter seen and the last `window` counters (like
    IPsec's anti-replay window, RFC 4303 3.4.3): requests in flight on one connection may reach the PIN
    check out of order, and DUKPT counters skip values, so "strictly increasing" would refuse honest traffic. A
    counter seen again with the same request identity (terminal, time, STAN) is that request's
    retransmission and passes; the pipeline answers it as the original.

    In memory, per process: a restarted switchd, or another switchd sharing the database, does not know
    the counters seen before. switchd keeps them in PostgreSQL by the same rules
    (switch/adapters/postgres/dukpt.py); this is the reference those rules are tested against, and the
    in-memory `KsnCounters` (`MemoryKsnCounters`) of code that runs without a database.
    """

    def __init__(self, *, window: int = REPLAY_WINDOW, terminals_max: int = 100_000) -> None:
        if window < 1:
            raise ValueError("window must be positive")
        self._window = window
        self._terminals_max = terminals_max
        self._seen: dict[str, _Seen] = {}

    def accept(self, pin_pad: str, counter: int, request_identity: str) -> bool:
        """True (and the counter remembered) when this counter is new for the PIN pad, or the same request."""
        seen = self._seen.get(pin_pad)
        if seen is None:
            if len(self._seen) >= self._terminals_max:
                # Only configured DUKPT terminals get here, so this is a guard against a misconfiguration,
                # not a path an attacker controls.
                self._seen.clear()
            self._seen[pin_pad] = _Seen(highest=counter, recent={counter: request_identity})
            return True
        used_by = seen.recent.get(counter)
        if used_by is not None:
            return used_by == request_identity
        if counter <= seen.highest - self._window:
            return False
        seen.recent[counter] = request_identity
        if counter > seen.highest:
            seen.highest = counter
            floor = counter - self._window
            for old in [c for c in seen.recent if c <= floor]:
                del seen.recent[old]
        return True


class MemoryKsnCounters:
    """`KsnCounters` (switch.ports) in this process's memory: a `KsnReplayGuard` per PIN pad."""

    def __init__(self, *, window: int = REPLAY_WINDOW) -> None:
        self._guard = KsnReplayGuard(window=window)

    async def use(self, pin_pad: str, counter: int, request_identity: str) -> bool:
        return self._guard.accept(pin_pad, counter, request_identity)
