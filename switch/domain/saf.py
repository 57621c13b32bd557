"""Store-and-forward rules: the life of a queued reversal or advice, its repeats, backoff and expiry.

Pure: the PostgreSQL queue (`switch.adapters.postgres.saf`) and the worker (`switch.adapters.saf_worker`)
apply these rules; nothing here does I/O. docs/networks.md "Timeouts and store-and-forward" is the contract.

An entry's life, in one table (`TRANSITIONS`):

    queued --claim--> in_flight --acknowledge--> acknowledged            (final)
      ^                  |
      +----release-------+      (not answered, not matched, or the link could not send: back off)
    queued / in_flight --expire--> expired                               (final unless retried)
    queued / in_flight / expired --purge--> purged                       (final, operator's decision)
    queued / expired --retry--> queued                                   (operator: due now)

`in_flight` means "a worker holds a lease on it and may be sending it"; a lease that lapses (the worker
died) lets another worker claim it again. The queue's SQL takes its state conditions from this table, so
the two cannot drift apart.

Repeats: the first attempt goes out as 0420 (reversal) or 0220 (advice) and the link gives it a STAN
(field 11) and transmission time (field 7). Every later attempt is the repeat MTI (0421, 0221) with the
first attempt's fields 11 and 7, so the network can tell it is the same message again (ISO 8583 repeats).
An attempt the link could not send at all does not count: the next one is still a first attempt.

What is stored: the message without PAN, track, PIN block and ICC data (fields 2, 35, 36, 45, 52, 55).
The PAN is kept apart, encrypted by the PAN vault; a reversal needs it, the rest it must not keep.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from switch.domain.model import Pan
from switch.domain.transactions import parse_card_data
from switch.iso.message import Message, response_mti
from switch.masking import scrub_text

__all__ = [
    "ACTIVE_STATES",
    "FIRST_ATTEMPT_MTI",
    "KEY_LENGTH_MAX",
    "NOT_STORED_FIELDS",
    "TRANSITIONS",
    "TRY_AGAIN_CODES",
    "SafBackoff",
    "SafDepth",
    "SafError",
    "SafEvent",
    "SafKind",
    "SafPolicy",
    "SafRecord",
    "SafState",
    "StorableMessage",
    "attempt_message",
    "is_acknowledgement",
    "next_state",
    "repeat_mti",
    "restore_message",
    "source_states",
    "storable_message",
]


class SafError(ValueError):
    """An entry that cannot be queued (wrong MTI for its kind, bad key, bad PAN) or a forbidden transition.

    The message names fields and states only, never a field's value.
    """


class SafState(enum.StrEnum):
    QUEUED = "queued"
    IN_FLIGHT = "in_flight"
    ACKNOWLEDGED = "acknowledged"
    EXPIRED = "expired"
    PURGED = "purged"


class SafEvent(enum.StrEnum):
    CLAIM = "claim"  # a worker leases the entry to send it
    RELEASE = "release"  # the attempt was not acknowledged (or not sent): back to the queue, backed off
    ACKNOWLEDGE = "acknowledge"  # the network answered 0430/0230
    EXPIRE = "expire"  # past its expiry, never acknowledged
    PURGE = "purge"  # an operator removed it (with a reason)
    RETRY = "retry"  # an operator made it due now (an expired one back into the queue)


TRANSITIONS: Mapping[tuple[SafState, SafEvent], SafState] = {
    (SafState.QUEUED, SafEvent.CLAIM): SafState.IN_FLIGHT,
    # Only once the previous holder's lease has lapsed (checked by the queue): its worker is gone.
    (SafState.IN_FLIGHT, SafEvent.CLAIM): SafState.IN_FLIGHT,
    (SafState.IN_FLIGHT, SafEvent.RELEASE): SafState.QUEUED,
    (SafState.IN_FLIGHT, SafEvent.ACKNOWLEDGE): SafState.ACKNOWLEDGED,
    (SafState.QUEUED, SafEvent.EXPIRE): SafState.EXPIRED,
    (SafState.IN_FLIGHT, SafEvent.EXPIRE): SafState.EXPIRED,
    (SafState.QUEUED, SafEvent.PURGE): SafState.PURGED,
    (SafState.IN_FLIGHT, SafEvent.PURGE): SafState.PURGED,
    (SafState.EXPIRED, SafEvent.PURGE): SafState.PURGED,
    (SafState.QUEUED, SafEvent.RETRY): SafState.QUEUED,
    (SafState.EXPIRED, SafEvent.RETRY): SafState.QUEUED,
}

# Entries still to deliver: the worker's queue and the depth metric.
ACTIVE_STATES: frozenset[SafState] = frozenset({SafState.QUEUED, SafState.IN_FLIGHT})


def next_state(state: SafState, event: SafEvent) -> SafState:
    """The state after `event`; SafError if the event is not allowed in `state`."""
    after = TRANSITIONS.get((state, event))
    if after is None:
        raise SafError(f"a {state.value} entry cannot {event.value}")
    return after


def source_states(event: SafEvent) -> tuple[SafState, ...]:
    """The states in which `event` is allowed (sorted, for SQL conditions)."""
    return tuple(sorted({state for state, ev in TRANSITIONS if ev is event}))


# -- messages --------------------------------------------------------------------------------------------

SafKind = Literal["reversal", "advice"]
FIRST_ATTEMPT_MTI: Mapping[str, str] = {"reversal": "0420", "advice": "0220"}
_REPEAT_MTI: Mapping[str, str] = {"0420": "0421", "0220": "0221"}
# PAN (kept encrypted apart), track 2 and 3, track 1, PIN block, ICC data: never in the queue's message.
NOT_STORED_FIELDS: frozenset[int] = frozenset({2, 35, 36, 45, 52, 55})
KEY_LENGTH_MAX = 200


def repeat_mti(mti: str) -> str:
    """0420 -> 0421, 0220 -> 0221 (a repeat of a repeat stays a repeat)."""
    if mti in _REPEAT_MTI.values():
        return mti
    repeat = _REPEAT_MTI.get(mti)
    if repeat is None:
        raise SafError(f"MTI {mti} is not a store-and-forward message")
    return repeat


@dataclass(frozen=True, slots=True)
class StorableMessage:
    """A queued message split for storage: fields safe to keep as they are, and the PAN to encrypt."""

    mti: str
    fields: Mapping[int, str]  # without NOT_STORED_FIELDS
    pan: Pan | None
    dropped: tuple[int, ...]  # fields left out other than 2 (track, PIN block, ICC): worth a warning

    def __repr__(self) -> str:
        return f"StorableMessage(mti={self.mti!r}, fields={sorted(self.fields)}, pan={self.pan!r})"


def storable_message(*, network: str, kind: str, key: str, message: Message) -> StorableMessage:
    """Check a new entry and split its message for storage.

    The first attempt must be 0420 for a reversal and 0220 for an advice. The PAN comes from field 2, or
    from track 2 when a builder left only that (the network still needs the PAN; the track may not stay).
    """
    if not network or len(network) > 32:
        raise SafError("network name must be 1-32 characters")
    expected = FIRST_ATTEMPT_MTI.get(kind)
    if expected is None:
        raise SafError(f"unknown store-and-forward kind {kind!r}")
    if message.mti != expected:
        raise SafError(f"a {kind} is queued as {expected}, not {message.mti}")
    if not key or len(key) > KEY_LENGTH_MAX or not key.isprintable():
        raise SafError(f"idempotency key must be 1-{KEY_LENGTH_MAX} printable characters")
    if scrub_text(key) != key:
        # The key is stored and logged in clear: it names the original by acquirer, STAN, time, RRN.
        raise SafError("idempotency key must not contain a card number")
    pan: Pan | None = None
    if 2 in message or 35 in message:
        card = parse_card_data(message.get(2), message.get(35), None)
        if card is None:
            raise SafError("field 2 or 35 does not hold a usable PAN")
        pan = card.pan
    fields = {n: v for n, v in message.items() if n not in NOT_STORED_FIELDS}
    dropped = tuple(n for n in message.numbers if n in NOT_STORED_FIELDS and n != 2)
    return StorableMessage(mti=message.mti, fields=fields, pan=pan, dropped=dropped)


def restore_message(mti: str, fields: Mapping[int, str], pan: Pan | None) -> Message:
    """The first attempt as stored: the kept fields with the decrypted PAN back in field 2."""
    if NOT_STORED_FIELDS & set(fields):
        raise SafError("a stored message holds a field the queue must not keep")
    restored = dict(fields)
    if pan is not None:
        restored[2] = pan.digits
    return Message(mti, restored)


def attempt_message(first: Message, *, stan: str | None, transmission: str | None) -> Message:
    """What to send now: the first attempt as it is, or, once it was sent (`stan` and `transmission`
    known), its repeat with those fields."""
    if stan is None and transmission is None:
        return first
    if stan is None or transmission is None:
        raise SafError("a repeat needs both the first attempt's field 11 and field 7")
    return first.with_fields({11: stan, 7: transmission}, mti=repeat_mti(first.mti))


# Answers that say the network could not take the message now (ISO 8583:1987: 91 issuer or switch
# inoperative, 96 system malfunction): it did not apply it, so it must be sent again, not forgotten.
TRY_AGAIN_CODES = frozenset({"91", "96"})


def is_acknowledgement(sent: Message, response: Message | None) -> bool:
    """True if `response` answers `sent`: 0430 for 0420/0421, 0230 for 0220/0221, with the same STAN and
    field 7 where the response carries them. Any response code acknowledges — the network has the
    message, and what it did with it is its answer — except the try-again codes (TRY_AGAIN_CODES): a
    network that answers "inoperative" has applied nothing, and the entry is repeated."""
    if response is None:
        return False
    if response.mti != response_mti(sent.mti):
        return False
    if response.get(39) in TRY_AGAIN_CODES:
        return False
    for number in (11, 7):
        echoed = response.get(number)
        if echoed is not None and echoed != sent.get(number):
            return False
    return True


# -- timing ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class SafBackoff:
    """Delay before the next attempt after `attempts` unacknowledged ones: initial, times factor each
    time, capped; jitter takes up to that share off at random so several switchd processes (and
    networks that come back together) do not retry in lockstep. The cap is never exceeded."""

    initial_s: float = 5.0
    factor: float = 2.0
    max_s: float = 300.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not (self.initial_s > 0 and self.factor >= 1 and self.max_s >= self.initial_s):
            raise SafError("backoff needs initial_s > 0, factor >= 1 and max_s >= initial_s")
        if not 0 <= self.jitter < 1:
            raise SafError("backoff jitter must be in [0, 1)")

    def delay_s(self, attempts: int, rng: random.Random) -> float:
        if attempts < 1:
            raise SafError("backoff is computed after at least one attempt")
        # Exponent bounded so a very old entry's factor ** attempts cannot overflow a float.
        base = min(self.max_s, self.initial_s * self.factor ** min(attempts - 1, 64))
        return base * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True, kw_only=True, slots=True)
class SafPolicy:
    """How long entries live and how often they are retried."""

    backoff: SafBackoff = SafBackoff()
    # A reversal left undelivered is money at risk (the network may hold an approval the cardholder was
    # told failed): it lives long enough to outlast a long outage, and its expiry is an alarm.
    reversal_lifetime_s: float = 3 * 24 * 3600.0
    advice_lifetime_s: float = 3 * 24 * 3600.0

    def __post_init__(self) -> None:
        if self.reversal_lifetime_s <= 0 or self.advice_lifetime_s <= 0:
            raise SafError("lifetimes must be positive")

    def lifetime_s(self, kind: str) -> float:
        if kind == "reversal":
            return self.reversal_lifetime_s
        if kind == "advice":
            return self.advice_lifetime_s
        raise SafError(f"unknown store-and-forward kind {kind!r}")

    def expires_at(self, kind: str, created_at: datetime) -> datetime:
        return created_at + timedelta(seconds=self.lifetime_s(kind))


# -- what the queue hands out ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SafRecord:
    """A queued entry as the worker sees it: the first attempt's message (PAN decrypted, in field 2),
    its state and what the attempts so far left (fields 11 and 7 of the first one sent)."""

    entry_id: int
    network: str
    kind: SafKind
    key: str
    message: Message
    state: SafState
    attempts: int
    stan: str | None
    transmission: str | None
    created_at: datetime
    next_attempt_at: datetime
    expires_at: datetime
    last_response_code: str | None
    pan_masked: str

    def next_message(self) -> Message:
        """The message to send on the next attempt (first attempt or repeat)."""
        return attempt_message(self.message, stan=self.stan, transmission=self.transmission)


@dataclass(frozen=True, slots=True)
class SafDepth:
    """Undelivered entries of one network: how many, and how long ago the oldest was queued."""

    network: str
    count: int
    oldest_age_s: float  # 0 when there are none
