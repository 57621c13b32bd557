"""The network as another bank's acquirer: requests for the member's cards, as pure message builders.

`POST /originate` asks for them (docs/networks.md "netsim"); `parse_originate` checks the JSON body and
`Originator` builds each 0200/0100/0220 and its 0420 reversal in the network's dialect. The card side is
the terminal simulators' own (`simulators.messages.build_request`, `demo_card`): track 2 with the PVV
and CVV the member's card bureau would have written, so the member verifies them as for a card read at
its own terminal. Then the network's fields: 32 (and CUPS 33) = the network's ID, 100 = the member's
acquirer ID, its own STAN, RRN, merchant and terminal, and the PIN block under the current ZPK with its
index in field 53 (or under the previous one, for the stale_key fault). No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from simulators.messages import (
    Card,
    SimulatorError,
    TerminalIdentity,
    TransactionRequest,
    TxnType,
    build_request,
    pin_block_hex,
)
from simulators.netsim.issuer import pan_of
from simulators.netsim.keys import ZoneKey, field53
from specs import demo
from specs.demo_networks import DemoNetwork
from switch.iso.headers import CupsHeader, Header, VisaHeader
from switch.iso.message import Message

__all__ = [
    "ORIGINATE_COUNT_MAX",
    "ORIGINATE_KEYS",
    "ORIGINATE_TYPES",
    "OriginateError",
    "OriginateSpec",
    "Originator",
    "parse_originate",
]

ORIGINATE_COUNT_MAX = 1000
AMOUNT_MINOR_MAX = 10**12 - 1
TIMEOUT_S_MAX = 120.0
# Request types netsim's acquirer sends, with the terminal transaction type they are built from.
ORIGINATE_TYPES: dict[str, TxnType] = {
    "purchase": TxnType.PURCHASE,
    "withdrawal": TxnType.WITHDRAWAL,
    "balance": TxnType.BALANCE,
    "refund": TxnType.REFUND,
}
ORIGINATE_KEYS: tuple[str, ...] = (
    "count",
    "pan",
    "amount_minor",
    "currency",
    "pin",
    "mti",
    "type",
    "reverse",
    "original_stan",
    "actual_amount_minor",
    "timeout_s",
)
_MCC = "5999"
_COUNTRY = {"visa": "US", "cups": "CN", "shetab": "IR"}
# CUPS field 60: message reason code 0000, account owner type 0, terminal read capability 2 (magnetic
# stripe), IC card condition 0, reserved 0, terminal type 03 (POS).
_CUPS_FIELD60 = "0000020003"
_NO_INSTITUTION = "0" * 11


class OriginateError(ValueError):
    """A /originate body that is not accepted; the message names the key, never a card number."""


@dataclass(frozen=True, slots=True)
class OriginateSpec:
    """What to originate. `pan` None is the member's first demo debit card; `pin` None sends no PIN block."""

    count: int = 1
    pan: str | None = field(default=None, repr=False)
    amount_minor: int = 1000
    currency: int | None = None  # None: the member's demo currency if the network has it, else its first
    pin: str | None = field(default=demo.DEMO_PIN, repr=False)
    mti: str = "0200"
    type: str = "purchase"
    reverse: bool = False  # reverse each request right after its answer
    original_stan: str | None = None  # 0420: the STAN of an earlier originated request
    actual_amount_minor: int | None = None  # 0420: partial reversal, what was really done (field 95)
    timeout_s: float | None = None  # None: netsim's --originate-timeout-s


def _int(body: Mapping[str, object], key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise OriginateError(f"{key} must be an integer from {low} to {high}")
    return value


def parse_originate(body: Mapping[str, object]) -> OriginateSpec:
    """Check a /originate body (a JSON object); OriginateError names the first bad key."""
    for key in body:
        if key not in ORIGINATE_KEYS:
            raise OriginateError(f"unknown key {key!r}; known: {', '.join(ORIGINATE_KEYS)}")
    spec = OriginateSpec()
    count = _int(body, "count", 1, ORIGINATE_COUNT_MAX) or spec.count
    amount = _int(body, "amount_minor", 0, AMOUNT_MINOR_MAX)
    currency = _int(body, "currency", 1, 999)
    actual = _int(body, "actual_amount_minor", 0, AMOUNT_MINOR_MAX)
    pan = body.get("pan")
    if pan is not None and (
        not isinstance(pan, str)
        or not (pan in demo.SPECIAL_CARDS or (pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19))
    ):
        raise OriginateError("pan must be 12 to 19 digits or the name of a special demo card")
    pin: object = body.get("pin", demo.DEMO_PIN)
    if pin is not None and (not isinstance(pin, str) or not (pin.isdigit() and 4 <= len(pin) <= 12)):
        raise OriginateError("pin must be 4 to 12 digits, or null for no PIN block")
    mti = body.get("mti", spec.mti)
    if mti not in ("0200", "0100", "0220", "0420"):
        raise OriginateError("mti must be 0200, 0100, 0220 or 0420")
    kind = body.get("type", spec.type)
    if not isinstance(kind, str) or kind not in ORIGINATE_TYPES:
        raise OriginateError(f"type must be one of {', '.join(ORIGINATE_TYPES)}")
    if mti == "0100" and kind != "purchase":
        raise OriginateError("a 0100 pre-authorization has type purchase")
    if mti == "0220" and kind == "balance":
        raise OriginateError("a 0220 advice moves money: its type is not balance")
    reverse = body.get("reverse", False)
    if not isinstance(reverse, bool):
        raise OriginateError("reverse must be true or false")
    original = body.get("original_stan")
    if original is not None and (
        not isinstance(original, str) or len(original) != 6 or not original.isdigit()
    ):
        raise OriginateError("original_stan must be 6 digits")
    if (mti == "0420") != (original is not None):
        raise OriginateError("original_stan is needed by, and only by, mti 0420")
    timeout = body.get("timeout_s")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= TIMEOUT_S_MAX
    ):
        raise OriginateError(f"timeout_s must be a number of seconds above 0, at most {TIMEOUT_S_MAX:g}")
    return OriginateSpec(
        count=count,
        pan=pan,
        amount_minor=amount if amount is not None else spec.amount_minor,
        currency=currency,
        pin=pin,
        mti=str(mti),
        type=kind,
        reverse=reverse,
        original_stan=original,
        actual_amount_minor=actual,
        timeout_s=float(timeout) if timeout is not None else None,
    )


def _pad11(value: str) -> str:
    return value.rjust(11, "0")[-11:]


class Originator:
    """Builds the network's acquirer requests toward the member (stateless: STAN, time, RRN are given)."""

    def __init__(self, network: DemoNetwork) -> None:
        self.network = network
        self.terminal_id = f"{network.name.upper()[:4]:<4}0001".replace(" ", "X")
        self.merchant_id = f"NETSIM{network.name.upper():<9}"[:15].replace(" ", "0")
        name = f"NETSIM {network.name.upper()} SHOP"
        self.card_acceptor = f"{name:<25.25}{'TESTVILLE':<13}{_COUNTRY.get(network.name, 'XX'):<2}"

    def default_currency(self) -> int:
        currencies = self.network.currencies
        return demo.CURRENCY if demo.CURRENCY in currencies else currencies[0]

    def header(self) -> Header | None:
        """The header of a message the network sends to the member."""
        network = self.network
        if network.name == "visa":
            return VisaHeader(destination_id=network.our_station_id, source_id=network.station_id)
        if network.name == "cups":
            return CupsHeader(destination_id=network.forwarding_id, source_id=network.network_id)
        return None

    def request(
        self,
        spec: OriginateSpec,
        card: Card,
        *,
        stan: str,
        now_utc: datetime,
        rrn: str,
        zone_key: ZoneKey | None,
    ) -> Message:
        """One 0200, 0100 or 0220 for `card`. SimulatorError if a PIN is asked for and there is no key.

        A 0220 advises the member of an approval the network made on its behalf (its stand-in): the card
        as the network keeps it (2 and 14, no track data, no PIN block), the network's auth code in 38
        and 39 = 00."""
        txn = TxnType.PREAUTH if spec.mti == "0100" else ORIGINATE_TYPES[spec.type]
        currency = spec.currency if spec.currency is not None else self.default_currency()
        identity = TerminalIdentity(
            terminal_id=self.terminal_id, merchant_id=self.merchant_id, currency=currency
        )
        amount = 0 if txn is TxnType.BALANCE else spec.amount_minor
        built = build_request(
            TransactionRequest(txn, amount_minor=amount),
            identity=identity,
            card=card,
            stan=stan,
            now_utc=now_utc,
            local_now=now_utc,
        )
        updates: dict[int, str | None] = {
            18: _MCC,
            32: self.network.network_id,
            37: rrn,
            43: self.card_acceptor,
            100: self.network.acquirer_id,
        }
        advice = spec.mti == "0220"
        if spec.pin is not None and txn is not TxnType.REFUND and not advice:
            if zone_key is None:
                raise SimulatorError("no zone PIN key yet: the member has not asked for a key exchange")
            updates[52] = pin_block_hex(spec.pin, card.pan, zone_key.key)
            updates[53] = field53(zone_key.index)
        updates.update(self._dialect_fields(built, card))
        if advice:
            updates.update({2: card.pan, 14: card.expiry_yymm, 35: None, 38: self.auth_code(stan), 39: "00"})
        return built.with_fields(updates, mti=spec.mti)

    def auth_code(self, stan: str) -> str:
        """The network's own approval code (of an advice): its letter and the STAN's last 5 digits."""
        return f"{self.network.name[0].upper()}{stan[-5:]}"

    def _dialect_fields(self, built: Message, card: Card) -> dict[int, str | None]:
        name = self.network.name
        if name == "visa":
            # Visa carries track 2 as BCD with D as the separator, and field 22 as n4 (PIN capability
            # in the third digit, a zero filler last).
            return {35: built[35].replace("=", "D"), 22: (built.get(22) or "021") + "0"}
        if name == "cups":
            return {2: card.pan, 14: card.expiry_yymm, 33: self.network.network_id, 60: _CUPS_FIELD60}
        return {}

    def reversal(
        self,
        original: Message,
        *,
        stan: str,
        now_utc: datetime,
        actual_amount_minor: int | None = None,
        repeat: bool = False,
    ) -> Message:
        """The 0420 (0421 when `repeat`) reversing `original`, as this network's acquirer sends it."""
        pan = pan_of(original)
        assert pan is not None, "an originated request always carries the card"
        fields: dict[int, str] = {
            2: pan,
            7: now_utc.strftime("%m%d%H%M%S"),
            11: stan,
            90: "".join(
                (
                    original.mti,
                    original[11],
                    original[7],
                    _pad11(original.get(32) or ""),
                    _pad11(original[33]) if 33 in original else _NO_INSTITUTION,
                )
            ),
        }
        for number in (3, 4, 32, 33, 37, 41, 42, 49, 60, 100):
            value = original.get(number)
            if value is not None:
                fields[number] = value
        if actual_amount_minor is not None:
            actual = f"{actual_amount_minor:012d}"
            fields[95] = actual + actual + "0" * 18
        return Message("0421" if repeat else "0420", fields)
