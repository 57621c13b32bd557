"""Hypothesis strategies for ledger tests: a small world of accounts and transfers that collide often.

Ids come from a small pool so that retries, duplicates, posts of holds and reversals of purchases meet
existing transfers; account pairs are biased towards the ones that make those operations succeed.
Shared by the model's stateful test and PgLedger's test against the model.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from switch.domain.ledger_types import LedgerAccount, Transfer, TransferKind

EUR = 978
USD = 840
CARD = 1
MERCHANT = 2
FUNDING = 3
CARD_OVERDRAFT = 4
DOLLARS = 5
UNKNOWN = 99

ACCOUNTS = [
    LedgerAccount(account_id=CARD, currency=EUR, debits_must_not_exceed_credits=True),
    LedgerAccount(account_id=MERCHANT, currency=EUR),
    LedgerAccount(account_id=FUNDING, currency=EUR),
    LedgerAccount(
        account_id=CARD_OVERDRAFT, currency=EUR, debits_must_not_exceed_credits=True, overdraft_limit=300
    ),
    LedgerAccount(account_id=DOLLARS, currency=USD),
]
ACCOUNT_IDS = [a.account_id for a in ACCOUNTS]

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TIMES = [T0 + timedelta(hours=h) for h in range(4)]
TRANSFER_IDS = [f"t{i}" for i in range(12)]
LIMIT_KEYS = ["card:1:purchase:2026-11-23", "card:4:purchase:2026-11-23"]

# (debit, credit): mostly card -> merchant and its reversal, some loads, some mistakes.
PAIRS = [
    (CARD, MERCHANT),
    (CARD, MERCHANT),
    (MERCHANT, CARD),
    (FUNDING, CARD),
    (FUNDING, CARD_OVERDRAFT),
    (CARD_OVERDRAFT, MERCHANT),
    (MERCHANT, CARD_OVERDRAFT),
    (FUNDING, MERCHANT),
    (CARD, CARD),
    (CARD, UNKNOWN),
    (DOLLARS, MERCHANT),
]


def _amounts() -> st.SearchStrategy[int]:
    # Mostly valid; one in ten is zero or negative.
    return st.integers(0, 9).flatmap(
        lambda roll: st.sampled_from([0, -5]) if roll == 0 else st.integers(1, 1500)
    )


@st.composite
def resolutions(draw: st.DrawFn, held: Transfer) -> Transfer:
    """A POST_PENDING or VOID_PENDING of `held` (a PENDING transfer), mostly within its amount."""
    kind = draw(st.sampled_from([TransferKind.POST_PENDING, TransferKind.VOID_PENDING]))
    return Transfer(
        transfer_id=draw(st.sampled_from(TRANSFER_IDS)),
        kind=kind,
        debit_account_id=held.debit_account_id,
        credit_account_id=held.credit_account_id,
        amount=draw(st.integers(1, held.amount + 10)),
        currency=held.currency,
        pending_id=held.transfer_id,
    )


@st.composite
def reversals(draw: st.DrawFn, original: Transfer) -> Transfer:
    """A reversal of `original` (a POSTED transfer): accounts swapped (mostly), amount near its own."""
    swapped = draw(st.integers(0, 9)) > 0
    debit, credit = original.debit_account_id, original.credit_account_id
    return Transfer(
        transfer_id=draw(st.sampled_from(TRANSFER_IDS)),
        kind=TransferKind.POSTED,
        debit_account_id=credit if swapped else debit,
        credit_account_id=debit if swapped else credit,
        amount=draw(st.one_of(st.just(original.amount), st.integers(1, original.amount + 10))),
        currency=original.currency,
        reverses_id=original.transfer_id,
    )


@st.composite
def transfers(draw: st.DrawFn) -> Transfer:
    kind = draw(st.sampled_from(list(TransferKind)))
    debit, credit = draw(st.sampled_from(PAIRS))
    amount = draw(_amounts())
    currency = USD if draw(st.integers(0, 9)) == 0 else EUR
    fields: dict[str, object] = {}
    if kind in (TransferKind.POST_PENDING, TransferKind.VOID_PENDING):
        fields["pending_id"] = draw(st.sampled_from(TRANSFER_IDS))
    if kind is TransferKind.PENDING:
        fields["expires_at"] = draw(st.one_of(st.none(), st.sampled_from(TIMES)))
    if kind is TransferKind.POSTED and draw(st.integers(0, 2)) == 0:
        fields["reverses_id"] = draw(st.sampled_from(TRANSFER_IDS))
    counts_usage = kind is TransferKind.PENDING or (
        kind is TransferKind.POSTED and "reverses_id" not in fields
    )
    if counts_usage and draw(st.booleans()):
        fields["limit_key"] = draw(st.sampled_from(LIMIT_KEYS))
        fields["limit_amount_max"] = draw(st.one_of(st.none(), st.integers(0, 3000)))
        fields["limit_count_max"] = draw(st.one_of(st.none(), st.integers(0, 4)))
    return Transfer(
        transfer_id=draw(st.sampled_from(TRANSFER_IDS)),
        kind=kind,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        currency=currency,
        reference=draw(st.sampled_from(["", "rrn:000000000001"])),
        **fields,  # type: ignore[arg-type]
    )
