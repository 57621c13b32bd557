"""The demo routing data: idempotent, safe to run twice at once, and routing each demo network's cards
to that network."""

from __future__ import annotations

import trio

from specs.demo import demo_pan
from specs.demo_networks import NETWORKS
from switch.adapters.postgres.db import Database
from switch.adapters.postgres.routes import PgRoutes
from switch.cli.demo_routes import DEMO_STANDIN_PER_TRANSACTION_MAX, seed_demo_routes
from switch.domain.model import Pan
from switch.domain.routing import DecisionKind, decide


async def test_seed_adds_everything_once(db: Database) -> None:
    """If the demo routes are seeded twice, then the second call adds nothing."""
    first = await seed_demo_routes(db)
    bins = sum(len(n.bins) for n in NETWORKS)
    currencies = sum(len(n.currencies) for n in NETWORKS)
    assert (first.networks, first.bin_ranges, first.rules, first.standin_rules) == (
        3,
        bins + 2,
        2,
        currencies,
    )
    again = await seed_demo_routes(db)
    assert not again.created


async def test_concurrent_seeds_add_everything_once(db: Database, other_db: Database) -> None:
    """If two processes seed at the same moment, then every row exists once."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(seed_demo_routes, db)
        nursery.start_soon(seed_demo_routes, other_db)
    assert await db.fetchval("SELECT count(*) FROM route_rules") == 2
    assert await db.fetchval("SELECT count(*) FROM networks") == 3


async def test_every_demo_bin_routes_to_its_network(db: Database) -> None:
    """If the demo routes are seeded, then a card of each demo BIN routes to the network that issues it."""
    await seed_demo_routes(db)
    table = await PgRoutes(db).table()
    for net in NETWORKS:
        for bin6 in net.bins:
            pan = Pan(demo_pan(bin6, 1))
            decision = decide(table, pan=pan, amount=100, currency=net.currencies[0], link_up=lambda _: True)
            assert decision.route == net.name, bin6
            assert decision.standin is not None
            assert decision.standin.per_transaction_amount_max == DEMO_STANDIN_PER_TRANSACTION_MAX


async def test_shetab_cards_never_fall_back_to_cups(db: Database) -> None:
    """If Shetab is down, then a Shetab card inside CUPS's broad range gets no route, not CUPS."""
    await seed_demo_routes(db)
    table = await PgRoutes(db).table()
    for bin6 in ("621986", "627353"):
        decision = decide(
            table, pan=Pan(demo_pan(bin6, 1)), amount=100, currency=364, link_up=lambda name: name != "shetab"
        )
        assert decision.kind is DecisionKind.ALL_LINKS_DOWN and decision.unavailable == ("shetab",)


async def test_broad_ranges_catch_other_cards(db: Database) -> None:
    """If a card has no specific demo BIN but starts 4 or 62, then it goes to visa or cups."""
    await seed_demo_routes(db)
    table = await PgRoutes(db).table()
    for bin6, network in (("455555", "visa"), ("625555", "cups")):
        decision = decide(table, pan=Pan(demo_pan(bin6, 1)), amount=100, currency=840, link_up=lambda _: True)
        assert decision.route == network
