"""The ledger's vocabulary: accounts, transfers and their results (TigerBeetle-style, two-phase).

Every movement of money is a Transfer from a debit account to a credit account, in integer minor units
of one currency. A transfer is one of:
- POSTED: moves money now (a purchase, a refund, a load, a reversal of a posted transfer);
- PENDING: reserves money on the debit account (an authorization hold); it later becomes
- POST_PENDING: completes a pending transfer for all or part of its amount (the rest is released), or
- VOID_PENDING: releases a pending transfer entirely (cancel, reversal of a pre-auth).
A pending transfer is posted, voided or expired exactly once. Expiry is a void done by the ledger itself
when `expires_at` has passed.

Idempotency: a transfer's `transfer_id` is derived by the caller from the message identity. Creating a
transfer whose id exists returns EXISTS if the fields are the same (the caller then reads the original
outcome and answers with it) and EXISTS_WITH_DIFFERENT_FIELDS otherwise; nothing is applied twice.

A POSTED transfer with `reverses_id` is the reversal of an earlier POSTED transfer (at most one per
original; partial allowed). Usage limits (`limit_key`) are counted in the same atomic step.

Balances: posted and pending debits and credits per account. An account flagged
`debits_must_not_exceed_credits` (cardholder debit and prepaid accounts) refuses a transfer that would
make debits_posted + debits_pending exceed credits_posted + overdraft_limit: EXCEEDS_CREDITS, which the
pipeline answers as 51 (insufficient funds). Total debits equal total credits, always.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "AccountBalance",
    "LedgerAccount",
    "Transfer",
    "TransferKind",
    "TransferResult",
    "give_back",
    "reduced_hold",
    "reduced_hold_id",
    "resolve_pending",
    "reverse_posted",
]


class TransferKind(enum.StrEnum):
    POSTED = "posted"
    PENDING = "pending"
    POST_PENDING = "post_pending"
    VOID_PENDING = "void_pending"


class TransferResult(enum.StrEnum):
    """Outcome of creating one transfer. Order matters only for documentation; check by name."""

    OK = "ok"
    EXISTS = "exists"  # same id, same fields: already applied (idempotent retry)
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    BARRED = "barred"  # a reversal of this id came first (`bar`): it is never applied
    ACCOUNT_NOT_FOUND = "account_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"
    SAME_ACCOUNT = "same_account"
    AMOUNT_MUST_BE_POSITIVE = "amount_must_be_positive"
    EXCEEDS_CREDITS = "exceeds_credits"  # insufficient funds on a debit-limited account
    PENDING_NOT_FOUND = "pending_not_found"
    PENDING_ALREADY_POSTED = "pending_already_posted"
    PENDING_ALREADY_VOIDED = "pending_already_voided"
    PENDING_EXPIRED = "pending_expired"
    EXCEEDS_PENDING_AMOUNT = "exceeds_pending_amount"
    REVERSED_NOT_FOUND = "reversed_not_found"  # reverses_id names no posted transfer
    ALREADY_REVERSED = "already_reversed"  # the original has a reversal already (at most one)
    EXCEEDS_REVERSED_AMOUNT = "exceeds_reversed_amount"
    REVERSAL_ACCOUNTS_MISMATCH = "reversal_accounts_mismatch"  # must swap the original's accounts
    EXCEEDS_AMOUNT_LIMIT = "exceeds_amount_limit"  # the usage limit's amount for its period
    EXCEEDS_COUNT_LIMIT = "exceeds_count_limit"  # the usage limit's count for its period


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerAccount:
    account_id: int
    currency: int  # ISO 4217 numeric
    debits_must_not_exceed_credits: bool = False
    overdraft_limit: int = 0  # minor units; only with debits_must_not_exceed_credits


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    transfer_id: str  # idempotency key, at most 64 characters
    kind: TransferKind
    debit_account_id: int
    credit_account_id: int
    amount: int  # minor units, > 0 (for POST_PENDING: the amount to post, <= pending amount)
    currency: int
    pending_id: str | None = None  # for POST_PENDING and VOID_PENDING: the PENDING transfer's id
    expires_at: datetime | None = None  # for PENDING: released automatically after this time
    # For a POSTED reversal of a POSTED transfer: the original's id. Accounts must be the original's,
    # swapped; amount at most the original's (less = partial reversal); at most one reversal each.
    reverses_id: str | None = None
    # Usage limit (daily amount/count per card and transaction type), checked and counted atomically
    # with the transfer: `limit_key` names the counter (e.g. "card:42:purchase:2026-11-23"); a transfer
    # that would take the counter's amount above `limit_amount_max` or its count above `limit_count_max`
    # fails with EXCEEDS_AMOUNT_LIMIT / EXCEEDS_COUNT_LIMIT. A void or reversal gives back the usage of
    # the transfer it cancels (amount, and the count when the whole amount is cancelled).
    limit_key: str | None = None
    limit_amount_max: int | None = None
    limit_count_max: int | None = None
    reference: str = ""  # free text for operators (e.g. "rrn:123456789012"), never card data


@dataclass(frozen=True, slots=True)
class AccountBalance:
    account_id: int
    currency: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    overdraft_limit: int = 0

    @property
    def available(self) -> int:
        """What a debit-limited account may still spend: posted credits - debits (+ overdraft)."""
        return self.credits_posted - self.debits_posted - self.debits_pending + self.overdraft_limit

    @property
    def ledger_balance(self) -> int:
        """Posted balance of a liability-style cardholder account: credits - debits."""
        return self.credits_posted - self.debits_posted


def resolve_pending(
    transfer_id: str, pending: Transfer, kind: TransferKind, amount: int, *, reference: str | None = None
) -> Transfer:
    """Post (all or part of) or void a pending transfer: same accounts, pointing at it."""
    return Transfer(
        transfer_id=transfer_id,
        kind=kind,
        debit_account_id=pending.debit_account_id,
        credit_account_id=pending.credit_account_id,
        amount=amount,
        currency=pending.currency,
        pending_id=pending.transfer_id,
        reference=reference if reference is not None else f"{kind.value} of {pending.transfer_id}",
    )


def reduced_hold_id(hold_id: str) -> str:
    """The id of the hold that replaces `hold_id` after a partial reversal of it."""
    return f"{hold_id}:reduced"


def reduced_hold(hold: Transfer, amount: int) -> Transfer:
    """A pending transfer of `amount` (less than `hold`'s) in place of `hold`, which is voided: the ledger
    cannot shrink a hold, so a partial reversal of one voids it and holds what is left anew, with the same
    accounts, expiry and reference. Completions and reversals that name `hold` are applied to this one.
    The void gives the hold's usage (daily amount and count) back, so the reduced hold counts `amount`
    and one use under the same counter again, without its maximums: what was authorized is not declined
    for being less."""
    if not 0 < amount < hold.amount or hold.kind is not TransferKind.PENDING:
        raise ValueError("a reduced hold is a pending transfer for less than the hold it replaces")
    return Transfer(
        transfer_id=reduced_hold_id(hold.transfer_id),
        kind=TransferKind.PENDING,
        debit_account_id=hold.debit_account_id,
        credit_account_id=hold.credit_account_id,
        amount=amount,
        currency=hold.currency,
        expires_at=hold.expires_at,
        limit_key=hold.limit_key,
        reference=hold.reference,
    )


def reverse_posted(transfer_id: str, original: Transfer, amount: int) -> Transfer:
    """Give back (all or part of) a posted transfer: accounts swapped, at most once per original."""
    return Transfer(
        transfer_id=transfer_id,
        kind=TransferKind.POSTED,
        debit_account_id=original.credit_account_id,
        credit_account_id=original.debit_account_id,
        amount=amount,
        currency=original.currency,
        reverses_id=original.transfer_id,
        reference=f"reversal of {original.transfer_id}",
    )


def give_back(transfer_id: str, original: Transfer, amount: int) -> Transfer:
    """Give back (all or part of) what a POSTED or POST_PENDING transfer moved, at most once.

    A plain posting is reversed (`reverse_posted`). The ledger reverses nothing else, so a completion
    (POST_PENDING) or a void (itself a reversal) is undone by a plain transfer the other way; its id
    (the caller's, "rev:" + the original's) still makes it happen once.
    """
    reversal = reverse_posted(transfer_id, original, amount)
    if original.kind is not TransferKind.POST_PENDING and original.reverses_id is None:
        return reversal
    what = "completion" if original.kind is TransferKind.POST_PENDING else "void"
    return dataclasses.replace(
        reversal, reverses_id=None, reference=f"reversal of {what} {original.transfer_id}"
    )
