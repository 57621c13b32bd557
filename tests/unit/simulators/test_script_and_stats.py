"""Script parsing, loadgen mix parsing and percentile maths."""

from __future__ import annotations

import pytest

from simulators.loadgen import Stats, _cards_for, parse_mix, percentile
from simulators.messages import SimulatorError, TxnType
from simulators.script import ScriptError, parse_script
from specs.demo import demo_pan
from specs.demo_networks import NETWORK_SPECIAL_CARDS


def test_line_script_parses_steps_names_and_references():
    """If a line script names a purchase and voids it, then both steps parse with their keys."""
    steps = parse_script("purchase amount=12.34 as=sale  # first\n\nvoid of=sale expect=00\n")
    assert [s.type for s in steps] == [TxnType.PURCHASE, TxnType.VOID]
    assert steps[0].get("amount") == "12.34" and steps[1].get("of") == "sale"


def test_json_script_keeps_decimals_as_text():
    """If a JSON script gives an amount as a number, then it stays exact decimal text, never a float."""
    steps = parse_script('[{"type": "purchase", "amount": 0.1}, {"type": "reversal", "of": "previous"}]')
    assert steps[0].get("amount") == "0.1" and steps[1].type is TxnType.REVERSAL


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("refund amount=abc", "line 1: amount"),
        ("purchase amount=1\nvoid of=nope", "line 2: of='nope' names no earlier step"),
        ("void", "needs an earlier transaction"),
        ("teleport amount=1", "unknown transaction type"),
        ("purchase colour=red", "unknown key 'colour'"),
        ("purchase amount", "expected key=value"),
        ("purchase amount=1 as=a\npurchase amount=1 as=a", "already used"),
        ('[{"amount": "1"}]', 'step 1: each step is an object with a "type"'),
        ("", "no steps"),
    ],
)
def test_bad_scripts_are_refused_with_where(text, message):
    """If a script is wrong, then ScriptError says where and what before anything is sent."""
    with pytest.raises(ScriptError, match=message.replace("(", r"\(")):
        parse_script(text)


def test_mix_parses_weights():
    """If a mix is given, then types and integer weights come out in order; a bare name weighs 1."""
    mix = parse_mix("purchase=90, balance=10,echo")
    assert mix.types == (TxnType.PURCHASE, TxnType.BALANCE, TxnType.ECHO) and mix.weights == (90, 10, 1)


@pytest.mark.parametrize(
    "text", ["", "purchase=0", "purchase=x", "void=1", "purchase=1,purchase=2", "nope=1"]
)
def test_bad_mix_is_refused(text):
    """If a mix is empty, weightless, repeated or names a type loadgen cannot generate, then it is refused."""
    with pytest.raises(SimulatorError, match="mix"):
        parse_mix(text)


def test_percentiles_use_nearest_rank():
    """If 1..1000 are the samples, then p50/p90/p99/p99.9/p100 are 500/900/990/999/1000."""
    samples = [float(i) for i in range(1, 1001)]
    assert [percentile(samples, p) for p in (50, 90, 99, 99.9, 100)] == [500, 900, 990, 999, 1000]


def test_percentile_of_one_sample_is_that_sample():
    """If there is one sample, then every percentile is it."""
    assert percentile([7.0], 50) == percentile([7.0], 99.9) == 7.0


def test_stats_summary_counts_codes_and_timeouts_apart():
    """If answers and a timeout are recorded, then codes count answers only and TPS uses answered requests."""
    stats = Stats()
    for code, ms in (("00", 1.0), ("00", 3.0), ("51", 2.0), (None, 0.0)):
        stats.record(code, ms)
    summary = stats.summary(2.0)
    assert summary["response_codes"] == {"00": 2, "51": 1} and summary["timeouts"] == 1
    assert summary["tps"] == 1.5 and summary["latency_ms"]["p50"] == 2.0


def test_card_bin_gives_the_network_simulators_ordinary_cards():
    """If loadgen is given a network simulator's first BIN, then each terminal gets cards of that BIN, none
    of netsim's special cards (its declines), and no two terminals share a card."""
    shares = [{card.pan for card in _cards_for(index, 4, "476173")} for index in range(4)]
    special = {demo_pan("476173", index) for _, index in NETWORK_SPECIAL_CARDS.values()}
    assert all(pan.startswith("476173") for share in shares for pan in share)
    assert not special & set().union(*shares)
    assert sum(len(share) for share in shares) == len(set().union(*shares)) == 80
