"""Sans-IO link rules: matching keys, STANs, network management, classification, backoff, bounded memory."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from switch.iso import Codec, CupsHeader, Message, MessageError, Tpdu, VisaHeader
from switch.iso.dialect import load_dialect
from switch.iso.interchange import (
    NetworkAction,
    RecentMap,
    StanAllocator,
    backoff_s,
    is_reject,
    match_key,
    message_role,
    network_management_action,
    network_management_request,
    network_tables,
    reject_code,
    response_class,
    transmission_datetime,
)

PURCHASE = Message(
    "0200",
    {2: "4761739001010010", 3: "000000", 4: "000000001000", 7: "0101120000", 11: "000123", 32: "990001"},
)
IDS = {32: "990001", 33: "99000100001", 100: "400001"}


def test_request_and_its_response_share_a_key() -> None:
    """If a response echoes its request's STAN, time and acquirer, then both give the same key."""
    response = Codec("visa").response(PURCHASE, response_code="00")
    assert match_key(response) == match_key(PURCHASE)


def test_key_differs_by_stan() -> None:
    """If two requests differ only in STAN, then their keys differ."""
    other = PURCHASE.with_fields({11: "000124"})
    assert match_key(other) != match_key(PURCHASE)


def test_key_differs_by_mti_class() -> None:
    """If a reversal reuses a purchase's STAN and time, then its key still differs (MTI class)."""
    reversal = PURCHASE.with_fields(mti="0420")
    assert match_key(reversal) != match_key(PURCHASE)


def test_repeat_and_original_share_a_key() -> None:
    """If a 0421 repeat reuses the 0420's STAN and time, then the 0430 answers either (same class)."""
    assert match_key(PURCHASE.with_fields(mti="0421")) == match_key(PURCHASE.with_fields(mti="0430"))


def test_key_uses_the_configured_fields() -> None:
    """If the key is configured as STAN only, then a different field 7 still matches."""
    moved = PURCHASE.with_fields({7: "0101120001"})
    assert match_key(moved, (11,)) == match_key(PURCHASE, (11,))
    assert match_key(moved) != match_key(PURCHASE)


def test_network_management_key_ignores_institution_ids() -> None:
    """If an 0810 carries an acquirer ID its 0800 lacked, then they still match."""
    sign_on = Message("0800", {7: "0101120000", 11: "000001", 70: "001"})
    answer = Message("0810", {7: "0101120000", 11: "000001", 32: "400001", 39: "00", 70: "001"})
    assert match_key(answer) == match_key(sign_on)


def test_stan_counts_up_from_one() -> None:
    """If STANs are allocated, then they are six digits counting up."""
    stans = StanAllocator()
    assert [stans.next() for _ in range(3)] == ["000001", "000002", "000003"]


def test_stan_wraps_to_one_not_zero() -> None:
    """If the counter passes 999999, then the next STAN is 000001, never 000000."""
    stans = StanAllocator(start=999_999)
    assert [stans.next(), stans.next()] == ["999999", "000001"]


def test_stan_start_is_checked() -> None:
    """If the counter would start at 0, then it is refused."""
    with pytest.raises(ValueError):
        StanAllocator(start=0)


def test_transmission_datetime_is_utc() -> None:
    """If the clock is in another zone, then field 7 is still the UTC time as MMDDhhmmss."""
    tehran = timezone(timedelta(hours=3, minutes=30))
    assert transmission_datetime(datetime(2026, 3, 1, 2, 0, 5, tzinfo=tehran)) == "0228223005"


def test_transmission_datetime_needs_an_aware_time() -> None:
    """If the time has no zone, then field 7 is refused rather than guessed."""
    with pytest.raises(ValueError):
        transmission_datetime(datetime(2026, 3, 1))


@pytest.mark.parametrize(
    ("mti", "role"),
    [
        ("0200", "request"),
        ("0420", "request"),
        ("0800", "request"),
        ("0210", "response"),
        ("0430", "response"),
        ("0830", "response"),
    ],
)
def test_role_follows_the_function_digit(mti: str, role: str) -> None:
    """If the third MTI digit is even, then the message is a request; odd, a response."""
    assert message_role(mti) == role


def test_role_of_a_bad_mti_is_an_error() -> None:
    """If an MTI is not four digits, then classifying it raises MessageError."""
    with pytest.raises(MessageError):
        message_role("02x0")


def test_visa_reject_header_is_a_reject() -> None:
    """If a Visa header carries a reject code, then the frame is a reject with that code."""
    header = VisaHeader(reject_code="0012")
    assert is_reject(header) and reject_code(header) == "0012"


def test_cups_reject_code_is_a_reject() -> None:
    """If a CUPS header's reject code is not 00000, then the frame is a reject."""
    assert is_reject(CupsHeader(reject_code="00301"))
    assert not is_reject(CupsHeader())


def test_plain_headers_are_not_rejects() -> None:
    """If a header has no reject code (or there is no header), then the frame is not a reject."""
    assert not any(is_reject(h) for h in (VisaHeader(), Tpdu(), None))
    assert reject_code(CupsHeader()) is None


def test_cups_management_uses_0820_with_forwarding_id() -> None:
    """If a CUPS sign-on is built, then it is an 0820 carrying 33, as CUPS's mandatory table asks."""
    message = network_management_request(
        load_dialect("cups"),
        network_tables("cups"),
        "sign_on",
        stan="000007",
        transmitted="0101120000",
        institution_ids=IDS,
    )
    assert message.mti == "0820"
    assert message.fields == {7: "0101120000", 11: "000007", 33: "99000100001", 70: "001"}
    Codec("cups").validate(message)


@pytest.mark.parametrize(
    ("dialect", "action", "code"),
    [("visa", "echo", "301"), ("shetab", "sign_off", "002"), ("visa", "key_exchange", "101")],
)
def test_management_carries_the_action_code(dialect: str, action: NetworkAction, code: str) -> None:
    """If a network-management request is built, then it is an 0800 with the action's field 70."""
    message = network_management_request(
        load_dialect(dialect),
        network_tables(dialect),
        action,
        stan="000001",
        transmitted="0101120000",
        institution_ids=IDS,
    )
    assert (message.mti, message[70]) == ("0800", code)
    assert 32 not in message  # the 0800 table asks for no institution ID
    Codec(dialect).validate(message)


def test_management_without_a_required_id_fails() -> None:
    """If CUPS needs 33 and no forwarding ID is given, then building the 0820 fails naming field 33."""
    with pytest.raises(MessageError) as info:
        network_management_request(
            load_dialect("cups"),
            network_tables("cups"),
            "echo",
            stan="000001",
            transmitted="0101120000",
            institution_ids={32: "990001"},
        )
    assert info.value.field == 33


def test_terminal_dialect_has_no_link_tables() -> None:
    """If the terminal dialect is asked for network tables, then KeyError says it has none."""
    with pytest.raises(KeyError):
        network_tables("terminal")


def test_management_action_is_read_from_field_70() -> None:
    """If the network sends an 0800 with 70 = 301, then it is an echo; a 0200 is no management."""
    tables = network_tables("visa")
    assert network_management_action(Message("0800", {70: "301"}), tables) == "echo"
    assert network_management_action(Message("0800", {70: "999"}), tables) is None
    assert network_management_action(PURCHASE, tables) is None


@pytest.mark.parametrize(
    ("code", "klass"), [("00", "approved"), ("51", "declined"), ("Q7", "unknown_code"), (None, "no_code")]
)
def test_response_class(code: str | None, klass: str) -> None:
    """If a response code is 00, in the table, outside it, or absent, then it counts as that class."""
    assert response_class(code, network_tables("visa").response_codes) == klass


def test_backoff_doubles_up_to_the_maximum() -> None:
    """If reconnects keep failing, then each delay lies in the upper half of a doubling step, capped."""
    rng = random.Random(7)
    for attempt, step in enumerate([1.0, 2.0, 4.0, 8.0, 10.0, 10.0]):
        delay = backoff_s(attempt, initial_s=1.0, max_s=10.0, rng=rng)
        assert step / 2 <= delay <= step, (attempt, delay)


def test_backoff_is_jittered() -> None:
    """If two links back off from the same attempt, then their delays differ (no lockstep)."""
    rng = random.Random(1)
    delays = {backoff_s(3, initial_s=1.0, max_s=60.0, rng=rng) for _ in range(20)}
    assert len(delays) > 1


def test_backoff_of_huge_attempts_stays_at_the_maximum() -> None:
    """If a link has failed thousands of times, then the delay is still at most the maximum."""
    assert backoff_s(5000, initial_s=0.5, max_s=30.0, rng=random.Random(0)) <= 30.0


def test_recent_map_forgets_the_oldest() -> None:
    """If the map is full, then adding an entry drops the oldest one."""
    recent: RecentMap[str, int] = RecentMap(2)
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        recent.put(key, value)
    assert "a" not in recent and recent.get("b") == 2 and recent.get("c") == 3 and len(recent) == 2


def test_recent_map_pop_removes() -> None:
    """If an entry is popped, then it is returned once and then gone."""
    recent: RecentMap[str, int] = RecentMap(2)
    recent.put("a", 1)
    assert recent.pop("a") == 1 and recent.pop("a") is None
