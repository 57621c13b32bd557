"""Copies of one request (same terminal, STAN and time) that overlap: answered once, by the first.
Reference ledger, in-memory directory, in-process HSM; the clock is trio's mock clock."""

from __future__ import annotations

import pytest
import trio

from switch.domain.model import Pan
from tests.unit.pipeline.world import PAN, World


@pytest.fixture
async def slow_world():
    """A world whose card lookups take a while, so that concurrent requests overlap."""
    w = World()
    await w.fund(100_000)
    lookup = w.directory.card_by_pan

    async def slow_lookup(pan: Pan):
        await trio.sleep(0.05)
        return await lookup(pan)

    w.directory.card_by_pan = slow_lookup  # type: ignore[method-assign]
    return w


async def send_together(world: World, *requests):
    answers = {}

    async def send(i, request):
        answers[i] = await world.send(request)

    async with trio.open_nursery() as nursery:
        for i, request in enumerate(requests):
            nursery.start_soon(send, i, request)
    return [answers[i] for i in range(len(requests))]


async def test_copy_sent_while_the_first_is_in_flight_gets_the_first_answer(slow_world, autojump_clock):
    """If a copy arrives while its first is still being answered, then both get one answer and one PIN check."""
    request = slow_world.request(amount=100, pin="9999")
    first, copy = await send_together(slow_world, request, request)
    assert first[39] == "55" and first.fields == copy.fields
    assert slow_world.directory.cards[PAN].pin_tries == 1


async def test_other_content_under_the_same_identity_in_flight_is_94(slow_world, autojump_clock):
    """If another request reuses an in-flight request's identity, then whichever comes second is 94."""
    requests = [slow_world.request(amount=amount, stan="000321") for amount in (100, 200)]
    answers = await send_together(slow_world, *requests)
    assert sorted(a[39] for a in answers) == ["00", "94"]
    approved = next(r for r, a in zip(requests, answers, strict=True) if a[39] == "00")
    assert await slow_world.available() == 100_000 - int(approved[4])
