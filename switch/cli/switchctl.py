"""`switchctl`: the operator's command line (database, and more as the product grows)."""

from __future__ import annotations

import argparse
import sys

import trio

from switch.adapters.postgres.migrate import MigrationError, apply_migrations, migration_status
from switch.cli import cards_cmd, iso_cmd, keys_cmd, routes_cmd, saf_cmd, suspense_cmd, terminals_cmd, txn_cmd
from switch.cli.common import fail, load_config_or_exit, open_database
from switch.logs import configure_logging


def _db_migrate(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    configure_logging("warning", "console", sys.stderr)

    async def main() -> int:
        async with open_database(config) as db:
            try:
                applied = await db.run(apply_migrations)
            except MigrationError as exc:
                raise fail(str(exc), 1) from None
        if applied:
            for m in applied:
                print(f"applied {m.version:04d}_{m.name}")
        else:
            print("database is up to date; nothing to apply")
        return 0

    return trio.run(main)


def _db_status(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    configure_logging("warning", "console", sys.stderr)

    async def main() -> int:
        async with open_database(config) as db:
            rows = await db.run(migration_status)
        problems = 0
        for row in rows:
            if row.applied_at is None:
                state = "pending"
            elif row.checksum_matches:
                state = f"applied {row.applied_at:%Y-%m-%d %H:%M:%S %Z}"
            else:
                state = "CHANGED after it was applied"
                problems += 1
            print(f"{row.version:04d}_{row.name:30} {state}")
        pending = sum(1 for r in rows if r.applied_at is None)
        print(f"{len(rows)} migrations, {pending} pending" + (f", {problems} changed" if problems else ""))
        return 1 if problems else 0

    return trio.run(main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchctl", description="Operate the card switch.")
    parser.add_argument(
        "--config", help="TOML config file (default: $SWITCH_CONFIG, else ./switch.toml if present)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="database: migrate, status")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("migrate", help="apply pending migrations (no-op when up to date)").set_defaults(
        func=_db_migrate
    )
    db_sub.add_parser("status", help="list migrations and whether each is applied").set_defaults(
        func=_db_status
    )

    iso_cmd.register(sub)
    cards_cmd.register(sub)
    terminals_cmd.register(sub)
    terminals_cmd.register_merchants(sub)
    txn_cmd.register(sub)
    routes_cmd.register(sub)
    saf_cmd.register(sub)
    keys_cmd.register(sub)
    suspense_cmd.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
