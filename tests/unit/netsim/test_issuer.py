"""The issuer's decisions as pure code: identities, field 90, and answers that need no socket."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

from simulators.netsim.issuer import Issuer, identity, original_identity, pan_of
from simulators.netsim.keys import ZpkRing
from simulators.netsim.ledger import CardBase, Ledger
from specs.demo import demo_pan
from specs.demo_networks import network
from switch.iso.codec import Codec
from switch.iso.message import Message

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
SHETAB = network("shetab")
PAN = demo_pan("603799", 60)


def issuer() -> Issuer:
    return Issuer(SHETAB, codec=Codec("shetab"), ledger=Ledger(CardBase(SHETAB)), ring=ZpkRing(grace_s=0))


def request(mti: str = "0200", stan: str = "000001", extra: dict[int, str] | None = None) -> Message:
    fields = {
        2: PAN,
        3: "000000",
        4: "000000001000",
        7: "0304050607",
        11: stan,
        12: "050607",
        13: "0304",
        32: "990001",
        37: "260630000001",
        41: "POS00001",
        42: "DEMOMERCHANT001",
        49: "364",
    }
    fields.update(extra or {})
    return Message(mti, fields)


def test_field90_identity_matches_the_original_whatever_the_zero_padding():
    """If field 90 carries the acquirer ID as n11, then it names the same original as field 32's LLVAR."""
    original = request()
    f90 = "0200" + "000001" + "0304050607" + "00000990001" + "0" * 11
    assert original_identity(f90) == identity(original)


def test_repeat_bit_is_cleared_in_identities():
    """If a 0421 repeat names the same original, then its own identity is the 0420's."""
    assert identity(request("0421"))[0] == "0420"
    named = original_identity("0201" + "0" * 38)
    assert named is not None and named[0] == "0200"


def test_malformed_field90_names_nothing():
    """If field 90 is short, not digits, or names a response MTI, then it names no original."""
    assert original_identity("0200") is None
    assert original_identity("X" * 42) is None
    assert original_identity("0210" + "0" * 38) is None


def test_pan_comes_from_field_2_or_track_2():
    """If a request carries only track 2, then the PAN is read before its separator."""
    assert pan_of(Message("0200", {35: f"{PAN}D30122011"})) == PAN
    assert pan_of(Message("0200", {35: f"{PAN}=30122011"})) == PAN
    assert pan_of(Message("0200", {3: "000000"})) is None


def test_request_without_sign_on_is_91_and_applies_nothing():
    """If the connection has not signed on, then the answer is 91 and the ledger is empty."""
    subject = issuer()
    outcome = subject.handle(request(), now=0.0, now_utc=NOW, signed_on=False)
    assert (outcome.response.get(39), outcome.outcome) == ("91", "not_signed_on")
    assert len(subject.ledger) == 0


def test_approval_without_pin_block_debits_and_clears():
    """If a request without PIN block is within funds, then it is approved, applied and given a clearing record."""
    subject = issuer()
    outcome = subject.handle(request(), now=0.0, now_utc=NOW, signed_on=True)
    assert outcome.response.get(39) == "00"
    assert outcome.clearing is not None and outcome.clearing.masked_pan == "603799******" + PAN[-4:]
    assert outcome.clearing.business_date == "20260304"


def test_advice_for_a_card_it_does_not_issue_is_acked_and_not_applied():
    """If an advice names a card outside the base, then it is acked 00 and nothing is applied."""
    subject = issuer()
    outcome = subject.handle(
        request("0220", extra={2: demo_pan("603799", 9999)}), now=0.0, now_utc=NOW, signed_on=True
    )
    assert (outcome.response.get(39), outcome.outcome) == ("00", "advice_not_applicable")
    assert len(subject.ledger) == 0


def test_notification_takes_no_answer():
    """If a message is a notification (third MTI digit 4), then the issuer answers nothing."""
    assert issuer().handle(request("0240"), now=0.0, now_utc=NOW, signed_on=True).response is None


def test_a_repeat_gets_the_first_answer_kept_as_plain_values():
    """If a request comes again, then it gets the first answer (same fields) as a repeat, nothing is
    applied twice, and the kept answers are nothing Python's cycle collector walks."""
    subject = issuer()
    first = subject.handle(request(), now=0.0, now_utc=NOW, signed_on=True)
    again = subject.handle(request(), now=0.0, now_utc=NOW, signed_on=True)
    assert (again.outcome, again.result) == ("repeat", first.result)
    assert again.response == first.response and first.response is not None
    assert len(subject.ledger) == 1
    for _ in range(4):
        gc.collect()  # untracks a tuple of plain values, one level of nesting per collection
    assert not any(gc.is_tracked(kept) for kept in subject._answers.values())


def _completion(stan: str, amount: int, *, names: Message, extra: dict[int, str] | None = None) -> Message:
    f90 = names.mti + names[11] + names[7] + "00000990001" + "0" * 11
    return request("0220", stan, {4: f"{amount:012d}", 90: f90, **(extra or {})})


def test_advice_naming_a_preauth_completes_it_once():
    """If an advice's field 90 names one of its pre-authorizations, then the hold is released and the
    advice's amount posted, once: a repeat, a second completion and a reversal of the pre-auth after it
    change nothing."""
    subject = issuer()
    preauth = request("0100", "000010", {4: "000000005000"})
    assert subject.handle(preauth, now=0.0, now_utc=NOW, signed_on=True).response.get(39) == "00"
    card = subject.cards.find(PAN)
    assert card is not None
    posted, held = card.posted.get(364, 0), card.held.get(364, 0)
    completion = _completion("000011", 3000, names=preauth)
    outcome = subject.handle(completion, now=0.0, now_utc=NOW, signed_on=True)
    assert (outcome.response.get(39), outcome.outcome) == ("00", "completion_applied")
    assert outcome.clearing is not None and outcome.clearing.amount_minor == 3000
    assert (card.posted.get(364, 0), card.held.get(364, 0)) == (posted - 3000, held - 5000)
    position = subject.ledger.positions[364]
    assert (position.as_issuer_minor, position.issuer_holds_minor) == (3000, 0)
    repeat = subject.handle(completion, now=0.0, now_utc=NOW, signed_on=True)
    assert repeat.outcome == "advice_repeat"
    second = subject.handle(_completion("000012", 1000, names=preauth), now=0.0, now_utc=NOW, signed_on=True)
    reversal = request("0420", "000013", {90: completion[90]})
    after = subject.handle(reversal, now=0.0, now_utc=NOW, signed_on=True)
    assert (second.outcome, after.outcome) == ("completion_not_applicable", "reversal_repeat")
    assert (card.posted.get(364, 0), position.as_issuer_minor) == (posted - 3000, 3000)


def test_completion_above_the_hold_or_for_another_card_is_acked_without_effect():
    """If a completion asks more than the hold or carries another card, then it is acked 00 and the hold
    stays open for the right completion."""
    subject = issuer()
    preauth = request("0100", "000020", {4: "000000005000"})
    subject.handle(preauth, now=0.0, now_utc=NOW, signed_on=True)
    for stan, amount, extra in (("000021", 5001, {}), ("000022", 100, {2: demo_pan("603799", 61)})):
        outcome = subject.handle(
            _completion(stan, amount, names=preauth, extra=extra), now=0.0, now_utc=NOW, signed_on=True
        )
        assert (outcome.response.get(39), outcome.outcome) == ("00", "completion_not_applicable")
    assert subject.ledger.positions[364].issuer_holds_minor == 5000
    done = subject.handle(_completion("000023", 5000, names=preauth), now=0.0, now_utc=NOW, signed_on=True)
    assert done.outcome == "completion_applied"


def _hold_reversal(stan: str, names: Message, keep: int | None) -> Message:
    f90 = names.mti + names[11] + names[7] + "00000990001" + "0" * 11
    extra = {} if keep is None else {95: f"{keep:012d}".ljust(42, "0")}
    return request("0420", stan, {4: names[4], 90: f90, **extra})


def test_a_partially_reversed_preauth_can_be_completed_for_what_is_left():
    """If a pre-auth of 50.00 is partially reversed to 30.00 (95), then 20.00 is released, a repeat of that
    reversal releases nothing more, a completion for more than 30.00 is not applied, and one for 30.00
    is: nothing stays held and 30.00 is posted."""
    subject = issuer()
    preauth = request("0100", "000030", {4: "000000005000"})
    assert subject.handle(preauth, now=0.0, now_utc=NOW, signed_on=True).response.get(39) == "00"
    position = subject.ledger.positions[364]
    partial = _hold_reversal("000031", preauth, 3000)
    first = subject.handle(partial, now=0.0, now_utc=NOW, signed_on=True)
    assert (first.outcome, first.clearing.amount_minor if first.clearing else None) == (
        "reversal_applied",
        2000,
    )
    assert position.issuer_holds_minor == 3000
    assert subject.handle(partial, now=0.0, now_utc=NOW, signed_on=True).outcome in (
        "reversal_repeat",
        "repeat",
    )
    assert position.issuer_holds_minor == 3000
    too_much = subject.handle(
        _completion("000032", 3001, names=preauth), now=0.0, now_utc=NOW, signed_on=True
    )
    assert too_much.outcome == "completion_not_applicable"
    done = subject.handle(_completion("000033", 3000, names=preauth), now=0.0, now_utc=NOW, signed_on=True)
    assert done.outcome == "completion_applied"
    assert (position.issuer_holds_minor, position.as_issuer_minor) == (0, 3000)


def test_a_full_reversal_after_a_partial_one_releases_the_rest_of_the_hold():
    """If a pre-auth reduced by a partial reversal is then reversed whole, then the rest is released; a
    second partial reversal (it keeps more than is left) and a repeat release nothing."""
    subject = issuer()
    preauth = request("0100", "000040", {4: "000000005000"})
    subject.handle(preauth, now=0.0, now_utc=NOW, signed_on=True)
    position = subject.ledger.positions[364]
    subject.handle(_hold_reversal("000041", preauth, 3000), now=0.0, now_utc=NOW, signed_on=True)
    more = subject.handle(_hold_reversal("000042", preauth, 4000), now=0.0, now_utc=NOW, signed_on=True)
    assert (more.outcome, position.issuer_holds_minor) == ("reversal_repeat", 3000)
    rest = subject.handle(_hold_reversal("000043", preauth, None), now=0.0, now_utc=NOW, signed_on=True)
    assert (rest.outcome, position.issuer_holds_minor) == ("reversal_applied", 0)
    again = subject.handle(_hold_reversal("000044", preauth, None), now=0.0, now_utc=NOW, signed_on=True)
    assert again.outcome == "reversal_repeat"
    late = subject.handle(_completion("000045", 1000, names=preauth), now=0.0, now_utc=NOW, signed_on=True)
    assert (late.outcome, position.as_issuer_minor) == ("completion_not_applicable", 0)
