"""`netsim`: one simulated interbank network (Visa, CUPS or Shetab) toward the member switch.

An outside actor like the terminal simulators: it uses `specs`, `switch.iso`, `switch.masking`,
`switch.logs` and `hsm.crypto`, never the switch's pipeline, adapters or database. docs/networks.md is
the contract; `Netsim` (app) runs one network, `simulators.netsim.cli` is the `netsim` command.
Pure parts: `keys` (ZPKs, fields 48/53), `faults`, `ledger` (cards, balances, position), `issuer`
(the answer to each request), `acquirer` (requests it originates), `clearing`, and the HTTP parsing of
`control`.
"""

from __future__ import annotations

from simulators.netsim.app import Netsim, NetsimConfig, NetsimError, ReadyInfo
from simulators.netsim.faults import Faults

__all__ = ["Faults", "Netsim", "NetsimConfig", "NetsimError", "ReadyInfo"]
