"""`switchctl saf list|retry|purge`: the operator's view of the store-and-forward queue.

- `list`: entries in queue order (undelivered by default; `--state` for others), PANs masked.
- `retry`: make entries due now (`--expired` also brings expired ones back, with a fresh lifetime).
- `purge`: take entries out of delivery for good, with a reason (logged, and kept on the row).

These work on the database only: no HSM and no PAN vault, since nothing here shows or needs a clear PAN.
A running switchd picks a retried entry up at its next poll. Exit codes: 0 done, 1 nothing matched, 2
usage or environment error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import trio

from switch.adapters.postgres.saf import PgSafQueue, SafListing
from switch.cli.common import fail, load_config_or_exit, open_database
from switch.domain.saf import SafError, SafState
from switch.logs import configure_logging

__all__ = ["register"]

EXIT_OK = 0
EXIT_NOTHING = 1
_STATES = [s.value for s in SafState]


class _UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `saf` command."""
    saf = subparsers.add_parser("saf", help="store-and-forward queue: list, retry, purge")
    sub = saf.add_subparsers(dest="saf_command", required=True)

    listing = sub.add_parser("list", help="list entries in queue order (undelivered by default)")
    listing.add_argument("--network", help="only this network")
    listing.add_argument(
        "--state",
        action="append",
        choices=[*_STATES, "all"],
        help="only entries in this state (repeatable; default: queued and in_flight)",
    )
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.set_defaults(func=_run(_list))

    retry = sub.add_parser("retry", help="make entries due now")
    _selection(retry)
    retry.add_argument("--expired", action="store_true", help="also re-queue expired entries")
    retry.set_defaults(func=_run(_retry))

    purge = sub.add_parser("purge", help="remove entries from delivery for good (with a reason)")
    _selection(purge)
    purge.add_argument("--reason", required=True, help="why (kept on the entry and logged)")
    purge.set_defaults(func=_run(_purge))


def _selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", metavar="ID", type=int, nargs="*", help="entry ids (from `saf list`)")
    parser.add_argument("--network", help="every matching entry of this network")
    parser.add_argument("--all", action="store_true", help="every matching entry")


Command = Callable[[argparse.Namespace, PgSafQueue], Awaitable[int]]


def _run(command: Command) -> Callable[[argparse.Namespace], int]:
    def entry(args: argparse.Namespace) -> int:
        config = load_config_or_exit(args.config)
        configure_logging("warning", "console", sys.stderr)

        async def main() -> int:
            async with open_database(config) as db:
                queue = PgSafQueue(db, None, clock=_UtcClock())
                try:
                    return await command(args, queue)
                except asyncpg.UndefinedTableError:
                    raise fail(
                        "the database has no store-and-forward queue: run `switchctl db migrate`"
                    ) from None
                except SafError as exc:
                    raise fail(str(exc)) from None

        return trio.run(main)

    return entry


def _ids_or_exit(args: argparse.Namespace) -> list[int] | None:
    """The entry ids chosen, or None for "every entry" of --network / --all. One way of choosing only."""
    chosen = sum((bool(args.ids), args.network is not None, bool(args.all)))
    if chosen != 1:
        raise fail("name entry ids, or --network NAME, or --all (exactly one of them)")
    return list(args.ids) if args.ids else None


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _line(item: SafListing) -> str:
    amount = "-" if item.amount is None else f"{item.amount}/{item.currency or '-'}"
    return (
        f"{item.entry_id:>8}  {item.network:8} {item.kind:8} {item.mti} {item.state.value:12} "
        f"{item.attempts:>3}  {_when(item.created_at)}  {_when(item.next_attempt_at)}  "
        f"{_when(item.expires_at)}  {item.last_response_code or '-':>2}  {item.pan_masked or '-':19} "
        f"{amount:>14}  {item.key}"
    )


_HEADER = (
    f"{'ID':>8}  {'NETWORK':8} {'KIND':8} {'MTI':4} {'STATE':12} {'TRY':>3}  {'CREATED (UTC)':19}  "
    f"{'NEXT ATTEMPT':19}  {'EXPIRES':19}  RC  {'PAN':19} {'AMOUNT (MINOR)':>14}  KEY"
)


async def _list(args: argparse.Namespace, queue: PgSafQueue) -> int:
    states: list[SafState] | None = None
    if args.state:
        states = list(SafState) if "all" in args.state else [SafState(s) for s in args.state]
    if args.limit < 1:
        raise fail("--limit must be at least 1")
    rows = await queue.list_entries(network=args.network, states=states, limit=args.limit)
    print(_HEADER)
    for item in rows:
        print(_line(item))
    print(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}")
    return EXIT_OK


async def _retry(args: argparse.Namespace, queue: PgSafQueue) -> int:
    ids = _ids_or_exit(args)
    rows = await queue.retry(entry_ids=ids, network=args.network, include_expired=args.expired)
    for item in rows:
        print(f"retry {item.entry_id} ({item.network} {item.kind} {item.pan_masked or '-'}): due now")
    if not rows:
        print("nothing to retry (only queued entries, and expired ones with --expired)", file=sys.stderr)
        return EXIT_NOTHING
    print(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'} due now")
    return EXIT_OK


async def _purge(args: argparse.Namespace, queue: PgSafQueue) -> int:
    ids = _ids_or_exit(args)
    rows = await queue.purge(entry_ids=ids, network=args.network, reason=args.reason)
    for item in rows:
        print(f"purged {item.entry_id} ({item.network} {item.kind} {item.pan_masked or '-'})")
    if not rows:
        print("nothing to purge (only queued, in-flight and expired entries)", file=sys.stderr)
        return EXIT_NOTHING
    print(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'} purged")
    return EXIT_OK
