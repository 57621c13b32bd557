"""`PgAdviceSuspense.recover` on a real database with the demo world: the cardholder pays an advice booked
to suspense from the account the advice was for (its booking names it), else from the card's first account
in the currency."""

from __future__ import annotations

import pytest

from specs import demo
from switch.adapters.postgres.db import Database
from switch.adapters.postgres.ledger import PgLedger
from switch.adapters.postgres.suspense import PgAdviceSuspense, Recovery
from switch.cli.demo_seed import FUNDING_ACCOUNT_ID, card_account_ids, seed_demo
from switch.domain.ledger_types import LedgerAccount, Transfer, TransferKind, TransferResult
from switch.pipeline.forward import network_settlement_account_id
from switch.pipeline.issuer import advice_suspense_account_id, advice_suspense_reference

SUSPENSE = advice_suspense_account_id("visa", 840)
SETTLEMENT = network_settlement_account_id("visa", 840)


@pytest.fixture
async def seeded(db: Database, ledger: PgLedger, hsm_client, vault) -> PgLedger:
    await seed_demo(db, ledger, hsm_client, vault)
    await ledger.create_accounts(
        [LedgerAccount(account_id=SUSPENSE, currency=840), LedgerAccount(account_id=SETTLEMENT, currency=840)]
    )
    return ledger


async def _booked(db: Database, ledger: PgLedger, advice_id: str, index: int, account_id: int | None) -> None:
    card_id = await db.fetchval(
        "SELECT card_id FROM card_accounts WHERE account_id = $1", card_account_ids(demo.DEBIT_BIN, index)[0]
    )
    booking = Transfer(
        transfer_id=advice_id, kind=TransferKind.POSTED, debit_account_id=SUSPENSE,
        credit_account_id=SETTLEMENT, amount=2_500, currency=840,
        reference=advice_suspense_reference("632719000001", card_id, account_id),
    )  # fmt: skip
    assert await ledger.create_transfers([booking]) == [TransferResult.OK]


@pytest.mark.parametrize(("named", "pays"), [(1, 1), (None, 0), (-1, 0)])
async def test_recovery_takes_from_the_account_the_advice_was_for(
    db: Database, seeded: PgLedger, named: int | None, pays: int
) -> None:
    """If the booking names the card's second account, then the payment comes from it; if it names none
    (booked before accounts were named) or an account that is not the card's, from the card's first."""
    accounts = card_account_ids(demo.DEBIT_BIN, 40)
    account_id = None if named is None else (accounts[named] if named >= 0 else FUNDING_ACCOUNT_ID)
    advice_id = "iss:visa:00000400001:1202193500:000045"
    await _booked(db, seeded, advice_id, 40, account_id)
    before = await seeded.balances(list(accounts))
    outcome, item = await PgAdviceSuspense(db).recover(advice_id)
    assert outcome is Recovery.RECOVERED and item is not None
    after = await seeded.balances(list(accounts))
    moved = [before[a].available - after[a].available for a in accounts]
    assert moved == [2_500 if i == pays else 0 for i in range(len(accounts))]
