"""`atm-sim`: an ATM from the command line (withdrawal, balance, transfer, PIN change, reversal...).

Defaults are the first demo ATM (the demo DUKPT ATM with `--dukpt`) and the ATM operator's merchant id;
a transfer goes from savings (10) to checking (20) unless told otherwise. Everything else is
`simulators.cli`.
"""

from __future__ import annotations

from collections.abc import Sequence

from simulators.cli import Profile, run_cli
from simulators.messages import TxnType
from specs import demo

__all__ = ["PROFILE", "main"]

PROFILE = Profile(
    prog="atm-sim",
    description="ATM simulator: sign on, exchange keys, send ISO 8583 transactions to the switch.",
    terminal_id=demo.ATM_TERMINALS[0],
    merchant_id=demo.ATM_MERCHANT_ID,
    transactions=tuple(TxnType),
    default_transaction=TxnType.WITHDRAWAL,
    default_from_account="10",
    default_to_account="20",
    dukpt_terminal_id=next(t for t, (kind, _) in demo.DUKPT_TERMINALS.items() if kind == "atm"),
)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(PROFILE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
