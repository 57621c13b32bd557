"""The group commit helper (`Coalescer`) with a fake `send`: batching, order, splitting, errors, cancellation."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from switch.adapters.postgres.coalesce import Coalescer


class Refused(Exception):
    """The fake database rolled the whole call back (as asyncpg.PostgresError says)."""


class Wrapped(RuntimeError):
    """What a failed caller raises when the coalescer is given `error_for`."""


class FakeDatabase:
    """A `send` that records each call, answers `item!` per item, and can hold a call in flight."""

    def __init__(self) -> None:
        self.sends: list[list[str]] = []
        self.refused: set[str] = set()  # a call carrying one of these is refused whole
        self.lost = False  # every call fails as a lost connection
        self.holding = False  # each call waits for release()
        self._gate = trio.Event()

    async def send(self, items: list[str]) -> list[str]:
        self.sends.append(list(items))
        if self.holding:
            self._gate = trio.Event()
            await self._gate.wait()
        else:
            await trio.lowlevel.checkpoint()
        if self.lost:
            raise ConnectionError("connection lost")
        if self.refused.intersection(items):
            raise Refused("rolled back")
        return [f"{item}!" for item in items]

    def release(self, *, keep_holding: bool = False) -> None:
        self.holding = keep_holding
        self._gate.set()


def coalescer(db: FakeDatabase, batch_size_max: int = 256) -> Coalescer[str, str]:
    return Coalescer(db.send, batch_size_max=batch_size_max, refused=Refused)


async def behind_a_leader(
    db: FakeDatabase, batches: Coalescer[str, str], calls: list[tuple[str, list[str]]]
) -> dict[str, list[str]]:
    """Each caller's results, when `calls` queue one after the other behind a leader's call of ["L"]."""
    answers: dict[str, list[str]] = {}

    async def submit(name: str, items: list[str]) -> None:
        answers[name] = await batches.submit(items)

    db.holding = True
    async with trio.open_nursery() as nursery:
        for name, items in [("leader", ["L"]), *calls]:
            nursery.start_soon(submit, name, items)
            await trio.testing.wait_all_tasks_blocked()
        db.release()
    return answers


async def test_a_call_alone_goes_in_one_send():
    """If a call comes with nothing in flight, then its items go in one send and it gets their results."""
    db = FakeDatabase()
    batches = coalescer(db)
    assert await batches.submit(["a", "b"]) == ["a!", "b!"]
    assert db.sends == [["a", "b"]]
    stats = batches.stats()
    assert (stats.sends, stats.items, stats.batch_size_counts) == (1, 2, {2: 1})


async def test_an_empty_call_sends_nothing():
    """If a call has no items, then it returns no results and nothing is sent."""
    db = FakeDatabase()
    assert await coalescer(db).submit([]) == []
    assert db.sends == []


def test_batch_size_max_must_be_positive():
    """If batch_size_max is below 1, then the coalescer refuses it."""
    with pytest.raises(ValueError, match="batch_size_max"):
        coalescer(FakeDatabase(), batch_size_max=0)


async def test_callers_runnable_together_share_the_first_send():
    """If several callers start in the same scheduler pass, then the leader waits that pass and sends all
    of them in one call."""
    db = FakeDatabase()
    batches = coalescer(db)
    answers: dict[str, list[str]] = {}

    async def submit(item: str) -> None:
        answers[item] = await batches.submit([item])

    async with trio.open_nursery() as nursery:
        for item in "abc":
            nursery.start_soon(submit, item)
    assert answers == {"a": ["a!"], "b": ["b!"], "c": ["c!"]}
    assert len(db.sends) == 1 and sorted(db.sends[0]) == ["a", "b", "c"]


async def test_calls_queued_behind_a_batch_go_together_in_arrival_order():
    """If calls queue while a batch is in flight, then they go in the next single send, in the order they
    came, and each gets its own results."""
    db = FakeDatabase()
    answers = await behind_a_leader(
        db, coalescer(db), [("a", ["a1", "a2"]), ("b", ["b1"]), ("c", ["c1", "c2", "c3"])]
    )
    assert db.sends == [["L"], ["a1", "a2", "b1", "c1", "c2", "c3"]]
    assert answers == {"leader": ["L!"], "a": ["a1!", "a2!"], "b": ["b1!"], "c": ["c1!", "c2!", "c3!"]}


async def test_a_call_larger_than_a_batch_is_split_in_order():
    """If a call has more items than batch_size_max, then it is sent in parts, in order, the last part
    filled up with the next call's items, and it gets all its results in order."""
    db = FakeDatabase()
    batches = coalescer(db, batch_size_max=3)
    answers = await behind_a_leader(
        db, batches, [("big", [f"b{i}" for i in range(5)]), ("small", ["x", "y"])]
    )
    assert db.sends == [["L"], ["b0", "b1", "b2"], ["b3", "b4", "x"], ["y"]]
    assert answers == {"leader": ["L!"], "big": [f"b{i}!" for i in range(5)], "small": ["x!", "y!"]}
    assert batches.stats().batch_size_counts == {1: 2, 3: 2}


async def test_a_refused_batch_is_sent_again_call_by_call():
    """If the database refuses a batch, then its calls are sent again one by one and only the call that
    caused the refusal gets an error (error_for's, chained to the refusal)."""
    db = FakeDatabase()
    db.holding = True
    db.refused = {"bad"}
    batches = Coalescer(
        db.send, batch_size_max=256, refused=Refused, error_for=lambda cause: Wrapped("could not apply")
    )
    outcome: dict[str, object] = {}

    async def submit(items: list[str]) -> None:
        try:
            outcome[items[0]] = await batches.submit(items)
        except Wrapped as exc:
            outcome[items[0]] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit, ["L"])
        await trio.testing.wait_all_tasks_blocked()
        for items in (["a"], ["bad", "b2"], ["c"]):
            nursery.start_soon(submit, items)
            await trio.testing.wait_all_tasks_blocked()
        db.release()
    failed = outcome.pop("bad")
    assert isinstance(failed, Wrapped) and isinstance(failed.__cause__, Refused)
    assert outcome == {"L": ["L!"], "a": ["a!"], "c": ["c!"]}
    assert db.sends == [["L"], ["a", "bad", "b2", "c"], ["a"], ["bad", "b2"], ["c"]]
    stats = batches.stats()
    assert (stats.sends, stats.items) == (5, 9)


async def test_a_refused_call_alone_is_not_sent_again():
    """If the database refuses a batch of one call, then that call gets the refusal as raised (no
    error_for given) and nothing is sent again."""
    db = FakeDatabase()
    db.refused = {"bad"}
    with pytest.raises(Refused):
        await coalescer(db).submit(["ok", "bad"])
    assert db.sends == [["ok", "bad"]]


async def test_a_refused_part_of_a_split_call_stops_the_rest():
    """If one part of a split call is refused, then the call fails and its later parts are never sent."""
    db = FakeDatabase()
    db.refused = {"bad"}
    batches = coalescer(db, batch_size_max=2)
    with pytest.raises(Refused):
        await batches.submit(["a", "b", "bad", "c", "d"])
    assert db.sends == [["a", "b"], ["bad", "c"]]
    with trio.fail_after(1):  # not stuck: the rest of the failed call does not keep the lead
        assert await batches.submit(["after"]) == ["after!"]


async def test_a_lost_connection_reaches_every_call_of_the_batch():
    """If a send fails otherwise than by a refusal, then every call of that batch, its leader too, gets the
    error (error_for's), nothing is sent again, and later calls are served."""
    db = FakeDatabase()
    db.holding = True
    batches = Coalescer(db.send, batch_size_max=256, refused=Refused, error_for=lambda cause: Wrapped())
    outcome: dict[str, object] = {}

    async def submit(item: str) -> None:
        try:
            outcome[item] = await batches.submit([item])
        except Wrapped as exc:
            outcome[item] = exc.__cause__

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit, "L")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(submit, "a")
        nursery.start_soon(submit, "b")
        await trio.testing.wait_all_tasks_blocked()
        db.release(keep_holding=True)  # the leader's call returns; the batch of a and b is in flight
        await trio.testing.wait_all_tasks_blocked()
        db.lost = True
        db.release()
    assert outcome["L"] == ["L!"]
    assert isinstance(outcome["a"], ConnectionError) and isinstance(outcome["b"], ConnectionError)
    assert len(db.sends) == 2
    db.lost = False
    with trio.fail_after(1):
        assert await batches.submit(["after"]) == ["after!"]


async def test_a_cancelled_waiting_caller_is_removed_from_the_queue():
    """If a caller is cancelled while its items wait for the batch in flight, then they are never sent, not
    even in the leader's next batch, the others are, and later calls are served."""
    db = FakeDatabase()
    db.holding = True
    batches = coalescer(db, batch_size_max=2)
    answers: dict[str, list[str]] = {}
    scopes = {name: trio.CancelScope() for name in ("L", "kept", "gone")}

    async def submit(name: str, items: list[str] | None = None) -> None:
        with scopes[name]:
            answers[name] = await batches.submit(items or [name])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit, "L", ["L0", "L1", "L2"])  # its last part goes with the next batch
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(submit, "gone")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(submit, "kept")
        await trio.testing.wait_all_tasks_blocked()
        scopes["gone"].cancel()
        await trio.testing.wait_all_tasks_blocked()
        db.release()
    assert scopes["gone"].cancelled_caught
    assert answers == {"L": ["L0!", "L1!", "L2!"], "kept": ["kept!"]}
    assert db.sends == [["L0", "L1"], ["L2", "kept"]]
    with trio.fail_after(1):  # not stuck
        assert await batches.submit(["after"]) == ["after!"]


async def test_a_cancelled_waiting_caller_loses_only_its_unsent_parts():
    """If a split call is cancelled while waiting after one part was sent, then that part is answered to
    nobody and its later parts are never sent."""
    db = FakeDatabase()
    db.holding = True
    batches = coalescer(db, batch_size_max=2)
    answers: dict[str, list[str]] = {}
    big = trio.CancelScope()

    async def submit(name: str, items: list[str]) -> None:
        answers[name] = await batches.submit(items)

    async def submit_big() -> None:
        with big:
            answers["big"] = await batches.submit(["b0", "b1", "b2", "b3"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit, "L", ["L"])
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(submit, "x", ["x"])
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(submit_big)
        await trio.testing.wait_all_tasks_blocked()
        db.release(keep_holding=True)  # x leads next: its batch [x, b0] is in flight
        await trio.testing.wait_all_tasks_blocked()
        big.cancel()
        await trio.testing.wait_all_tasks_blocked()
        db.release()
    assert big.cancelled_caught
    assert answers == {"L": ["L!"], "x": ["x!"]}
    assert db.sends == [["L"], ["x", "b0"]]


async def test_a_cancelled_leader_still_sends_the_batch_and_hands_off():
    """If the caller whose send is in flight is cancelled, then that send completes and the callers queued
    behind it are served."""
    db = FakeDatabase()
    db.holding = True
    batches = coalescer(db)
    answers: dict[str, list[str]] = {}
    leader = trio.CancelScope()

    async def submit(item: str) -> None:
        answers[item] = await batches.submit([item])

    async def lead() -> None:
        with leader:
            await batches.submit(["L"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lead)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(submit, "a")
        nursery.start_soon(submit, "b")
        await trio.testing.wait_all_tasks_blocked()
        leader.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert db.sends == [["L"]]  # still in flight: the cancellation did not stop it
        db.release()
    assert answers == {"a": ["a!"], "b": ["b!"]}
    assert db.sends[0] == ["L"] and sorted(db.sends[1]) == ["a", "b"]
