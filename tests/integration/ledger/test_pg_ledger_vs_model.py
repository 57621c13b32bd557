"""PgLedger against the reference model: the same random calls give the same results and balances.

Hypothesis' state machine is synchronous, so it runs in a worker thread and reaches the trio side
(where PgLedger lives) through trio.from_thread. Each example starts from empty ledger tables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from switch.adapters.postgres.db import Database
from switch.adapters.postgres.ledger import PgLedger
from switch.domain.ledger_model import LedgerModel
from switch.domain.ledger_types import Transfer, TransferKind, TransferResult
from tests.unit.ledger.strategies import (
    ACCOUNT_IDS,
    ACCOUNTS,
    LIMIT_KEYS,
    TIMES,
    TRANSFER_IDS,
    UNKNOWN,
    resolutions,
    reversals,
    transfers,
)

T = TypeVar("T")
K = TransferKind


def on_trio(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return trio.from_thread.run(fn, *args)


class PgAgainstModel(RuleBasedStateMachine):
    database: Database  # set by the test before running

    def __init__(self) -> None:
        super().__init__()
        # CASCADE: other tables (cards, ...) may refer to ledger accounts; this database is ours alone.
        on_trio(
            self.database.execute,
            "TRUNCATE ledger_transfers, ledger_usage, ledger_accounts, ledger_barred_transfers CASCADE",
        )
        self.pg = PgLedger(self.database)
        self.model = LedgerModel()
        self.model.create_accounts(ACCOUNTS)
        on_trio(self.pg.create_accounts, ACCOUNTS)
        self.ok: dict[str, Transfer] = {}

    def both(self, batch: list[Transfer]) -> None:
        expected = self.model.create_transfers(batch)
        assert on_trio(self.pg.create_transfers, batch) == expected
        for t, result in zip(batch, expected, strict=True):
            if result is TransferResult.OK:
                self.ok[t.transfer_id] = t

    @rule(batch=st.lists(transfers(), min_size=1, max_size=4))
    def create_transfers(self, batch: list[Transfer]) -> None:
        self.both(batch)

    @rule(data=st.data())
    def resolve_a_hold(self, data: st.DataObject) -> None:
        holds = [t for t in self.ok.values() if t.kind is K.PENDING]
        if holds:
            self.both([data.draw(resolutions(data.draw(st.sampled_from(holds))))])

    @rule(data=st.data())
    def reverse_a_purchase(self, data: st.DataObject) -> None:
        purchases = [t for t in self.ok.values() if t.kind is K.POSTED and t.reverses_id is None]
        if purchases:
            self.both([data.draw(reversals(data.draw(st.sampled_from(purchases))))])

    @rule(transfer_id=st.sampled_from(TRANSFER_IDS))
    def bar(self, transfer_id: str) -> None:
        assert on_trio(self.pg.bar, transfer_id) == self.model.bar(transfer_id)

    @rule(now=st.sampled_from(TIMES), limit=st.integers(0, 3))
    def expire(self, now, limit: int) -> None:
        assert on_trio(self.pg.expire_pending, now, limit) == self.model.expire_pending(now, limit)

    @invariant()
    def same_balances(self) -> None:
        ids = [*ACCOUNT_IDS, UNKNOWN]
        assert on_trio(self.pg.balances, ids) == self.model.balances(ids)

    @invariant()
    def same_transfers(self) -> None:
        assert on_trio(self.pg.lookup_transfers, TRANSFER_IDS) == self.model.lookup_transfers(TRANSFER_IDS)

    @invariant()
    def same_usage(self) -> None:
        rows = on_trio(self.database.fetch, "SELECT limit_key, amount_used, count_used FROM ledger_usage")
        stored = {r["limit_key"]: (r["amount_used"], r["count_used"]) for r in rows}
        for key in LIMIT_KEYS:
            usage = self.model.usage(key)
            assert stored.get(key, (0, 0)) == (usage.amount, usage.count)


async def test_pg_ledger_matches_the_model(db):
    """If PgLedger and the model get the same random calls, then results, transfers and balances agree."""
    PgAgainstModel.database = db
    budget = settings(max_examples=25, stateful_step_count=25, deadline=None)
    await trio.to_thread.run_sync(lambda: run_state_machine_as_test(PgAgainstModel, settings=budget))
