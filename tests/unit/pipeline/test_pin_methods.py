"""The pipeline's PIN paths beyond Visa PVV under a TPK: IBM 3624 offsets, DUKPT PIN pads (KSN in field
53), and both together. Real HSM in-process with the test LMK, reference ledger, in-memory directory."""

from __future__ import annotations

import dataclasses

import pytest

from hsm.crypto import dukpt
from hsm.crypto.pinblock import encrypt_pin_block
from hsm.crypto.pinverify import ibm3624_offset
from hsm.keys import BDK, PVK
from switch.domain.dukpt import format_field53
from switch.domain.model import Card, DukptPinPad, PinMethod
from tests.unit.pipeline.world import PAN, PIN, TPK_CLEAR, World

IBM_PVK_CLEAR = bytes.fromhex("1C2C3E4F5B6B7C8C9EAEB0C1D3E3F404")
TABLE = "0123456789012345"
VALIDATION = "99000100000N"
BDK_CLEAR = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
KEY_SET = "FFFF987654"
DEVICE = 102535
DUKPT_POS = "DKPOS001"
DUKPT_ATM = "DKATM001"


def ibm_offset(pin: str, pan: str = PAN) -> str:
    validation = VALIDATION.replace("N", pan[:-1][-12:][-5:])
    return ibm3624_offset(IBM_PVK_CLEAR, validation, pin, TABLE, 4)


def ksn_bytes(counter: int, device: int = DEVICE) -> bytes:
    return bytes.fromhex(f"{KEY_SET}{(device << 21) | counter:010X}")


def dukpt_block(pin: str, counter: int, device: int = DEVICE) -> str:
    ksn = ksn_bytes(counter, device)
    key = dukpt.tdes_pin_key(dukpt.tdes_ipek(BDK_CLEAR, ksn), ksn)
    return encrypt_pin_block(pin, PAN, 0, key).hex().upper()


@pytest.fixture
async def world():
    w = World()
    await w.fund(100_000)
    pin_pad = DukptPinPad(
        key_set_id=KEY_SET, bdk_under_lmk=w.vault.wrap(BDK_CLEAR, BDK, "U"), device_id=DEVICE
    )
    pos = w.directory.terminals["POS00001"]
    # A DUKPT terminal needs no TPK: its PIN blocks are under the DUKPT key of each request's KSN.
    w.directory.terminals[DUKPT_POS] = dataclasses.replace(
        pos, terminal_id=DUKPT_POS, tpk_under_lmk="", dukpt=pin_pad
    )
    w.directory.terminals[DUKPT_ATM] = dataclasses.replace(
        pos,
        terminal_id=DUKPT_ATM,
        kind="atm",
        tpk_under_lmk="",
        dukpt=dataclasses.replace(pin_pad, device_id=DEVICE + 1),
    )
    return w


def make_ibm(w: World, pin: str = PIN) -> Card:
    """Turn the world's card into an IBM 3624 offset card whose PIN is `pin`."""
    product = dataclasses.replace(
        w.product,
        pin_method=PinMethod.IBM_3624,
        pvk_under_lmk=w.vault.wrap(IBM_PVK_CLEAR, PVK, "U"),
        decimalization_table=TABLE,
        pin_validation_data=VALIDATION,
        pin_check_length=4,
    )
    card = dataclasses.replace(w.card, product=product, pvki=0, pin_verification_value=ibm_offset(pin))
    w.directory.cards[PAN] = card
    return card


def dukpt_request(w: World, counter: int | None, pin: str = PIN, *, terminal: str = DUKPT_POS, **kw):
    """A purchase from a DUKPT terminal: PIN block under the key of `counter`, field 53 naming it."""
    device = DEVICE if terminal == DUKPT_POS else DEVICE + 1
    extra = dict(kw.pop("extra", {}))
    extra[52] = dukpt_block(pin, counter or 1, device)
    if counter is not None:
        extra[53] = format_field53(device, counter)
    return w.request(terminal=terminal, pin=None, extra=extra, **kw)


def tries(w: World) -> int:
    return w.directory.cards[PAN].pin_tries


# -- IBM 3624 offsets under the TPK ---------------------------------------------------------------------


async def test_ibm_card_with_the_right_pin_is_approved(world):
    """If an IBM offset card buys with its PIN, then it is approved and the money moves."""
    make_ibm(world)
    response = await world.send(world.request(amount=1234))
    assert response[39] == "00"
    assert await world.available() == 100_000 - 1234


async def test_ibm_card_with_a_wrong_pin_is_55_and_counted(world):
    """If an IBM offset card's PIN is wrong, then the answer is 55 and the try counter goes up."""
    make_ibm(world)
    assert (await world.send(world.request(pin="9999")))[39] == "55"
    assert tries(world) == 1


async def test_ibm_card_tries_exceeded_is_75_and_stays(world):
    """If an IBM card's PIN is wrong three times, then 75, and the right PIN is still refused 75."""
    make_ibm(world)
    codes = [(await world.send(world.request(pin="9999")))[39] for _ in range(3)]
    assert codes == ["55", "55", "75"]
    assert tries(world) == 3
    assert (await world.send(world.request()))[39] == "75"


async def test_ibm_card_right_pin_resets_the_counter(world):
    """If an IBM card's right PIN follows a wrong one, then the try counter is back at zero."""
    make_ibm(world)
    await world.send(world.request(pin="9999"))
    assert (await world.send(world.request()))[39] == "00"
    assert tries(world) == 0


async def test_ibm_pin_change_stores_the_new_offset(world):
    """If an IBM card changes its PIN at an ATM, then the new PIN works, the old one is 55."""
    make_ibm(world)
    change = world.request(
        processing_code="920000", amount=None, terminal="ATM00001", extra={120: world.pin_block("4321")}
    )
    assert (await world.send(change))[39] == "00"
    assert world.directory.cards[PAN].pin_verification_value == ibm_offset("4321")
    assert (await world.send(world.request(pin="4321")))[39] == "00"
    assert (await world.send(world.request()))[39] == "55"


async def test_ibm_card_without_an_offset_is_55_and_not_counted(world):
    """If an IBM card has no offset stored, then any PIN is 55 and the cardholder's tries do not move."""
    card = make_ibm(world)
    world.directory.cards[PAN] = dataclasses.replace(card, pin_verification_value="")
    assert (await world.send(world.request()))[39] == "55"
    assert tries(world) == 0


# -- DUKPT PIN pads -------------------------------------------------------------------------------------


async def test_dukpt_purchase_with_the_right_pin_is_approved(world):
    """If a DUKPT terminal sends the right PIN under the key of its KSN, then the purchase is approved."""
    response = await world.send(dukpt_request(world, 1, amount=2500))
    assert response[39] == "00"
    assert await world.available() == 100_000 - 2500


async def test_dukpt_wrong_pin_is_55_and_counted(world):
    """If a DUKPT terminal sends a wrong PIN, then 55 and the try counter goes up."""
    assert (await world.send(dukpt_request(world, 1, pin="9999")))[39] == "55"
    assert tries(world) == 1


async def test_dukpt_with_an_ibm_card_is_approved(world):
    """If an IBM offset card's PIN comes from a DUKPT PIN pad, then the HSM verifies it (GO)."""
    make_ibm(world)
    assert (await world.send(dukpt_request(world, 3)))[39] == "00"
    assert (await world.send(dukpt_request(world, 4, pin="0000")))[39] == "55"


async def test_foreign_ksn_is_63_and_not_counted(world):
    """If field 53 names another PIN pad's device, then 63 and the cardholder's tries do not move."""
    request = dukpt_request(world, 1)
    foreign = request.with_fields({53: format_field53(DEVICE + 7, 1)})
    assert (await world.send(foreign))[39] == "63"
    assert tries(world) == 0


async def test_replayed_counter_is_63(world):
    """If a second request reuses a KSN counter already used, then it is refused 63 without a try counted."""
    assert (await world.send(dukpt_request(world, 5)))[39] == "00"
    assert (await world.send(dukpt_request(world, 5)))[39] == "63"
    assert tries(world) == 0
    assert await world.available() == 100_000 - 1000


async def test_counter_far_behind_is_63(world):
    """If a counter is more than the window behind the highest seen, then it is refused 63."""
    assert (await world.send(dukpt_request(world, 200)))[39] == "00"
    assert (await world.send(dukpt_request(world, 100)))[39] == "63"


async def test_retransmission_with_the_same_ksn_gets_the_original_answer(world):
    """If a DUKPT request is retransmitted after the switch forgot its answer, then it is not a replay."""
    request = dukpt_request(world, 9, amount=700)
    first = await world.send(request)
    world.authorizer._recent.clear()
    second = await world.send(request)
    assert (first[39], second[39]) == ("00", "00") and first[38] == second[38]
    assert await world.available() == 100_000 - 700


async def test_dukpt_terminal_without_field53_is_30(world):
    """If a DUKPT terminal sends a PIN block without field 53, then it is a format error."""
    assert (await world.send(dukpt_request(world, None)))[39] == "30"
    assert tries(world) == 0


async def test_dukpt_field53_at_a_tpk_terminal_is_63(world):
    """If a terminal set up for a TPK sends a DUKPT field 53, then 63 and no try is counted."""
    request = world.request(extra={53: format_field53(DEVICE, 1)})
    assert (await world.send(request))[39] == "63"
    assert tries(world) == 0


async def test_tpk_block_from_a_dukpt_terminal_is_55(world):
    """If a DUKPT terminal sends a block under a TPK instead, then the PIN does not verify (55)."""
    request = dukpt_request(world, 1).with_fields(
        {52: encrypt_pin_block(PIN, PAN, 0, TPK_CLEAR).hex().upper()}
    )
    assert (await world.send(request))[39] == "55"


@pytest.mark.parametrize("ibm", [False, True], ids=["pvv", "ibm3624"])
async def test_dukpt_pin_change_then_only_the_new_pin_works(world, ibm):
    """If a DUKPT ATM changes a card's PIN (both blocks under one KSN), then the new PIN works, the old is 55."""
    if ibm:
        make_ibm(world)
    new_block = dukpt_block("4321", 20, DEVICE + 1)
    change = dukpt_request(
        world, 20, terminal=DUKPT_ATM, processing_code="920000", amount=None, extra={120: new_block}
    )
    assert (await world.send(change))[39] == "00"
    assert (await world.send(dukpt_request(world, 21, "4321", terminal=DUKPT_ATM, amount=100)))[39] == "00"
    assert (await world.send(dukpt_request(world, 22, terminal=DUKPT_ATM, amount=100)))[39] == "55"
