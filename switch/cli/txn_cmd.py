"""`switchctl txn show RRN`: what the journal recorded for a retrieval reference number.

The journal holds requests and responses already masked (first 6 + last 4, no track, PIN block, MAC or
keys), so what is printed here is what is stored. Exit codes: 0 found, 1 no such RRN, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import trio

from switch.adapters.postgres.journal import PgJournal
from switch.cli.common import load_config_or_exit, open_database
from switch.logs import configure_logging

__all__ = ["register"]

_SUMMARY = (
    "recorded_at",
    "business_date",
    "node_name",
    "terminal_id",
    "merchant_id",
    "mti",
    "processing_code",
    "transaction_type",
    "stan",
    "transmission",
    "rrn",
    "pan_masked",
    "amount",
    "currency",
    "result",
    "response_code",
    "auth_code",
    "route",
    "transfer_id",
    "latency_us",
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    txn = subparsers.add_parser("txn", help="transactions from the journal: show by RRN")
    txn_sub = txn.add_subparsers(dest="txn_command", required=True)
    show = txn_sub.add_parser("show", help="every journal line with this RRN (masked)")
    show.add_argument("rrn", help="retrieval reference number, 12 characters")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    show.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    if len(args.rrn) != 12 or not args.rrn.isalnum():
        print("error: an RRN is 12 letters or digits", file=sys.stderr)
        return 2
    config = load_config_or_exit(getattr(args, "config", None))
    configure_logging("warning", "console", sys.stderr)

    async def main() -> list[dict[str, Any]]:
        async with open_database(config) as db:
            return await PgJournal(db).by_rrn(args.rrn)

    rows = trio.run(main)
    if not rows:
        print(f"no transaction with RRN {args.rrn}", file=sys.stderr)
        return 1
    for row in rows:
        if args.json:
            print(json.dumps({k: row[k] for k in (*_SUMMARY, "request", "response")}, default=str))
            continue
        for key in _SUMMARY:
            print(f"{key:17} {row[key] if row[key] is not None else ''}")
        for key in ("request", "response"):
            fields = row[key]
            fields = json.loads(fields) if isinstance(fields, str) else fields
            print(f"{key:17} " + " ".join(f"{k}={v}" for k, v in fields.items()))
        print()
    return 0
