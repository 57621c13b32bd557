"""Fault settings and draws: validation by key, and seeded draws that repeat exactly."""

from __future__ import annotations

import random

import pytest

from simulators.netsim.faults import FAULT_KEYS, Draw, FaultError, Faults, draw


def draws(faults: Faults, seed: int, count: int = 200) -> list[Draw]:
    rng = random.Random(seed)
    return [draw(faults, rng, financial=True) for _ in range(count)]


def test_same_seed_gives_the_same_sequence_of_fates():
    """If two runs use the same seed and faults, then their draws are identical."""
    faults = Faults(no_answer_share=0.3, late_share=0.2, duplicate_share=0.1, latency_jitter_ms=50)
    assert draws(faults, 7) == draws(faults, 7)
    assert draws(faults, 7) != draws(faults, 8)


def test_shares_of_zero_never_fire_and_of_one_always_fire():
    """If every share is 0 the fate is a plain answer; if every share is 1 every fate is late, duplicated, unanswered and declined."""
    assert all(d.answer and not (d.late or d.duplicate or d.decline or d.reject) for d in draws(Faults(), 1))
    everything = Faults(no_answer_share=1, late_share=1, duplicate_share=1, decline_share=1, late_ms=700)
    assert all(
        not d.answer and d.late and d.duplicate and d.decline and d.delay_s == 0.7
        for d in draws(everything, 1)
    )


def test_share_is_roughly_its_probability():
    """If no_answer_share is 0.25, then about a quarter of 4000 seeded draws go unanswered."""
    lost = sum(not d.answer for d in draws(Faults(no_answer_share=0.25), 3, 4000))
    assert 850 < lost < 1150


def test_reject_wins_over_every_other_fault():
    """If reject_share is 1, then the fate is a reject and nothing else."""
    faults = Faults(reject_share=1, no_answer_share=1, decline_share=1)
    assert all(d.reject and d.answer and not d.decline for d in draws(faults, 2))


def test_network_management_gets_latency_only():
    """If the message is network management, then only latency applies, whatever the shares."""
    faults = Faults(latency_ms=40, no_answer_share=1, reject_share=1, duplicate_share=1)
    fate = draw(faults, random.Random(0), financial=False)
    assert (fate.delay_s, fate.answer, fate.reject, fate.duplicate) == (0.04, True, False, False)


def test_jitter_stays_within_its_bound():
    """If latency_jitter_ms is 30 on a 10 ms latency, then every delay is 10 to 40 ms."""
    delays = [d.delay_s for d in draws(Faults(latency_ms=10, latency_jitter_ms=30), 5, 500)]
    assert min(delays) >= 0.010 and max(delays) <= 0.040 and len(set(delays)) > 10


def test_updated_changes_the_given_keys_only():
    """If a subset of keys is updated, then the others keep their values and the original is untouched."""
    base = Faults(latency_ms=5)
    new = base.updated({"late_share": 0.5, "drop_after": None, "decline_code": "62"})
    assert (new.latency_ms, new.late_share, new.decline_code) == (5, 0.5, "62")
    assert base.late_share == 0.0


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"nope": 1}, "unknown fault key"),
        ({"late_share": -0.1}, "late_share"),
        ({"late_share": True}, "late_share"),
        ({"late_ms": 1.5}, "late_ms"),
        ({"latency_ms": 600_001}, "latency_ms"),
        ({"decline_code": "5"}, "decline_code"),
        ({"drop_after": -3}, "drop_after"),
        ({"bad_kcv": "yes"}, "bad_kcv"),
    ],
)
def test_bad_values_raise_naming_the_key(changes, named):
    """If a value breaks its rule, then FaultError names the key."""
    with pytest.raises(FaultError, match=named):
        Faults().updated(changes)


def test_reject_share_needs_a_header():
    """If the dialect has no header, then a reject_share other than 0 is refused."""
    with pytest.raises(FaultError, match="header"):
        Faults().updated({"reject_share": 0.1}, has_header=False)
    assert Faults().updated({"reject_share": 0.0}, has_header=False).reject_share == 0.0


def test_every_fault_is_in_the_json_form():
    """If faults are shown, then every key of the contract is present."""
    assert tuple(Faults().to_json()) == FAULT_KEYS
