"""The simulated network's books: its card base, movements applied once, reversals once, the position."""

from __future__ import annotations

import gc

from hypothesis import given
from hypothesis import strategies as st

from simulators.netsim.ledger import CardBase, Entry, Ledger
from specs.demo import demo_pan
from specs.demo_networks import NETWORK_CARD_COUNT, NETWORK_OPENING_BALANCE, network

VISA = network("visa")
PAN = demo_pan("476173", 40)
OUR_CARD = demo_pan("990001", 1)


def entry(role="issuer", effect="debit", amount=1000, pan=PAN, currency=840) -> Entry:
    return Entry(
        role=role,
        effect=effect,
        pan=pan,
        currency=currency,
        amount_minor=amount,
        mti="0200",
        stan="000001",
        transmission="0101000000",
        rrn="000000000001",
        acquirer_id="990001",
        auth_code="V00001",
    )


def key(n: int) -> tuple[str, str, str, str]:
    return ("0200", f"{n:06d}", "0101000000", "990001")


def test_card_base_issues_its_bins_numbered_cards_only():
    """If a PAN is tried, then only Luhn-valid cards 1..N of the network's BINs exist."""
    cards = CardBase(VISA)
    assert cards.find(demo_pan("400555", NETWORK_CARD_COUNT)) is not None
    assert cards.find(demo_pan("400555", NETWORK_CARD_COUNT + 1)) is None
    assert cards.find(demo_pan("622126", 1)) is None
    assert cards.find(PAN[:-1] + str((int(PAN[-1]) + 1) % 10)) is None


def test_special_cards_follow_the_shared_table():
    """If the special cards are looked up, then they are lost, stolen, expired, unfunded and on another PIN."""
    cards = CardBase(VISA)
    assert cards.find(demo_pan("476173", 2)).posted[840] == 0
    assert cards.find(demo_pan("476173", 3)).status == "lost"
    assert cards.find(demo_pan("476173", 4)).status == "stolen"
    assert cards.find(demo_pan("476173", 5)).expiry_yymm == "2001"
    assert cards.find(demo_pan("476173", 6)).pin == "4321"
    assert cards.find(demo_pan("400555", 3)).status == "active"


def test_card_repr_is_masked():
    """If a card is printed, then its PAN shows as first 6 + last 4 and its PIN not at all."""
    text = repr(CardBase(VISA).find(PAN))
    assert PAN not in text and "1234" not in text and PAN[:6] in text


def test_movement_applies_once_per_key():
    """If the same key is applied twice, then the second is refused and the card is debited once."""
    ledger = Ledger(CardBase(VISA))
    assert ledger.apply(key(1), entry()) is True
    assert ledger.apply(key(1), entry()) is False
    assert ledger.cards.find(PAN).posted[840] == NETWORK_OPENING_BALANCE - 1000


def test_reversal_applies_once_and_partial_reversal_gives_back_its_amount():
    """If an entry is reversed by 400 and then again, then 400 comes back once."""
    ledger = Ledger(CardBase(VISA))
    ledger.apply(key(1), entry())
    assert ledger.reverse(key(1), 400) == 400
    assert ledger.reverse(key(1)) == 0
    assert ledger.cards.find(PAN).posted[840] == NETWORK_OPENING_BALANCE - 600
    assert ledger.positions[840].net_minor == 600


def test_reversal_of_an_unknown_key_changes_nothing():
    """If a key was never applied, then reversing it reverses 0."""
    assert Ledger(CardBase(VISA)).reverse(key(9)) == 0


def test_position_sign_issuer_positive_acquirer_negative():
    """If netsim approves 1000 as issuer and the member approves 300 for netsim's acquirer, then net_minor is 700."""
    ledger = Ledger(CardBase(VISA))
    ledger.apply(key(1), entry())
    ledger.apply(key(2), entry(role="acquirer", amount=300, pan=OUR_CARD))
    assert ledger.position_json()["840"] == {
        "net_minor": 700,
        "as_issuer_minor": 1000,
        "as_acquirer_minor": 300,
        "issuer_holds_minor": 0,
        "acquirer_holds_minor": 0,
    }


def test_holds_reduce_available_but_not_posted_or_net():
    """If a hold is applied, then available drops, posted and net_minor stay, and its reversal releases it."""
    ledger = Ledger(CardBase(VISA))
    ledger.apply(key(1), entry(effect="hold", amount=250))
    card = ledger.cards.find(PAN)
    assert (card.posted[840], card.available(840)) == (NETWORK_OPENING_BALANCE, NETWORK_OPENING_BALANCE - 250)
    assert ledger.positions[840].net_minor == 0
    ledger.reverse(key(1))
    assert card.available(840) == NETWORK_OPENING_BALANCE


def test_history_forgets_the_oldest_beyond_its_bound():
    """If more entries than history_max are applied, then the oldest one can no longer be reversed."""
    ledger = Ledger(CardBase(VISA), history_max=2)
    for n in range(3):
        ledger.apply(key(n), entry(amount=10))
    assert len(ledger) == 2
    assert ledger.reverse(key(0)) == 0
    assert ledger.reverse(key(2)) == 10


operation = st.tuples(
    st.sampled_from(["apply", "reverse"]),
    st.integers(0, 5),  # key
    st.sampled_from(["issuer", "acquirer"]),
    st.sampled_from(["debit", "credit"]),
    st.integers(1, 10_000),
    st.none() | st.integers(0, 12_000),
)


@given(st.lists(operation, max_size=40))
def test_position_and_balance_match_a_simple_model(operations):
    """If any sequence of applies and reversals runs, then net_minor and the card balance equal a model's sums."""
    ledger = Ledger(CardBase(VISA))
    applied: dict[int, tuple[str, str, int]] = {}
    reversed_keys: set[int] = set()
    model_net = 0
    model_card = NETWORK_OPENING_BALANCE
    for op, k, role, effect, amount, partial in operations:
        sign = -1 if effect == "credit" else 1
        if op == "apply":
            pan = PAN if role == "issuer" else OUR_CARD
            if ledger.apply(key(k), entry(role=role, effect=effect, amount=amount, pan=pan)):
                assert k not in applied
                applied[k] = (role, effect, amount)
                model_net += sign * amount * (1 if role == "issuer" else -1)
                model_card -= sign * amount if role == "issuer" else 0
        else:
            got = ledger.reverse(key(k), partial)
            if k in applied and k not in reversed_keys:
                role, effect, amount = applied[k]
                expected = amount if partial is None else min(partial, amount)
                assert got == expected
                reversed_keys.add(k)
                sign = -1 if effect == "credit" else 1
                model_net -= sign * expected * (1 if role == "issuer" else -1)
                model_card += sign * expected if role == "issuer" else 0
            else:
                assert got == 0
    position = ledger.positions.get(840)
    assert (position.net_minor if position else 0) == model_net
    assert ledger.cards.find(PAN).posted[840] == model_card


def test_entries_are_kept_as_values_the_cycle_collector_skips():
    """If entries are applied and one reversed, then `get` shows each as it is now (a copy, changed only
    through `reverse`) and none of what the ledger keeps is walked by Python's cycle collector (which,
    with up to `history_max` entries as objects, paused the simulator on every full collection)."""
    ledger = Ledger(CardBase(VISA))
    for n in range(3):
        assert ledger.apply(key(n), entry(amount=100 + n))
    assert ledger.reverse(key(1), 40) == 40
    seen = ledger.get(key(1))
    assert seen is not None
    assert (seen.amount_minor, seen.reversed_minor, seen.reversal_applied) == (101, 40, True)
    seen.reversal_applied = False  # a copy: the ledger's own state does not change
    assert ledger.reverse(key(1)) == 0
    assert ledger.get(key(0)) == entry(amount=100)
    for _ in range(3):
        gc.collect()  # untracks a tuple of plain values
    assert not any(gc.is_tracked(kept) for kept in ledger._entries.values())
