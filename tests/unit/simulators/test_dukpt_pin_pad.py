"""The simulators' DUKPT PIN pad: keys per KSN, field 53, the counter kept between runs; IBM demo cards."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.crypto.pinblock import decrypt_pin_block
from hsm.crypto.pinverify import ibm3624_verify
from simulators import cli
from simulators.messages import (
    DukptPinPad,
    SimulatorError,
    TerminalIdentity,
    TransactionRequest,
    TxnType,
    build_request,
    demo_card,
    dukpt_field53,
    pin_block_hex,
)
from specs import demo
from switch.domain.dukpt import parse_field53

BDK = bytes.fromhex(demo.DEMO_BDK_HEX)
TEST_IKSN = bytes.fromhex("FFFF9876543210E00000")  # ANSI X9.24-1:2009 Annex A
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_first_pin_blocks_match_the_published_x9_24_vectors() -> None:
    """If the test PIN pad encrypts PIN 1234 for PAN 4012345678909, then its first blocks are X9.24's."""
    pad = DukptPinPad(bdk=BDK, initial_ksn=TEST_IKSN)
    blocks = [pin_block_hex("1234", "4012345678909", pad.next().pin_key) for _ in range(2)]
    assert blocks == ["1B9C1845EB993A7A", "10A01C8D02C69107"]


def test_field53_names_the_device_and_counter_for_the_switch() -> None:
    """If the demo DUKPT POS sends its first PIN, then the switch reads its device id and counter 1."""
    device = demo.DUKPT_TERMINALS["DKPOS001"][1]
    pad = DukptPinPad(bdk=BDK, initial_ksn=bytes.fromhex(demo.dukpt_initial_ksn(device)))
    assert parse_field53(pad.next().field53) == (device, 1)


@given(
    device=st.integers(min_value=0, max_value=2**19 - 1),
    counter=st.integers(min_value=1, max_value=2**21 - 1),
)
def test_field53_agrees_with_the_switch(device: int, counter: int) -> None:
    """If any KSN is written into field 53 by the simulator, then the switch reads back its device and counter."""
    ksn = bytes.fromhex(f"{demo.DUKPT_KEY_SET_ID}{(device << 21) | counter:010X}")
    parsed = parse_field53(dukpt_field53(ksn))
    assert parsed == ((device, counter) if counter.bit_count() <= 10 else None)


def test_counters_with_more_than_ten_one_bits_are_skipped() -> None:
    """If the next counter would have 11 one-bits, then the PIN pad skips to the next valid one."""
    pad = DukptPinPad(bdk=BDK, initial_ksn=TEST_IKSN, counter=0b11111111110)
    pad.next()
    assert pad.counter == 0b100000000000


def test_initial_ksn_with_a_counter_is_refused() -> None:
    """If the initial KSN carries a non-zero counter, then the PIN pad refuses it."""
    with pytest.raises(SimulatorError, match="zero transaction counter"):
        DukptPinPad(bdk=BDK, initial_ksn=bytes.fromhex("FFFF9876543210E00001"))


def test_dukpt_request_carries_field53_and_both_pin_blocks_under_its_key() -> None:
    """If a PIN change is built for a DUKPT PIN pad, then 52 and 120 are under the KSN's key and 53 names it."""
    pad = DukptPinPad(bdk=BDK, initial_ksn=TEST_IKSN)
    use = pad.next()
    card = demo_card()
    message = build_request(
        TransactionRequest(TxnType.PIN_CHANGE, pin="1234", new_pin="4321"),
        identity=TerminalIdentity(terminal_id="DKATM001", merchant_id=demo.ATM_MERCHANT_ID),
        card=card,
        stan="000001",
        now_utc=NOW,
        local_now=NOW,
        dukpt_use=use,
    )
    assert message[53] == use.field53
    assert decrypt_pin_block(bytes.fromhex(message[52]), card.pan, 0, use.pin_key) == "1234"
    assert decrypt_pin_block(bytes.fromhex(message[120]), card.pan, 0, use.pin_key) == "4321"


def test_ibm_demo_card_carries_its_offset() -> None:
    """If a demo card of the IBM BIN is made, then its track 2 holds the offset of its PIN."""
    pan = demo.demo_pan(demo.IBM_BIN, 5)
    card = demo_card(pan)
    validation = demo.DEMO_PIN_VALIDATION_DATA.replace("N", pan[:-1][-5:])
    assert ibm3624_verify(
        bytes.fromhex(demo.DEMO_IBM_PVK_HEX),
        validation,
        demo.DEMO_PIN,
        card.pvv,
        demo.DEMO_DECIMALIZATION_TABLE,
        demo.DEMO_IBM_CHECK_LENGTH,
    )


def test_the_counter_is_taken_up_where_the_last_run_left_it(tmp_path: Path) -> None:
    """If a session used three KSNs, then the next session's PIN pad starts after them."""
    parser = cli.build_parser(
        cli.Profile("pos-sim", "", "POS00001", demo.MERCHANT_ID, tuple(TxnType), TxnType.PURCHASE)
    )
    state = tmp_path / "state.json"
    args = parser.parse_args(["--dukpt", "--terminal", "DKPOS001", "--dukpt-state", str(state)])
    pad, save = cli._pin_pad(args)
    for _ in range(3):
        pad.next()
        save(pad)
    again, _ = cli._pin_pad(args)
    assert again.counter == 3
    assert "FFFF" in state.read_text() and demo.DEMO_BDK_HEX not in state.read_text()


def test_a_state_file_of_another_pin_pad_starts_a_new_counter(tmp_path: Path) -> None:
    """If the state file is for another initial KSN, then the PIN pad starts at counter 0."""
    parser = cli.build_parser(
        cli.Profile("atm-sim", "", "ATM00001", demo.ATM_MERCHANT_ID, tuple(TxnType), TxnType.BALANCE)
    )
    state = tmp_path / "state.json"
    state.write_text('{"initial_ksn": "FFFF9876543210E00000", "counter": 40}')
    args = parser.parse_args(["--dukpt", "--terminal", "DKATM001", "--dukpt-state", str(state)])
    pad, _ = cli._pin_pad(args)
    assert pad.counter == 0
