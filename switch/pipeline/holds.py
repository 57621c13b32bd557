"""A pre-authorization's hold reduced by a partial reversal, for the on-us reversal (`Authorizer`) and the
forwarded one (`Forwarder`) alike.

The ledger cannot shrink a hold: a partial reversal voids it (`partial_void_id`) and, once that stands,
holds the rest anew (`ledger_types.reduced_hold`, `<id>:reduced`). A full reversal crossing it must not
leave the reduced hold behind: finding the hold voided since its look, it bars the reduced hold's id (a
reduced hold still to come is then refused BARRED, which `hold_reduced` answers as done) or releases the
one made meanwhile (`release_late_reduced_hold`).
"""

from __future__ import annotations

from typing import Any

from switch.domain.ledger_types import Transfer, TransferKind, TransferResult, reduced_hold, resolve_pending
from switch.domain.results import Result
from switch.ports import Ledger

__all__ = ["RELEASED", "hold_reduced", "partial_void_id", "release", "release_late_reduced_hold"]

# A release of a hold the ledger has nothing (more) to do for: it is not held any more.
RELEASED = (
    TransferResult.OK,
    TransferResult.EXISTS,
    TransferResult.ALREADY_REVERSED,
    TransferResult.EXISTS_WITH_DIFFERENT_FIELDS,
    TransferResult.PENDING_ALREADY_VOIDED,
    TransferResult.PENDING_ALREADY_POSTED,
    TransferResult.PENDING_EXPIRED,
)


def partial_void_id(hold_id: str) -> str:
    """The void of a hold that a partial reversal replaces by a reduced hold (apart from a full
    reversal's `rev:<id>`)."""
    return f"rev:{hold_id}:partial"


def release(hold: Transfer, *, reference: str | None = None) -> Transfer:
    """The void of all of `hold` under its reversal's id, `rev:<id>`."""
    return resolve_pending(
        f"rev:{hold.transfer_id}", hold, TransferKind.VOID_PENDING, hold.amount, reference=reference
    )


async def hold_reduced(ledger: Ledger, hold: Transfer, amount: int, *, log: Any) -> Result | None:
    """Hold `amount` anew in place of `hold` (voided already): None once it is held (or was before, for
    this or another amount: a hold is reduced once), else the reversal's answer: approved when a full
    reversal barred it meanwhile (nothing stays held), 96 when the ledger refused it (the hold is released
    whole, never held twice; the repeat of the reversal makes it)."""
    (held,) = await ledger.create_transfers([reduced_hold(hold, amount)])
    if held is TransferResult.BARRED:
        log.info("reduced hold not made: the pre-authorization was reversed whole", hold=hold.transfer_id)
        return Result.APPROVED
    if held not in (TransferResult.OK, TransferResult.EXISTS, TransferResult.EXISTS_WITH_DIFFERENT_FIELDS):
        log.error(
            "reduced hold not made; the hold is released whole",
            hold=hold.transfer_id,
            ledger_result=held.value,
        )
        return Result.SYSTEM_MALFUNCTION
    return None


async def release_late_reduced_hold(
    ledger: Ledger, reduced_id: str, *, log: Any, reference: str | None = None
) -> bool:
    """Bar the reduced hold `reduced_id` that a crossing partial reversal is about to make (it is then
    refused), or release the one it made already. False (logged) when the ledger refused the release:
    the repeat of the full reversal tries again."""
    if await ledger.bar(reduced_id):
        return True
    reduced = (await ledger.lookup_transfers([reduced_id])).get(reduced_id)
    if reduced is None or reduced.kind is not TransferKind.PENDING:
        return True
    (released,) = await ledger.create_transfers([release(reduced, reference=reference)])
    if released in RELEASED:
        return True
    log.error("reduced hold not released", transfer=reduced_id, ledger_result=released.value)
    return False
