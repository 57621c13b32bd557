"""`switchctl terminal add|show|list|disable|enable` and `switchctl merchant add|list|disable|enable`: the
terminals the switch serves and their merchants (docs/operations.md, "Terminals").

- `add TERMINAL_ID --merchant MERCHANT_ID --tmk KEY --tmk-kcv KCV [--kind pos|atm] [--mac-required]
  [--allow TYPE,...] [--dukpt-key-set ID --dukpt-device N]`: a new terminal at an existing merchant. Its
  TMK is given under the LMK (as `hsmd key import-components --type 002` prints it after the
  custodians entered the clear components that are loaded into the device) and stored only once the HSM
  computes the same check value for it as a TMK. Its TPK and TAK come with its first key exchange
  (0800, 70 = 101); until then it can sign on and send what needs no PIN and no MAC.
- `show TERMINAL_ID`, `list [--merchant ID]`: kind, merchant, state, what it may send, whether each key
  is set (never a key).
- `disable TERMINAL_ID` / `enable TERMINAL_ID`: refused (58) or served again, from the very next request on
  every running switchd (the directory's sync, as for card blocks).
- `merchant add MERCHANT_ID --name NAME --settlement-account ID [--currency 840] [--mcc 5999]`: a merchant
  and its settlement ledger account, created unless it exists; an existing account is taken only when it
  is already another merchant's settlement account in that currency (never a cardholder's or the bank's).
  `merchant list`; `merchant disable|enable` (its terminals refused 03, or served again, from the next
  request).

Exit codes: 0 done, 1 not found or refused, 2 usage or environment error.
"""

from __future__ import annotations

import argparse
import re

from switch.adapters.postgres.directory import TerminalRow
from switch.cli.cards_cmd import DirectoryContext, Refused, directory_command
from switch.cli.keys_cmd import key_refusal, valid_key_and_kcv
from switch.domain.model import DukptPinPad, Merchant, Terminal
from switch.domain.transactions import TransactionType

__all__ = ["register", "register_merchants"]

EXIT_OK = 0
_TERMINAL_ID = re.compile(r"[0-9A-Za-z]{8}")  # field 41: 8 characters
_MERCHANT_ID = re.compile(r"[0-9A-Za-z ]{1,15}")  # field 42: up to 15 characters
_KEY_SET_ID = re.compile(r"[0-9A-F]{10}")
_TMK_TYPE = "002"  # LMK key type of a TMK (hsm.keys.TMK)
_TYPES = frozenset(t.value for t in TransactionType)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `terminal` command."""
    terminal = subparsers.add_parser("terminal", help="terminals: add, show, list, disable, enable")
    sub = terminal.add_subparsers(dest="terminal_command", required=True)
    add = sub.add_parser("add", help="a new terminal at an existing merchant, with its TMK under the LMK")
    add.add_argument("terminal_id", metavar="TERMINAL_ID", help="field 41, 8 letters or digits")
    add.add_argument("--merchant", required=True, help="field 42 of its merchant (the merchant must exist)")
    add.add_argument("--kind", choices=("pos", "atm"), default="pos")
    add.add_argument("--tmk", required=True, help="its terminal master key under the LMK")
    add.add_argument("--tmk-kcv", required=True, help="the TMK's check value, 6 hex digits")
    add.add_argument("--mac-required", action="store_true", help="its requests must carry a MAC (field 64)")
    add.add_argument(
        "--allow",
        default="",
        help="comma-separated transaction types it may send (default: any its kind allows); "
        + ", ".join(sorted(_TYPES)),
    )
    add.add_argument("--dukpt-key-set", help="a DUKPT PIN pad: the key set id (10 hex, the KSN's first part)")
    add.add_argument("--dukpt-device", type=int, help="a DUKPT PIN pad: its device id (0-524287)")
    add.set_defaults(func=directory_command(_add))
    show = sub.add_parser("show", help="a terminal: kind, merchant, state, keys set")
    show.add_argument("terminal_id", metavar="TERMINAL_ID")
    show.set_defaults(func=directory_command(_show))
    listing = sub.add_parser("list", help="terminals in id order")
    listing.add_argument("--merchant", help="only this merchant's")
    listing.set_defaults(func=directory_command(_list))
    for name, text in (("disable", "refuse its requests (58)"), ("enable", "serve it again")):
        p = sub.add_parser(name, help=text)
        p.add_argument("terminal_id", metavar="TERMINAL_ID")
        p.set_defaults(func=directory_command(_disable if name == "disable" else _enable))


def register_merchants(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `merchant` command."""
    merchant = subparsers.add_parser("merchant", help="merchants: add, list, disable, enable")
    sub = merchant.add_subparsers(dest="merchant_command", required=True)
    add = sub.add_parser("add", help="a new merchant and, unless it exists, its settlement account")
    add.add_argument("merchant_id", metavar="MERCHANT_ID", help="field 42, 1-15 letters, digits or spaces")
    add.add_argument("--name", required=True)
    add.add_argument("--settlement-account", type=int, required=True, help="its ledger account id (> 0)")
    add.add_argument(
        "--currency", type=int, default=840, help="ISO 4217 numeric of the account (default 840)"
    )
    add.add_argument("--mcc", default="5999", help="merchant category code, 4 digits (default 5999)")
    add.set_defaults(func=directory_command(_merchant_add))
    sub.add_parser("list", help="merchants, their settlement account and terminals").set_defaults(
        func=directory_command(_merchant_list)
    )
    for name, text in (("disable", "refuse its terminals' requests (03)"), ("enable", "serve them again")):
        p = sub.add_parser(name, help=text)
        p.add_argument("merchant_id", metavar="MERCHANT_ID")
        p.set_defaults(func=directory_command(_merchant_disable if name == "disable" else _merchant_enable))


def _merchant_id(text: str) -> str:
    if _MERCHANT_ID.fullmatch(text) is None or not text.strip():
        raise Refused("a merchant id (field 42) is 1-15 letters, digits or spaces")
    return text.ljust(15)  # as terminals send field 42: fixed 15, padded with spaces


async def _merchant_add(ctx: DirectoryContext) -> int:
    args = ctx.args
    merchant_id = _merchant_id(args.merchant_id)
    if not args.name.strip():
        raise Refused("a merchant needs a name")
    if re.fullmatch(r"[0-9]{4}", args.mcc) is None:
        raise Refused("a merchant category code is 4 digits")
    if args.settlement_account <= 0 or not 1 <= args.currency <= 999:
        raise Refused("the settlement account id is above 0 and the currency 1-999 (ISO 4217 numeric)")
    created = await ctx.directory.add_merchant(
        Merchant(
            merchant_id=merchant_id,
            name=args.name.strip(),
            settlement_account_id=args.settlement_account,
            category_code=args.mcc,
        ),
        currency=args.currency,
    )
    account = "a new" if created else "the shared"
    print(
        f"merchant {merchant_id.strip()} added, settling into {account} ledger account "
        f"{args.settlement_account} ({args.currency:03d}); add its terminals with `switchctl terminal add`"
    )
    return EXIT_OK


async def _merchant_list(ctx: DirectoryContext) -> int:
    rows = await ctx.directory.merchant_rows()
    print(f"{'MERCHANT':15}  {'STATE':8}  {'MCC':4}  {'ACCOUNT':>20} {'CUR':3}  {'TERMINALS':>9}  NAME")
    for merchant, currency, terminals in rows:
        print(
            f"{merchant.merchant_id.strip():15}  {'active' if merchant.active else 'disabled':8}  "
            f"{merchant.category_code:4}  {merchant.settlement_account_id:>20} {currency:03d}  {terminals:>9}  "
            f"{merchant.name}"
        )
    print(f"{len(rows)} merchant(s)")
    return EXIT_OK


async def _merchant_disable(ctx: DirectoryContext) -> int:
    merchant_id = _merchant_id(ctx.args.merchant_id)
    await ctx.directory.set_merchant_active(merchant_id, False)
    print(f"merchant {merchant_id.strip()} disabled: its terminals' requests are refused (03)")
    return EXIT_OK


async def _merchant_enable(ctx: DirectoryContext) -> int:
    merchant_id = _merchant_id(ctx.args.merchant_id)
    await ctx.directory.set_merchant_active(merchant_id, True)
    print(f"merchant {merchant_id.strip()} enabled")
    return EXIT_OK


def _terminal_id(text: str) -> str:
    if _TERMINAL_ID.fullmatch(text) is None:
        raise Refused("a terminal id (field 41) is 8 letters or digits")
    return text


def _allowed(text: str) -> frozenset[str]:
    types = frozenset(t.strip() for t in text.split(",") if t.strip())
    unknown = sorted(types - _TYPES)
    if unknown:
        raise Refused(f"unknown transaction type(s): {', '.join(unknown)}")
    return types


def _dukpt(key_set_id: str | None, device_id: int | None) -> DukptPinPad | None:
    if key_set_id is None and device_id is None:
        return None
    if key_set_id is None or device_id is None:
        raise Refused("a DUKPT PIN pad needs both --dukpt-key-set and --dukpt-device")
    key_set_id = key_set_id.strip().upper()
    if _KEY_SET_ID.fullmatch(key_set_id) is None or not 0 <= device_id <= 524_287:
        raise Refused("a DUKPT key set id is 10 hex digits and a device id 0-524287")
    return DukptPinPad(key_set_id=key_set_id, bdk_under_lmk="", device_id=device_id)


async def _add(ctx: DirectoryContext) -> int:
    args = ctx.args
    terminal_id = _terminal_id(args.terminal_id)
    if _MERCHANT_ID.fullmatch(args.merchant) is None:
        raise Refused("a merchant id (field 42) is 1-15 letters, digits or spaces")
    tmk, kcv = valid_key_and_kcv(args.tmk, args.tmk_kcv, "--tmk/--tmk-kcv")
    allowed = _allowed(args.allow)
    dukpt = _dukpt(args.dukpt_key_set, args.dukpt_device)
    merchant = await ctx.directory.merchant(args.merchant.ljust(15))
    if merchant is None:
        raise Refused(f"no merchant {args.merchant.strip()!r}")
    refusal = await key_refusal(ctx.hsm, tmk, _TMK_TYPE, kcv, "TMK")
    if refusal is not None:
        raise Refused(refusal)
    await ctx.directory.add_terminal(
        Terminal(
            terminal_id=terminal_id,
            merchant_id=merchant.merchant_id,
            kind=args.kind,
            allowed_transactions=allowed,
            tmk_under_lmk=tmk,
            mac_required=args.mac_required,
            dukpt=dukpt,
        )
    )
    print(
        f"terminal {terminal_id} added at {merchant.merchant_id.strip()} ({args.kind}, TMK {kcv}); "
        "it gets its TPK and TAK at its first key exchange"
    )
    return EXIT_OK


def _describe(row: TerminalRow) -> str:
    keys = ", ".join(f"{name} {'set' if has else 'not set'}" for name, has in (
        ("TMK", row.has_tmk), ("TPK", row.has_tpk), ("TAK", row.has_tak)
    ))  # fmt: skip
    dukpt = (
        f"DUKPT key set {row.dukpt_key_set_id}, device {row.dukpt_device_id}"
        if row.dukpt_key_set_id
        else "no"
    )
    return "\n".join(
        [
            f"terminal    {row.terminal_id}",
            f"merchant    {row.merchant_id}",
            f"kind        {row.kind}",
            f"state       {'active' if row.active else 'disabled'}",
            f"allowed     {', '.join(row.allowed_transactions) or 'any its kind allows'}",
            f"MAC         {'required' if row.mac_required else 'optional'}",
            f"keys        {keys}"
            + (f" (working keys changed {row.keys_changed_at})" if row.keys_changed_at else ""),
            f"DUKPT       {dukpt}",
        ]
    )


async def _show(ctx: DirectoryContext) -> int:
    terminal_id = _terminal_id(ctx.args.terminal_id)
    found = await ctx.directory.terminal_rows(terminal_id=terminal_id)
    if not found:
        raise Refused(f"no terminal {terminal_id}")
    print(_describe(found[0]))
    return EXIT_OK


async def _list(ctx: DirectoryContext) -> int:
    merchant = ctx.args.merchant
    rows = await ctx.directory.terminal_rows(merchant.ljust(15) if merchant is not None else None)
    print(f"{'TERMINAL':8}  {'MERCHANT':15}  {'KIND':4}  {'STATE':8}  {'MAC':8}  KEYS")
    for r in rows:
        keys = "".join(name for name, has in (("M", r.has_tmk), ("P", r.has_tpk), ("A", r.has_tak)) if has)
        print(
            f"{r.terminal_id:8}  {r.merchant_id:15}  {r.kind:4}  {'active' if r.active else 'disabled':8}  "
            f"{'required' if r.mac_required else 'optional':8}  {keys or '-'}"
            + ("  DUKPT" if r.dukpt_key_set_id else "")
        )
    print(f"{len(rows)} terminal(s); keys: M TMK, P TPK, A TAK set")
    return EXIT_OK


async def _disable(ctx: DirectoryContext) -> int:
    terminal = await ctx.directory.set_terminal_active(_terminal_id(ctx.args.terminal_id), False)
    print(f"terminal {terminal.terminal_id} disabled: its requests are refused (58)")
    return EXIT_OK


async def _enable(ctx: DirectoryContext) -> int:
    terminal = await ctx.directory.set_terminal_active(_terminal_id(ctx.args.terminal_id), True)
    print(f"terminal {terminal.terminal_id} enabled")
    return EXIT_OK
