"""Network advices booked to suspense (docs/networks.md, "Advices"): what is open, and the cardholder's
payment of one (`switchctl suspense`).

An advice the cardholder's account could not cover was booked from the network's advice suspense account
to its settlement account (`switch.pipeline.issuer`). Recovering it is one posted transfer from the card's
recovery account (`recovery_account`: the account the advice was for, else its first account in the
advice's currency) to that suspense
account, id `recover:<advice id>`, for what is still owed (the amount less what a network reversal gave
back). It runs in one transaction under the transaction-level advisory lock of the advice's reversal id
(`rev:<advice id>`), which a ledger batch carrying that reversal takes too: either the reversal came
first and the payment is for what is left, or the payment came first and the reversal's batch gives it
back to the cardholder (`Authorizer._recovery_given_back`). Nothing here holds or prints a clear PAN.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from switch.adapters.postgres.db import AnyConnection, Database
from switch.adapters.postgres.ledger import APPLY_TRANSFERS_CALL, transfer_arrays
from switch.domain.ledger_types import Transfer, TransferKind, TransferResult
from switch.pipeline.issuer import (
    ADVICE_SUSPENSE_ACCOUNT_BASE,
    advice_recovery,
    advice_rrn,
    advice_suspense_account,
    advice_suspense_card,
)

__all__ = ["PgAdviceSuspense", "Recovery", "SuspenseItem"]

_ITEMS = """
SELECT t.id, t.amount, t.currency, t.reference, t.debit_account_id, t.credit_account_id, t.created_at,
       coalesce(r.amount, 0) AS reversed, coalesce(p.amount, 0) AS recovered,
       c.card_id, c.first6, c.last4, c.pan_length
  FROM ledger_transfers AS t
  LEFT JOIN ledger_transfers AS r ON r.reverses_id = t.id
  LEFT JOIN ledger_transfers AS p ON p.id = 'recover:' || t.id
  LEFT JOIN cards AS c ON c.card_id = substring(t.reference FROM ':suspense:card:([0-9]+)$')::bigint
 WHERE t.debit_account_id >= $1 AND t.kind = 'posted' AND t.reference LIKE 'advice:rrn:%:suspense:card:%'
"""
_ALL = _ITEMS + " ORDER BY t.created_at, t.id"
_ONE = _ITEMS + " AND t.id = $2"
# `recovery_account`'s rule in SQL: the account the advice was for ($3) while it is still the card's in the
# currency, else the card's first account in it.
_RECOVERY_ACCOUNT = """
SELECT ca.account_id
  FROM card_accounts AS ca JOIN ledger_accounts AS la ON la.id = ca.account_id
 WHERE ca.card_id = $1 AND la.currency = $2
 ORDER BY ca.account_id IS DISTINCT FROM $3::bigint, ca.position, ca.account_type
 LIMIT 1
"""
_APPLY = f"SELECT {APPLY_TRANSFERS_CALL}"


@dataclass(frozen=True, slots=True)
class SuspenseItem:
    advice_id: str  # the advice's ledger id: iss:<network>:<acquirer>:<field 7>:<field 11>
    network: str
    rrn: str
    card_id: int
    pan_masked: str  # first 6 + last 4 ("" if the card is gone)
    amount: int
    currency: int
    reversed: int  # given back by the network's reversal
    recovered: int  # paid by the cardholder
    booked_at: datetime

    @property
    def owed(self) -> int:
        """What the cardholder still owes of it."""
        return max(self.amount - self.reversed - self.recovered, 0)


class Recovery(enum.Enum):
    RECOVERED = "recovered"
    ALREADY_RECOVERED = "already_recovered"
    NOTHING_OWED = "nothing_owed"  # the network reversed all of it
    NOT_FOUND = "not_found"  # no advice booked to suspense with that id
    NO_ACCOUNT = "no_account"  # the card has no account in the advice's currency (or is gone)
    INSUFFICIENT_FUNDS = "insufficient_funds"


def _item(row: asyncpg.Record) -> SuspenseItem:
    get = row.__getitem__
    advice_id, reference = get("id"), get("reference")
    card_id = advice_suspense_card(reference) or 0
    rrn = advice_rrn(reference)
    first6, last4, length = get("first6"), get("last4"), get("pan_length")
    masked = f"{first6}{'*' * (length - 10)}{last4}" if first6 is not None else ""
    parts = advice_id.split(":")
    return SuspenseItem(
        advice_id=advice_id,
        network=parts[1] if len(parts) > 1 and parts[0] == "iss" else "",
        rrn=rrn,
        card_id=card_id,
        pan_masked=masked,
        amount=get("amount"),
        currency=get("currency"),
        reversed=get("reversed"),
        recovered=get("recovered"),
        booked_at=get("created_at"),
    )


class PgAdviceSuspense:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def items(self, *, open_only: bool = True) -> list[SuspenseItem]:
        """Every advice booked to suspense, oldest first; with `open_only`, those still owed."""
        found = [_item(row) for row in await self.database.fetch(_ALL, ADVICE_SUSPENSE_ACCOUNT_BASE)]
        return [item for item in found if item.owed > 0] if open_only else found

    async def recover(self, advice_id: str) -> tuple[Recovery, SuspenseItem | None]:
        """The cardholder pays what is still owed of this advice, once; the item as it is afterwards."""

        async def work(conn: AnyConnection) -> tuple[Recovery, SuspenseItem | None]:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"rev:{advice_id}")
            row = await conn.fetchrow(_ONE, ADVICE_SUSPENSE_ACCOUNT_BASE, advice_id)
            if row is None:
                return Recovery.NOT_FOUND, None
            item = _item(row)
            if item.recovered:
                return Recovery.ALREADY_RECOVERED, item
            if item.owed <= 0:
                return Recovery.NOTHING_OWED, item
            account = await conn.fetchval(
                _RECOVERY_ACCOUNT, item.card_id, item.currency, advice_suspense_account(row["reference"])
            )
            if account is None:
                return Recovery.NO_ACCOUNT, item
            advice = Transfer(
                transfer_id=advice_id,
                kind=TransferKind.POSTED,
                debit_account_id=row["debit_account_id"],
                credit_account_id=row["credit_account_id"],
                amount=item.amount,
                currency=item.currency,
                reference=row["reference"],
            )
            payment = advice_recovery(advice, account, item.owed)
            [code] = await conn.fetchval(_APPLY, *transfer_arrays([payment]))
            result = TransferResult(code)
            if result is TransferResult.EXCEEDS_CREDITS:
                return Recovery.INSUFFICIENT_FUNDS, item
            if result is TransferResult.EXISTS:
                return Recovery.ALREADY_RECOVERED, item
            if result is not TransferResult.OK:
                raise RuntimeError(f"the ledger refused the recovery of {advice_id}: {result.value}")
            after = await conn.fetchrow(_ONE, ADVICE_SUSPENSE_ACCOUNT_BASE, advice_id)
            return Recovery.RECOVERED, _item(after) if after is not None else item

        return await self.database.transaction(work)
