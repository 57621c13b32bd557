"""Store-and-forward rules: states, repeats, acknowledgements, what is stored, backoff and expiry."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.domain.saf import (
    ACTIVE_STATES,
    NOT_STORED_FIELDS,
    TRANSITIONS,
    SafBackoff,
    SafError,
    SafEvent,
    SafPolicy,
    SafRecord,
    SafState,
    attempt_message,
    is_acknowledgement,
    next_state,
    repeat_mti,
    restore_message,
    source_states,
    storable_message,
)
from switch.iso.message import Message

PAN = "4761739001010010"
TRACK2 = PAN + "=26122011758928889"
T0 = datetime(2026, 11, 23, 19, 35, tzinfo=UTC)


def reversal(**extra: str) -> Message:
    fields = {2: PAN, 3: "000000", 4: "000000001234", 32: "990001", 37: "612319000001", 49: "840"}
    fields.update({int(k[1:]): v for k, v in extra.items()})
    return Message("0420", fields)


def split(message: Message, kind: str = "reversal", key: str = "visa:POS00001:1123193500:000123"):
    return storable_message(network="visa", kind=kind, key=key, message=message)


# -- the life of an entry -------------------------------------------------------------------------------


def test_delivered_entry_goes_queued_in_flight_acknowledged():
    """If an entry is claimed, released once, claimed again and acknowledged, then it ends acknowledged."""
    state = SafState.QUEUED
    for event in (SafEvent.CLAIM, SafEvent.RELEASE, SafEvent.CLAIM, SafEvent.ACKNOWLEDGE):
        state = next_state(state, event)
    assert state is SafState.ACKNOWLEDGED


def test_acknowledged_and_purged_entries_are_final():
    """If an entry is acknowledged or purged, then no event applies to it any more."""
    for final in (SafState.ACKNOWLEDGED, SafState.PURGED):
        for event in SafEvent:
            with pytest.raises(SafError):
                next_state(final, event)


def test_expired_entry_can_only_be_retried_or_purged():
    """If an entry expired, then only an operator's retry (back to queued) or purge applies."""
    allowed = {event for (state, event) in TRANSITIONS if state is SafState.EXPIRED}
    assert allowed == {SafEvent.RETRY, SafEvent.PURGE}
    assert next_state(SafState.EXPIRED, SafEvent.RETRY) is SafState.QUEUED


def test_queued_entry_cannot_be_acknowledged_without_being_claimed():
    """If nobody claimed an entry, then an acknowledgement for it is refused."""
    with pytest.raises(SafError, match="queued entry cannot acknowledge"):
        next_state(SafState.QUEUED, SafEvent.ACKNOWLEDGE)


def test_worker_events_apply_to_undelivered_entries_only():
    """If the worker claims or expires, then only queued and in-flight entries qualify."""
    assert set(source_states(SafEvent.CLAIM)) == ACTIVE_STATES
    assert set(source_states(SafEvent.EXPIRE)) == ACTIVE_STATES
    assert source_states(SafEvent.RELEASE) == (SafState.IN_FLIGHT,)


# -- repeats --------------------------------------------------------------------------------------------


def test_repeat_mti_of_reversal_and_advice():
    """If a reversal or advice is repeated, then it goes as 0421 or 0221, and a repeat stays a repeat."""
    assert (repeat_mti("0420"), repeat_mti("0220")) == ("0421", "0221")
    assert (repeat_mti("0421"), repeat_mti("0221")) == ("0421", "0221")


def test_repeat_mti_refuses_other_messages():
    """If the MTI is not a store-and-forward message, then it has no repeat here."""
    for mti in ("0200", "0400", "0430", "0800"):
        with pytest.raises(SafError):
            repeat_mti(mti)


def test_first_attempt_is_sent_as_queued():
    """If nothing was sent yet, then the attempt is the queued 0420 itself, STAN and field 7 left to the link."""
    first = reversal()
    assert attempt_message(first, stan=None, transmission=None) == first


def test_repeat_keeps_first_attempt_stan_and_transmission_time():
    """If the first attempt went out with STAN 000042 at 1123193500, then the repeat is 0421 with both."""
    repeat = attempt_message(reversal(), stan="000042", transmission="1123193500")
    assert repeat.mti == "0421"
    assert (repeat.stan, repeat.transmission_datetime) == ("000042", "1123193500")
    assert repeat.with_fields({11: None, 7: None}, mti="0420") == reversal()


def test_repeat_needs_both_stan_and_transmission_time():
    """If only one of fields 11 and 7 is known, then no repeat can be built."""
    with pytest.raises(SafError):
        attempt_message(reversal(), stan="000042", transmission=None)


def test_record_next_message_is_repeat_after_first_attempt():
    """If a record carries the first attempt's STAN and time, then its next message is the repeat."""
    record = SafRecord(
        entry_id=1,
        network="visa",
        kind="advice",
        key="k",
        message=Message("0220", {2: PAN, 4: "000000000100"}),
        state=SafState.IN_FLIGHT,
        attempts=1,
        stan="000007",
        transmission="1123193500",
        created_at=T0,
        next_attempt_at=T0,
        expires_at=T0 + timedelta(days=1),
        last_response_code=None,
        pan_masked="476173******0010",
    )
    assert record.next_message().mti == "0221" and record.next_message().stan == "000007"


# -- acknowledgements ------------------------------------------------------------------------------------


SENT = reversal(f11="000042", f7="1123193500")


def test_any_response_code_acknowledges():
    """If the network answers 0430 with 00, 05, 25 or 30, then each is an acknowledgement."""
    for code in ("00", "05", "25", "30"):
        assert is_acknowledgement(SENT, SENT.response(response_code=code))


def test_inoperative_answers_do_not_acknowledge():
    """If the network answers 0430 with 91 or 96, then the entry is not acknowledged (it applied nothing)."""
    for code in ("91", "96"):
        assert not is_acknowledgement(SENT, SENT.response(response_code=code))


def test_answer_to_a_repeat_is_0430():
    """If a 0421 is answered 0430, then that acknowledges it."""
    repeat = SENT.with_fields(mti="0421")
    assert is_acknowledgement(repeat, Message("0430", {11: "000042", 7: "1123193500", 39: "00"}))


def test_advice_is_acknowledged_by_0230_only():
    """If an 0220 gets a 0230, then it is acknowledged; a 0430 or 0210 is not its answer."""
    advice = Message("0220", {11: "000001", 7: "1123193500"})
    assert is_acknowledgement(advice, Message("0230", {11: "000001", 39: "00"}))
    assert not is_acknowledgement(advice, Message("0430", {11: "000001", 39: "00"}))
    assert not is_acknowledgement(advice, Message("0210", {11: "000001", 39: "00"}))


def test_no_response_is_no_acknowledgement():
    """If the deadline passed without a response, then the entry is not acknowledged."""
    assert not is_acknowledgement(SENT, None)


def test_response_for_another_stan_or_time_is_no_acknowledgement():
    """If the 0430 carries another STAN or another field 7, then it answers something else."""
    assert not is_acknowledgement(SENT, Message("0430", {11: "000043", 7: "1123193500", 39: "00"}))
    assert not is_acknowledgement(SENT, Message("0430", {11: "000042", 7: "1123193501", 39: "00"}))


# -- what is stored -------------------------------------------------------------------------------------


def test_pan_track_pin_block_and_icc_data_are_not_stored_with_the_fields():
    """If a reversal carries 2, 35, 52 and 55, then the stored fields hold none of them and the PAN is apart."""
    stored = split(reversal(f35=TRACK2, f52="0123456789ABCDEF", f55="9F2608AABBCCDDEEFF0011"))
    assert not NOT_STORED_FIELDS & set(stored.fields)
    assert stored.pan is not None and stored.pan.digits == PAN
    assert stored.dropped == (35, 52, 55)
    assert PAN not in repr(stored) and "0123456789ABCDEF" not in repr(stored)


def test_pan_comes_from_track_2_when_field_2_is_absent():
    """If the builder left only track 2, then the PAN is taken from it and the track is not kept."""
    message = reversal(f35=TRACK2).with_fields({2: None})
    stored = split(message)
    assert stored.pan is not None and stored.pan.digits == PAN
    assert 35 not in stored.fields


def test_stored_message_restores_with_pan_in_field_2():
    """If a split message is restored with its PAN, then it equals the original without the hidden fields."""
    message = reversal(f52="0123456789ABCDEF")
    stored = split(message)
    assert restore_message(stored.mti, stored.fields, stored.pan) == message.with_fields({52: None})


@given(
    st.dictionaries(
        st.sampled_from([3, 4, 7, 11, 12, 13, 14, 32, 37, 41, 42, 49, 53, 90, 100]),
        st.text(alphabet="0123456789", min_size=1, max_size=12),
    )
)
def test_storable_fields_round_trip(fields: dict[int, str]):
    """If any safe fields are stored, then restoring gives back exactly the same message."""
    message = Message("0220", {**fields, 2: PAN})
    stored = split(message, kind="advice")
    assert restore_message(stored.mti, stored.fields, stored.pan) == message


def test_restore_refuses_fields_that_must_not_be_stored():
    """If stored fields somehow hold a PIN block, then restoring refuses them."""
    with pytest.raises(SafError):
        restore_message("0420", {52: "0123456789ABCDEF"}, None)


def test_kind_and_first_mti_must_agree():
    """If a reversal is not 0420 or an advice not 0220, then it is refused."""
    with pytest.raises(SafError, match="reversal is queued as 0420"):
        split(reversal().with_fields(mti="0421"))
    with pytest.raises(SafError, match="advice is queued as 0220"):
        split(reversal(), kind="advice")
    with pytest.raises(SafError, match="unknown"):
        split(reversal(), kind="refund")


def test_key_holding_a_card_number_is_refused():
    """If the idempotency key contains a PAN, then the entry is refused without repeating the PAN."""
    with pytest.raises(SafError) as info:
        split(reversal(), key=f"visa:{PAN}:000123")
    assert PAN not in str(info.value)


def test_unusable_pan_is_refused():
    """If field 2 is not 12-19 digits, then the entry is refused without showing it."""
    with pytest.raises(SafError) as info:
        split(reversal(f2="12345"))
    assert "12345" not in str(info.value)


# -- backoff and expiry ---------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_without_jitter():
    """If jitter is 0, then delays are 5, 10, 20, 40, ... seconds, never above 300."""
    backoff = SafBackoff(initial_s=5, factor=2, max_s=300, jitter=0)
    rng = random.Random(1)
    assert [backoff.delay_s(n, rng) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]


def test_backoff_jitter_stays_below_the_schedule():
    """If jitter is 0.2, then every delay lies between 80% and 100% of the unjittered one."""
    jittered = SafBackoff(initial_s=1, factor=3, max_s=50, jitter=0.2)
    plain = SafBackoff(initial_s=1, factor=3, max_s=50, jitter=0)
    rng = random.Random(7)
    for attempt in range(1, 30):
        delay, base = jittered.delay_s(attempt, rng), plain.delay_s(attempt, rng)
        assert 0.8 * base <= delay <= base


def test_backoff_with_seeded_rng_is_reproducible_and_varies():
    """If two workers use the same seed, then they get the same delays; the delays are not all equal."""
    backoff = SafBackoff(initial_s=10, factor=1, max_s=10, jitter=0.5)
    first = [backoff.delay_s(1, r) for r in [random.Random(3)] for _ in range(5)]
    second = [backoff.delay_s(1, r) for r in [random.Random(3)] for _ in range(5)]
    assert first == second and len(set(first)) == 5


def test_backoff_of_a_very_old_entry_is_the_cap():
    """If an entry was attempted 10,000 times, then its delay is the cap (no overflow)."""
    assert SafBackoff(initial_s=1, factor=2, max_s=60, jitter=0).delay_s(10_000, random.Random()) == 60


def test_backoff_refuses_bad_settings_and_no_attempt():
    """If the settings make no sense or no attempt was made, then backoff refuses."""
    for kwargs in ({"initial_s": 0}, {"factor": 0.5}, {"max_s": 1, "initial_s": 2}, {"jitter": 1.0}):
        with pytest.raises(SafError):
            SafBackoff(**kwargs)
    with pytest.raises(SafError):
        SafBackoff().delay_s(0, random.Random())


def test_expiry_is_created_plus_the_kinds_lifetime():
    """If a reversal lives 1 h and an advice 2 h, then their expiries are created + 1 h and + 2 h."""
    policy = SafPolicy(reversal_lifetime_s=3600, advice_lifetime_s=7200)
    assert policy.expires_at("reversal", T0) == T0 + timedelta(hours=1)
    assert policy.expires_at("advice", T0) == T0 + timedelta(hours=2)
    with pytest.raises(SafError):
        policy.expires_at("refund", T0)
