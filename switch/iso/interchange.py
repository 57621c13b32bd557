"""Sans-IO rules of an interbank link: request/response matching, STANs, network management, backoff.

Everything a network link needs to decide, without a socket or a clock of its own: which key pairs a
response with its request, whether a message is a request, a response or a network's reject, the next
STAN, the network-management messages (sign-on, sign-off, echo, key exchange) of a dialect, and how long
to wait before reconnecting. `switch.adapters.network_link` drives these over trio; the network
simulators may use them too (they are outside actors, allowed `switch.iso` only). See docs/networks.md.
"""

from __future__ import annotations

import importlib
import random
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Literal, TypeVar

from switch.iso.dialect import Dialect
from switch.iso.errors import MessageError
from switch.iso.headers import CupsHeader, Header, VisaHeader
from switch.iso.message import Message

__all__ = [
    "DEFAULT_MATCH_FIELDS",
    "INSTITUTION_FIELDS",
    "MatchKey",
    "MessageRole",
    "NetworkAction",
    "NetworkTables",
    "RecentMap",
    "ResponseClass",
    "StanAllocator",
    "backoff_s",
    "is_reject",
    "match_key",
    "message_role",
    "network_management_action",
    "network_management_request",
    "network_tables",
    "reject_code",
    "response_class",
    "transmission_datetime",
]

# MTI class + STAN + transmission time + acquirer ID: what docs/networks.md names as the default key.
DEFAULT_MATCH_FIELDS: tuple[int, ...] = (11, 7, 32)
# Institution IDs (acquirer, forwarder, receiver) do not identify a network-management message: a
# sign-on or echo belongs to the link, not to an acquirer, and networks differ in whether they echo them.
INSTITUTION_FIELDS: frozenset[int] = frozenset({32, 33, 100})

MatchKey = tuple[str | None, ...]
MessageRole = Literal["request", "response"]
NetworkAction = Literal["sign_on", "sign_off", "echo", "key_exchange"]
ResponseClass = Literal["approved", "declined", "unknown_code", "no_code"]
_ACTIONS: tuple[NetworkAction, ...] = ("sign_on", "sign_off", "echo", "key_exchange")
STAN_MAX = 999_999


def message_role(mti: str) -> MessageRole:
    """A request when the MTI's function digit (the third) is even (0200, 0420, 0800), else a response."""
    if len(mti) != 4 or not (mti.isascii() and mti.isdigit()):
        raise MessageError("MTI must be 4 digits")
    return "request" if int(mti[2]) % 2 == 0 else "response"


def is_reject(header: Header | None) -> bool:
    """True if the header says the network rejected the message it carries (sent back unprocessed).

    Visa prepends a 26-byte reject header; CUPS sets a reject code other than 00000. The message under
    such a header is the one the network bounced, often our own request.
    """
    if isinstance(header, VisaHeader):
        return header.reject_code is not None
    if isinstance(header, CupsHeader):
        return header.reject_code != "00000"
    return False


def reject_code(header: Header | None) -> str | None:
    """The network's reject code of a reject header, else None."""
    if isinstance(header, VisaHeader):
        return header.reject_code
    if isinstance(header, CupsHeader) and header.reject_code != "00000":
        return header.reject_code
    return None


def match_key(message: Message, fields: Sequence[int] = DEFAULT_MATCH_FIELDS) -> MatchKey:
    """The key that pairs a response with its request: MTI class, then the values of `fields`.

    A request and its response (0200/0210, 0420/0430, 0820/0830) give the same key; an absent field
    counts as None on both sides. Network-management messages leave the institution IDs out.
    """
    klass = message.mti[1]
    if klass == "8":
        return (klass, *(message.get(n) for n in fields if n not in INSTITUTION_FIELDS))
    return (klass, *(message.get(n) for n in fields))


class StanAllocator:
    """A per-network System Trace Audit Number counter: 000001 ... 999999, then 000001 again.

    000000 is never issued: some networks read it as "no STAN".
    """

    def __init__(self, start: int = 1) -> None:
        if not 1 <= start <= STAN_MAX:
            raise ValueError("start must be 1..999999")
        self._next = start

    def next(self) -> str:
        value = self._next
        self._next = 1 if value == STAN_MAX else value + 1
        return f"{value:06d}"


def transmission_datetime(now: datetime) -> str:
    """Field 7 (MMDDhhmmss, UTC) for an aware datetime."""
    if now.tzinfo is None:
        raise ValueError("transmission time needs an aware datetime")
    return now.astimezone(UTC).strftime("%m%d%H%M%S")


@dataclass(frozen=True, slots=True)
class NetworkTables:
    """A network dialect's link tables from `specs/<name>.py`: network management and response codes."""

    dialect: str
    management_mti: str  # 0800 (Visa, Shetab) or 0820 (CUPS)
    codes: Mapping[NetworkAction, str]  # field 70 value of each action
    response_codes: Mapping[str, str]  # field 39 -> the switch's result name

    def action_of(self, code: str | None) -> NetworkAction | None:
        for action, value in self.codes.items():
            if value == code:
                return action
        return None


def network_tables(dialect: str) -> NetworkTables:
    """The link tables of a network dialect; KeyError if it has none (the terminal dialect)."""
    try:
        module = importlib.import_module(f"specs.{dialect}")
    except ModuleNotFoundError:
        raise KeyError(dialect) from None
    management = getattr(module, "NETWORK_MANAGEMENT", None)
    response_codes = getattr(module, "RESPONSE_CODES", None)
    if not isinstance(management, Mapping) or not isinstance(response_codes, Mapping):
        raise KeyError(dialect)
    codes: dict[NetworkAction, str] = {action: str(management[action]) for action in _ACTIONS}
    return NetworkTables(
        dialect=dialect,
        management_mti=str(management["mti"]),
        codes=codes,
        response_codes=dict(response_codes),
    )


def network_management_request(
    dialect: Dialect,
    tables: NetworkTables,
    action: NetworkAction,
    *,
    stan: str,
    transmitted: str,
    institution_ids: Mapping[int, str],
) -> Message:
    """A sign-on, sign-off, echo or key-exchange request in this dialect (0800 or 0820, field 70).

    Fields 7 and 11 come from the caller (`transmitted`, `stan`); any other field the dialect's
    mandatory table requires for the MTI is taken from `institution_ids` (32, 33 or 100), so CUPS's
    0820 carries 33 without the code knowing which network needs it.
    """
    mti = tables.management_mti
    fields: dict[int, str] = {7: transmitted, 11: stan, 70: tables.codes[action]}
    for entry in dialect.mandatory.get(mti, ()):
        for number in (entry,) if isinstance(entry, int) else entry:
            if number in fields:
                break
            value = institution_ids.get(number)
            if value:
                fields[number] = value
                break
        else:
            raise MessageError("no value for a mandatory field", field=_first(entry), mti=mti)
    return Message(mti, fields)


def _first(entry: int | tuple[int, ...]) -> int:
    return entry if isinstance(entry, int) else entry[0]


def network_management_action(message: Message, tables: NetworkTables) -> NetworkAction | None:
    """The action of a network-management request (sign-on, echo, ...), None for any other message."""
    if message.mti[1] != "8":
        return None
    return tables.action_of(message.get(70))


def response_class(code: str | None, response_codes: Mapping[str, str]) -> ResponseClass:
    """How a network's field 39 counts in metrics: approved, declined, a code the table lacks, or none."""
    if code is None:
        return "no_code"
    if code == "00":
        return "approved"
    return "declined" if code in response_codes else "unknown_code"


def backoff_s(attempt: int, *, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before reconnect attempt `attempt` (0-based): `initial_s` doubling up to `max_s`, jittered.

    The delay is drawn from the upper half of the step ([step/2, step]) so that many switches losing one
    network at once do not reconnect in lockstep, while the delay still grows with every failure.
    """
    if attempt < 0:
        raise ValueError("attempt must be 0 or more")
    # Cap the exponent: 2**1100 is a float overflow, and the step is capped at max_s long before.
    step = min(max_s, initial_s * 2.0 ** min(attempt, 64))
    return step * (0.5 + 0.5 * rng.random())


K = TypeVar("K")
V = TypeVar("V")


class RecentMap(Generic[K, V]):
    """A bounded map that forgets its oldest entry when full: what a link remembers about old requests."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def pop(self, key: K) -> V | None:
        return self._items.pop(key, None)
