"""Reversals, voids and holds through the pipeline: how an original is matched, what a reversal of each
kind gives back, and what happens when there is nothing (left) to reverse. Reference ledger, in-memory
directory, in-process HSM; no I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import pytest
import structlog
import trio
import trio.testing

from specs.demo import demo_pan
from switch.domain.ledger_types import Transfer, TransferResult
from switch.domain.model import Account, AccountKind
from switch.iso.message import Message
from tests.unit.pipeline.world import MERCHANT_ACCOUNT, NOW, PAN, GatedPostings, World


@pytest.fixture
async def world():
    w = World()
    await w.fund(100_000)
    return w


def original_data(request) -> str:
    return request.mti + request[11] + request[7] + "0" * 22


async def test_reversal_without_field_90_matches_by_terminal_stan_and_time(world):
    """If a reversal carries its purchase's terminal, STAN and time instead of field 90, then it reverses it."""
    purchase = world.request(amount=2000, stan="000500")
    assert (await world.send(purchase))[39] == "00"
    reversal = world.request("0400", "000000", 2000, stan="000500", pin=None)
    response = await world.send(reversal)
    assert (response.mti, response[39]) == ("0410", "00")
    assert await world.available() == 100_000


async def test_reversal_naming_another_card_has_no_effect(world):
    """If a reversal names the original by field 90 but carries another card (ours or unknown), then it is
    acknowledged without effect, and the reversal with the original's own card still gives the money back."""
    other_pan = demo_pan("990001", 77)
    world.directory.cards[other_pan] = dataclasses.replace(
        world.card, card_id=2, accounts=(Account(9_999, AccountKind.SAVINGS, 840),)
    )
    purchase = world.request(amount=2000)
    assert (await world.send(purchase))[39] == "00"
    for pan in (other_pan, demo_pan("990001", 78)):
        wrong = world.request(
            "0400", "000000", 2000, pin=None, track2=world.track2(pan), extra={90: original_data(purchase)}
        )
        assert (await world.send(wrong))[39] == "00"
        assert await world.available() == 100_000 - 2000
    right = world.request("0400", "000000", 2000, pin=None, extra={90: original_data(purchase)})
    assert (await world.send(right))[39] == "00"
    assert await world.available() == 100_000


async def test_reversal_with_malformed_field_90_is_a_format_error(world):
    """If a reversal's field 90 is not 42 digits, then it is answered 30 and nothing moves."""
    purchase = world.request(amount=2000)
    await world.send(purchase)
    reversal = world.request("0400", "000000", 2000, pin=None, extra={90: original_data(purchase)[:-1]})
    assert (await world.send(reversal))[39] == "30"
    assert await world.available() == 100_000 - 2000


async def test_reversal_of_a_void_takes_the_purchase_again(world):
    """If the void of a purchase is reversed, then the purchase's amount is debited again, once."""
    purchase = world.request(amount=2500)
    await world.send(purchase)
    void = world.request("0200", "020000", 2500, pin=None, extra={90: original_data(purchase)})
    assert (await world.send(void))[39] == "00"
    for mti in ("0400", "0401"):
        reversal = world.request(mti, "020000", 2500, pin=None, extra={90: original_data(void)})
        assert (await world.send(reversal))[39] == "00"
    assert await world.available() == 100_000 - 2500
    assert await world.available(MERCHANT_ACCOUNT) == 2500


@pytest.mark.parametrize("processing_code", ["200000", "090000", "210000", "011000"])
async def test_reversal_of_each_posted_type_restores_the_balance(world, processing_code):
    """If a refund, cashback, load or withdrawal is reversed, then the cardholder's balance is as before."""
    terminal = "ATM00001" if processing_code == "011000" else "POS00001"
    original = world.request("0200", processing_code, 1500, terminal=terminal)
    assert (await world.send(original))[39] == "00"
    assert await world.available() != 100_000
    reversal = world.request(
        "0420", processing_code, 1500, terminal=terminal, pin=None, extra={90: original_data(original)}
    )
    assert (await world.send(reversal))[39] == "00"
    assert await world.available() == 100_000


async def test_second_reversal_of_the_same_original_has_no_effect(world):
    """If a purchase is reversed by two different reversal messages, then the money comes back once."""
    purchase = world.request(amount=3000)
    await world.send(purchase)
    refund = world.request("0200", "200000", 3000, pin=None)
    assert (await world.send(refund))[39] == "00"  # spendable money besides the purchase's
    for _ in range(2):
        reversal = world.request("0400", "000000", 3000, pin=None, extra={90: original_data(purchase)})
        assert (await world.send(reversal))[39] == "00"
    assert await world.available() == 100_000 + 3000


async def test_reduced_hold_expires_when_its_original_would_have(world):
    """If a pre-auth reduced by a partial reversal is not completed, then the reduced hold expires at the
    original's time and the funds are free again."""
    preauth = world.request("0100", "000000", 5000)
    await world.send(preauth)
    partial = world.request(
        "0400",
        "000000",
        5000,
        pin=None,
        extra={90: original_data(preauth), 95: f"{3000:012d}" + "0" * 30},
    )
    assert (await world.send(partial))[39] == "00"
    assert await world.available() == 100_000 - 3000
    due = NOW + timedelta(seconds=world.product.hold_expiry_s + 1)
    assert await world.ledger.expire_pending(due) == 1
    assert await world.available() == 100_000


async def test_expired_hold_is_released_and_cannot_be_completed(world):
    """If a pre-auth's hold expires, then the funds are free again and its completion is answered 25."""
    preauth = world.request("0100", "000000", 5000)
    assert (await world.send(preauth))[39] == "00"
    due = NOW + timedelta(seconds=world.product.hold_expiry_s + 1)
    assert await world.ledger.expire_pending(due) == 1
    assert await world.available() == 100_000
    completion = world.request("0220", "000000", 5000, pin=None, extra={90: original_data(preauth)})
    assert (await world.send(completion))[39] == "25"
    assert await world.available() == 100_000


async def test_hold_is_kept_until_its_expiry_time(world):
    """If the expiry sweep runs before the hold's time, then the hold stays and can be completed."""
    preauth = world.request("0100", "000000", 5000)
    await world.send(preauth)
    early = NOW + timedelta(seconds=world.product.hold_expiry_s - 60)
    assert await world.ledger.expire_pending(early) == 0
    completion = world.request("0220", "000000", 5000, pin=None, extra={90: original_data(preauth)})
    assert (await world.send(completion))[39] == "00"
    assert await world.available() == 100_000 - 5000


async def test_requests_without_identity_are_not_remembered(world):
    """If two different requests both lack field 7, then each is answered 30 (not 94 for the second)."""
    first = world.request(amount=100, stan="000900").with_fields({7: None})
    second = world.request(amount=200, stan="000900").with_fields({7: None})
    assert (await world.send(first))[39] == "30"
    assert (await world.send(second))[39] == "30"


async def test_reversal_sent_while_its_original_is_being_posted_reverses_it(world):
    """If a reversal arrives while its purchase is still waiting for the ledger (a terminal that timed out
    early, or pipelined both), then it waits for the purchase's answer and gives the money back; it is
    not acknowledged as a reversal of an unknown original while the purchase then takes the money."""
    gated = GatedPostings(world)
    purchase = world.request(amount=2000)
    reversal = world.request("0400", "000000", 2000, pin=None, extra={90: original_data(purchase)})
    answers: dict[str, str] = {}

    async def send(name, request):
        answers[name] = (await world.send(request))[39]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send, "purchase", purchase)
        await gated.waiting.wait()
        nursery.start_soon(send, "reversal", reversal)
        await trio.testing.wait_all_tasks_blocked()
        assert "reversal" not in answers  # it waits for the purchase
        gated.gate.set()
    assert answers == {"purchase": "00", "reversal": "00"}
    assert await world.available() == 100_000


async def test_original_that_comes_after_its_reversal_is_refused(world):
    """If a reversal comes for a purchase the switch has not seen, then it is acknowledged and the purchase,
    should it still come (late, or from another switchd process), is declined 05 and takes nothing; a
    retransmission of it gets the same decline."""
    purchase = world.request(amount=2000)
    reversal = world.request("0400", "000000", 2000, pin=None, extra={90: original_data(purchase)})
    assert (await world.send(reversal))[39] == "00"
    with structlog.testing.capture_logs() as logs:
        for _ in range(2):
            assert (await world.send(purchase))[39] == "05"
    assert [e["event"] for e in logs] == ["original refused: its reversal came first"]  # then remembered
    assert await world.available() == 100_000
    assert world.ledger.model.lookup_transfers([f"POS00001:{purchase[7]}:{purchase[11]}"]) == {}


def _partial(world, preauth, actual: int, stan: str | None = None):
    return world.request(
        "0400",
        "000000",
        int(preauth[4]),
        pin=None,
        stan=stan,
        extra={90: original_data(preauth), 95: f"{actual:012d}" + "0" * 30},
    )


def _cancel(world, preauth, stan: str | None = None):
    return world.request(
        "0400", "000000", int(preauth[4]), pin=None, stan=stan, extra={90: original_data(preauth)}
    )


async def test_a_reduced_hold_counts_its_amount_against_the_daily_limit(world):
    """If a pre-auth of 50.00 under a daily pre-auth maximum of 80.00 is reduced to 30.00, then 30.00 of the
    day's maximum stays used: a second pre-auth of 50.00 fits, one of 50.01 is declined 61; and a cancel of
    the reduced hold gives its 30.00 back."""
    product = dataclasses.replace(world.product, daily_amount_max={"preauth": 8000})
    world.directory.cards[PAN] = dataclasses.replace(world.card, product=product)
    preauth = world.request("0100", "000000", 5000, stan="000601")
    assert (await world.send(preauth))[39] == "00"
    assert (await world.send(_partial(world, preauth, 3000, stan="000602")))[39] == "00"
    assert (await world.send(world.request("0100", "000000", 5001, stan="000603")))[39] == "61"
    assert (await world.send(_cancel(world, preauth, stan="000604")))[39] == "00"
    assert (await world.send(world.request("0100", "000000", 8000, stan="000605")))[39] == "00"
    assert (await world.send(world.request("0100", "000000", 1, stan="000606")))[39] == "61"


class _Interleaved:
    """The World's ledger, where the first `create_transfers` call that `when` picks first lets `meanwhile`
    run to its end: another reversal answered between this one's look and its posting."""

    def __init__(
        self,
        world: World,
        when: Callable[[Sequence[Transfer]], bool],
        meanwhile: Callable[[], Awaitable[Message]] | None,
    ) -> None:
        self.inner = world.ledger
        world.authorizer.ledger = self  # type: ignore[assignment]
        self.when = when
        self.meanwhile = meanwhile
        self.responses: list[Message] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def create_transfers(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        if self.meanwhile is not None and self.when(transfers):
            meanwhile, self.meanwhile = self.meanwhile, None
            self.responses.append(await meanwhile())
        return await self.inner.create_transfers(transfers)


async def test_a_partial_reversal_between_a_cancels_look_and_its_posting_leaves_nothing_held(world):
    """If a partial reversal of a pre-auth is answered (hold voided, reduced hold made) after a full
    reversal of it has looked and before that one posts, then the full one still releases the reduced
    hold: nothing stays held, and a completion is refused."""
    preauth = world.request("0100", "000000", 5000, stan="000611")
    assert (await world.send(preauth))[39] == "00"
    partial = _partial(world, preauth, 3000, stan="000612")
    ledger = _Interleaved(
        world,
        lambda transfers: any(
            t.transfer_id.startswith("rev:") and t.transfer_id.endswith(":000611") for t in transfers
        ),
        lambda: world.send(partial),
    )
    assert (await world.send(_cancel(world, preauth, stan="000613")))[39] == "00"
    assert [r[39] for r in ledger.responses] == ["00"]
    assert await world.available() == 100_000
    completion = world.request(
        "0220", "000000", 3000, pin=None, stan="000614", extra={90: original_data(preauth)}
    )
    assert (await world.send(completion))[39] != "00"
    assert await world.available() == 100_000


async def test_a_cancel_between_a_partial_reversals_void_and_its_reduced_hold_leaves_nothing_held(world):
    """If a full reversal of a pre-auth is answered after a partial reversal voided the hold and before it
    made the reduced hold, then the reduced hold is refused (barred) and the partial reversal is still
    acknowledged: nothing stays held; its repeat holds nothing either."""
    preauth = world.request("0100", "000000", 5000, stan="000621")
    assert (await world.send(preauth))[39] == "00"
    cancel = _cancel(world, preauth, stan="000622")
    ledger = _Interleaved(
        world,
        lambda transfers: any(t.transfer_id.endswith(":reduced") for t in transfers),
        lambda: world.send(cancel),
    )
    partial = _partial(world, preauth, 3000, stan="000623")
    with structlog.testing.capture_logs() as logs:
        assert (await world.send(partial))[39] == "00"
    assert [r[39] for r in ledger.responses] == ["00"]
    assert await world.available() == 100_000
    assert any(
        e["event"].startswith("reduced hold not made: the pre-authorization was reversed") for e in logs
    )
    assert (await world.send(partial.with_fields({}, mti="0401")))[39] == "00"
    assert await world.available() == 100_000
