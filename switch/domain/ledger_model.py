"""The ledger's reference model: the contract of `ledger_types` run in memory, one transfer at a time.

It owns the meaning of every ledger rule in executable form. The PostgreSQL ledger
(`switch/migrations/0002_ledger.sql` + `switch.adapters.postgres.ledger`) must give the same results and
the same balances for the same calls; tests check it against this model (TigerBeetle's "auditor" idea),
and this model against a deliberately naive oracle. No I/O, no clock: time enters only as the `now` of
`expire_pending`.

Checks run as one flat list of guard clauses in a fixed order (the first failing one is the result);
the SQL function follows the same order:

  1. the id exists: EXISTS if every field is equal, else EXISTS_WITH_DIFFERENT_FIELDS
  1b. the id is barred (`bar`: a reversal of it came first): BARRED
  2. amount <= 0: AMOUNT_MUST_BE_POSITIVE
  3. debit account == credit account: SAME_ACCOUNT
  4. either account unknown: ACCOUNT_NOT_FOUND
  5. transfer currency differs from either account's: CURRENCY_MISMATCH
  POST_PENDING / VOID_PENDING:
  6. no PENDING transfer `pending_id` between the same debit and credit accounts: PENDING_NOT_FOUND
  7. the pending is already posted / voided / expired: PENDING_ALREADY_POSTED / _VOIDED / PENDING_EXPIRED
  8. amount > the pending amount: EXCEEDS_PENDING_AMOUNT
  POSTED with `reverses_id`:
  6. no POSTED, non-reversal transfer `reverses_id`: REVERSED_NOT_FOUND
  7. it has a reversal already: ALREADY_REVERSED
  8. accounts are not the original's swapped: REVERSAL_ACCOUNTS_MISMATCH
  9. amount > the original's: EXCEEDS_REVERSED_AMOUNT
  POSTED / PENDING:
  10. a debit-limited debit account would have debits_posted + debits_pending > credits_posted +
      overdraft_limit: EXCEEDS_CREDITS
  11. the usage counter would exceed `limit_amount_max`, then `limit_count_max`: EXCEEDS_AMOUNT_LIMIT,
      EXCEEDS_COUNT_LIMIT

Decisions where `ledger_types` leaves room (the SQL implements the same):
- Malformed input is a programmer error, not a result: `check_transfer` / `check_account` raise
  ValueError (ids and keys 1-64/128 characters without NUL, fields that do not belong to the kind,
  naive `expires_at`, integers outside PostgreSQL's bigint, currency outside 1..999, an overdraft on an
  account that is not debit-limited). A call with one malformed transfer applies none of them.
- Only successful transfers are stored. A failed transfer leaves no trace, so its id may be used again
  (a retry after a decline is evaluated afresh); EXISTS therefore always means "applied, result OK".
- POST_PENDING and VOID_PENDING must name the pending's own debit and credit accounts (and currency);
  other accounts get PENDING_NOT_FOUND, since no such pending exists between those accounts.
- VOID_PENDING always releases the whole pending amount; its `amount` must be > 0 and <= the pending
  amount (it is recorded, not used). Posting releases the whole hold and posts `amount` of it.
- Expiry is an event, not a clock: a pending whose `expires_at` has passed stays postable and voidable
  until `expire_pending(now)` releases it (expires_at <= now; earliest expires_at first, then id, at
  most `limit`). After that, posting or voiding it gives PENDING_EXPIRED.
- Only a POSTED transfer that is not itself a reversal can be reversed (not a POST_PENDING completion:
  void the pending instead while it is pending). A reversal checks funds like any POSTED transfer.
- Usage limits apply to PENDING and to POSTED transfers that are not reversals; other kinds carrying
  limit fields are malformed. A counter counts successful transfers: amount and count 1 each. A void or
  expiry gives back the pending's amount and its count; a partial post gives back the released rest
  (amount only); a reversal gives back its amount, and the count when it reverses the whole amount.
- Funds are not checked for POST_PENDING and VOID_PENDING: they can only lower the debits of an
  account (the hold was checked when it was placed).
- Arithmetic overflow of bigint balances is not a result: the model uses Python integers, the database
  raises an error for the transfer's call (no transfer is applied by a failed database call).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from switch.domain.ledger_types import AccountBalance, LedgerAccount, Transfer, TransferKind, TransferResult

__all__ = [
    "BIGINT_MAX",
    "BIGINT_MIN",
    "CURRENCY_MAX",
    "LIMIT_KEY_LENGTH_MAX",
    "REFERENCE_LENGTH_MAX",
    "TRANSFER_ID_LENGTH_MAX",
    "LedgerModel",
    "PendingState",
    "Usage",
    "check_account",
    "check_transfer",
    "check_transfer_id",
]

# PostgreSQL bigint bounds: every amount, balance and account id must fit one.
BIGINT_MAX = 2**63 - 1
BIGINT_MIN = -(2**63)
CURRENCY_MAX = 999  # ISO 4217 numeric codes are three digits
TRANSFER_ID_LENGTH_MAX = 64
LIMIT_KEY_LENGTH_MAX = 128
REFERENCE_LENGTH_MAX = 256


class PendingState(enum.StrEnum):
    """Where a PENDING transfer is in its life; it leaves PENDING exactly once."""

    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Usage:
    """A usage-limit counter: what successful transfers under one `limit_key` have used so far."""

    amount: int = 0
    count: int = 0


# --- shape checks (programmer errors) ---------------------------------------------------------------


def _check_text(name: str, value: object, length_max: int) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    if not 1 <= len(value) <= length_max:
        raise ValueError(f"{name} must be 1-{length_max} characters")
    _check_storable(name, value)


def check_transfer_id(transfer_id: object) -> None:
    """A transfer id's shape (as `check_transfer` checks it); ValueError if it is not one."""
    _check_text("transfer_id", transfer_id, TRANSFER_ID_LENGTH_MAX)


def _check_storable(name: str, value: str) -> None:
    # PostgreSQL text holds neither NUL nor lone surrogates (not encodable as UTF-8).
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} must be valid Unicode text") from None


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}")


def check_account(account: LedgerAccount) -> None:
    """Raise ValueError if `account` cannot be stored (ids, currency, overdraft without a debit limit)."""
    _check_int("account_id", account.account_id, 1, BIGINT_MAX)
    _check_int("currency", account.currency, 1, CURRENCY_MAX)
    if not isinstance(account.debits_must_not_exceed_credits, bool):
        raise ValueError("debits_must_not_exceed_credits must be a bool")
    _check_int("overdraft_limit", account.overdraft_limit, 0, BIGINT_MAX)
    if account.overdraft_limit and not account.debits_must_not_exceed_credits:
        raise ValueError("overdraft_limit needs debits_must_not_exceed_credits")


def check_transfer(transfer: Transfer) -> None:
    """Raise ValueError if `transfer` is malformed: a caller bug, never a ledger result."""
    t = transfer
    _check_text("transfer_id", t.transfer_id, TRANSFER_ID_LENGTH_MAX)
    if not isinstance(t.kind, TransferKind):
        raise ValueError("kind must be a TransferKind")
    _check_int("debit_account_id", t.debit_account_id, 1, BIGINT_MAX)
    _check_int("credit_account_id", t.credit_account_id, 1, BIGINT_MAX)
    _check_int("amount", t.amount, BIGINT_MIN, BIGINT_MAX)
    _check_int("currency", t.currency, 1, CURRENCY_MAX)
    if not isinstance(t.reference, str) or len(t.reference) > REFERENCE_LENGTH_MAX:
        raise ValueError(f"reference must be a string of at most {REFERENCE_LENGTH_MAX} characters")
    _check_storable("reference", t.reference)

    resolves_pending = t.kind in (TransferKind.POST_PENDING, TransferKind.VOID_PENDING)
    if resolves_pending:
        _check_text("pending_id", t.pending_id, TRANSFER_ID_LENGTH_MAX)
    elif t.pending_id is not None:
        raise ValueError("pending_id belongs to POST_PENDING and VOID_PENDING only")

    if t.expires_at is not None:
        if t.kind is not TransferKind.PENDING:
            raise ValueError("expires_at belongs to PENDING only")
        if not isinstance(t.expires_at, datetime) or t.expires_at.utcoffset() is None:
            raise ValueError("expires_at must be an aware datetime")

    if t.reverses_id is not None:
        if t.kind is not TransferKind.POSTED:
            raise ValueError("reverses_id belongs to POSTED only")
        _check_text("reverses_id", t.reverses_id, TRANSFER_ID_LENGTH_MAX)

    has_limit = t.limit_key is not None or t.limit_amount_max is not None or t.limit_count_max is not None
    if has_limit:
        counts_usage = t.kind is TransferKind.PENDING or (
            t.kind is TransferKind.POSTED and t.reverses_id is None
        )
        if not counts_usage:
            raise ValueError("usage limits belong to PENDING and non-reversal POSTED transfers only")
        _check_text("limit_key", t.limit_key, LIMIT_KEY_LENGTH_MAX)
        if t.limit_amount_max is not None:
            _check_int("limit_amount_max", t.limit_amount_max, 0, BIGINT_MAX)
        if t.limit_count_max is not None:
            _check_int("limit_count_max", t.limit_count_max, 0, BIGINT_MAX)


# --- the model ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _AccountState:
    account: LedgerAccount
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    def balance(self) -> AccountBalance:
        return AccountBalance(
            account_id=self.account.account_id,
            currency=self.account.currency,
            debits_pending=self.debits_pending,
            debits_posted=self.debits_posted,
            credits_pending=self.credits_pending,
            credits_posted=self.credits_posted,
            overdraft_limit=self.account.overdraft_limit,
        )


@dataclass(slots=True)
class _StoredTransfer:
    transfer: Transfer
    pending_state: PendingState | None = None  # PENDING transfers only
    reversed_by: str | None = None  # POSTED transfers only: the id of their reversal


class LedgerModel:
    """An in-memory ledger with exactly the contract's semantics. Synchronous; not thread-safe."""

    def __init__(self) -> None:
        self._accounts: dict[int, _AccountState] = {}
        self._transfers: dict[str, _StoredTransfer] = {}
        self._usage: dict[str, Usage] = {}
        self._barred: set[str] = set()

    # -- the Ledger port, synchronously ---------------------------------------------------------------

    def create_accounts(self, accounts: Sequence[LedgerAccount]) -> None:
        """Create accounts that do not exist yet; the first of duplicate ids wins, existing ones stay."""
        for account in accounts:
            check_account(account)
        for account in accounts:
            self._accounts.setdefault(account.account_id, _AccountState(account))

    def create_transfers(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        """Apply transfers in order, each on its own; one result per transfer."""
        for transfer in transfers:
            check_transfer(transfer)
        return [self._create_transfer(t) for t in transfers]

    def bar(self, transfer_id: str) -> bool:
        """Bar `transfer_id` from ever being applied, unless a transfer with that id exists: True when it
        is barred (now or before), False when the transfer exists. What a reversal that finds no original
        does, so that the original, should it still come, is refused (BARRED) rather than applied."""
        check_transfer_id(transfer_id)
        if transfer_id in self._transfers:
            return False
        self._barred.add(transfer_id)
        return True

    def lookup_transfers(self, transfer_ids: Iterable[str]) -> dict[str, Transfer]:
        return {i: self._transfers[i].transfer for i in transfer_ids if i in self._transfers}

    def lookup_by_reference(self, reference: str, limit: int = 10) -> list[Transfer]:
        """Transfers with exactly this reference, in the order they were created, at most `limit`."""
        found = [s.transfer for s in self._transfers.values() if s.transfer.reference == reference]
        return found[: max(limit, 0)]

    def balances(self, account_ids: Iterable[int]) -> dict[int, AccountBalance]:
        return {i: self._accounts[i].balance() for i in account_ids if i in self._accounts}

    def expire_pending(self, now: datetime, limit: int = 1000) -> int:
        """Release holds whose expires_at <= now, earliest first (ties by id), at most `limit`."""
        if now.utcoffset() is None:
            raise ValueError("now must be an aware datetime")
        due = sorted(
            (s.transfer.expires_at, s.transfer.transfer_id)
            for s in self._transfers.values()
            if s.pending_state is PendingState.PENDING
            and s.transfer.expires_at is not None
            and s.transfer.expires_at <= now
        )
        for _, transfer_id in due[: max(limit, 0)]:
            self._release(self._transfers[transfer_id], PendingState.EXPIRED)
        return min(len(due), max(limit, 0))

    # -- inspection for tests and tools -----------------------------------------------------------------

    def pending_state(self, transfer_id: str) -> PendingState | None:
        stored = self._transfers.get(transfer_id)
        return None if stored is None else stored.pending_state

    def usage(self, limit_key: str) -> Usage:
        return self._usage.get(limit_key, Usage())

    def account_ids(self) -> list[int]:
        return sorted(self._accounts)

    def invariant_violations(self) -> list[str]:
        """Every broken ledger invariant, described; empty when the ledger is sound."""
        problems: list[str] = []
        states = self._accounts.values()
        if sum(a.debits_posted for a in states) != sum(a.credits_posted for a in states):
            problems.append("posted debits != posted credits")
        if sum(a.debits_pending for a in states) != sum(a.credits_pending for a in states):
            problems.append("pending debits != pending credits")
        held = sum(
            s.transfer.amount for s in self._transfers.values() if s.pending_state is PendingState.PENDING
        )
        if held != sum(a.debits_pending for a in states):
            problems.append("pending debits != amounts of live holds")
        for a in states:
            if min(a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted) < 0:
                problems.append(f"account {a.account.account_id} has a negative total")
            limited = a.account.debits_must_not_exceed_credits
            if limited and a.debits_posted + a.debits_pending > a.credits_posted + a.account.overdraft_limit:
                problems.append(f"account {a.account.account_id} is below its limit")
        for key, usage in self._usage.items():
            if usage.amount < 0 or usage.count < 0:
                problems.append(f"usage {key!r} is negative")
        return problems

    # -- one transfer -------------------------------------------------------------------------------------

    def _create_transfer(self, t: Transfer) -> TransferResult:
        result = self._decide(t)
        if result is TransferResult.OK:
            self._apply(t)
        return result

    def _decide(self, t: Transfer) -> TransferResult:
        R = TransferResult
        existing = self._transfers.get(t.transfer_id)
        if existing is not None:
            return R.EXISTS if existing.transfer == t else R.EXISTS_WITH_DIFFERENT_FIELDS
        if t.transfer_id in self._barred:
            return R.BARRED
        if t.amount <= 0:
            return R.AMOUNT_MUST_BE_POSITIVE
        if t.debit_account_id == t.credit_account_id:
            return R.SAME_ACCOUNT
        debit = self._accounts.get(t.debit_account_id)
        credit = self._accounts.get(t.credit_account_id)
        if debit is None or credit is None:
            return R.ACCOUNT_NOT_FOUND
        if debit.account.currency != t.currency or credit.account.currency != t.currency:
            return R.CURRENCY_MISMATCH

        if t.kind in (TransferKind.POST_PENDING, TransferKind.VOID_PENDING):
            assert t.pending_id is not None  # check_transfer guarantees it
            pending = self._transfers.get(t.pending_id)
            if (
                pending is None
                or pending.transfer.kind is not TransferKind.PENDING
                or pending.transfer.debit_account_id != t.debit_account_id
                or pending.transfer.credit_account_id != t.credit_account_id
            ):
                return R.PENDING_NOT_FOUND
            if pending.pending_state is PendingState.POSTED:
                return R.PENDING_ALREADY_POSTED
            if pending.pending_state is PendingState.VOIDED:
                return R.PENDING_ALREADY_VOIDED
            if pending.pending_state is PendingState.EXPIRED:
                return R.PENDING_EXPIRED
            if t.amount > pending.transfer.amount:
                return R.EXCEEDS_PENDING_AMOUNT
            return R.OK

        if t.reverses_id is not None:
            original = self._transfers.get(t.reverses_id)
            if (
                original is None
                or original.transfer.kind is not TransferKind.POSTED
                or original.transfer.reverses_id is not None
            ):
                return R.REVERSED_NOT_FOUND
            if original.reversed_by is not None:
                return R.ALREADY_REVERSED
            if (t.debit_account_id, t.credit_account_id) != (
                original.transfer.credit_account_id,
                original.transfer.debit_account_id,
            ):
                return R.REVERSAL_ACCOUNTS_MISMATCH
            if t.amount > original.transfer.amount:
                return R.EXCEEDS_REVERSED_AMOUNT

        if debit.account.debits_must_not_exceed_credits and (
            debit.debits_posted + debit.debits_pending + t.amount
            > debit.credits_posted + debit.account.overdraft_limit
        ):
            return R.EXCEEDS_CREDITS

        if t.limit_key is not None:
            used = self.usage(t.limit_key)
            if t.limit_amount_max is not None and used.amount + t.amount > t.limit_amount_max:
                return R.EXCEEDS_AMOUNT_LIMIT
            if t.limit_count_max is not None and used.count + 1 > t.limit_count_max:
                return R.EXCEEDS_COUNT_LIMIT
        return R.OK

    def _apply(self, t: Transfer) -> None:
        debit = self._accounts[t.debit_account_id]
        credit = self._accounts[t.credit_account_id]
        stored = _StoredTransfer(t)
        if t.kind is TransferKind.PENDING:
            debit.debits_pending += t.amount
            credit.credits_pending += t.amount
            stored.pending_state = PendingState.PENDING
            self._count_usage(t.limit_key, t.amount, 1)
        elif t.kind is TransferKind.POSTED:
            debit.debits_posted += t.amount
            credit.credits_posted += t.amount
            self._count_usage(t.limit_key, t.amount, 1)
            if t.reverses_id is not None:
                original = self._transfers[t.reverses_id]
                original.reversed_by = t.transfer_id
                whole = t.amount == original.transfer.amount
                self._count_usage(original.transfer.limit_key, -t.amount, -1 if whole else 0)
        else:
            assert t.pending_id is not None
            pending = self._transfers[t.pending_id]
            if t.kind is TransferKind.POST_PENDING:
                self._release(pending, PendingState.POSTED, posted_amount=t.amount)
                debit.debits_posted += t.amount
                credit.credits_posted += t.amount
            else:
                self._release(pending, PendingState.VOIDED)
        self._transfers[t.transfer_id] = stored

    def _release(self, pending: _StoredTransfer, state: PendingState, posted_amount: int = 0) -> None:
        """End a hold: its whole amount leaves the pending totals; unused usage is given back.

        Voided or expired, the hold gives back its amount and its count; posted, only the part not
        posted (the count stays: the transaction happened).
        """
        p = pending.transfer
        self._accounts[p.debit_account_id].debits_pending -= p.amount
        self._accounts[p.credit_account_id].credits_pending -= p.amount
        pending.pending_state = state
        if state is PendingState.POSTED:
            self._count_usage(p.limit_key, posted_amount - p.amount, 0)
        else:
            self._count_usage(p.limit_key, -p.amount, -1)

    def _count_usage(self, limit_key: str | None, amount: int, count: int) -> None:
        if limit_key is None or (amount == 0 and count == 0):
            return
        used = self.usage(limit_key)
        self._usage[limit_key] = Usage(used.amount + amount, used.count + count)
