"""The command line shared by `pos-sim` and `atm-sim`: options, PIN entry, one transaction or a script.

`pos.py` and `atm.py` only choose defaults (terminal, merchant, transaction list, account types); the
session is the same: connect, sign on, exchange keys (decline tolerated: then no PIN and no MAC),
run the steps, print each result. Exit status: 0 every step got its expected code (00 unless the
script says `expect=`), 1 some did not, 2 bad usage or input, 3 no connection or no answer.

With `--dukpt` the terminal is a DUKPT PIN pad: each PIN is encrypted under the key of the next KSN and
field 53 names it; the counter is kept in a small state file so a later run never reuses a KSN.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import trio

from simulators import output
from simulators.messages import (
    ENTRY_MODES,
    NEEDS_ORIGINAL,
    PIN_REQUIRED,
    Card,
    ConnectionFailed,
    DukptPinPad,
    Original,
    SimulatorError,
    TerminalIdentity,
    TransactionRequest,
    TxnType,
    demo_card,
    parse_amount,
    parse_key,
    parse_ksn,
    processing_code,
)
from simulators.script import PREVIOUS, Step, load_script
from simulators.terminal import Result, TerminalClient, open_terminal
from specs import demo

__all__ = ["Profile", "run_cli"]

EXIT_OK = 0
EXIT_DECLINED = 1
EXIT_USAGE = 2
EXIT_NO_ANSWER = 3
DEFAULT_PORT = 8583
# Transactions that carry the PIN when one is given (PIN_REQUIRED ones prompt when it is not).
_PIN_OPTIONAL = frozenset({TxnType.PURCHASE, TxnType.CASHBACK, TxnType.PREAUTH})
_NETWORK = frozenset({TxnType.SIGN_ON, TxnType.SIGN_OFF, TxnType.ECHO, TxnType.KEY_EXCHANGE})

PinReader = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Profile:
    """What distinguishes the POS from the ATM simulator."""

    prog: str
    description: str
    terminal_id: str
    merchant_id: str
    transactions: tuple[TxnType, ...]
    default_transaction: TxnType
    default_from_account: str = "00"
    default_to_account: str = "00"
    # The demo terminal with a DUKPT PIN pad, the default with --dukpt.
    dukpt_terminal_id: str = ""


def build_parser(profile: Profile) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=profile.prog, description=profile.description)
    p.add_argument(
        "transaction",
        nargs="?",
        default=profile.default_transaction.value,
        choices=[t.value for t in profile.transactions],
        help=f"what to send (default {profile.default_transaction.value}); ignored with --script",
    )
    p.add_argument("--host", default="127.0.0.1", help="switch address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"terminal port (default {DEFAULT_PORT})")
    p.add_argument(
        "--terminal",
        default=None,
        help=f"terminal id, field 41 (8 characters; default {profile.terminal_id}, "
        f"or {profile.dukpt_terminal_id or 'none'} with --dukpt)",
    )
    p.add_argument("--merchant", default=profile.merchant_id, help="merchant id, field 42 (15 characters)")
    p.add_argument("--tmk", default=None, help="terminal master key, 32 hex digits (default: the demo TMK)")
    p.add_argument(
        "--dukpt",
        action="store_true",
        help="be a DUKPT PIN pad: PINs under the key of each transaction's KSN, sent in field 53",
    )
    p.add_argument(
        "--ksn",
        default=None,
        help="DUKPT: the PIN pad's initial KSN, 20 hex digits (default: the demo terminal's)",
    )
    p.add_argument(
        "--bdk",
        default=None,
        help="DUKPT: the BDK the PIN pad's initial key is derived from, 32 hex (default: the public test BDK)",
    )
    p.add_argument(
        "--dukpt-state",
        default=None,
        help="DUKPT: file keeping the PIN pad's transaction counter between runs "
        "(default var/simulators/dukpt-TERMINAL.json)",
    )
    p.add_argument(
        "--card", default=None, help="PAN or a special demo card name (default: first demo debit card)"
    )
    p.add_argument("--expiry", default=None, help="card expiry YYMM (default: the demo expiry)")
    p.add_argument(
        "--entry-mode", default="magstripe", choices=sorted(ENTRY_MODES), help="how the card is read"
    )
    p.add_argument("--amount", default=None, help="amount as a decimal, e.g. 12.34")
    p.add_argument("--cashback", default=None, help="cashback amount (cashback transaction)")
    p.add_argument("--currency", type=int, default=demo.CURRENCY, help="ISO 4217 numeric (default 840)")
    p.add_argument("--pin", default=None, help="PIN (test cards only; prefer the prompt)")
    p.add_argument("--ask-pin", action="store_true", help="prompt for the PIN (no echo)")
    p.add_argument("--new-pin", default=None, help="new PIN for pin_change (prompted when absent)")
    p.add_argument("--from-account", default=profile.default_from_account, help="00, 10 savings, 20 checking")
    p.add_argument("--to-account", default=profile.default_to_account, help="transfer target account type")
    p.add_argument("--rrn", default=None, help="void/completion: the original's RRN")
    p.add_argument(
        "--original",
        default=None,
        help="reversal/cancel/void/completion: the original as MTI:STAN:MMDDhhmmss",
    )
    p.add_argument("--original-type", default="purchase", help="reversal: the original's transaction type")
    p.add_argument("--actual", default=None, help="partial reversal: the amount actually dispensed or kept")
    p.add_argument("--funded", action="store_true", help="load: from the merchant's funding account (28)")
    p.add_argument("--completion-0200", action="store_true", help="completion as 0200 + 25=06, not 0220")
    p.add_argument("--balance-0100", action="store_true", help="balance inquiry as 0100, not 0200")
    p.add_argument("--script", default=None, help="run the steps of this file (docs/simulators.md)")
    p.add_argument("--mac", action="store_true", help="MAC requests with the TAK (field 64)")
    p.add_argument("--no-key-exchange", action="store_true", help="skip the key exchange after sign-on")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each response")
    p.add_argument("--stan", type=int, default=None, help="first STAN (default random)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    return p


@dataclass
class _Session:
    args: argparse.Namespace
    read_pin: PinReader
    out: TextIO
    cached_pin: str | None = None

    def pin(self, step: Step, card_label: str) -> str | None:
        """The step's PIN: given in the step, on the command line, or prompted once and reused.

        Only cardholder-verified types carry one: a refund, void, completion, reversal or load never does,
        even when the command line gives a PIN for the rest of a script.
        """
        if step.type not in PIN_REQUIRED | _PIN_OPTIONAL:
            return None
        value = step.get("pin")
        if value is not None and value != "ask":
            return value
        if value is None and self.args.pin is not None:
            return str(self.args.pin)
        if not (step.type in PIN_REQUIRED or value == "ask" or self.args.ask_pin):
            return None
        if self.cached_pin is None:
            self.cached_pin = self.read_pin(f"PIN for {card_label}: ")
        return self.cached_pin

    def new_pin(self, step: Step) -> str:
        value = step.get("new_pin") or self.args.new_pin
        if value is None or value == "ask":
            value = self.read_pin("new PIN: ")
        return str(value)


def _single_step(args: argparse.Namespace) -> list[Step]:
    txn = TxnType(args.transaction)
    params: dict[str, str] = {}
    if args.amount is not None:
        params["amount"] = args.amount
    if args.cashback is not None:
        params["cashback"] = args.cashback
    if args.actual is not None:
        params["actual"] = args.actual
    if args.funded:
        params["funded"] = "yes"
    return [Step(type=txn, where="command line", params=params)]


def _command_line_original(args: argparse.Namespace, txn: TxnType) -> Original:
    if args.rrn is None and args.original is None:
        raise SimulatorError(f"{txn.value} needs --rrn or --original MTI:STAN:MMDDhhmmss")
    mti = stan = transmission = None
    if args.original is not None:
        parts = args.original.split(":")
        if len(parts) != 3:
            raise SimulatorError("--original must be MTI:STAN:MMDDhhmmss")
        mti, stan, transmission = parts
    try:
        kind = TxnType(args.original_type)
    except ValueError:
        raise SimulatorError(f"--original-type {args.original_type!r} is not a transaction type") from None
    if kind in NEEDS_ORIGINAL or kind in _NETWORK:
        raise SimulatorError("--original-type must be the type of a financial transaction")
    probe = TransactionRequest(kind, from_account=args.from_account, to_account=args.to_account)
    amount = parse_amount(args.amount) if args.amount is not None else 0
    return Original(
        processing_code=processing_code(probe),
        amount_minor=amount,
        mti=mti,
        stan=stan,
        transmission=transmission,
        rrn=args.rrn,
    )


def _card_for(args: argparse.Namespace, step: Step, txn: TxnType) -> Card:
    pan = step.get("card") or args.card
    if pan is None and txn is TxnType.LOAD:
        pan = demo.demo_pan(demo.PREPAID_BIN, 1)  # a load needs a prepaid card
    return demo_card(pan, expiry_yymm=step.get("expiry") or args.expiry)


def _request(
    session: _Session, step: Step, card: Card, results: dict[str, Result], last: Result | None
) -> TransactionRequest:
    args = session.args
    txn = step.type
    original: Original | None = None
    if txn in NEEDS_ORIGINAL:
        ref = step.get("of")
        if ref is None and step.where == "command line":
            original = _command_line_original(args, txn)
        else:
            source = last if ref in (None, PREVIOUS) else results.get(ref or "")
            if source is None:
                raise SimulatorError(f"{step.where}: no earlier transaction to refer to")
            original = source.original()
    amount_text = step.get("amount")
    if amount_text is None and txn not in NEEDS_ORIGINAL and txn not in (TxnType.BALANCE, TxnType.PIN_CHANGE):
        amount_text = args.amount
    amount = parse_amount(amount_text) if amount_text is not None else 0
    if txn is TxnType.COMPLETION and amount_text is None and original is not None:
        amount = original.amount_minor  # no amount given: complete the whole hold
    needs_amount = txn in (
        TxnType.PURCHASE,
        TxnType.CASHBACK,
        TxnType.REFUND,
        TxnType.PREAUTH,
        TxnType.WITHDRAWAL,
        TxnType.TRANSFER,
        TxnType.LOAD,
    )
    if needs_amount and amount_text is None:
        raise SimulatorError(f"{step.where}: {txn.value} needs an amount (--amount or amount=)")
    cashback_text = step.get("cashback") or (args.cashback if step.where == "command line" else None)
    if txn is TxnType.CASHBACK and cashback_text is None:
        raise SimulatorError(f"{step.where}: cashback needs a cashback amount")
    actual_text = step.get("actual")
    pin = session.pin(step, card.masked_pan)
    new_pin = session.new_pin(step) if txn is TxnType.PIN_CHANGE else None
    mti = step.get("mti")
    return TransactionRequest(
        type=txn,
        amount_minor=amount,
        cashback_minor=parse_amount(cashback_text) if cashback_text is not None else 0,
        from_account=step.get("from") or args.from_account,
        to_account=step.get("to") or args.to_account,
        pin=pin,
        new_pin=new_pin,
        original=original,
        actual_amount_minor=parse_amount(actual_text) if actual_text is not None else None,
        funded=step.flag("funded"),
        use_0200_completion=mti == "0200" or (mti is None and args.completion_0200),
        use_0100_balance=mti == "0100" or (mti is None and args.balance_0100),
        repeat=step.flag("repeat"),
        advice=step.flag("advice"),
    )


def _emit(session: _Session, result: Result, step: str | None = None) -> None:
    text = output.to_json(result, step=step) if session.args.json else output.human(result, step=step)
    print(text, file=session.out, flush=True)


def _pin_pad(args: argparse.Namespace) -> tuple[DukptPinPad, Callable[[DukptPinPad], None]]:
    """The session's DUKPT PIN pad, its counter taken up where the last run left it, and how to save it."""
    if args.ksn is not None:
        initial = parse_ksn(args.ksn, "--ksn")
    elif args.terminal in demo.DUKPT_TERMINALS:
        initial = bytes.fromhex(demo.dukpt_initial_ksn(demo.DUKPT_TERMINALS[args.terminal][1]))
    else:
        raise SimulatorError(f"--dukpt needs --ksn: {args.terminal} is not a demo DUKPT terminal")
    bdk = parse_key(args.bdk or demo.DEMO_BDK_HEX, "--bdk")
    path = Path(args.dukpt_state or f"var/simulators/dukpt-{args.terminal}.json")
    pad = DukptPinPad(bdk=bdk, initial_ksn=initial, counter=_load_counter(path, initial))
    return pad, lambda used: _save_counter(path, used)


def _load_counter(path: Path, initial: bytes) -> int:
    """The last counter this PIN pad used (0 for a new one, or when the file is for another initial KSN)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return 0
    except (OSError, ValueError) as exc:
        raise SimulatorError(f"cannot read the DUKPT state {path}: {exc.__class__.__name__}") from None
    if not isinstance(state, dict) or state.get("initial_ksn") != initial.hex().upper():
        return 0
    counter = state.get("counter")
    if not isinstance(counter, int) or counter < 0:
        raise SimulatorError(f"the DUKPT state {path} holds no valid counter")
    return counter


def _save_counter(path: Path, pad: DukptPinPad) -> None:
    # Written whole and then renamed, so an interrupted run never leaves a half-written counter. The file
    # holds the KSN and counter only (both travel in clear in every request), never a key.
    state = {"initial_ksn": pad.initial_ksn.hex().upper(), "counter": pad.counter}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(path.name + ".tmp")
        scratch.write_text(json.dumps(state) + "\n", encoding="utf-8")
        os.replace(scratch, path)
    except OSError as exc:
        raise SimulatorError(f"cannot save the DUKPT state {path}: {exc.strerror or exc}") from None


async def _run_session(session: _Session, steps: list[Step]) -> int:
    args = session.args
    identity = TerminalIdentity(terminal_id=args.terminal, merchant_id=args.merchant, currency=args.currency)
    tmk = parse_key(args.tmk or demo.DEMO_TMK_HEX, "--tmk")
    pin_pad, save_pin_pad = _pin_pad(args) if args.dukpt else (None, None)
    status = EXIT_OK
    async with open_terminal(
        args.host,
        args.port,
        identity=identity,
        tmk=tmk,
        timeout_s=args.timeout,
        mac=args.mac,
        entry_mode=ENTRY_MODES[args.entry_mode],
        stan_start=args.stan,
        pin_pad=pin_pad,
        on_pin_pad_used=save_pin_pad,
    ) as terminal:
        sign_on = await terminal.sign_on()
        _emit(session, sign_on)
        if sign_on.response_code is None:
            return EXIT_NO_ANSWER
        if not args.no_key_exchange:
            exchange = await terminal.key_exchange()
            _emit(session, exchange)
            if not exchange.approved:
                lost = "MAC is" if pin_pad is not None else "PIN and MAC are"
                print(
                    f"{args.prog}: key exchange not approved ({exchange.response_code or 'no answer'}): "
                    f"{lost} unavailable in this session",
                    file=sys.stderr,
                )
        status = await _run_steps(session, terminal, steps)
    return status


async def _run_steps(session: _Session, terminal: TerminalClient, steps: list[Step]) -> int:
    results: dict[str, Result] = {}
    last: Result | None = None
    status = EXIT_OK
    for step in steps:
        label = step.get("as") or (step.where if step.where != "command line" else None)
        if step.type in _NETWORK:
            if step.type is TxnType.KEY_EXCHANGE:
                result = await terminal.key_exchange()
            else:
                result = await terminal.transact(TransactionRequest(step.type))
        else:
            card = _card_for(session.args, step, step.type)
            request = _request(session, step, card, results, last)
            result = await terminal.transact(request, card)
            last = result
        name = step.get("as")
        if name is not None:
            results[name] = result
        _emit(session, result, label)
        if result.response_code is None:
            # Go on after a timeout (the next step may be its reversal), unless the connection is gone.
            if terminal.closed_reason is not None:
                return EXIT_NO_ANSWER
            status = EXIT_NO_ANSWER
        elif result.response_code != (step.get("expect") or "00") and status != EXIT_NO_ANSWER:
            status = EXIT_DECLINED
    return status


def _default_pin_reader(prompt: str) -> str:
    if not sys.stdin.isatty():
        raise SimulatorError("a PIN is needed: give --pin, or run on a terminal to be prompted")
    return getpass.getpass(prompt)


def run_cli(
    profile: Profile,
    argv: Sequence[str] | None = None,
    *,
    read_pin: PinReader | None = None,
    out: TextIO | None = None,
) -> int:
    parser = build_parser(profile)
    args = parser.parse_args(argv)
    args.prog = profile.prog
    args.dukpt = args.dukpt or args.ksn is not None
    if args.terminal is None:
        args.terminal = (
            profile.dukpt_terminal_id if args.dukpt and profile.dukpt_terminal_id else profile.terminal_id
        )
    session = _Session(args=args, read_pin=read_pin or _default_pin_reader, out=out or sys.stdout)
    try:
        steps = load_script(args.script) if args.script else _single_step(args)
        return trio.run(_run_session, session, steps)
    except SimulatorError as exc:
        print(f"{profile.prog}: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER if isinstance(exc, ConnectionFailed) else EXIT_USAGE
    except KeyboardInterrupt:
        return 130
