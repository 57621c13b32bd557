"""Routing decisions (switch.domain.routing): BIN ranges and priorities, on-us, force/exclude/limit/fee
rules, link state and fallbacks, stand-in rules, explanations; properties against a brute-force model."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.domain.model import Pan
from switch.domain.routing import (
    ON_US,
    BinRange,
    DecisionKind,
    PrefixRange,
    RouteDecision,
    RouteRule,
    RoutingTable,
    RuleKind,
    StandinRule,
    Verdict,
    decide,
    fee_for,
)

VISA_PAN = Pan("4761730000000013")
SHETAB_PAN = Pan("6219860000000010")
OUR_PAN = Pan("9900010000000019")
NETWORKS = ("cups", "shetab", "visa")
ALL_UP = {name: True for name in NETWORKS}


def _range(range_id: int, owner: str, bins: str, priority: int = 0) -> BinRange:
    return BinRange(
        range_id=range_id, owner=owner, prefixes=PrefixRange.parse(bins, length_min=6), priority=priority
    )


def _rule(rule_id: int, kind: RuleKind, network: str, bins: str = "*", **kw: int | None) -> RouteRule:
    return RouteRule(rule_id=rule_id, kind=kind, network=network, scope=PrefixRange.parse(bins), **kw)  # type: ignore[arg-type]


def _standin(
    standin_id: int, network: str, bins: str = "*", currency: int = 840, per_txn: int = 5000
) -> StandinRule:
    return StandinRule(
        standin_id=standin_id,
        network=network,
        scope=PrefixRange.parse(bins),
        currency=currency,
        per_transaction_amount_max=per_txn,
        daily_amount_max=10_000,
        daily_count_max=3,
    )


# The demo's shape: specific BINs at priority 10, broad catch-alls at 0 (Shetab's 621986 lies in CUPS's 62).
DEMO_RANGES = (
    _range(1, "visa", "476173", 10),
    _range(2, "visa", "400000-499999"),
    _range(3, "cups", "620000-629999"),
    _range(4, "shetab", "621986", 10),
    _range(5, ON_US, "990001", 10),
)


def _table(
    ranges: Sequence[BinRange] = DEMO_RANGES,
    rules: Sequence[RouteRule] = (),
    standin: Sequence[StandinRule] = (),
    networks: Sequence[str] = NETWORKS,
) -> RoutingTable:
    return RoutingTable(
        networks=tuple(networks), bin_ranges=tuple(ranges), rules=tuple(rules), standin_rules=tuple(standin)
    )


def _decide(
    table: RoutingTable, pan: Pan = VISA_PAN, amount: int = 2500, currency: int = 840, up=None
) -> RouteDecision:
    return decide(table, pan=pan, amount=amount, currency=currency, link_up=ALL_UP if up is None else up)


def _line(decision: RouteDecision, subject: str):
    return next(line for line in decision.explanation if line.subject == subject)


# --- values ---------------------------------------------------------------------------------------------


def test_prefix_range_parses_single_range_and_star():
    """If BINS is 476173, 400000-499999 or *, then the range is that prefix, those ends, or every card."""
    assert PrefixRange.parse("476173") == PrefixRange("476173", "476173")
    assert PrefixRange.parse("400000-499999") == PrefixRange("400000", "499999")
    assert PrefixRange.parse("*").holds("1234567890123")


@pytest.mark.parametrize(
    ("text", "length_min"),
    [("47a173", 0), ("4000-499999", 0), ("499999-400000", 0), ("4" * 13, 0), ("47617", 6), ("*", 6), ("", 0)],
)
def test_prefix_range_rejects_malformed_text(text, length_min):
    """If BINS has letters, unequal ends, reversed ends, too many or too few digits, then it is refused."""
    with pytest.raises(ValueError):
        PrefixRange.parse(text, length_min=length_min)


def test_prefix_range_holds_by_leading_digits():
    """If a PAN's first digits lie between the ends, then the range holds it; otherwise not."""
    prefixes = PrefixRange("400000", "499999")
    assert prefixes.holds("4761730000000013")
    assert not prefixes.holds("5000000000000000")


def test_bin_range_needs_six_digits():
    """If a BIN range has fewer than 6 digits, then it is refused."""
    with pytest.raises(ValueError):
        BinRange(range_id=1, owner="visa", prefixes=PrefixRange("4", "4"))


@pytest.mark.parametrize(
    "kw",
    [
        {"kind": RuleKind.LIMIT, "amount_max": 100},  # no currency
        {"kind": RuleKind.LIMIT, "currency": 840},  # no bounds
        {"kind": RuleKind.LIMIT, "currency": 840, "amount_min": 10, "amount_max": 5},
        {"kind": RuleKind.LIMIT, "currency": 840, "amount_max": -1},
        {"kind": RuleKind.EXCLUDE, "amount_max": 100},
        {"kind": RuleKind.FORCE, "fee_fixed": 5},
        {"kind": RuleKind.FEE, "fee_fixed": 5},  # no currency
        {"kind": RuleKind.FEE, "currency": 840, "fee_bps": 10_001},
        {"kind": RuleKind.FORCE, "currency": 1000},
    ],
)
def test_rule_of_the_wrong_shape_is_refused(kw):
    """If a rule's amounts do not fit its kind (or are negative, or lack a currency), then it is refused."""
    with pytest.raises(ValueError):
        RouteRule(rule_id=1, network="visa", **kw)


def test_standin_rule_needs_positive_maxima_within_the_daily_one():
    """If a stand-in maximum is 0 or the per-transaction one exceeds the daily one, then it is refused."""
    with pytest.raises(ValueError):
        _standin(1, "visa", per_txn=0)
    with pytest.raises(ValueError):
        _standin(1, "visa", per_txn=20_000)


def test_table_refuses_rows_of_unknown_networks():
    """If a range or rule names a network the table does not list, then the table is refused."""
    with pytest.raises(ValueError, match="unknown network 'jcb'"):
        _table(ranges=[_range(1, "jcb", "352800")])
    with pytest.raises(ValueError, match="unknown network 'jcb'"):
        _table(rules=[_rule(1, RuleKind.EXCLUDE, "jcb")])


def test_fee_rounds_the_rate_up():
    """If a fee rule has a fixed part and a rate, then the fee is fixed + the rate's part rounded up."""
    rule = _rule(1, RuleKind.FEE, "visa", currency=840, fee_fixed=10, fee_bps=25)
    assert fee_for(rule, 2500) == 10 + 7  # 6.25 -> 7
    assert fee_for(rule, 0) == 10


# --- decisions ------------------------------------------------------------------------------------------


def test_card_of_ours_is_on_us_whatever_the_networks_say():
    """If an on-us range holds the PAN, then it routes on-us even against a higher-priority network range."""
    table = _table(ranges=[*DEMO_RANGES, _range(9, "visa", "990000-990009", 99)])
    decision = _decide(table, OUR_PAN)
    assert decision.kind is DecisionKind.ON_US and decision.route == ON_US
    assert decision.fallbacks == () and decision.standin is None


def test_highest_priority_range_wins_and_the_next_is_a_fallback():
    """If ranges of two networks hold the PAN, then the higher priority is the route and the other a fallback."""
    decision = _decide(_table(), SHETAB_PAN)
    assert (decision.route, decision.fallbacks) == ("shetab", ("cups",))


def test_equal_priorities_prefer_the_more_specific_range():
    """If two networks' ranges hold the PAN at equal priority, then the longer (narrower) range wins."""
    table = _table(ranges=[_range(1, "cups", "476100-476199"), _range(2, "visa", "47617300")])
    assert _decide(table).route == "visa"


def test_force_rule_routes_to_its_network_without_a_range():
    """If a force rule applies, then its network is the only candidate, even with no BIN range of its own."""
    table = _table(rules=[_rule(7, RuleKind.FORCE, "cups", "476173")])
    decision = _decide(table)
    assert (decision.route, decision.fallbacks) == ("cups", ())
    assert "rule #7 forces cups" in _line(decision, "visa").reason


def test_more_specific_force_rule_wins():
    """If two force rules apply, then the one with the more specific scope decides."""
    table = _table(
        rules=[_rule(1, RuleKind.FORCE, "cups", "4"), _rule(2, RuleKind.FORCE, "shetab", "47617300")]
    )
    assert _decide(table).route == "shetab"


def test_exclude_beats_force():
    """If a network is both forced and excluded for the card, then it is not used and nothing else is."""
    table = _table(rules=[_rule(1, RuleKind.FORCE, "cups"), _rule(2, RuleKind.EXCLUDE, "cups", "476173")])
    decision = _decide(table)
    assert decision.kind is DecisionKind.NO_ELIGIBLE_ROUTE and decision.route is None


def test_excluded_network_is_skipped_for_the_next():
    """If the preferred network is excluded for the card, then the fallback becomes the route."""
    table = _table(rules=[_rule(3, RuleKind.EXCLUDE, "shetab", "621986")])
    decision = _decide(table, SHETAB_PAN)
    assert (decision.route, decision.fallbacks) == ("cups", ())
    assert "excluded by rule #3" in _line(decision, "shetab").reason


def test_amount_above_a_limit_skips_the_route():
    """If the amount is above a limit rule's maximum, then that network is skipped, saying why."""
    table = _table(rules=[_rule(4, RuleKind.LIMIT, "shetab", currency=840, amount_max=2000)])
    decision = _decide(table, SHETAB_PAN, amount=2500)
    assert decision.route == "cups"
    assert "amount 25.00 above the maximum 20.00 of rule #4" in _line(decision, "shetab").reason


def test_amount_below_a_limit_skips_the_route():
    """If the amount is below a limit rule's minimum, then that network is skipped."""
    table = _table(rules=[_rule(4, RuleKind.LIMIT, "shetab", currency=840, amount_min=3000)])
    assert _decide(table, SHETAB_PAN, amount=2500).route == "cups"


def test_limit_in_another_currency_does_not_apply():
    """If a limit rule is for another currency, then it does not limit this transaction."""
    table = _table(rules=[_rule(4, RuleKind.LIMIT, "shetab", currency=364, amount_max=1)])
    assert _decide(table, SHETAB_PAN, amount=2500).route == "shetab"


def test_cheapest_fee_wins_over_priority():
    """If the lower-priority network is cheaper, then it is the route and the other its fallback."""
    table = _table(rules=[_rule(5, RuleKind.FEE, "shetab", currency=840, fee_fixed=50)])
    decision = _decide(table, SHETAB_PAN)
    assert (decision.route, decision.fallbacks) == ("cups", ("shetab",))
    assert dict(decision.fees) == {"cups": 0, "shetab": 50}


def test_most_specific_fee_rule_applies():
    """If two fee rules of a network apply, then the one with the more specific scope prices it."""
    table = _table(
        rules=[
            _rule(1, RuleKind.FEE, "shetab", currency=840, fee_fixed=50),
            _rule(2, RuleKind.FEE, "shetab", "621986", currency=840, fee_fixed=0),
            _rule(3, RuleKind.FEE, "cups", currency=840, fee_fixed=10),
        ]
    )
    assert _decide(table, SHETAB_PAN).route == "shetab"


def test_link_down_falls_back_to_the_next_route():
    """If the preferred network's link is down, then the next eligible network is the route."""
    decision = _decide(_table(), SHETAB_PAN, up={"shetab": False, "cups": True})
    assert (decision.route, decision.unavailable) == ("cups", ("shetab",))
    assert _line(decision, "shetab").verdict is Verdict.LINK_DOWN


def test_all_links_down_keeps_the_stand_in_rule_of_the_preferred_network():
    """If every eligible link is down, then there is no route and the stand-in rule is the preferred one's."""
    table = _table(standin=[_standin(1, "shetab"), _standin(2, "cups")])
    decision = _decide(table, SHETAB_PAN, up={})
    assert decision.kind is DecisionKind.ALL_LINKS_DOWN and decision.route is None
    assert decision.unavailable == ("shetab", "cups")
    assert decision.standin is not None and decision.standin.standin_id == 1


def test_missing_link_state_counts_as_down():
    """If the link state mapping does not mention a network, then its link is taken as down."""
    assert _decide(_table(), SHETAB_PAN, up={"cups": True}).route == "cups"


def test_link_state_may_be_a_callable():
    """If the link state is a callable, then it is asked per network."""
    assert _decide(_table(), SHETAB_PAN, up=lambda name: name != "shetab").route == "cups"


def test_unknown_bin_has_no_route():
    """If no range holds the PAN, then the decision is unknown BIN with no stand-in."""
    decision = _decide(_table(), Pan("5000000000000000"))
    assert decision.kind is DecisionKind.UNKNOWN_BIN and decision.route is None and decision.standin is None


def test_stand_in_rule_is_the_most_specific_in_the_currency():
    """If several stand-in rules of the route's network apply, then the most specific one in the currency wins."""
    table = _table(
        standin=[_standin(1, "visa"), _standin(2, "visa", "476173"), _standin(3, "visa", "476173", 978)]
    )
    decision = _decide(table)
    assert decision.standin is not None and decision.standin.standin_id == 2
    assert _decide(table, currency=356).standin is None


def test_stand_in_covers_amounts_up_to_its_maximum():
    """If an amount is above the per-transaction maximum (or 0), then the stand-in rule does not cover it."""
    rule = _standin(1, "visa", per_txn=5000)
    assert rule.covers_amount(5000) and not rule.covers_amount(5001) and not rule.covers_amount(0)


def test_explanation_names_every_network_and_no_card_number():
    """If a decision is explained, then every network appears with a verdict and the PAN past its BIN does not."""
    decision = _decide(_table(standin=[_standin(1, "visa")]))
    text = decision.explanation_text()
    assert {line.subject for line in decision.explanation} >= {ON_US, *NETWORKS, "stand-in"}
    assert VISA_PAN.digits not in text and VISA_PAN.digits[6:] not in text


def test_negative_amount_is_refused():
    """If the amount is negative, then decide refuses it (a bug upstream, not a decline)."""
    with pytest.raises(ValueError):
        _decide(_table(), amount=-1)


# --- properties -----------------------------------------------------------------------------------------

# Few digits and short prefixes, so ranges, scopes and PANs overlap often.
_DIGITS = "012"
_NAMES = ("visa", "cups", "shetab", "jcb")
_prefix_pair = st.integers(min_value=6, max_value=7).flatmap(
    lambda n: st.tuples(
        st.text(_DIGITS, min_size=n - 1, max_size=n - 1), st.text(_DIGITS, min_size=n - 1, max_size=n - 1)
    )
)
_pans = st.text(_DIGITS, min_size=15, max_size=15).map(lambda rest: Pan("4" + rest))


@st.composite
def _ranges(draw, networks: tuple[str, ...], on_us: bool = False) -> list[BinRange]:
    owners = (*networks, ON_US) if on_us else networks
    out = []
    for i in range(draw(st.integers(min_value=0, max_value=8))):
        a, b = draw(_prefix_pair)
        low, high = sorted(("4" + a, "4" + b))
        out.append(
            BinRange(
                range_id=i + 1,
                owner=draw(st.sampled_from(owners)),
                prefixes=PrefixRange(low, high),
                priority=draw(st.integers(min_value=-1, max_value=2)),
            )
        )
    return out


@st.composite
def _rules(draw, networks: tuple[str, ...]) -> list[RouteRule]:
    out = []
    for i in range(draw(st.integers(min_value=0, max_value=6))):
        kind = draw(st.sampled_from(RuleKind))
        length = draw(st.integers(min_value=0, max_value=4))
        a = draw(st.text(_DIGITS, min_size=length, max_size=length))
        b = draw(st.text(_DIGITS, min_size=length, max_size=length))
        low, high = sorted((("4" + a)[:length], ("4" + b)[:length]))
        kw: dict[str, int | None] = {}
        if kind is RuleKind.LIMIT:
            lo, hi = sorted(draw(st.lists(st.integers(min_value=0, max_value=3000), min_size=2, max_size=2)))
            kw = {"currency": draw(st.sampled_from((840, 978))), "amount_min": lo, "amount_max": hi}
        elif kind is RuleKind.FEE:
            kw = {
                "currency": draw(st.sampled_from((840, 978))),
                "fee_fixed": draw(st.integers(min_value=0, max_value=50)),
                "fee_bps": draw(st.integers(min_value=0, max_value=100)),
            }
        else:
            kw = {"currency": draw(st.sampled_from((None, 840)))}
        out.append(
            RouteRule(
                rule_id=i + 1,
                kind=kind,
                network=draw(st.sampled_from(networks)),
                scope=PrefixRange(low, high),
                **kw,  # type: ignore[arg-type]
            )
        )
    return out


@st.composite
def _worlds(draw, with_rules: bool = True, on_us: bool = False):
    networks = tuple(draw(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=4, unique=True)))
    table = RoutingTable(
        networks=networks,
        bin_ranges=tuple(draw(_ranges(networks, on_us))),
        rules=tuple(draw(_rules(networks))) if with_rules else (),
    )
    up = {name: draw(st.booleans()) for name in networks}
    return (
        table,
        draw(_pans),
        draw(st.integers(min_value=0, max_value=3000)),
        draw(st.sampled_from((840, 978))),
        up,
    )


def _applying(table: RoutingTable, pan: Pan, currency: int, kind: RuleKind, network: str) -> list[RouteRule]:
    return [
        r for r in table.rules if r.kind is kind and r.network == network and r.applies(pan.digits, currency)
    ]


@given(_worlds())
def test_property_route_and_fallbacks_are_up_not_excluded_and_within_limits(world):
    """If any table decides, then the route and fallbacks are up, not excluded, and within every limit."""
    table, pan, amount, currency, up = world
    decision = decide(table, pan=pan, amount=amount, currency=currency, link_up=up)
    used = [decision.network, *decision.fallbacks] if decision.network else list(decision.fallbacks)
    for network in used:
        assert up[network]
        assert not _applying(table, pan, currency, RuleKind.EXCLUDE, network)
        for limit in _applying(table, pan, currency, RuleKind.LIMIT, network):
            assert (
                (limit.amount_min or 0)
                <= amount
                <= (limit.amount_max if limit.amount_max is not None else amount)
            )
    assert not set(used) & set(decision.unavailable)
    assert all(not up[n] for n in decision.unavailable)


@given(_worlds(with_rules=False))
def test_property_without_rules_the_best_matching_range_wins(world):
    """If there are no rules and every link is up, then the route is the owner of the best matching range."""
    table, pan, amount, currency, _ = world
    holding = [r for r in table.bin_ranges if r.prefixes.holds(pan.digits)]
    decision = decide(table, pan=pan, amount=amount, currency=currency, link_up=lambda _: True)
    if not holding:
        assert decision.kind is DecisionKind.UNKNOWN_BIN
    else:
        best = min(holding, key=lambda r: (-r.priority, -r.prefixes.length, r.prefixes.span, r.owner))
        assert decision.route == best.owner


@given(_worlds(on_us=True))
def test_property_on_us_range_always_routes_on_us(world):
    """If an on-us range holds the PAN, then the decision is on-us whatever the rules and links."""
    table, pan, amount, currency, up = world
    decision = decide(table, pan=pan, amount=amount, currency=currency, link_up=up)
    ours = any(r.owner == ON_US and r.prefixes.holds(pan.digits) for r in table.bin_ranges)
    assert (decision.kind is DecisionKind.ON_US) == ours


@given(_worlds())
def test_property_fees_never_decrease_along_the_route_order(world):
    """If a decision has a route and fallbacks, then their fees never decrease in that order."""
    table, pan, amount, currency, up = world
    decision = decide(table, pan=pan, amount=amount, currency=currency, link_up=up)
    order = [decision.network, *decision.fallbacks] if decision.network else []
    fees = [decision.fees[n] for n in order]
    assert fees == sorted(fees)


@given(_worlds())
def test_property_a_force_rule_admits_its_network_only(world):
    """If a force rule applies, then no network but the most specific forced one is route or fallback."""
    table, pan, amount, currency, up = world
    forcing = sorted(
        (r for r in table.rules if r.kind is RuleKind.FORCE and r.applies(pan.digits, currency)),
        key=RouteRule.precedence_key,
    )
    decision = decide(table, pan=pan, amount=amount, currency=currency, link_up=up)
    if forcing and decision.kind is not DecisionKind.ON_US:
        assert set(filter(None, [decision.network, *decision.fallbacks, *decision.unavailable])) <= {
            forcing[0].network
        }


@given(_worlds(on_us=True), st.randoms(use_true_random=False))
def test_property_order_of_the_rows_does_not_matter(world, rnd):
    """If the table's rows come in another order, then the decision is the same."""
    table, pan, amount, currency, up = world
    ranges, rules = list(table.bin_ranges), list(table.rules)
    rnd.shuffle(ranges)
    rnd.shuffle(rules)
    shuffled = RoutingTable(
        networks=tuple(reversed(table.networks)), bin_ranges=tuple(ranges), rules=tuple(rules)
    )
    a = decide(table, pan=pan, amount=amount, currency=currency, link_up=up)
    b = decide(shuffled, pan=pan, amount=amount, currency=currency, link_up=up)
    assert (a.kind, a.network, a.fallbacks, a.unavailable, a.explanation) == (
        b.kind,
        b.network,
        b.fallbacks,
        b.unavailable,
        b.explanation,
    )


@given(_worlds(on_us=True), _pans)
def test_property_index_finds_exactly_the_ranges_a_scan_finds(world, pan):
    """If the table is asked which ranges hold a PAN, then it finds the same ranges as a linear scan."""
    table = world[0]
    scanned = sorted((r for r in table.bin_ranges if r.prefixes.holds(pan.digits)), key=BinRange.order_key)
    assert table.ranges_holding(pan.digits) == scanned
