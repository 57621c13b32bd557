"""Routing decisions: which way a card request goes (on-us, an interbank network, or nowhere) and why.

Owns the routing table as immutable data (networks, BIN ranges with priorities, route rules, stand-in
rules) and `decide`, the pure function the pipeline and `switchctl routes explain` call. The adapter
(`switch.adapters.postgres.routes`) builds the table from the database and keeps it fresh; nothing here
does I/O, so every rule below is tested without a database. docs/networks.md "Routing" is the operator's
version of this comment.

Semantics:
- Prefix ranges. `low`..`high` are digit strings of equal length; a PAN is in the range when its first
  len(low) digits lie between them (equal-length digit strings compare like numbers). BIN ranges are 6 to
  12 digits; the scope of a rule or stand-in rule is 0 to 12 (0 digits: every card).
- On-us first. A PAN in an on-us range (the issuing `bin_ranges` table) is a card we issue: it is
  authorized here whatever the network ranges and rules say, since a network would only send it back.
- Candidates. Every network with a BIN range holding the PAN, each at its best range. Best, and the
  candidates' order: the highest priority; for equal priorities the more specific range (longer prefix,
  then fewer prefixes covered), then the network name. Priority comes first because it is what the
  operator sets on purpose; specificity only breaks ties. So with no rules the highest-priority matching
  range wins, and a broad low-priority range of another network is a fallback for a specific one.
- Rules, in this order (each only for cards in its scope and, if it names one, its currency):
  `force` makes its network the only candidate (even without a BIN range of it); of several force rules
  the most specific scope wins, then the lowest id. `exclude` removes its network (it beats force: an
  operator excluding a network in an incident means it). `limit` keeps its network only for amounts in
  [amount_min, amount_max]; every limit rule that applies must hold. `fee` prices its network
  (fee_fixed + amount * fee_bps / 10,000, rounded up; the most specific fee rule applies, none = 0);
  the eligible candidates are then ordered by fee, cheapest first, keeping the priority order among
  equal fees.
- Links. The first eligible candidate whose link is up is the route; the other eligible ones that are
  up are its fallbacks, in order (for when sending on the route fails at once; a request that was sent and
  timed out is not sent elsewhere, it is reversed). Eligible candidates with their link down are skipped.
- Stand-in. The decision carries the stand-in rule of the network the transaction belongs to (the route,
  or when every link is down the first eligible network): the most specific rule of that network whose
  scope holds the PAN, in the transaction's currency. The pipeline applies it (amounts, daily counters).
"""

from __future__ import annotations

import bisect
import enum
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from switch.domain.model import Pan

__all__ = [
    "BIN_LENGTH_MAX",
    "BIN_LENGTH_MIN",
    "ON_US",
    "BinRange",
    "DecisionKind",
    "ExplanationLine",
    "LinkState",
    "PrefixRange",
    "RouteDecision",
    "RouteRule",
    "RoutingTable",
    "RuleKind",
    "StandinRule",
    "Verdict",
    "decide",
    "fee_for",
    "format_minor",
    "valid_network_name",
]

ON_US = "on-us"  # the route of a card we issue; also the journal's route value for it
BIN_LENGTH_MIN = 6
BIN_LENGTH_MAX = 12
_NETWORK_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
_BPS_PER_UNIT = 10_000
# Reserved: "on_us" is the issuing bin_ranges table's owner value for our own cards.
_RESERVED_NAMES = frozenset({"on_us", "on-us", "none"})

# Link state as the caller knows it: a callable, or a mapping in which a missing network counts as down
# (never route to a link nobody reported on).
LinkState = Callable[[str], bool] | Mapping[str, bool]


def valid_network_name(name: str) -> bool:
    """Network names are lower-case identifiers (they name dialects, metrics and journal routes)."""
    return bool(_NETWORK_NAME.match(name)) and name not in _RESERVED_NAMES


def format_minor(amount: int) -> str:
    """Minor units shown with 2 decimals (every currency of the demo world has 2; an exponent table comes
    with multi-currency settlement)."""
    sign = "-" if amount < 0 else ""
    return f"{sign}{abs(amount) // 100}.{abs(amount) % 100:02d}"


def _check_amount(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer of 0 or more (minor units)")


def _check_currency(value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not 1 <= value <= 999):
        raise ValueError("currency must be an ISO 4217 numeric code, 1-999")


# --- prefix ranges --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrefixRange:
    """`low`..`high`: equal-length digit prefixes, low <= high; empty (both "") holds every PAN."""

    low: str
    high: str

    def __post_init__(self) -> None:
        for value in (self.low, self.high):
            if not (value == "" or (value.isascii() and value.isdigit())):
                raise ValueError("a prefix is digits only")
        if len(self.low) != len(self.high):
            raise ValueError("both ends of a prefix range have the same number of digits")
        if len(self.low) > BIN_LENGTH_MAX:
            raise ValueError(f"a prefix has at most {BIN_LENGTH_MAX} digits")
        if self.low > self.high:
            raise ValueError("a prefix range starts at its lower end")

    @classmethod
    def parse(cls, text: str, *, length_min: int = 0) -> PrefixRange:
        """`476173`, `400000-499999`, or (when length_min is 0) `*` for every card."""
        text = text.strip()
        if text in ("*", "all") and length_min == 0:
            return cls("", "")
        low, sep, high = text.partition("-")
        if not sep:
            high = low
        if not (low.isascii() and low.isdigit() and high.isascii() and high.isdigit()):
            shape = "a prefix or LOW-HIGH" + (" or *" if length_min == 0 else "")
            raise ValueError(f"expected {shape} (digits only), e.g. 476173 or 400000-499999")
        if not length_min <= len(low) <= BIN_LENGTH_MAX:
            raise ValueError(f"a prefix has {length_min} to {BIN_LENGTH_MAX} digits")
        return cls(low.strip(), high.strip())

    @property
    def length(self) -> int:
        return len(self.low)

    @property
    def span(self) -> int:
        """How many prefixes the range covers, less one (0: a single prefix)."""
        return int(self.high) - int(self.low) if self.low else 0

    def holds(self, pan_digits: str) -> bool:
        head = pan_digits[: self.length]
        return len(head) == self.length and self.low <= head <= self.high

    def specificity_key(self) -> tuple[int, int]:
        """Sorts the more specific range first: longer prefix, then narrower."""
        return (-self.length, self.span)

    def __str__(self) -> str:
        if not self.low:
            return "*"
        return self.low if self.low == self.high else f"{self.low}-{self.high}"


# --- table rows -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BinRange:
    """PANs of `prefixes` belong to `owner`: ON_US (cards we issue) or a network's name."""

    range_id: int
    owner: str
    prefixes: PrefixRange
    priority: int = 0

    def __post_init__(self) -> None:
        if not BIN_LENGTH_MIN <= self.prefixes.length <= BIN_LENGTH_MAX:
            raise ValueError(f"a BIN range has {BIN_LENGTH_MIN} to {BIN_LENGTH_MAX} digits")
        if self.owner != ON_US and not valid_network_name(self.owner):
            raise ValueError("a BIN range's owner is on-us or a network name")

    def order_key(self) -> tuple[int, int, int, str, int]:
        return (-self.priority, *self.prefixes.specificity_key(), self.owner, self.range_id)


class RuleKind(enum.StrEnum):
    FORCE = "force"
    EXCLUDE = "exclude"
    LIMIT = "limit"
    FEE = "fee"


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRule:
    """An operator's rule on one network for the cards of `scope` (and, if set, one currency).

    Amounts are minor units of `currency`, which limit and fee rules must name: a limit or fee means
    nothing without its currency.
    """

    rule_id: int
    kind: RuleKind
    network: str
    scope: PrefixRange = field(default_factory=lambda: PrefixRange("", ""))
    currency: int | None = None
    amount_min: int | None = None
    amount_max: int | None = None
    fee_fixed: int = 0
    fee_bps: int = 0
    note: str = ""

    def __post_init__(self) -> None:
        if not valid_network_name(self.network):
            raise ValueError("a rule names a network")
        _check_currency(self.currency)
        for name in ("amount_min", "amount_max", "fee_fixed", "fee_bps"):
            _check_amount(name, getattr(self, name))
        has_limits = self.amount_min is not None or self.amount_max is not None
        has_fee = bool(self.fee_fixed or self.fee_bps)
        if self.kind is RuleKind.LIMIT:
            if not has_limits:
                raise ValueError("a limit rule has a minimum or a maximum amount")
            if self.currency is None:
                raise ValueError("a limit rule names the currency of its amounts")
            if (
                self.amount_min is not None
                and self.amount_max is not None
                and self.amount_min > self.amount_max
            ):
                raise ValueError("a limit rule's minimum is not above its maximum")
        elif has_limits:
            raise ValueError("only a limit rule has amount limits")
        if self.kind is RuleKind.FEE:
            if self.currency is None:
                raise ValueError("a fee rule names the currency of its fee")
            if self.fee_bps > _BPS_PER_UNIT:
                raise ValueError("a fee rate is at most 10000 basis points")
        elif has_fee:
            raise ValueError("only a fee rule has a fee")

    def applies(self, pan_digits: str, currency: int) -> bool:
        return (self.currency is None or self.currency == currency) and self.scope.holds(pan_digits)

    def precedence_key(self) -> tuple[int, int, int]:
        return (*self.scope.specificity_key(), self.rule_id)

    def describe(self) -> str:
        """One line for `routes list` and explanations; no card data (a scope is a BIN prefix)."""
        where = f"cards {self.scope}" + (f", currency {self.currency}" if self.currency is not None else "")
        if self.kind is RuleKind.LIMIT:
            bounds = []
            if self.amount_min is not None:
                bounds.append(f"from {format_minor(self.amount_min)}")
            if self.amount_max is not None:
                bounds.append(f"up to {format_minor(self.amount_max)}")
            what = f"limit {self.network} to amounts {' '.join(bounds)}"
        elif self.kind is RuleKind.FEE:
            what = f"fee on {self.network} {format_minor(self.fee_fixed)} + {self.fee_bps} bps"
        else:
            what = f"{self.kind.value} {self.network}"
        return f"{what} ({where})" + (f" - {self.note}" if self.note else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class StandinRule:
    """When `network` is down or late, the switch may approve a card of `scope` itself, within these
    amounts (minor units of `currency`) per transaction and per card per day."""

    standin_id: int
    network: str
    scope: PrefixRange
    currency: int
    per_transaction_amount_max: int
    daily_amount_max: int
    daily_count_max: int

    def __post_init__(self) -> None:
        if not valid_network_name(self.network):
            raise ValueError("a stand-in rule names a network")
        _check_currency(self.currency)
        for name in ("per_transaction_amount_max", "daily_amount_max", "daily_count_max"):
            value = getattr(self, name)
            _check_amount(name, value)
            if value == 0:
                raise ValueError(f"{name} must be greater than 0 (remove the rule to disable stand-in)")
        if self.per_transaction_amount_max > self.daily_amount_max:
            raise ValueError("the per-transaction maximum is not above the daily maximum")

    def applies(self, pan_digits: str, currency: int) -> bool:
        return self.currency == currency and self.scope.holds(pan_digits)

    def covers_amount(self, amount: int) -> bool:
        """Is one transaction of `amount` within the per-transaction maximum (daily counters aside)?"""
        return 0 < amount <= self.per_transaction_amount_max

    def describe(self) -> str:
        return (
            f"{self.network} cards {self.scope}, currency {self.currency}: up to "
            f"{format_minor(self.per_transaction_amount_max)} per transaction, "
            f"{format_minor(self.daily_amount_max)} and {self.daily_count_max} per card per day"
        )


# --- the table ------------------------------------------------------------------------------------------

T = TypeVar("T")


class _PrefixIndex(Generic[T]):
    """Every item whose prefix range holds a PAN, in a few bisections instead of a scan of the table.

    Per prefix length, the number line is cut at every range's ends into segments, each with the items
    that cover all of it; a lookup is one bisection per distinct length (at most 13).
    """

    __slots__ = ("_everywhere", "_levels")

    def __init__(self, entries: Iterable[tuple[PrefixRange, T]]) -> None:
        by_length: dict[int, list[tuple[int, int, int, T]]] = {}
        everywhere: list[T] = []
        for seq, (prefixes, item) in enumerate(entries):
            if not prefixes.length:
                everywhere.append(item)
                continue
            by_length.setdefault(prefixes.length, []).append(
                (int(prefixes.low), int(prefixes.high), seq, item)
            )
        self._everywhere = tuple(everywhere)
        self._levels: list[tuple[int, list[int], list[tuple[T, ...]]]] = []
        for length in sorted(by_length):
            ranges = sorted(by_length[length], key=lambda r: (r[0], r[2]))
            points = sorted({r[0] for r in ranges} | {r[1] + 1 for r in ranges})
            starts: list[int] = []
            covers: list[tuple[T, ...]] = []
            active: dict[int, tuple[int, T]] = {}
            next_range = 0
            for point in points:
                while next_range < len(ranges) and ranges[next_range][0] <= point:
                    _, high, seq, item = ranges[next_range]
                    active[seq] = (high, item)
                    next_range += 1
                for seq in [s for s, (high, _) in active.items() if high < point]:
                    del active[seq]
                starts.append(point)
                covers.append(tuple(active[s][1] for s in sorted(active)))
            self._levels.append((length, starts, covers))

    def lookup(self, pan_digits: str) -> Iterator[T]:
        yield from self._everywhere
        for length, starts, covers in self._levels:
            if len(pan_digits) < length:
                continue
            at = bisect.bisect_right(starts, int(pan_digits[:length])) - 1
            if at >= 0:
                yield from covers[at]


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Everything a routing decision reads, as loaded at one moment. Build once per change; share freely.

    `networks` are the networks the switch knows (a link may or may not be configured for each);
    `bin_ranges` hold both on-us ranges and network ranges.
    """

    networks: tuple[str, ...] = ()
    bin_ranges: tuple[BinRange, ...] = ()
    rules: tuple[RouteRule, ...] = ()
    standin_rules: tuple[StandinRule, ...] = ()
    _ranges: _PrefixIndex[BinRange] = field(init=False, repr=False, compare=False)
    _rules: _PrefixIndex[RouteRule] = field(init=False, repr=False, compare=False)
    _standin: _PrefixIndex[StandinRule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        known = set(self.networks)
        if len(known) != len(self.networks):
            raise ValueError("a network is listed twice")
        for name in self.networks:
            if not valid_network_name(name):
                raise ValueError(f"{name!r} is not a network name")
        owners = [r.owner for r in self.bin_ranges]
        owners += [r.network for r in self.rules] + [r.network for r in self.standin_rules]
        for owner in owners:
            if owner != ON_US and owner not in known:
                raise ValueError(f"unknown network {owner!r}")
        object.__setattr__(self, "networks", tuple(sorted(self.networks)))
        object.__setattr__(self, "_ranges", _PrefixIndex((r.prefixes, r) for r in self.bin_ranges))
        object.__setattr__(self, "_rules", _PrefixIndex((r.scope, r) for r in self.rules))
        object.__setattr__(self, "_standin", _PrefixIndex((r.scope, r) for r in self.standin_rules))

    def ranges_holding(self, pan_digits: str) -> list[BinRange]:
        """Every BIN range (on-us or network) that holds the PAN, best first."""
        return sorted(self._ranges.lookup(pan_digits), key=BinRange.order_key)

    def rules_applying(self, pan_digits: str, currency: int) -> list[RouteRule]:
        """Every rule for this card and currency, most specific first."""
        found = (r for r in self._rules.lookup(pan_digits) if r.applies(pan_digits, currency))
        return sorted(found, key=RouteRule.precedence_key)

    def standin_rule(self, network: str, pan_digits: str, currency: int) -> StandinRule | None:
        """The most specific stand-in rule of `network` for this card and currency, if any."""
        found = [
            r
            for r in self._standin.lookup(pan_digits)
            if r.network == network and r.applies(pan_digits, currency)
        ]
        return min(found, key=lambda r: (*r.scope.specificity_key(), r.standin_id), default=None)


def fee_for(rule: RouteRule, amount: int) -> int:
    """A fee rule's fee on `amount`, minor units, the rate's part rounded up."""
    return rule.fee_fixed + -(-amount * rule.fee_bps // _BPS_PER_UNIT)


# --- decisions ------------------------------------------------------------------------------------------


class DecisionKind(enum.StrEnum):
    ON_US = "on_us"  # a card we issue: authorize on our ledger
    NETWORK = "network"  # send to `network` (then `fallbacks` if it cannot be sent at all)
    UNKNOWN_BIN = "unknown_bin"  # no range holds the card: no such issuer
    NO_ELIGIBLE_ROUTE = "no_eligible_route"  # ranges hold it, but rules exclude or limit every network
    ALL_LINKS_DOWN = "all_links_down"  # eligible networks exist, none is up: stand-in or 91


class Verdict(enum.StrEnum):
    CHOSEN = "chosen"
    FALLBACK = "fallback"
    SKIPPED = "skipped"
    LINK_DOWN = "link down"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class ExplanationLine:
    """One candidate (or note) and why it was taken or skipped. Never holds card data beyond BINs."""

    subject: str
    verdict: Verdict
    reason: str

    def __str__(self) -> str:
        return f"{self.subject:10} {self.verdict.value:9} {self.reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteDecision:
    kind: DecisionKind
    network: str | None = None  # the chosen network (kind NETWORK)
    fallbacks: tuple[str, ...] = ()  # further eligible networks that are up, in order
    unavailable: tuple[str, ...] = ()  # eligible networks whose link is down, in order
    fees: Mapping[str, int] = field(default_factory=dict)  # eligible network -> fee, minor units
    standin: StandinRule | None = None
    explanation: tuple[ExplanationLine, ...] = ()

    @property
    def route(self) -> str | None:
        """ON_US, the network's name, or None (no route: the pipeline declines)."""
        if self.kind is DecisionKind.ON_US:
            return ON_US
        return self.network

    def explanation_text(self) -> str:
        return "\n".join(str(line) for line in self.explanation)


def _link_state(link_up: LinkState) -> Callable[[str], bool]:
    if isinstance(link_up, Mapping):
        state = link_up
        return lambda name: bool(state.get(name, False))
    return link_up


@dataclass(slots=True)
class _Candidate:
    network: str
    bin_range: BinRange | None  # None: forced without a range of its own
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    fee: int = 0


def decide(table: RoutingTable, *, pan: Pan, amount: int, currency: int, link_up: LinkState) -> RouteDecision:
    """Where a request for `pan` of `amount` (minor units of `currency`) goes, with every reason.

    `link_up` says which networks have a signed-on link now (a mapping: missing means down).
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError("amount must be an integer of 0 or more (minor units)")
    _check_currency(currency)
    is_up = _link_state(link_up)
    digits = pan.digits
    lines: list[ExplanationLine] = []

    matches = table.ranges_holding(digits)
    on_us = [r for r in matches if r.owner == ON_US]
    if on_us:
        best = on_us[0]
        lines.append(
            ExplanationLine(
                ON_US,
                Verdict.CHOSEN,
                f"BIN range #{best.range_id} {best.prefixes} (priority {best.priority}) is ours: "
                "authorized on our ledger; networks and rules are not consulted",
            )
        )
        return RouteDecision(kind=DecisionKind.ON_US, explanation=tuple(lines))
    lines.append(ExplanationLine(ON_US, Verdict.SKIPPED, "no on-us BIN range holds the card"))

    candidates: dict[str, _Candidate] = {}
    for bin_range in matches:  # best first, so the first range seen of a network is its best
        if bin_range.owner not in candidates:
            candidates[bin_range.owner] = _Candidate(
                bin_range.owner,
                bin_range,
                [f"BIN range #{bin_range.range_id} {bin_range.prefixes} priority {bin_range.priority}"],
            )
    rules = table.rules_applying(digits, currency)

    forcing = [r for r in rules if r.kind is RuleKind.FORCE]
    if forcing:
        force = forcing[0]
        for other in forcing[1:]:
            lines.append(
                ExplanationLine(
                    f"rule #{other.rule_id}",
                    Verdict.NOTE,
                    f"force {other.network} gives way to the more specific rule #{force.rule_id}",
                )
            )
        forced = candidates.get(force.network)
        if forced is None:
            forced = _Candidate(force.network, None, ["no BIN range of it holds the card"])
        forced.notes.append(f"forced by rule #{force.rule_id} (cards {force.scope})")
        for candidate in candidates.values():
            if candidate is not forced:
                candidate.skipped = f"rule #{force.rule_id} forces {force.network}"
        candidates = {force.network: forced, **{k: v for k, v in candidates.items() if k != force.network}}

    for candidate in candidates.values():
        if candidate.skipped:
            continue
        mine = [r for r in rules if r.network == candidate.network]
        excluded = next((r for r in mine if r.kind is RuleKind.EXCLUDE), None)
        if excluded is not None:
            candidate.skipped = f"excluded by rule #{excluded.rule_id} (cards {excluded.scope})"
            continue
        for limit in (r for r in mine if r.kind is RuleKind.LIMIT):
            if limit.amount_min is not None and amount < limit.amount_min:
                candidate.skipped = (
                    f"amount {format_minor(amount)} below the minimum {format_minor(limit.amount_min)} "
                    f"of rule #{limit.rule_id}"
                )
                break
            if limit.amount_max is not None and amount > limit.amount_max:
                candidate.skipped = (
                    f"amount {format_minor(amount)} above the maximum {format_minor(limit.amount_max)} "
                    f"of rule #{limit.rule_id}"
                )
                break
        if candidate.skipped:
            continue
        fee_rule = next((r for r in mine if r.kind is RuleKind.FEE), None)  # most specific first
        if fee_rule is not None:
            candidate.fee = fee_for(fee_rule, amount)
            candidate.notes.append(f"fee {format_minor(candidate.fee)} (rule #{fee_rule.rule_id})")

    eligible = sorted((c for c in candidates.values() if c.skipped is None), key=lambda c: c.fee)
    if len({c.fee for c in eligible}) > 1:
        lines.append(ExplanationLine("order", Verdict.NOTE, "cheapest fee first, then BIN priority"))
    chosen: _Candidate | None = None
    fallbacks: list[str] = []
    unavailable: list[str] = []
    for candidate in eligible:
        reason = "; ".join(candidate.notes)
        if not is_up(candidate.network):
            unavailable.append(candidate.network)
            lines.append(ExplanationLine(candidate.network, Verdict.LINK_DOWN, reason))
        elif chosen is None:
            chosen = candidate
            lines.append(ExplanationLine(candidate.network, Verdict.CHOSEN, reason + "; link up"))
        else:
            fallbacks.append(candidate.network)
            lines.append(ExplanationLine(candidate.network, Verdict.FALLBACK, reason + "; link up"))
    for candidate in candidates.values():
        if candidate.skipped is not None:
            lines.append(
                ExplanationLine(
                    candidate.network, Verdict.SKIPPED, "; ".join([*candidate.notes, candidate.skipped])
                )
            )
    for name in table.networks:
        if name not in candidates:
            lines.append(ExplanationLine(name, Verdict.SKIPPED, "no BIN range of it holds the card"))

    fees = {c.network: c.fee for c in eligible}
    if not candidates:
        kind = DecisionKind.UNKNOWN_BIN
    elif not eligible:
        kind = DecisionKind.NO_ELIGIBLE_ROUTE
    elif chosen is None:
        kind = DecisionKind.ALL_LINKS_DOWN
    else:
        kind = DecisionKind.NETWORK
    owner = chosen.network if chosen is not None else (unavailable[0] if unavailable else None)
    standin = table.standin_rule(owner, digits, currency) if owner is not None else None
    if owner is not None:
        if standin is None:
            lines.append(
                ExplanationLine(
                    "stand-in",
                    Verdict.NOTE,
                    f"no rule for {owner} in currency {currency}: no stand-in approval",
                )
            )
        else:
            within = (
                "this amount is within its per-transaction maximum"
                if standin.covers_amount(amount)
                else "this amount is not within its per-transaction maximum"
            )
            lines.append(
                ExplanationLine(
                    "stand-in", Verdict.NOTE, f"rule #{standin.standin_id}: {standin.describe()}; {within}"
                )
            )
    return RouteDecision(
        kind=kind,
        network=chosen.network if chosen is not None else None,
        fallbacks=tuple(fallbacks),
        unavailable=tuple(unavailable),
        fees=fees,
        standin=standin,
        explanation=tuple(lines),
    )
