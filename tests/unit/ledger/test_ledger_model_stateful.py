"""The reference model against a naive oracle, under random sequences of transfers and expiries.

The oracle keeps only the log of successful transfers (and which holds expired) and derives every
balance and usage counter from it by plain sums, with no incremental state to get wrong. It predicts
the results that depend only on the log and the accounts, and checks the others against the balances
the log implies at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from switch.domain.ledger_model import LedgerModel
from switch.domain.ledger_types import AccountBalance, LedgerAccount, Transfer, TransferKind, TransferResult
from tests.unit.ledger.strategies import (
    ACCOUNT_IDS,
    ACCOUNTS,
    TIMES,
    TRANSFER_IDS,
    UNKNOWN,
    resolutions,
    reversals,
    transfers,
)

R = TransferResult
K = TransferKind


@dataclass
class Oracle:
    accounts: dict[int, LedgerAccount]
    ok: dict[str, Transfer] = field(default_factory=dict)  # successful transfers, in order
    expired: set[str] = field(default_factory=set)
    barred: set[str] = field(default_factory=set)  # ids barred while no transfer had them

    def resolution(self, pending_id: str) -> Transfer | None:
        return next(
            (
                t
                for t in self.ok.values()
                if t.pending_id == pending_id and t.kind in (K.POST_PENDING, K.VOID_PENDING)
            ),
            None,
        )

    def reversal(self, original_id: str) -> Transfer | None:
        return next((t for t in self.ok.values() if t.reverses_id == original_id), None)

    def live(self, t: Transfer) -> bool:
        return (
            t.kind is K.PENDING
            and t.transfer_id not in self.expired
            and self.resolution(t.transfer_id) is None
        )

    def balances(self) -> dict[int, AccountBalance]:
        sums = {a: [0, 0, 0, 0] for a in self.accounts}  # debits pending/posted, credits pending/posted
        for t in self.ok.values():
            if t.kind in (K.POSTED, K.POST_PENDING):
                sums[t.debit_account_id][1] += t.amount
                sums[t.credit_account_id][3] += t.amount
            elif self.live(t):
                sums[t.debit_account_id][0] += t.amount
                sums[t.credit_account_id][2] += t.amount
        return {
            a: AccountBalance(
                account_id=a,
                currency=self.accounts[a].currency,
                debits_pending=s[0],
                debits_posted=s[1],
                credits_pending=s[2],
                credits_posted=s[3],
                overdraft_limit=self.accounts[a].overdraft_limit,
            )
            for a, s in sums.items()
        }

    def usage(self, key: str) -> tuple[int, int]:
        amount = count = 0
        for t in self.ok.values():
            if t.limit_key != key:
                continue
            if t.kind is K.POSTED:
                rev = self.reversal(t.transfer_id)
                amount += t.amount - (rev.amount if rev else 0)
                count += 0 if rev and rev.amount == t.amount else 1
            else:
                res = self.resolution(t.transfer_id)
                if res is not None and res.kind is K.POST_PENDING:
                    amount, count = amount + res.amount, count + 1
                elif self.live(t):
                    amount, count = amount + t.amount, count + 1
        return amount, count

    def simple_result(self, t: Transfer) -> TransferResult | None:
        """The result when it follows from the log and the accounts alone, else None."""
        prior = self.ok.get(t.transfer_id)
        if prior is not None:
            return R.EXISTS if prior == t else R.EXISTS_WITH_DIFFERENT_FIELDS
        if t.transfer_id in self.barred:
            return R.BARRED
        if t.amount <= 0:
            return R.AMOUNT_MUST_BE_POSITIVE
        if t.debit_account_id == t.credit_account_id:
            return R.SAME_ACCOUNT
        if t.debit_account_id not in self.accounts or t.credit_account_id not in self.accounts:
            return R.ACCOUNT_NOT_FOUND
        if {self.accounts[t.debit_account_id].currency, self.accounts[t.credit_account_id].currency} != {
            t.currency
        }:
            return R.CURRENCY_MISMATCH
        return None

    def check(self, t: Transfer, result: TransferResult) -> None:
        """Check `result` for `t` against the log before `t`, then record `t` if it succeeded."""
        simple = self.simple_result(t)
        if simple is not None:
            assert result is simple, (t, result, simple)
            return
        balance = self.balances()[t.debit_account_id]
        debit = self.accounts[t.debit_account_id]
        if t.kind in (K.POST_PENDING, K.VOID_PENDING):
            held = self.ok.get(t.pending_id or "")
            matches = (
                held is not None
                and held.kind is K.PENDING
                and (held.debit_account_id, held.credit_account_id)
                == (t.debit_account_id, t.credit_account_id)
            )
            if not matches:
                assert result is R.PENDING_NOT_FOUND
                return
            assert held is not None
            res = self.resolution(held.transfer_id)
            expected = (
                R.PENDING_EXPIRED
                if held.transfer_id in self.expired
                else R.PENDING_ALREADY_POSTED
                if res is not None and res.kind is K.POST_PENDING
                else R.PENDING_ALREADY_VOIDED
                if res is not None
                else R.EXCEEDS_PENDING_AMOUNT
                if t.amount > held.amount
                else R.OK
            )
            assert result is expected, (t, result, expected)
        else:
            if t.reverses_id is not None:
                original = self.ok.get(t.reverses_id)
                if original is None or original.kind is not K.POSTED or original.reverses_id is not None:
                    assert result is R.REVERSED_NOT_FOUND
                    return
                if self.reversal(original.transfer_id) is not None:
                    assert result is R.ALREADY_REVERSED
                    return
                if (t.debit_account_id, t.credit_account_id) != (
                    original.credit_account_id,
                    original.debit_account_id,
                ):
                    assert result is R.REVERSAL_ACCOUNTS_MISMATCH
                    return
                if t.amount > original.amount:
                    assert result is R.EXCEEDS_REVERSED_AMOUNT
                    return
            short = debit.debits_must_not_exceed_credits and balance.available < t.amount
            if short:
                assert result is R.EXCEEDS_CREDITS, (t, result, balance)
                return
            if t.limit_key is not None:
                used_amount, used_count = self.usage(t.limit_key)
                if t.limit_amount_max is not None and used_amount + t.amount > t.limit_amount_max:
                    assert result is R.EXCEEDS_AMOUNT_LIMIT
                    return
                if t.limit_count_max is not None and used_count + 1 > t.limit_count_max:
                    assert result is R.EXCEEDS_COUNT_LIMIT
                    return
            assert result is R.OK, (t, result)
        if result is R.OK:
            self.ok[t.transfer_id] = t

    def expire(self, now, limit: int) -> int:
        due = sorted(
            (t.expires_at, t.transfer_id)
            for t in self.ok.values()
            if self.live(t) and t.expires_at is not None and t.expires_at <= now
        )[:limit]
        self.expired.update(i for _, i in due)
        return len(due)


class ModelAgainstOracle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model = LedgerModel()
        self.model.create_accounts(ACCOUNTS)
        self.oracle = Oracle({a.account_id: a for a in ACCOUNTS})

    @rule(batch=st.lists(transfers(), min_size=1, max_size=4))
    def create_transfers(self, batch: list[Transfer]) -> None:
        results = self.model.create_transfers(batch)
        assert len(results) == len(batch)
        for t, result in zip(batch, results, strict=True):
            self.oracle.check(t, result)

    @rule(data=st.data())
    def retry_a_success(self, data: st.DataObject) -> None:
        if self.oracle.ok:
            t = data.draw(st.sampled_from(list(self.oracle.ok.values())))
            assert self.model.create_transfers([t]) == [R.EXISTS]

    @rule(data=st.data())
    def resolve_a_hold(self, data: st.DataObject) -> None:
        holds = [t for t in self.oracle.ok.values() if t.kind is K.PENDING]
        if holds:
            t = data.draw(resolutions(data.draw(st.sampled_from(holds))))
            self.oracle.check(t, self.model.create_transfers([t])[0])

    @rule(data=st.data())
    def reverse_a_purchase(self, data: st.DataObject) -> None:
        purchases = [t for t in self.oracle.ok.values() if t.kind is K.POSTED and t.reverses_id is None]
        if purchases:
            t = data.draw(reversals(data.draw(st.sampled_from(purchases))))
            self.oracle.check(t, self.model.create_transfers([t])[0])

    @rule(transfer_id=st.sampled_from(TRANSFER_IDS))
    def bar(self, transfer_id: str) -> None:
        exists = transfer_id in self.oracle.ok
        assert self.model.bar(transfer_id) is not exists
        if not exists:
            self.oracle.barred.add(transfer_id)

    @rule(now=st.sampled_from(TIMES), limit=st.integers(0, 3))
    def expire(self, now, limit: int) -> None:
        assert self.model.expire_pending(now, limit) == self.oracle.expire(now, limit)

    @invariant()
    def balances_match_the_oracle(self) -> None:
        assert self.model.balances([*ACCOUNT_IDS, UNKNOWN]) == self.oracle.balances()

    @invariant()
    def usage_matches_the_oracle(self) -> None:
        for key in {t.limit_key for t in self.oracle.ok.values() if t.limit_key}:
            usage = self.model.usage(key)
            assert (usage.amount, usage.count) == self.oracle.usage(key)

    @invariant()
    def ledger_invariants_hold(self) -> None:
        assert self.model.invariant_violations() == []

    @invariant()
    def stored_transfers_are_the_successes(self) -> None:
        assert self.model.lookup_transfers(list(self.oracle.ok)) == self.oracle.ok


ModelAgainstOracle.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_model_against_oracle = ModelAgainstOracle.TestCase
