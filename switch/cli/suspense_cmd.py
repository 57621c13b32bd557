"""`switchctl suspense list|recover`: network advices booked to suspense (docs/networks.md, "Advices").

- `list`: the advices our cardholders' accounts could not cover, still owed (`--all`: settled ones too),
  oldest first, PANs masked.
- `recover ADVICE_ID`: the cardholder pays what is still owed of one, from the card's account the advice
  was for (else its first account in the advice's currency), once; refused while that account cannot
  cover it.

On the database only (no HSM, no PAN vault: nothing here needs a clear PAN). A running switchd needs
nothing: a later reversal of the advice by the network gives the payment back to the cardholder. Exit
codes: 0 done (or listed), 1 refused or nothing to do, 2 usage or environment error.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC

import trio

from switch.adapters.postgres.suspense import PgAdviceSuspense, Recovery, SuspenseItem
from switch.cli.common import load_config_or_exit, open_database
from switch.logs import configure_logging

__all__ = ["register"]

EXIT_OK = 0
EXIT_REFUSED = 1

_REFUSALS = {
    Recovery.ALREADY_RECOVERED: "already recovered: nothing taken again",
    Recovery.NOTHING_OWED: "nothing owed: the network reversed it",
    Recovery.NOT_FOUND: "no advice booked to suspense with that id (see `switchctl suspense list`)",
    Recovery.NO_ACCOUNT: "the card has no account in the advice's currency",
    Recovery.INSUFFICIENT_FUNDS: "the cardholder's account cannot cover it yet: nothing taken",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `suspense` command."""
    suspense = subparsers.add_parser("suspense", help="network advices booked to suspense: list, recover")
    sub = suspense.add_subparsers(dest="suspense_command", required=True)
    listing = sub.add_parser("list", help="advices still owed by our cardholders, oldest first")
    listing.add_argument("--all", action="store_true", help="also those recovered or reversed")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=_list)
    recover = sub.add_parser("recover", help="the cardholder pays what is owed of one advice")
    recover.add_argument("advice_id", metavar="ADVICE_ID", help="the advice's id (from `suspense list`)")
    recover.set_defaults(func=_recover)


def _row(item: SuspenseItem) -> dict[str, object]:
    return {
        "advice_id": item.advice_id,
        "network": item.network,
        "rrn": item.rrn,
        "card": item.pan_masked,
        "amount": item.amount,
        "currency": item.currency,
        "reversed": item.reversed,
        "recovered": item.recovered,
        "owed": item.owed,
        "booked_at": item.booked_at.astimezone(UTC).isoformat(),
    }


_HEADER = (
    f"{'BOOKED (UTC)':19}  {'NETWORK':8} {'RRN':12}  {'CARD':19} {'CUR':3} {'AMOUNT':>12} {'REVERSED':>12} "
    f"{'RECOVERED':>12} {'OWED':>12}  ADVICE ID"
)


def _line(item: SuspenseItem) -> str:
    return (
        f"{item.booked_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}  {item.network:8} {item.rrn:12}  "
        f"{item.pan_masked or '-':19} {item.currency:03d} {item.amount:>12} {item.reversed:>12} "
        f"{item.recovered:>12} {item.owed:>12}  {item.advice_id}"
    )


def _list(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    configure_logging("warning", "console", sys.stderr)

    async def main() -> list[SuspenseItem]:
        async with open_database(config) as db:
            return await PgAdviceSuspense(db).items(open_only=not args.all)

    items = trio.run(main)
    if args.json:
        for item in items:
            print(json.dumps(_row(item)))
        return EXIT_OK
    print(_HEADER)
    for item in items:
        print(_line(item))
    owed = sum(item.owed for item in items)
    print(f"{len(items)} advice{'' if len(items) == 1 else 's'}, {owed} owed (minor units)")
    return EXIT_OK


def _recover(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    configure_logging("warning", "console", sys.stderr)

    async def main() -> tuple[Recovery, SuspenseItem | None]:
        async with open_database(config) as db:
            return await PgAdviceSuspense(db).recover(args.advice_id)

    outcome, item = trio.run(main)
    if outcome is not Recovery.RECOVERED:
        print(f"{args.advice_id}: {_REFUSALS[outcome]}", file=sys.stderr)
        return EXIT_REFUSED
    assert item is not None
    print(f"recovered {item.recovered} (minor units, currency {item.currency:03d}) from {item.pan_masked}")
    return EXIT_OK
