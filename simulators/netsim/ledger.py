"""The simulated network's books: its own card base with balances, what it applied, its position.

Two kinds of movement reach the books (docs/networks.md "Roles and money"):
- as **issuer**, netsim answers the member's requests for its own cards: a debit (purchase, withdrawal,
  cashback, an advice), a credit (refund) or a hold (pre-authorization) on its cardholder's balance;
- as **acquirer**, netsim originates requests for the member's cards: when the member approves, the
  member's cardholder paid netsim's merchant, so the member owes the network.

The position per currency is kept from the member's point of view, so that it equals the debit
balance (debits minus credits) of the member's settlement account `network:<name>:<currency>`:

    net_minor = as_issuer_minor - as_acquirer_minor      (> 0: the network owes the member)

`as_issuer_minor` is what netsim approved as issuer (debits minus credits, minus what was reversed);
`as_acquirer_minor` is what the member approved for netsim's acquirer, likewise. Pre-authorization holds
are listed apart and are not in `net_minor`: no money moves until a completion (an advice naming the
pre-authorization), which releases the hold and posts what it completes. Amounts are integer minor
units. Every movement is recorded under its identity key and applies at most once; a reversal applies at
most once per original. Pure code: no I/O, no clock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from specs.demo_networks import (
    NETWORK_CARD_COUNT,
    NETWORK_EXPIRED_YYMM,
    NETWORK_EXPIRY_YYMM,
    NETWORK_OPENING_BALANCE,
    NETWORK_OTHER_PIN,
    NETWORK_PIN,
    NETWORK_SPECIAL_CARDS,
    DemoNetwork,
)
from switch.masking import luhn_valid, mask_pan

__all__ = [
    "CardBase",
    "CurrencyPosition",
    "Effect",
    "Entry",
    "Ledger",
    "NetsimCard",
    "Role",
    "TxnKey",
]

Role = Literal["issuer", "acquirer"]
Effect = Literal["debit", "credit", "hold"]
# (MTI of the original with the repeat bit cleared, STAN, field 7, acquirer ID without leading zeros).
TxnKey = tuple[str, str, str, str]

_PAN_DIGITS = 16
HISTORY_MAX_DEFAULT = 200_000


@dataclass(slots=True)
class NetsimCard:
    """One card of the network's own base. `repr` shows the masked PAN only."""

    pan: str = field(repr=False)
    status: Literal["active", "lost", "stolen"]
    expiry_yymm: str
    pin: str = field(repr=False)
    posted: dict[int, int]  # currency -> posted balance, minor units
    held: dict[int, int]  # currency -> open holds (pre-authorizations), minor units
    wrong_pins: int = 0

    def __repr__(self) -> str:
        return f"NetsimCard(pan={mask_pan(self.pan)!r}, status={self.status!r})"

    def available(self, currency: int) -> int:
        return self.posted.get(currency, 0) - self.held.get(currency, 0)


class CardBase:
    """The network's cards: every Luhn-valid `demo_pan(bin, n)` of its BINs, n = 1..NETWORK_CARD_COUNT.

    Cards come into being on first use with the opening balance in each of the network's currencies,
    so the base costs nothing until it is used. The special cards (specs.demo_networks) are on the
    first BIN.
    """

    def __init__(self, network: DemoNetwork) -> None:
        self.network = network
        self._cards: dict[str, NetsimCard] = {}
        first_bin = network.bins[0]
        self._special: dict[str, str] = {}
        for name, (bin_index, number) in NETWORK_SPECIAL_CARDS.items():
            self._special[network.bins[bin_index] + f"{number:09d}"] = name
        assert all(key.startswith(first_bin) for key in self._special), "special cards are on the first BIN"

    def find(self, pan: str) -> NetsimCard | None:
        """The card with this PAN, or None when the network does not issue it."""
        card = self._cards.get(pan)
        if card is not None:
            return card
        if not self.issues(pan):
            return None
        card = self._new_card(pan)
        self._cards[pan] = card
        return card

    def issues(self, pan: str) -> bool:
        if len(pan) != _PAN_DIGITS or not pan.isascii() or not pan.isdigit() or not luhn_valid(pan):
            return False
        return pan[:6] in self.network.bins and 1 <= int(pan[6:15]) <= NETWORK_CARD_COUNT

    def _new_card(self, pan: str) -> NetsimCard:
        special = self._special.get(pan[:15])
        opening = 0 if special == "insufficient_funds" else NETWORK_OPENING_BALANCE
        status: Literal["active", "lost", "stolen"] = "active"
        if special == "lost":
            status = "lost"
        elif special == "stolen":
            status = "stolen"
        return NetsimCard(
            pan=pan,
            status=status,
            expiry_yymm=NETWORK_EXPIRED_YYMM if special == "expired" else NETWORK_EXPIRY_YYMM,
            pin=NETWORK_OTHER_PIN if special == "other_pin" else NETWORK_PIN,
            posted=dict.fromkeys(self.network.currencies, opening),
            held=dict.fromkeys(self.network.currencies, 0),
        )


@dataclass(slots=True)
class Entry:
    """One applied movement, as the clearing file and a later reversal need it."""

    role: Role
    effect: Effect
    pan: str = field(repr=False)
    currency: int
    amount_minor: int
    mti: str
    stan: str
    transmission: str
    rrn: str
    acquirer_id: str
    auth_code: str
    reversed_minor: int = 0
    reversal_applied: bool = False

    def __repr__(self) -> str:
        return (
            f"Entry(role={self.role!r}, effect={self.effect!r}, pan={mask_pan(self.pan)!r}, "
            f"amount_minor={self.amount_minor}, currency={self.currency}, reversed_minor={self.reversed_minor})"
        )


# Entry's fields in order (role, effect, pan, currency, amount, mti, stan, transmission, rrn, acquirer id,
# auth code, reversed amount, reversal applied).
_Packed = tuple[Role, Effect, str, int, int, str, str, str, str, str, str, int, bool]


def _packed(entry: Entry) -> _Packed:
    return (
        entry.role,
        entry.effect,
        entry.pan,
        entry.currency,
        entry.amount_minor,
        entry.mti,
        entry.stan,
        entry.transmission,
        entry.rrn,
        entry.acquirer_id,
        entry.auth_code,
        entry.reversed_minor,
        entry.reversal_applied,
    )


@dataclass(slots=True)
class CurrencyPosition:
    as_issuer_minor: int = 0
    as_acquirer_minor: int = 0
    issuer_holds_minor: int = 0
    acquirer_holds_minor: int = 0

    @property
    def net_minor(self) -> int:
        return self.as_issuer_minor - self.as_acquirer_minor

    def to_json(self) -> dict[str, int]:
        return {
            "net_minor": self.net_minor,
            "as_issuer_minor": self.as_issuer_minor,
            "as_acquirer_minor": self.as_acquirer_minor,
            "issuer_holds_minor": self.issuer_holds_minor,
            "acquirer_holds_minor": self.acquirer_holds_minor,
        }


class Ledger:
    """Entries by identity key, the cards' balances and the position, changed together.

    The history is bounded (`history_max` entries, oldest forgotten first): a reversal of a forgotten
    entry is acknowledged without effect, as for an unknown original.
    """

    def __init__(self, cards: CardBase, *, history_max: int = HISTORY_MAX_DEFAULT) -> None:
        if history_max < 1:
            raise ValueError("history_max must be positive")
        self.cards = cards
        self.history_max = history_max
        # Kept as plain tuples (`_packed`), which Python's cycle collector does not track: with up to
        # `history_max` entries held as objects, every full collection walked them all and paused the
        # simulator for tens to hundreds of milliseconds.
        self._entries: OrderedDict[TxnKey, _Packed] = OrderedDict()
        self.positions: dict[int, CurrencyPosition] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: TxnKey) -> Entry | None:
        """The entry of `key` as it is now (a copy: change it through `reverse`)."""
        packed = self._entries.get(key)
        return None if packed is None else Entry(*packed)

    def apply(self, key: TxnKey, entry: Entry) -> bool:
        """Apply a new movement once; False (and no change) if the key was applied before."""
        if key in self._entries:
            return False
        self._entries[key] = _packed(entry)
        if len(self._entries) > self.history_max:
            self._entries.popitem(last=False)
        self._move(entry, entry.amount_minor)
        return True

    def reverse(self, key: TxnKey, amount_minor: int | None = None) -> int:
        """Reverse the entry of `key` (all of it, or `amount_minor`); the amount reversed.

        0 when there is no such entry or it was reversed before: a reversal applies once per original.
        """
        entry = self.get(key)
        if entry is None or entry.reversal_applied:
            return 0
        entry.reversal_applied = True
        amount = entry.amount_minor if amount_minor is None else max(0, min(amount_minor, entry.amount_minor))
        entry.reversed_minor = amount
        self._entries[key] = _packed(entry)
        self._move(entry, -amount)
        return amount

    def reduce_hold(self, key: TxnKey, keep_minor: int) -> int:
        """Release the hold of `key` down to `keep_minor` (a reversal of a pre-authorization: 0 releases all
        that is left, more than 0 is a partial reversal, field 95); the amount released.

        A hold only ever shrinks, so reversals of one hold apply in any order and any number of times: a
        partial one then a full one release everything, a repeat releases nothing more. 0 when there is no
        such hold or no more than `keep_minor` is left of it."""
        entry = self.get(key)
        if entry is None or entry.effect != "hold":
            return 0
        release = entry.amount_minor - entry.reversed_minor - max(0, keep_minor)
        if release <= 0:
            return 0
        entry.reversal_applied = True
        entry.reversed_minor += release
        self._entries[key] = _packed(entry)
        self._move(entry, -release)
        return release

    def hold_left(self, key: TxnKey) -> int:
        """What is still held by the hold of `key` (0 for none, or one completed or released)."""
        entry = self.get(key)
        if entry is None or entry.effect != "hold":
            return 0
        return entry.amount_minor - entry.reversed_minor

    def complete(self, hold_key: TxnKey, key: TxnKey, entry: Entry) -> bool:
        """Complete the open hold of `hold_key` by the debit `entry`, recorded under `key`: what is left of
        the hold is released and `entry.amount_minor` (at most that) posted. False, and no change, when
        nothing is held any more (no such hold, completed or reversed whole already), `entry` asks for
        more than is left (a partial reversal reduced the hold), or `key` was applied before."""
        left = self.hold_left(hold_key)
        if left <= 0 or key in self._entries:
            return False
        if not 0 < entry.amount_minor <= left or entry.effect != "debit":
            return False
        # Released as a full reversal would release it, so that a later reversal of the
        # pre-authorization finds nothing left and changes nothing.
        self.reduce_hold(hold_key, 0)
        return self.apply(key, entry)

    def _move(self, entry: Entry, amount: int) -> None:
        position = self.positions.setdefault(entry.currency, CurrencyPosition())
        signed = -amount if entry.effect == "credit" else amount
        if entry.role == "issuer":
            card = self.cards.find(entry.pan)
            assert card is not None, "the issuer applies movements to its own cards only"
            if entry.effect == "hold":
                card.held[entry.currency] = card.held.get(entry.currency, 0) + amount
                position.issuer_holds_minor += amount
            else:
                card.posted[entry.currency] = card.posted.get(entry.currency, 0) - signed
                position.as_issuer_minor += signed
        elif entry.effect == "hold":
            position.acquirer_holds_minor += amount
        else:
            position.as_acquirer_minor += signed

    def position_json(self) -> dict[str, dict[str, int]]:
        """Per currency (ISO 4217 numeric, as text), sorted."""
        return {f"{currency:03d}": self.positions[currency].to_json() for currency in sorted(self.positions)}
