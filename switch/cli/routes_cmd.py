"""`switchctl routes|standin`: the operator's routing commands (docs/networks.md "Routing").

- `routes list`: networks, BIN ranges (on-us and per network), rules and stand-in rules.
- `routes add network|range|force|exclude|limit|fee ...`, `routes remove network|range|rule ...`.
- `routes explain PAN AMOUNT`: the route a transaction would take now and why, candidate by candidate.
  switchctl does not see the links, so every link counts as up unless named with `--down`.
- `standin list|set|remove`: the stand-in rules per network, BIN range and currency.

Every change is in effect for the next request on every running switchd when the command returns (the
adapter waits for their confirmation). Amounts are typed in major units with at most 2 decimals, like
every switchctl amount (every demo currency has 2). The PAN given to `explain` is never printed back:
output shows first 6 + last 4. Exit codes: 0 done; 1 refused or not found (unknown network, no such id,
duplicate, still in use); 2 malformed input (BIN, amount, currency, PAN) or environment error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation

import asyncpg
import trio

from specs import demo
from switch.adapters.postgres.routes import PgRoutes, RoutesError
from switch.cli.common import fail, load_config_or_exit, open_database
from switch.domain.model import Pan
from switch.domain.routing import (
    BIN_LENGTH_MIN,
    ON_US,
    DecisionKind,
    PrefixRange,
    RouteRule,
    RuleKind,
    StandinRule,
    decide,
    format_minor,
    valid_network_name,
)
from switch.logs import configure_logging

__all__ = ["register"]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

_NO_ROUTE = {
    DecisionKind.UNKNOWN_BIN: "no BIN range holds the card (no such issuer)",
    DecisionKind.NO_ELIGIBLE_ROUTE: "rules exclude or limit out every network that holds the card",
    DecisionKind.ALL_LINKS_DOWN: "the link of every eligible network is down (stand-in, else 91)",
}


class _Usage(Exception):
    """Malformed input; the message is printed as it is and never repeats a PAN."""


Command = Callable[[argparse.Namespace, PgRoutes], Awaitable[int]]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `routes` and `standin` commands."""
    routes = subparsers.add_parser("routes", help="routing: networks, BIN ranges, rules, explain")
    routes_sub = routes.add_subparsers(dest="routes_command", required=True)
    routes_sub.add_parser("list", help="networks, BIN ranges, rules and stand-in rules").set_defaults(
        func=_run(_list)
    )

    add = routes_sub.add_parser("add", help="add a network, a BIN range or a rule")
    add_sub = add.add_subparsers(dest="routes_add", required=True)
    network = add_sub.add_parser("network", help="a network the switch knows (its link is configured apart)")
    network.add_argument("name")
    network.add_argument("--description", default="")
    network.set_defaults(func=_run(_add_network))
    bin_range = add_sub.add_parser("range", help="PANs of a BIN range belong to a network")
    bin_range.add_argument("network")
    bin_range.add_argument("bins", metavar="BINS", help="6-12 digits, or LOW-HIGH (e.g. 400000-499999)")
    bin_range.add_argument(
        "--priority", type=int, default=0, help="higher wins where ranges overlap (default 0)"
    )
    bin_range.set_defaults(func=_run(_add_range))
    for kind, text in (
        (RuleKind.FORCE, "send the cards of BINS only to this network"),
        (RuleKind.EXCLUDE, "never send the cards of BINS to this network"),
        (RuleKind.LIMIT, "send to this network only amounts within --min/--max"),
        (RuleKind.FEE, "this network's fee: the cheapest eligible network wins"),
    ):
        rule = add_sub.add_parser(kind.value, help=text)
        rule.add_argument("network")
        rule.add_argument(
            "--bins", default="*", help="cards it applies to: a prefix, LOW-HIGH, or * (default)"
        )
        needs_currency = kind in (RuleKind.LIMIT, RuleKind.FEE)
        rule.add_argument(
            "--currency",
            type=int,
            required=needs_currency,
            help="ISO 4217 numeric code"
            + (" of the amounts" if needs_currency else "; default: every currency"),
        )
        if kind is RuleKind.LIMIT:
            rule.add_argument("--min", dest="amount_min", help="smallest amount, major units (e.g. 1.00)")
            rule.add_argument("--max", dest="amount_max", help="largest amount, major units (e.g. 500.00)")
        if kind is RuleKind.FEE:
            rule.add_argument("--fixed", default="0", help="fixed part, major units (default 0)")
            rule.add_argument(
                "--bps", type=int, default=0, help="rate in basis points of the amount (default 0)"
            )
        rule.add_argument("--note", default="", help="why the rule exists (shown by list and explain)")
        rule.set_defaults(func=_run(_add_rule), rule_kind=kind)

    remove = routes_sub.add_parser("remove", help="remove a network, a BIN range or a rule")
    remove_sub = remove.add_subparsers(dest="routes_remove", required=True)
    rnetwork = remove_sub.add_parser("network", help="a network nothing refers to any more")
    rnetwork.add_argument("name")
    rnetwork.set_defaults(func=_run(_remove_network))
    for what in ("range", "rule"):
        p = remove_sub.add_parser(what, help=f"a network {what} by its id (see `routes list`)")
        p.add_argument("id", type=int)
        p.set_defaults(func=_run(_remove_range if what == "range" else _remove_rule))

    explain = routes_sub.add_parser("explain", help="which route a transaction would take, and why")
    explain.add_argument("pan", metavar="PAN")
    explain.add_argument("amount", metavar="AMOUNT", help="major units, at most 2 decimals (e.g. 25.50)")
    explain.add_argument(
        "--currency", type=int, default=demo.CURRENCY, help=f"ISO 4217 numeric (default {demo.CURRENCY})"
    )
    explain.add_argument(
        "--down", action="append", default=[], metavar="NETWORK", help="take this network's link as down"
    )
    explain.set_defaults(func=_run(_explain))

    standin = subparsers.add_parser("standin", help="stand-in rules: approve when a network is down or late")
    standin_sub = standin.add_subparsers(dest="standin_command", required=True)
    standin_sub.add_parser("list", help="the stand-in rules").set_defaults(func=_run(_standin_list))
    put = standin_sub.add_parser("set", help="create or replace the rule of a network, BINS and currency")
    put.add_argument("network")
    put.add_argument("--bins", default="*", help="cards it applies to: a prefix, LOW-HIGH, or * (default)")
    put.add_argument("--currency", type=int, required=True, help="ISO 4217 numeric code of the amounts")
    put.add_argument("--per-transaction", required=True, help="largest stand-in approval, major units")
    put.add_argument("--daily-amount", required=True, help="per card per day, major units")
    put.add_argument("--daily-count", type=int, required=True, help="stand-in approvals per card per day")
    put.set_defaults(func=_run(_standin_set))
    sremove = standin_sub.add_parser("remove", help="remove a stand-in rule by its id")
    sremove.add_argument("id", type=int)
    sremove.set_defaults(func=_run(_standin_remove))


# --- plumbing -------------------------------------------------------------------------------------------


def _run(command: Command) -> Callable[[argparse.Namespace], int]:
    def entry(args: argparse.Namespace) -> int:
        config = load_config_or_exit(getattr(args, "config", None))
        configure_logging("warning", "console", sys.stderr)

        async def main() -> int:
            async with open_database(config) as db:
                try:
                    return await command(args, PgRoutes(db))
                except _Usage as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return EXIT_USAGE
                except RoutesError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return EXIT_REFUSED
                except asyncpg.UndefinedTableError:
                    raise fail(
                        "the database has no routing tables: run `switchctl db migrate` first"
                    ) from None

        return trio.run(main)

    return entry


def _prefixes(text: str, *, length_min: int) -> PrefixRange:
    try:
        return PrefixRange.parse(text, length_min=length_min)
    except ValueError as exc:
        raise _Usage(f"bad BINS {text!r}: {exc}") from None


def _minor_units(text: str, what: str, *, positive: bool = False) -> int:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _Usage(f"{what} must be a number such as 25 or 25.50") from None
    minor = value * 100
    if not value.is_finite() or minor != minor.to_integral_value():
        raise _Usage(f"{what} must be a number with at most 2 decimals")
    if minor < 0 or (positive and minor == 0):
        raise _Usage(f"{what} must be {'greater than 0' if positive else '0 or more'}")
    return int(minor)


def _currency(value: int) -> int:
    if not 1 <= value <= 999:
        raise _Usage("a currency is an ISO 4217 numeric code, 1-999 (e.g. 840)")
    return value


async def _known_network(routes: PgRoutes, name: str) -> None:
    """Refuse an unknown network before building anything for it (the database would refuse it too)."""
    if name not in (await routes.table()).networks:
        raise RoutesError(f"unknown network {name!r} (`switchctl routes list` shows the networks)")


# --- routes ---------------------------------------------------------------------------------------------


async def _list(args: argparse.Namespace, routes: PgRoutes) -> int:
    table = await routes.table()
    descriptions = await routes.network_descriptions()
    print(f"networks ({len(table.networks)})")
    for name in table.networks:
        print(f"  {name:10} {descriptions.get(name, '')}".rstrip())
    print(f"BIN ranges ({len(table.bin_ranges)}; the highest priority wins where ranges overlap)")
    for r in sorted(table.bin_ranges, key=lambda r: (r.owner != ON_US, r.owner, r.order_key())):
        where = "issuing bin_ranges" if r.owner == ON_US else "range"
        print(f"  {where} #{r.range_id:<4} {r.owner:10} {r.prefixes!s:26} priority {r.priority}")
    print(f"rules ({len(table.rules)})")
    for rule in sorted(table.rules, key=lambda r: r.rule_id):
        print(f"  rule #{rule.rule_id:<4} {rule.describe()}")
    _print_standin(table.standin_rules)
    return EXIT_OK


async def _add_network(args: argparse.Namespace, routes: PgRoutes) -> int:
    if not valid_network_name(args.name):
        raise _Usage("a network name is 1-32 lower-case letters, digits or _ (not on_us)")
    await routes.add_network(args.name, description=args.description)
    print(f"network {args.name} added (configure its link for switchd to reach it)")
    return EXIT_OK


async def _add_range(args: argparse.Namespace, routes: PgRoutes) -> int:
    prefixes = _prefixes(args.bins, length_min=BIN_LENGTH_MIN)
    await _known_network(routes, args.network)
    added = await routes.add_bin_range(args.network, prefixes, priority=args.priority)
    print(f"range #{added.range_id}: {added.prefixes} -> {added.owner} (priority {added.priority})")
    return EXIT_OK


async def _add_rule(args: argparse.Namespace, routes: PgRoutes) -> int:
    kind: RuleKind = args.rule_kind
    scope = _prefixes(args.bins, length_min=0)
    currency = None if args.currency is None else _currency(args.currency)
    amount_min = amount_max = None
    fee_fixed = fee_bps = 0
    if kind is RuleKind.LIMIT:
        if args.amount_min is None and args.amount_max is None:
            raise _Usage("a limit rule needs --min, --max or both")
        if args.amount_min is not None:
            amount_min = _minor_units(args.amount_min, "--min")
        if args.amount_max is not None:
            amount_max = _minor_units(args.amount_max, "--max")
    if kind is RuleKind.FEE:
        fee_fixed = _minor_units(args.fixed, "--fixed")
        if not 0 <= args.bps <= 10_000:
            raise _Usage("--bps must be 0 to 10000")
        fee_bps = args.bps
    await _known_network(routes, args.network)
    try:
        rule = RouteRule(
            rule_id=0,
            kind=kind,
            network=args.network,
            scope=scope,
            currency=currency,
            amount_min=amount_min,
            amount_max=amount_max,
            fee_fixed=fee_fixed,
            fee_bps=fee_bps,
            note=args.note,
        )
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    added = await routes.add_rule(rule)
    print(f"rule #{added.rule_id}: {added.describe()}")
    return EXIT_OK


async def _remove_network(args: argparse.Namespace, routes: PgRoutes) -> int:
    if not await routes.remove_network(args.name):
        raise RoutesError(f"no network {args.name!r}")
    print(f"network {args.name} removed")
    return EXIT_OK


async def _remove_range(args: argparse.Namespace, routes: PgRoutes) -> int:
    if not await routes.remove_bin_range(args.id):
        raise RoutesError(f"no network BIN range #{args.id} (on-us ranges belong to the issuing data)")
    print(f"range #{args.id} removed")
    return EXIT_OK


async def _remove_rule(args: argparse.Namespace, routes: PgRoutes) -> int:
    if not await routes.remove_rule(args.id):
        raise RoutesError(f"no rule #{args.id}")
    print(f"rule #{args.id} removed")
    return EXIT_OK


async def _explain(args: argparse.Namespace, routes: PgRoutes) -> int:
    try:
        pan = Pan(args.pan.strip())
    except ValueError:
        raise _Usage("PAN must be 12 to 19 digits") from None
    if not pan.luhn_ok:
        raise _Usage(f"PAN {pan.masked} fails the Luhn check (the switch declines it before routing)")
    amount = _minor_units(args.amount, "AMOUNT")
    currency = _currency(args.currency)
    table = await routes.table()
    down = set(args.down)
    unknown = sorted(down - set(table.networks))
    if unknown:
        raise RoutesError(f"unknown network {unknown[0]!r} in --down")
    decision = decide(table, pan=pan, amount=amount, currency=currency, link_up=lambda name: name not in down)
    links = f"links down: {', '.join(sorted(down))}" if down else "every link taken as up"
    print(f"card {pan.masked}, amount {format_minor(amount)}, currency {currency} ({links})")
    print(decision.explanation_text())
    if decision.route is None:
        print(f"route: none - {_NO_ROUTE[decision.kind]}")
    else:
        fallbacks = ", ".join(decision.fallbacks) or "none"
        print(f"route: {decision.route}" + ("" if decision.route == ON_US else f" (fallbacks: {fallbacks})"))
    return EXIT_OK


# --- stand-in -------------------------------------------------------------------------------------------


def _print_standin(rules: tuple[StandinRule, ...]) -> None:
    print(f"stand-in rules ({len(rules)})")
    for rule in sorted(rules, key=lambda r: r.standin_id):
        print(f"  stand-in #{rule.standin_id:<4} {rule.describe()}")


async def _standin_list(args: argparse.Namespace, routes: PgRoutes) -> int:
    _print_standin((await routes.table()).standin_rules)
    return EXIT_OK


async def _standin_set(args: argparse.Namespace, routes: PgRoutes) -> int:
    scope = _prefixes(args.bins, length_min=0)
    currency = _currency(args.currency)
    per_transaction = _minor_units(args.per_transaction, "--per-transaction", positive=True)
    daily_amount = _minor_units(args.daily_amount, "--daily-amount", positive=True)
    if args.daily_count <= 0:
        raise _Usage("--daily-count must be greater than 0 (remove the rule to stop stand-in)")
    await _known_network(routes, args.network)
    try:
        rule = StandinRule(
            standin_id=0,
            network=args.network,
            scope=scope,
            currency=currency,
            per_transaction_amount_max=per_transaction,
            daily_amount_max=daily_amount,
            daily_count_max=args.daily_count,
        )
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    stored = await routes.set_standin(rule)
    print(f"stand-in #{stored.standin_id}: {stored.describe()}")
    return EXIT_OK


async def _standin_remove(args: argparse.Namespace, routes: PgRoutes) -> int:
    if not await routes.remove_standin(args.id):
        raise RoutesError(f"no stand-in rule #{args.id}")
    print(f"stand-in rule #{args.id} removed")
    return EXIT_OK
