"""The routing table over PostgreSQL: loaded whole, held in memory while listening, and replaced without a
restart when any process changes it (NOTIFY, and sync tokens for operator writes); the writes' errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest
import trio

from switch.adapters.postgres import routes as routes_module
from switch.adapters.postgres.db import Database
from switch.adapters.postgres.routes import PgRoutes, RoutesError
from switch.domain.model import Pan
from switch.domain.routing import (
    ON_US,
    DecisionKind,
    PrefixRange,
    RouteRule,
    RoutingTable,
    RuleKind,
    StandinRule,
    decide,
)

VISA_PAN = Pan("4761730000000013")
NOTIFY_WAIT_S = 5.0  # bounded wait for a plain-SQL change's notification (normally milliseconds)


def _route(table: RoutingTable, pan: Pan = VISA_PAN, amount: int = 2500) -> str | None:
    return decide(table, pan=pan, amount=amount, currency=840, link_up=lambda _: True).route


async def _eventually(check: Callable[[], Awaitable[bool]]) -> None:
    step_s = 0.01
    for _ in range(int(NOTIFY_WAIT_S / step_s)):
        if await check():
            return
        await trio.sleep(step_s)
    raise AssertionError(f"not seen within {NOTIFY_WAIT_S} s")


@pytest.fixture
async def db(db: Database) -> Database:
    """This test's database with two networks: visa owns 476173 (priority 10), cups 400000-499999 (0).

    (Requested by name rather than with usefixtures: pytest-trio does not wait for usefixtures.)
    """
    routes = PgRoutes(db)
    await routes.add_network("visa")
    await routes.add_network("cups")
    await db.execute(
        "INSERT INTO network_bin_ranges (network, low_prefix, high_prefix, priority) VALUES "
        "('visa', '476173', '476173', 10), ('cups', '400000', '499999', 0)"
    )
    return db


@pytest.fixture
async def listening(db: Database, nursery: trio.Nursery) -> PgRoutes:
    """A switchd's routes: listening, so the table is held in memory."""
    routes = PgRoutes(db, reconnect_delay_s=0.05)
    await nursery.start(routes.run)
    return routes


async def test_table_is_read_from_the_database(db: Database) -> None:
    """If the database has networks, ranges, rules and stand-in rules, then the table holds all of them."""
    await db.execute(
        "INSERT INTO route_rules (kind, network, low_prefix, high_prefix) VALUES ('exclude', 'cups', '4', '4')"
    )
    await db.execute(
        "INSERT INTO standin_rules (network, currency, per_transaction_amount_max, daily_amount_max, daily_count_max) "
        "VALUES ('visa', 840, 5000, 10000, 3)"
    )
    table = await PgRoutes(db).table()
    assert table.networks == ("cups", "visa")
    assert {(r.owner, str(r.prefixes), r.priority) for r in table.bin_ranges} == {
        ("visa", "476173", 10),
        ("cups", "400000-499999", 0),
    }
    assert [(r.kind, r.network, str(r.scope)) for r in table.rules] == [(RuleKind.EXCLUDE, "cups", "4")]
    assert [(s.network, s.per_transaction_amount_max) for s in table.standin_rules] == [("visa", 5000)]


async def test_on_us_ranges_come_from_the_issuing_table(db: Database) -> None:
    """If the issuing bin_ranges table has an on-us range, then the table routes its cards on-us."""
    await db.execute("INSERT INTO institutions (code, name) VALUES ('DEMO', 'Demo')")
    await db.execute(
        "INSERT INTO bin_ranges (low_prefix, high_prefix, owner, institution_id, priority) "
        "SELECT '476173', '476173', 'on_us', institution_id, 0 FROM institutions"
    )
    assert _route(await PgRoutes(db).table()) == ON_US


async def test_listening_table_is_served_from_memory(listening: PgRoutes) -> None:
    """If nothing changes, then repeated reads of a listening table do not go to the database."""
    loads = listening.loads
    first = await listening.table()
    for _ in range(20):
        assert await listening.table() is first
    assert listening.loads == loads


async def test_table_without_listening_reads_every_time(db: Database) -> None:
    """If the adapter is not listening (switchctl), then every read goes to the database."""
    routes = PgRoutes(db)
    await routes.table()
    await routes.table()
    assert routes.loads == 2 and not routes.caching


async def test_change_from_another_process_holds_for_the_very_next_read(
    listening: PgRoutes, other_db: Database
) -> None:
    """If another process adds a force rule, then this switchd's very next decision follows it."""
    assert _route(await listening.table()) == "visa"
    await PgRoutes(other_db).add_rule(RouteRule(rule_id=0, kind=RuleKind.FORCE, network="cups"))
    assert _route(await listening.table()) == "cups"


async def test_removal_from_another_process_holds_for_the_very_next_read(
    listening: PgRoutes, other_db: Database
) -> None:
    """If another process removes the rule it added, then the next decision is back to the BIN table."""
    operator = PgRoutes(other_db)
    rule = await operator.add_rule(RouteRule(rule_id=0, kind=RuleKind.EXCLUDE, network="visa"))
    assert _route(await listening.table()) == "cups"
    assert await operator.remove_rule(rule.rule_id)
    assert _route(await listening.table()) == "visa"


async def test_two_listening_switchds_both_follow_a_change(
    listening: PgRoutes, other_db: Database, nursery: trio.Nursery, db: Database
) -> None:
    """If two switchds listen on one database, then one operator change holds for the next read of each."""
    second = PgRoutes(other_db, reconnect_delay_s=0.05)
    await nursery.start(second.run)
    assert _route(await listening.table()) == _route(await second.table()) == "visa"
    await PgRoutes(db).add_bin_range("cups", PrefixRange.parse("476173"), priority=50)
    assert _route(await listening.table()) == _route(await second.table()) == "cups"


async def test_plain_sql_change_reaches_the_cache_by_notification(
    listening: PgRoutes, other_db: Database
) -> None:
    """If someone changes the tables with plain SQL, then the listening table follows once notified."""
    assert _route(await listening.table()) == "visa"
    await other_db.execute("UPDATE network_bin_ranges SET priority = 99 WHERE network = 'cups'")

    async def cups() -> bool:
        return _route(await listening.table()) == "cups"

    await _eventually(cups)


async def test_table_is_reloaded_in_the_background_after_a_change(
    listening: PgRoutes, other_db: Database
) -> None:
    """If a change is notified, then the listener loads the new table itself, before any request asks."""
    loads = listening.loads
    await PgRoutes(other_db).add_network("shetab")

    async def reloaded() -> bool:
        return listening.loads > loads

    await _eventually(reloaded)
    assert "shetab" in (await listening.table()).networks
    assert listening.loads == loads + 1


async def test_lost_listen_connection_reconnects_and_misses_nothing(
    listening: PgRoutes, db: Database
) -> None:
    """If the LISTEN connection is killed, then a change made meanwhile is seen and caching resumes."""
    killed = await db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE '%-routes'"
    )
    assert killed == 1
    await db.execute("INSERT INTO route_rules (kind, network) VALUES ('force', 'cups')")

    async def forced_and_caching() -> bool:
        return _route(await listening.table()) == "cups" and listening.caching

    await _eventually(forced_and_caching)


async def test_listener_is_registered_while_listening_only(db: Database) -> None:
    """If a routes adapter listens, then it has a row in route_listeners; once it stops, the row is gone."""
    async with trio.open_nursery() as nursery:
        await nursery.start(PgRoutes(db).run)
        assert await db.fetchval("SELECT count(*) FROM route_listeners") == 1
        nursery.cancel_scope.cancel()
    assert await db.fetchval("SELECT count(*) FROM route_listeners") == 0


async def test_silent_listener_is_waited_for_until_the_timeout(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a live listener never confirms, then the change is made and the writer returns after the timeout."""
    monkeypatch.setattr(routes_module, "SYNC_TIMEOUT_S", 0.2)
    await db.execute("INSERT INTO route_listeners (listener_id, acked_token) VALUES ('mute', 0)")
    started = trio.current_time()
    with trio.fail_after(5):
        await PgRoutes(db).add_network("jcb")
    assert trio.current_time() - started >= 0.2
    assert "jcb" in (await PgRoutes(db).table()).networks


async def test_stale_listener_is_not_waited_for(db: Database) -> None:
    """If a listener's heartbeat is old (its process died), then an operator's change does not wait for it."""
    await db.execute(
        "INSERT INTO route_listeners (listener_id, acked_token, seen_at) VALUES ('dead', 0, now() - interval '1 hour')"
    )
    with trio.fail_after(routes_module.SYNC_TIMEOUT_S / 2):
        await PgRoutes(db).add_network("jcb")


async def test_writes_refuse_an_unknown_network(db: Database) -> None:
    """If a range, rule or stand-in rule names an unknown network, then it is refused with that name."""
    routes = PgRoutes(db)
    with pytest.raises(RoutesError, match="unknown network 'jcb'"):
        await routes.add_bin_range("jcb", PrefixRange.parse("352800"))
    with pytest.raises(RoutesError, match="unknown network 'jcb'"):
        await routes.add_rule(RouteRule(rule_id=0, kind=RuleKind.EXCLUDE, network="jcb"))
    with pytest.raises(RoutesError, match="unknown network 'jcb'"):
        await routes.set_standin(
            StandinRule(
                standin_id=0,
                network="jcb",
                scope=PrefixRange("", ""),
                currency=840,
                per_transaction_amount_max=1,
                daily_amount_max=1,
                daily_count_max=1,
            )
        )


async def test_duplicate_range_and_network_are_refused(db: Database) -> None:
    """If a network or one of its BIN ranges exists already, then adding it again is refused."""
    routes = PgRoutes(db)
    with pytest.raises(RoutesError, match="exists already"):
        await routes.add_network("visa")
    with pytest.raises(RoutesError, match="exists already"):
        await routes.add_bin_range("visa", PrefixRange.parse("476173"))


async def test_network_in_use_is_not_removed(db: Database) -> None:
    """If a network still has BIN ranges, then removing it is refused; once it has none, it goes."""
    routes = PgRoutes(db)
    with pytest.raises(RoutesError, match="still has"):
        await routes.remove_network("cups")
    [range_id] = [r.range_id for r in (await routes.table()).bin_ranges if r.owner == "cups"]
    assert await routes.remove_bin_range(range_id)
    assert await routes.remove_network("cups")
    assert not await routes.remove_network("cups")


async def test_standin_set_replaces_the_rule_of_the_same_scope(db: Database) -> None:
    """If a stand-in rule is set twice for one network, scope and currency, then the second replaces it."""
    routes = PgRoutes(db)

    def rule(per_transaction: int) -> StandinRule:
        return StandinRule(
            standin_id=0,
            network="visa",
            scope=PrefixRange("", ""),
            currency=840,
            per_transaction_amount_max=per_transaction,
            daily_amount_max=10_000,
            daily_count_max=3,
        )

    first = await routes.set_standin(rule(5000))
    second = await routes.set_standin(rule(2000))
    table = await routes.table()
    assert first.standin_id == second.standin_id
    assert [s.per_transaction_amount_max for s in table.standin_rules] == [2000]
    decision = decide(table, pan=VISA_PAN, amount=2500, currency=840, link_up={})
    assert decision.kind is DecisionKind.ALL_LINKS_DOWN and decision.standin == second


async def test_database_refuses_rows_routing_could_not_read(db: Database) -> None:
    """If plain SQL tries a rule of the wrong shape or a reversed range, then the database refuses it."""
    bad = (
        "INSERT INTO route_rules (kind, network, amount_max) VALUES ('limit', 'visa', 100)",  # no currency
        "INSERT INTO route_rules (kind, network, fee_fixed) VALUES ('exclude', 'visa', 5)",
        "INSERT INTO network_bin_ranges (network, low_prefix, high_prefix) VALUES ('visa', '499999', '400000')",
        "INSERT INTO network_bin_ranges (network, low_prefix, high_prefix) VALUES ('visa', '4000', '4999')",
        "INSERT INTO standin_rules (network, currency, per_transaction_amount_max, daily_amount_max, daily_count_max) "
        "VALUES ('visa', 840, 20000, 10000, 3)",
        "INSERT INTO networks (name) VALUES ('on_us')",
    )
    for sql in bad:
        with pytest.raises(asyncpg.CheckViolationError):
            await db.execute(sql)
