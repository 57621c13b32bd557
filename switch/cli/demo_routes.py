"""Demo routing data: the three networks of `specs.demo_networks`, their BIN ranges, two sample rules and
stand-in rules, so `make run` routes foreign demo cards and `switchctl routes explain` has a story to tell.

Idempotent: every row is added only if its like is not there yet, so a second call adds nothing and an
operator's changes to these rows are kept (a removed row does come back on the next call). Concurrent
calls are serialised by a transaction-level advisory lock. TEST DATA: real BIN tables come from the
networks.
"""

from __future__ import annotations

from dataclasses import dataclass

from specs.demo_networks import NETWORKS
from switch.adapters.postgres.db import AnyConnection, Database

__all__ = [
    "BROAD_RANGES",
    "DEMO_STANDIN_DAILY_AMOUNT_MAX",
    "DEMO_STANDIN_DAILY_COUNT_MAX",
    "DEMO_STANDIN_PER_TRANSACTION_MAX",
    "DemoRoutesSummary",
    "seed_demo_routes",
]

SPECIFIC_PRIORITY = 10
BROAD_PRIORITY = 0
# Low-priority catch-alls: any other Visa-like 4 and UnionPay 62 card goes to those networks.
BROAD_RANGES: tuple[tuple[str, str, str], ...] = (
    ("visa", "400000", "499999"),
    ("cups", "620000", "629999"),
)
DEMO_STANDIN_PER_TRANSACTION_MAX = 5_000  # minor units: 50.00 in every demo currency
DEMO_STANDIN_DAILY_AMOUNT_MAX = 10_000  # 100.00 per card per day
DEMO_STANDIN_DAILY_COUNT_MAX = 3
_DESCRIPTIONS = {
    "visa": "Visa (demo: netsim --network visa)",
    "cups": "China UnionPay (demo: netsim --network cups)",
    "shetab": "Shetab, Iran (demo: netsim --network shetab)",
}
# Any constant works; it only has to be the same for every seeding process on this database.
_ADVISORY_LOCK_KEY = 0x5357_5254  # "SWRT"


@dataclass(frozen=True, slots=True)
class DemoRoutesSummary:
    networks: int
    bin_ranges: int
    rules: int
    standin_rules: int

    @property
    def created(self) -> bool:
        return bool(self.networks or self.bin_ranges or self.rules or self.standin_rules)


def _shetab_bins_in_broad_ranges() -> list[tuple[str, str]]:
    """(broad network, BIN) for each Shetab BIN that a broad range of another network holds (621986 and
    627353 are inside UnionPay's 62): excluded there, so a Shetab card never goes abroad when Shetab is
    down (it gets stand-in or 91 instead)."""
    shetab = next(n for n in NETWORKS if n.name == "shetab")
    return [
        (network, bin6) for network, low, high in BROAD_RANGES for bin6 in shetab.bins if low <= bin6 <= high
    ]


async def seed_demo_routes(database: Database) -> DemoRoutesSummary:
    """Add whatever of the demo routing data is missing; how many rows of each kind were added."""

    async def work(conn: AnyConnection) -> DemoRoutesSummary:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_LOCK_KEY)
        networks = ranges = rules = standin = 0
        for net in NETWORKS:
            added = await conn.fetchval(
                "INSERT INTO networks (name, description) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING "
                "RETURNING name",
                net.name,
                _DESCRIPTIONS.get(net.name, ""),
            )
            networks += added is not None
        wanted_ranges = [(n.name, b, b, SPECIFIC_PRIORITY) for n in NETWORKS for b in n.bins]
        wanted_ranges += [(name, low, high, BROAD_PRIORITY) for name, low, high in BROAD_RANGES]
        for name, low, high, priority in wanted_ranges:
            added = await conn.fetchval(
                "INSERT INTO network_bin_ranges (network, low_prefix, high_prefix, priority) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (network, low_prefix, high_prefix) DO NOTHING "
                "RETURNING range_id",
                name,
                low,
                high,
                priority,
            )
            ranges += added is not None
        for network, bin6 in _shetab_bins_in_broad_ranges():
            added = await conn.fetchval(
                "INSERT INTO route_rules (kind, network, low_prefix, high_prefix, note) "
                "SELECT 'exclude', $1, $2, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM route_rules "
                "WHERE kind = 'exclude' AND network = $1 AND low_prefix = $2 AND high_prefix = $2) "
                "RETURNING rule_id",
                network,
                bin6,
                "demo: a Shetab BIN inside a broad range",
            )
            rules += added is not None
        for net in NETWORKS:
            for currency in net.currencies:
                added = await conn.fetchval(
                    "INSERT INTO standin_rules (network, currency, per_transaction_amount_max, "
                    "daily_amount_max, daily_count_max) VALUES ($1, $2, $3, $4, $5) "
                    "ON CONFLICT (network, low_prefix, high_prefix, currency) DO NOTHING RETURNING standin_id",
                    net.name,
                    currency,
                    DEMO_STANDIN_PER_TRANSACTION_MAX,
                    DEMO_STANDIN_DAILY_AMOUNT_MAX,
                    DEMO_STANDIN_DAILY_COUNT_MAX,
                )
                standin += added is not None
        return DemoRoutesSummary(networks=networks, bin_ranges=ranges, rules=rules, standin_rules=standin)

    return await database.transaction(work)
