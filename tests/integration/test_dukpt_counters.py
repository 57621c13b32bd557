"""PgKsnCounters on a real PostgreSQL: the DUKPT replay rules of KsnReplayGuard, shared by every process on
the database, and one winner when two use one counter at once."""

from __future__ import annotations

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.adapters.postgres.db import Database, DatabaseSettings
from switch.adapters.postgres.dukpt import PgKsnCounters
from switch.domain.dukpt import KsnReplayGuard

PAD = "FFFF9876543210:102535"


async def test_a_new_counter_is_taken_once_and_its_request_may_come_again(db):
    """If a counter is used, then the same request may use it again (a retransmission), another may not."""
    counters = PgKsnCounters(db)
    assert await counters.use(PAD, 5, "DKPOS001:1201120000:000001")
    assert await counters.use(PAD, 5, "DKPOS001:1201120000:000001")
    assert not await counters.use(PAD, 5, "DKPOS001:1201120001:000002")


async def test_out_of_order_inside_the_window_passes_and_behind_it_is_refused(db):
    """If counters come out of order within the window they pass once; one the window behind is refused."""
    counters = PgKsnCounters(db, window=8)
    assert await counters.use(PAD, 100, "a")
    assert await counters.use(PAD, 95, "b")
    assert not await counters.use(PAD, 95, "c")
    assert not await counters.use(PAD, 92, "d")
    assert await counters.use(PAD, 93, "e")


async def test_pin_pads_have_their_own_counters(db):
    """If two PIN pads use the same counter, then both are accepted."""
    counters = PgKsnCounters(db)
    assert await counters.use(PAD, 7, "a")
    assert await counters.use("FFFF9876543210:102536", 7, "b")


async def test_only_the_window_is_kept(db):
    """If a PIN pad goes on and on, then only its last `window` counters stay in the table."""
    counters = PgKsnCounters(db, window=8)
    for counter in range(1, 51):
        assert await counters.use(PAD, counter, f"r{counter}")
    kept = await db.fetch("SELECT counter FROM dukpt_counters WHERE pin_pad = $1 ORDER BY counter", PAD)
    assert [r["counter"] for r in kept] == list(range(43, 51))


async def test_another_process_on_the_database_refuses_a_replay(database_url):
    """If a counter was used through one database handle (one switchd process), then another handle (a
    second process, or the same after a restart) refuses it for another request."""
    first = Database(DatabaseSettings(dsn=database_url, pool_size_min=1, pool_size_max=2))
    second = Database(DatabaseSettings(dsn=database_url, pool_size_min=1, pool_size_max=2))
    await first.open()
    try:
        assert await PgKsnCounters(first).use(PAD, 11, "original")
    finally:
        await first.close()
    await second.open()
    try:
        counters = PgKsnCounters(second)
        assert not await counters.use(PAD, 11, "replay")
        assert await counters.use(PAD, 11, "original")
        assert await counters.use(PAD, 12, "next")
    finally:
        await second.close()


async def test_one_counter_used_at_once_by_many_requests_has_one_winner(database_url):
    """If twenty requests on two processes use one counter at the same moment, then exactly one gets it."""
    handles = [
        Database(DatabaseSettings(dsn=database_url, pool_size_min=1, pool_size_max=10)) for _ in range(2)
    ]
    for handle in handles:
        await handle.open()
    try:
        results: list[bool] = []

        async def use(n: int) -> None:
            results.append(await PgKsnCounters(handles[n % 2]).use(PAD, 21, f"request-{n}"))

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(use, n)
        assert sorted(results) == [False] * 19 + [True]
    finally:
        for handle in handles:
            await handle.close()


async def test_the_table_follows_the_guards_rules(db):
    """If any sequence of uses (two PIN pads, counters in and out of order, retransmissions) goes to both,
    then PostgreSQL answers each as KsnReplayGuard does."""
    steps = st.lists(
        st.tuples(st.sampled_from(["A", "B"]), st.integers(1, 80), st.sampled_from(["r1", "r2", "r3", "r4"])),
        max_size=40,
    )

    @settings(max_examples=40, deadline=None)
    @given(steps)
    def same_answers(uses: list[tuple[str, int, str]]) -> None:
        trio.from_thread.run(db.execute, "TRUNCATE dukpt_counters")
        guard, counters = KsnReplayGuard(window=16), PgKsnCounters(db, window=16)
        for pad, counter, request in uses:
            expected = guard.accept(pad, counter, request)
            assert trio.from_thread.run(counters.use, pad, counter, request) == expected, (pad, counter)

    await trio.to_thread.run_sync(same_answers)
