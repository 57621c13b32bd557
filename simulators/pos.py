"""`pos-sim`: a POS terminal from the command line (one transaction, or a script of them).

Defaults are the first demo POS terminal and merchant (the demo DUKPT POS with `--dukpt`); everything
else is `simulators.cli`.
"""

from __future__ import annotations

from collections.abc import Sequence

from simulators.cli import Profile, run_cli
from simulators.messages import TxnType
from specs import demo

__all__ = ["PROFILE", "main"]

PROFILE = Profile(
    prog="pos-sim",
    description="POS terminal simulator: sign on, exchange keys, send ISO 8583 transactions to the switch.",
    terminal_id=demo.POS_TERMINALS[0],
    merchant_id=demo.MERCHANT_ID,
    transactions=tuple(TxnType),
    default_transaction=TxnType.PURCHASE,
    dukpt_terminal_id=next(t for t, (kind, _) in demo.DUKPT_TERMINALS.items() if kind == "pos"),
)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(PROFILE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
