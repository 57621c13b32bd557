"""`switchctl demo|card|hotlist|blacklist|prepaid`: the operator's issuing commands.

- `demo seed`: build the demo world (`switch.cli.demo_seed`) unless it exists.
- `card show PAN`: masked PAN, status, product, expiry, PIN tries, accounts with balances.
- `card block PAN` / `card unblock PAN`: status blocked / active.
- `hotlist add|remove|list`, `blacklist add|remove|list`: the lists the pipeline checks.
- `prepaid topup PAN AMOUNT [--id ID]`: a posted ledger transfer from the bank funding account to the card's
  wallet. The ledger applies a transfer id once, so a top-up that is run again with the same `--id` (after
  a timeout, a lost terminal, a crash) loads nothing twice; without `--id` each run is a new top-up with
  a random id (so give `--id` whenever a run may have to be repeated). The id is printed either way.

Block, unblock and list changes return only once every running switchd has confirmed it dropped what
it cached about them, so they hold for the very next request (`PgDirectory`; after 5 s without a
confirmation a warning names how many did not answer).

The PAN is typed by the operator and never printed back: output shows first 6 + last 4 only. The commands
open the database like every switchctl command (`switch.cli.common.open_database`) and the HSM switchd
would use (`switch.cli.common.open_cli_hsm`: `hsm.lmk_file` or hsmd; without either, the PUBLIC TEST LMK of
the demo, said on stderr every time). `directory_command` is that frame, for the terminal commands too.
Exit codes: 0 done, 1 not found or refused, 2 usage or environment error.
"""

from __future__ import annotations

import argparse
import re
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import asyncpg
import trio

from hsm.client import HsmClient
from switch.adapters.postgres.db import Database
from switch.adapters.postgres.directory import DirectoryError, PgDirectory, VaultKeyError, VaultKeyStore
from switch.adapters.postgres.ledger import PgLedger
from switch.cli.common import fail, load_config_or_exit, open_cli_hsm, open_database
from switch.cli.demo_seed import FUNDING_ACCOUNT_ID, SeedError, seed_demo
from switch.domain.ledger_types import Transfer, TransferKind, TransferResult
from switch.domain.model import AccountKind, CardStatus, Pan
from switch.domain.pan_vault import PanVault
from switch.logs import configure_logging

__all__ = ["DirectoryContext", "Refused", "directory_command", "register"]

EXIT_OK = 0
EXIT_REFUSED = 1
_ACCOUNT_NAMES = {
    AccountKind.DEFAULT: "default",
    AccountKind.SAVINGS: "savings",
    AccountKind.CHECKING: "checking",
    AccountKind.CREDIT: "credit",
    AccountKind.PREPAID: "prepaid",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `demo`, `card`, `hotlist`, `blacklist` and `prepaid` commands."""
    demo = subparsers.add_parser("demo", help="demo data")
    demo_sub = demo.add_subparsers(dest="demo_command", required=True)
    demo_sub.add_parser(
        "seed", help="create the demo world (cards, terminals, balances) unless it exists"
    ).set_defaults(func=directory_command(_demo_seed))

    card = subparsers.add_parser("card", help="show, block or unblock a card")
    card_sub = card.add_subparsers(dest="card_command", required=True)
    for name, func, text in (
        ("show", _card_show, "masked PAN, status, product and accounts with balances"),
        ("block", _card_block, "set the card's status to blocked (declined 62)"),
        ("unblock", _card_unblock, "set the card's status back to active"),
    ):
        p = card_sub.add_parser(name, help=text)
        p.add_argument("pan", metavar="PAN")
        p.set_defaults(func=directory_command(func))

    hot = subparsers.add_parser("hotlist", help="hot list: reported cards")
    hot_sub = hot.add_subparsers(dest="hotlist_command", required=True)
    add = hot_sub.add_parser("add", help="hot-list a card (pick up by default)")
    add.add_argument("pan", metavar="PAN")
    add.add_argument("--reason", default="reported by operator")
    add.add_argument(
        "--response",
        choices=("04", "62"),
        default="04",
        help="04 pick up card (default) or 62 restricted card",
    )
    add.set_defaults(func=directory_command(_hotlist_add))
    remove = hot_sub.add_parser("remove", help="take a card off the hot list")
    remove.add_argument("pan", metavar="PAN")
    remove.set_defaults(func=directory_command(_hotlist_remove))
    hot_sub.add_parser("list", help="list hot-listed cards (masked)").set_defaults(
        func=directory_command(_hotlist_list)
    )

    black = subparsers.add_parser("blacklist", help="black list: barred PANs, BINs, terminals, merchants")
    black_sub = black.add_subparsers(dest="blacklist_command", required=True)
    badd = black_sub.add_parser("add", help="bar a PAN, BIN prefix, terminal id or merchant id")
    badd.add_argument("kind", choices=("pan", "bin", "terminal", "merchant"))
    badd.add_argument("value")
    badd.add_argument("--reason", default="barred by operator")
    badd.set_defaults(func=directory_command(_blacklist_add))
    bremove = black_sub.add_parser("remove", help="lift a black list entry")
    bremove.add_argument("kind", choices=("pan", "bin", "terminal", "merchant"))
    bremove.add_argument("value")
    bremove.set_defaults(func=directory_command(_blacklist_remove))
    black_sub.add_parser("list", help="list black list entries (PANs masked)").set_defaults(
        func=directory_command(_blacklist_list)
    )

    prepaid = subparsers.add_parser("prepaid", help="prepaid cards")
    prepaid_sub = prepaid.add_subparsers(dest="prepaid_command", required=True)
    topup = prepaid_sub.add_parser("topup", help="load a prepaid card from the bank funding account")
    topup.add_argument("pan", metavar="PAN")
    topup.add_argument("amount", metavar="AMOUNT", help="major units, at most 2 decimals (e.g. 25.50)")
    topup.add_argument("--from-account", type=int, default=FUNDING_ACCOUNT_ID, help="ledger account to debit")
    topup.add_argument(
        "--id",
        dest="topup_id",
        help="this top-up's own id (1-48 of A-Z a-z 0-9 . _ : -); run again with the same id, it loads once",
    )
    topup.set_defaults(func=directory_command(_prepaid_topup))


# --- plumbing -------------------------------------------------------------------------------------------


_TOPUP_ID = re.compile(r"[A-Za-z0-9._:-]{1,48}")


class Refused(Exception):
    """The command cannot be done (not found, not allowed); the message is printed as it is."""


@dataclass(frozen=True)
class DirectoryContext:
    args: argparse.Namespace
    db: Database
    hsm: HsmClient
    vault: PanVault
    directory: PgDirectory
    ledger: PgLedger


Command = Callable[[DirectoryContext], Awaitable[int]]


@asynccontextmanager
async def _context(args: argparse.Namespace) -> AsyncIterator[DirectoryContext]:
    config = load_config_or_exit(args.config)
    async with open_cli_hsm(config) as hsm, open_database(config) as db:
        try:
            vault = await VaultKeyStore(db, hsm).load_or_create()
        except asyncpg.UndefinedTableError:
            raise fail("the database has no issuing tables: run `switchctl db migrate` first") from None
        except VaultKeyError as exc:
            raise fail(str(exc)) from None
        yield DirectoryContext(args, db, hsm, vault, PgDirectory(db, vault), PgLedger(db))


def directory_command(command: Command) -> Callable[[argparse.Namespace], int]:
    def entry(args: argparse.Namespace) -> int:
        configure_logging("warning", "console", sys.stderr)

        async def main() -> int:
            async with _context(args) as ctx:
                try:
                    return await command(ctx)
                except (Refused, DirectoryError, SeedError) as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return EXIT_REFUSED

        return trio.run(main)

    return entry


def _pan(text: str) -> Pan:
    """The PAN the operator typed; the error never repeats it."""
    try:
        pan = Pan(text.strip())
    except ValueError:
        raise Refused("PAN must be 12 to 19 digits") from None
    if not pan.luhn_ok:
        raise Refused(f"PAN {pan.masked} fails the Luhn check")
    return pan


def _money(minor: int) -> str:
    # Demo currencies have 2 decimals (840); an exponent table comes with multi-currency support.
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def _minor_units(text: str) -> int:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise Refused("AMOUNT must be a number such as 25 or 25.50") from None
    minor = value * 100
    if not value.is_finite() or minor != minor.to_integral_value() or minor <= 0:
        raise Refused("AMOUNT must be positive with at most 2 decimals")
    return int(minor)


# --- commands -------------------------------------------------------------------------------------------


async def _demo_seed(ctx: DirectoryContext) -> int:
    summary = await seed_demo(ctx.db, ctx.ledger, ctx.hsm, ctx.vault)
    if not summary.created:
        print("demo world already present; nothing done")
        return EXIT_OK
    print(
        f"demo world created: {summary.debit_cards} debit cards, {summary.prepaid_cards} prepaid cards, "
        f"{summary.merchants} merchants, {summary.terminals} terminals, "
        f"{summary.accounts_funded} accounts funded"
    )
    for name, masked in sorted(summary.special_cards.items()):
        print(f"  special card {name:12} {masked}")
    print("demo PINs are published in docs/demo.md")
    return EXIT_OK


async def _card_show(ctx: DirectoryContext) -> int:
    pan = _pan(ctx.args.pan)
    record = await ctx.directory.card_record(pan)
    if record is None:
        raise Refused(f"no card {pan.masked}")
    card = record.card
    print(f"card        {card.pan_masked}")
    print(f"status      {card.status.value}")
    print(f"product     {record.product_name} ({card.product.kind.value})")
    print(f"expiry      {card.expiry_yymm[2:]}/{card.expiry_yymm[:2]}")
    print(f"PIN tries   {card.pin_tries} of {card.product.pin_tries_max}")
    activated = card.activation_date.isoformat() if card.activation_date else "not activated"
    print(f"activated   {activated}")
    balances = await ctx.ledger.balances([a.account_id for a in card.accounts])
    for account in card.accounts:
        b = balances.get(account.account_id)
        if b is None:
            print(f"account     {account.account_id} {_ACCOUNT_NAMES[account.kind]:8} (not in the ledger)")
            continue
        print(
            f"account     {account.account_id} {_ACCOUNT_NAMES[account.kind]:8} "
            f"available {_money(b.available)}  ledger {_money(b.ledger_balance)}  "
            f"held {_money(b.debits_pending)}  currency {b.currency}"
        )
    return EXIT_OK


async def _set_status(ctx: DirectoryContext, status: CardStatus) -> int:
    card = await ctx.directory.set_card_status(_pan(ctx.args.pan), status)
    print(f"card {card.pan_masked} is now {card.status.value}")
    return EXIT_OK


async def _card_block(ctx: DirectoryContext) -> int:
    return await _set_status(ctx, CardStatus.BLOCKED)


async def _card_unblock(ctx: DirectoryContext) -> int:
    return await _set_status(ctx, CardStatus.ACTIVE)


async def _hotlist_add(ctx: DirectoryContext) -> int:
    pan = _pan(ctx.args.pan)
    await ctx.directory.hot_list_add(pan, reason=ctx.args.reason, response_code=ctx.args.response)
    print(f"hot-listed {pan.masked} (response {ctx.args.response})")
    return EXIT_OK


async def _hotlist_remove(ctx: DirectoryContext) -> int:
    pan = _pan(ctx.args.pan)
    if not await ctx.directory.hot_list_remove(pan):
        raise Refused(f"{pan.masked} is not on the hot list")
    print(f"removed {pan.masked} from the hot list")
    return EXIT_OK


async def _hotlist_list(ctx: DirectoryContext) -> int:
    rows = await ctx.directory.hot_list_rows()
    for row in rows:
        print(f"{row.pan_masked}  {row.response_code}  {row.added_at}  {row.reason}")
    print(f"{len(rows)} hot-listed card(s)")
    return EXIT_OK


def _black_value(ctx: DirectoryContext) -> str:
    value: str = ctx.args.value
    return _pan(value).digits if ctx.args.kind == "pan" else value


async def _blacklist_add(ctx: DirectoryContext) -> int:
    shown = await ctx.directory.black_list_add(ctx.args.kind, _black_value(ctx), reason=ctx.args.reason)
    print(f"black-listed {ctx.args.kind} {shown}")
    return EXIT_OK


async def _blacklist_remove(ctx: DirectoryContext) -> int:
    if not await ctx.directory.black_list_remove(ctx.args.kind, _black_value(ctx)):
        raise Refused(f"no such {ctx.args.kind} entry on the black list")
    print(f"removed the {ctx.args.kind} entry from the black list")
    return EXIT_OK


async def _blacklist_list(ctx: DirectoryContext) -> int:
    rows = await ctx.directory.black_list_rows()
    for row in rows:
        print(f"{row.kind:8}  {row.display}  {row.added_at}  {row.reason}")
    print(f"{len(rows)} black list entr{'y' if len(rows) == 1 else 'ies'}")
    return EXIT_OK


async def _prepaid_topup(ctx: DirectoryContext) -> int:
    pan = _pan(ctx.args.pan)
    amount = _minor_units(ctx.args.amount)
    topup_id = ctx.args.topup_id if ctx.args.topup_id is not None else uuid.uuid4().hex
    if not _TOPUP_ID.fullmatch(topup_id):
        raise Refused("--id must be 1 to 48 of the characters A-Z a-z 0-9 . _ : -")
    record = await ctx.directory.card_record(pan)
    if record is None:
        raise Refused(f"no card {pan.masked}")
    wallet = record.card.account_for(AccountKind.PREPAID)
    if wallet is None:
        raise Refused(f"card {pan.masked} has no prepaid account")
    transfer = Transfer(
        transfer_id=f"topup:{topup_id}",
        kind=TransferKind.POSTED,
        debit_account_id=ctx.args.from_account,
        credit_account_id=wallet.account_id,
        amount=amount,
        currency=wallet.currency,
        reference=f"switchctl prepaid topup card {record.card.card_id}",
    )
    [result] = await ctx.ledger.create_transfers([transfer])
    if result is TransferResult.EXISTS_WITH_DIFFERENT_FIELDS:
        raise Refused(f"top-up id {topup_id} was used for a different top-up: nothing loaded")
    if result not in (TransferResult.OK, TransferResult.EXISTS):
        raise Refused(f"top-up {topup_id} refused by the ledger: {result.value}")
    balance = (await ctx.ledger.balances([wallet.account_id]))[wallet.account_id]
    done = "topped up" if result is TransferResult.OK else "already topped up (nothing loaded again):"
    print(
        f"{done} {pan.masked} by {_money(amount)}; available {_money(balance.available)}; top-up id {topup_id}"
    )
    return EXIT_OK
