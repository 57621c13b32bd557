"""Who is served: network management from configured terminals only, and cards only once they are valid.
Reference ledger, in-memory directory, in-process HSM; no I/O."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from tests.unit.pipeline.world import NOW, PAN, World


@pytest.fixture
async def world():
    w = World()
    await w.fund(100_000)
    return w


def network(world: World, code: str, *, terminal: str = "POS00001", merchant: str | None = "DEMOMERCHANT001"):
    request = world.request("0800", "000000", None, terminal=terminal, pin=None, extra={70: code})
    return request.with_fields({n: None for n in (3, 12, 13, 22, 25, 35, 49)} | {42: merchant})


@pytest.mark.parametrize("code", ["001", "002", "101"])
async def test_network_management_from_an_unknown_terminal_is_58(world, code):
    """If an unknown terminal signs on, off or asks for keys, then it is answered 58."""
    assert (await world.send(network(world, code, terminal="NOPE0001")))[39] == "58"


async def test_sign_on_at_another_merchant_is_03(world):
    """If a terminal signs on naming a merchant that is not its own, then it is answered 03."""
    assert (await world.send(network(world, "001", merchant="OTHERMERCHANT01")))[39] == "03"


async def test_sign_on_of_an_inactive_terminal_is_58(world):
    """If a configured terminal is inactive, then its sign-on is answered 58."""
    t = world.directory.terminals["POS00001"]
    world.directory.terminals["POS00001"] = dataclasses.replace(t, active=False)
    assert (await world.send(network(world, "001")))[39] == "58"


@pytest.mark.parametrize("merchant", ["DEMOMERCHANT001", None])
async def test_sign_on_of_a_configured_terminal_is_approved(world, merchant):
    """If a configured terminal signs on, with or without field 42, then it is answered 00."""
    assert (await world.send(network(world, "001", merchant=merchant)))[39] == "00"


async def test_echo_is_answered_for_any_terminal(world):
    """If an unknown terminal sends an echo, then it is answered 00 (a link check serves nothing)."""
    assert (await world.send(network(world, "301", terminal="NOPE0001")))[39] == "00"


async def test_unknown_network_management_code_is_40(world):
    """If field 70 is a code the switch does not offer, then the answer is 40."""
    assert (await world.send(network(world, "999")))[39] == "40"


async def test_card_with_a_future_activation_date_is_57(world):
    """If an active card's activation date is still to come, then it is declined 57 and nothing moves."""
    later = (NOW + timedelta(days=1)).date()
    world.directory.cards[PAN] = dataclasses.replace(world.card, activation_date=later)
    assert (await world.send(world.request(amount=100)))[39] == "57"
    assert await world.available() == 100_000


async def test_card_activated_today_may_transact(world):
    """If a card's activation date is today, then it may transact."""
    world.directory.cards[PAN] = dataclasses.replace(world.card, activation_date=NOW.date())
    assert (await world.send(world.request(amount=100)))[39] == "00"
