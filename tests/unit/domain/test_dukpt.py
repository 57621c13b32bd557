"""DUKPT PIN pads: field 53 of the terminal dialect, the KSN it stands for, and the replay guard."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.domain.dukpt import (
    COUNTER_MAX,
    DEVICE_ID_MAX,
    KsnProblem,
    KsnReplayGuard,
    format_field53,
    ksn_for_request,
    parse_field53,
)
from switch.domain.model import DukptPinPad

PIN_PAD = DukptPinPad(key_set_id="FFFF987654", bdk_under_lmk="U" + "0" * 32, device_id=102535)

valid_counters = st.integers(min_value=1, max_value=COUNTER_MAX).filter(lambda c: c.bit_count() <= 10)


@given(device_id=st.integers(min_value=0, max_value=DEVICE_ID_MAX), counter=valid_counters)
def test_field53_round_trips(device_id: int, counter: int) -> None:
    """If a device id and a valid counter are written as field 53, then reading it gives them back."""
    field53 = format_field53(device_id, counter)
    assert len(field53) == 16 and field53.isdigit()
    assert parse_field53(field53) == (device_id, counter)


def test_the_published_test_ksn_is_rebuilt() -> None:
    """If the X9.24 test PIN pad sends counter 1, then the KSN is the published FFFF9876543210E00001."""
    ksn = ksn_for_request(PIN_PAD, format_field53(102535, 1))
    assert not isinstance(ksn, KsnProblem)
    assert ksn.hex == "FFFF9876543210E00001"


@pytest.mark.parametrize(
    "field53",
    [
        None,
        "",
        "0211025350000001",  # reserved digit not 0
        "0101025350000001",  # another security format
        "020102535000000",  # 15 digits
        "02010253500000A1",  # not digits
        "0200000000000000",  # counter 0 is never used for a transaction
        "0205242880000001",  # device id above 19 bits
        "0200000002097152",  # counter above 21 bits
        "0200000000002047",  # 11 one-bits: an originator never uses it
    ],
)
def test_malformed_field53_is_refused(field53: str | None) -> None:
    """If field 53 is not the DUKPT layout, then the KSN is malformed."""
    assert ksn_for_request(PIN_PAD, field53) is KsnProblem.MALFORMED


def test_another_pin_pads_ksn_is_foreign() -> None:
    """If field 53 names another device id, then the KSN does not belong to the terminal."""
    assert ksn_for_request(PIN_PAD, format_field53(102536, 1)) is KsnProblem.FOREIGN


def test_a_used_counter_is_refused_for_another_request() -> None:
    """If a counter comes again with another request, then it is a replay."""
    guard = KsnReplayGuard()
    assert guard.accept("DKPOS001", 5, "DKPOS001:1201120000:000001")
    assert not guard.accept("DKPOS001", 5, "DKPOS001:1201120001:000002")


def test_the_same_request_again_is_not_a_replay() -> None:
    """If a counter comes again with the same request identity, then it is that request's retransmission."""
    guard = KsnReplayGuard()
    assert guard.accept("DKPOS001", 5, "id-1")
    assert guard.accept("DKPOS001", 5, "id-1")


def test_counters_out_of_order_inside_the_window_pass() -> None:
    """If counters arrive out of order but within the window, then each is accepted once."""
    guard = KsnReplayGuard(window=8)
    assert guard.accept("T", 10, "a")
    assert guard.accept("T", 12, "b")
    assert guard.accept("T", 11, "c")
    assert not guard.accept("T", 11, "d")


def test_a_counter_behind_the_window_is_refused() -> None:
    """If a counter is further behind the highest seen than the window, then it is refused."""
    guard = KsnReplayGuard(window=8)
    assert guard.accept("T", 100, "a")
    assert not guard.accept("T", 92, "b")
    assert guard.accept("T", 93, "c")


def test_terminals_have_their_own_counters() -> None:
    """If two terminals use the same counter, then both are accepted."""
    guard = KsnReplayGuard()
    assert guard.accept("T1", 7, "a")
    assert guard.accept("T2", 7, "b")


@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=200))
def test_no_counter_is_accepted_twice_for_different_requests(counters: list[int]) -> None:
    """If any sequence of counters arrives, each from its own request, then none is accepted twice."""
    guard = KsnReplayGuard(window=16)
    accepted: list[int] = []
    for n, counter in enumerate(counters):
        if guard.accept("T", counter, f"request-{n}"):
            accepted.append(counter)
    assert len(accepted) == len(set(accepted))
