"""The ledger reference model, one rule per test."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from switch.domain.ledger_model import LedgerModel, PendingState, Usage, check_account, check_transfer
from switch.domain.ledger_types import LedgerAccount, Transfer, TransferKind, TransferResult
from tests.unit.ledger.strategies import (
    ACCOUNTS,
    CARD,
    CARD_OVERDRAFT,
    DOLLARS,
    EUR,
    FUNDING,
    MERCHANT,
    T0,
    USD,
)

R = TransferResult
K = TransferKind


def tr(
    tid: str, amount: int, debit: int = CARD, credit: int = MERCHANT, kind: K = K.POSTED, **kw
) -> Transfer:
    return Transfer(
        transfer_id=tid,
        kind=kind,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        currency=kw.pop("currency", EUR),
        **kw,
    )


def ledger(funds: int = 10_000) -> LedgerModel:
    model = LedgerModel()
    model.create_accounts(ACCOUNTS)
    if funds:
        assert model.create_transfers([tr("load", funds, FUNDING, CARD)]) == [R.OK]
    return model


def one(model: LedgerModel, t: Transfer) -> TransferResult:
    return model.create_transfers([t])[0]


def card(model: LedgerModel, account_id: int = CARD):
    return model.balances([account_id])[account_id]


# --- accounts ---------------------------------------------------------------------------------------


def test_existing_account_is_left_as_it_is():
    """If an account id is created again with other settings, then the first account stays."""
    model = ledger()
    model.create_accounts([LedgerAccount(account_id=CARD, currency=USD)])
    assert card(model).currency == EUR
    assert card(model).credits_posted == 10_000


def test_overdraft_without_debit_limit_is_malformed():
    """If an account has an overdraft but no debit limit, then check_account raises ValueError."""
    with pytest.raises(ValueError):
        check_account(LedgerAccount(account_id=9, currency=EUR, overdraft_limit=1))


def test_balances_skip_unknown_accounts():
    """If balances are asked for unknown ids, then only the known accounts come back."""
    assert set(ledger().balances([CARD, 12345])) == {CARD}


# --- shape ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "transfer",
    [
        tr("", 1),
        tr("x" * 65, 1),
        tr("a\x00b", 1),
        tr("a", 1, kind=K.POST_PENDING),  # no pending_id
        tr("a", 1, pending_id="p"),  # pending_id on POSTED
        tr("a", 1, expires_at=T0),  # expires_at on POSTED
        tr("a", 1, kind=K.PENDING, expires_at=datetime(2026, 1, 1)),  # naive
        tr("a", 1, kind=K.PENDING, reverses_id="p"),
        tr("a", 1, reverses_id="p", limit_key="k"),  # limits on a reversal
        tr("a", 1, kind=K.VOID_PENDING, pending_id="p", limit_key="k"),
        tr("a", 1, limit_amount_max=5),  # a maximum without a key
        tr("a", 2**63),
        tr("a", 1, currency=1000),
        tr("a", 1, debit=0),
    ],
)
def test_malformed_transfer_raises(transfer):
    """If a transfer is malformed, then check_transfer raises ValueError."""
    with pytest.raises(ValueError):
        check_transfer(transfer)


def test_malformed_transfer_stops_the_whole_call():
    """If one transfer of a call is malformed, then none of the call's transfers is applied."""
    model = ledger()
    with pytest.raises(ValueError):
        model.create_transfers([tr("ok", 5), tr("", 5)])
    assert model.lookup_transfers(["ok"]) == {}


# --- posted transfers and the generic checks ---------------------------------------------------------------


def test_posted_moves_money():
    """If a POSTED transfer succeeds, then the debit account is debited and the credit account credited."""
    model = ledger()
    assert one(model, tr("p", 2500)) is R.OK
    assert card(model).available == 7500
    assert card(model, MERCHANT).credits_posted == 2500


def test_non_positive_amount_is_refused():
    """If the amount is zero or negative, then AMOUNT_MUST_BE_POSITIVE."""
    model = ledger()
    assert one(model, tr("p", 0)) is R.AMOUNT_MUST_BE_POSITIVE
    assert one(model, tr("p", -1)) is R.AMOUNT_MUST_BE_POSITIVE


def test_same_account_is_refused():
    """If debit and credit are the same account, then SAME_ACCOUNT."""
    assert one(ledger(), tr("p", 5, CARD, CARD)) is R.SAME_ACCOUNT


def test_unknown_account_is_refused():
    """If either account does not exist, then ACCOUNT_NOT_FOUND."""
    assert one(ledger(), tr("p", 5, CARD, 777)) is R.ACCOUNT_NOT_FOUND
    assert one(ledger(), tr("p", 5, 777, CARD)) is R.ACCOUNT_NOT_FOUND


def test_currency_must_match_both_accounts():
    """If the transfer's currency differs from an account's, then CURRENCY_MISMATCH."""
    assert one(ledger(), tr("p", 5, currency=USD)) is R.CURRENCY_MISMATCH
    assert one(ledger(), tr("p", 5, DOLLARS, MERCHANT, currency=USD)) is R.CURRENCY_MISMATCH


def test_debit_limited_account_cannot_go_below_zero():
    """If a debit-limited account lacks funds, then EXCEEDS_CREDITS and nothing moves."""
    model = ledger(funds=100)
    assert one(model, tr("p", 101)) is R.EXCEEDS_CREDITS
    assert card(model).debits_posted == 0
    assert one(model, tr("p", 100)) is R.OK


def test_overdraft_extends_the_limit():
    """If an account has an overdraft of 300, then it may spend 300 beyond its credits."""
    model = ledger(funds=0)
    assert one(model, tr("o1", 300, CARD_OVERDRAFT)) is R.OK
    assert one(model, tr("o2", 1, CARD_OVERDRAFT)) is R.EXCEEDS_CREDITS


def test_unlimited_account_may_go_negative():
    """If an account is not debit-limited, then it may be debited without credits."""
    assert one(ledger(funds=0), tr("p", 10**12, MERCHANT, CARD)) is R.OK


def test_pending_credits_are_not_spendable():
    """If money only arrives as a pending credit, then it cannot be spent yet."""
    model = ledger(funds=0)
    assert one(model, tr("h", 100, FUNDING, CARD, kind=K.PENDING)) is R.OK
    assert one(model, tr("p", 1)) is R.EXCEEDS_CREDITS


# --- idempotency ------------------------------------------------------------------------------------


def test_same_id_same_fields_exists_and_applies_once():
    """If a transfer is repeated exactly, then EXISTS and the money moved once."""
    model = ledger()
    t = tr("p", 1000, reference="rrn:1")
    assert model.create_transfers([t, t]) == [R.OK, R.EXISTS]
    assert card(model).debits_posted == 1000


def test_same_id_other_fields_is_refused():
    """If an existing id comes with different fields, then EXISTS_WITH_DIFFERENT_FIELDS."""
    model = ledger()
    one(model, tr("p", 1000))
    assert one(model, tr("p", 999)) is R.EXISTS_WITH_DIFFERENT_FIELDS
    assert one(model, tr("p", 1000, reference="other")) is R.EXISTS_WITH_DIFFERENT_FIELDS


def test_failed_id_can_be_used_again():
    """If a transfer failed, then its id is not taken: a later attempt is evaluated afresh."""
    model = ledger(funds=0)
    assert one(model, tr("p", 100)) is R.EXCEEDS_CREDITS
    one(model, tr("load2", 100, FUNDING, CARD))
    assert one(model, tr("p", 100)) is R.OK


def test_expires_at_compares_by_instant():
    """If a retry carries the same expiry in another time zone, then it is the same transfer."""
    model = ledger()
    t = tr("h", 10, kind=K.PENDING, expires_at=T0)
    one(model, t)
    other_zone = T0.astimezone(datetime.now().astimezone().tzinfo)
    assert one(model, tr("h", 10, kind=K.PENDING, expires_at=other_zone)) is R.EXISTS


# --- two phases -------------------------------------------------------------------------------------


def test_pending_reserves_funds():
    """If a hold is placed, then available drops and nothing is posted."""
    model = ledger()
    assert one(model, tr("h", 4000, kind=K.PENDING)) is R.OK
    assert (card(model).available, card(model).debits_posted) == (6000, 0)
    assert one(model, tr("h2", 6001, kind=K.PENDING)) is R.EXCEEDS_CREDITS


def test_partial_post_releases_the_rest():
    """If a hold of 1000 is posted for 600, then 600 is posted and 400 released."""
    model = ledger()
    one(model, tr("h", 1000, kind=K.PENDING))
    assert one(model, tr("c", 600, kind=K.POST_PENDING, pending_id="h")) is R.OK
    assert (card(model).debits_pending, card(model).debits_posted) == (0, 600)
    assert model.pending_state("h") is PendingState.POSTED


def test_post_above_the_hold_is_refused():
    """If a completion exceeds the hold, then EXCEEDS_PENDING_AMOUNT."""
    model = ledger()
    one(model, tr("h", 1000, kind=K.PENDING))
    assert one(model, tr("c", 1001, kind=K.POST_PENDING, pending_id="h")) is R.EXCEEDS_PENDING_AMOUNT


def test_void_releases_the_whole_hold():
    """If a hold is voided (even with a smaller amount), then all of it is released."""
    model = ledger()
    one(model, tr("h", 1000, kind=K.PENDING))
    assert one(model, tr("v", 1, kind=K.VOID_PENDING, pending_id="h")) is R.OK
    assert card(model).available == 10_000
    assert model.pending_state("h") is PendingState.VOIDED


def test_unknown_pending_is_not_found():
    """If pending_id names nothing, or not a hold, then PENDING_NOT_FOUND."""
    model = ledger()
    one(model, tr("p", 10))
    assert one(model, tr("c", 1, kind=K.POST_PENDING, pending_id="nope")) is R.PENDING_NOT_FOUND
    assert one(model, tr("c", 1, kind=K.POST_PENDING, pending_id="p")) is R.PENDING_NOT_FOUND


def test_resolution_must_name_the_holds_accounts():
    """If a completion names other accounts than the hold's, then PENDING_NOT_FOUND."""
    model = ledger()
    one(model, tr("h", 10, kind=K.PENDING))
    assert one(model, tr("c", 10, CARD, FUNDING, kind=K.POST_PENDING, pending_id="h")) is R.PENDING_NOT_FOUND


def test_hold_is_posted_at_most_once():
    """If a posted hold is posted or voided again, then PENDING_ALREADY_POSTED."""
    model = ledger()
    one(model, tr("h", 10, kind=K.PENDING))
    one(model, tr("c1", 10, kind=K.POST_PENDING, pending_id="h"))
    assert one(model, tr("c2", 10, kind=K.POST_PENDING, pending_id="h")) is R.PENDING_ALREADY_POSTED
    assert one(model, tr("v", 10, kind=K.VOID_PENDING, pending_id="h")) is R.PENDING_ALREADY_POSTED


def test_voided_hold_cannot_be_resolved_again():
    """If a voided hold is posted or voided again, then PENDING_ALREADY_VOIDED."""
    model = ledger()
    one(model, tr("h", 10, kind=K.PENDING))
    one(model, tr("v1", 10, kind=K.VOID_PENDING, pending_id="h"))
    assert one(model, tr("c", 10, kind=K.POST_PENDING, pending_id="h")) is R.PENDING_ALREADY_VOIDED
    assert one(model, tr("v2", 10, kind=K.VOID_PENDING, pending_id="h")) is R.PENDING_ALREADY_VOIDED


def test_expiry_releases_due_holds_only():
    """If expire_pending runs, then holds with expires_at <= now are released and the others stay."""
    model = ledger()
    one(model, tr("h1", 100, kind=K.PENDING, expires_at=T0))
    one(model, tr("h2", 200, kind=K.PENDING, expires_at=T0 + timedelta(hours=1)))
    one(model, tr("h3", 300, kind=K.PENDING))
    assert model.expire_pending(T0) == 1
    assert card(model).debits_pending == 500
    assert model.pending_state("h1") is PendingState.EXPIRED


def test_expired_hold_cannot_be_resolved():
    """If a hold has expired, then posting or voiding it gives PENDING_EXPIRED."""
    model = ledger()
    one(model, tr("h", 100, kind=K.PENDING, expires_at=T0))
    model.expire_pending(T0 + timedelta(seconds=1))
    assert one(model, tr("c", 100, kind=K.POST_PENDING, pending_id="h")) is R.PENDING_EXPIRED


def test_overdue_hold_is_postable_until_the_sweep():
    """If a hold is past expires_at but not yet swept, then it can still be posted."""
    model = ledger()
    one(model, tr("h", 100, kind=K.PENDING, expires_at=T0))
    assert one(model, tr("c", 100, kind=K.POST_PENDING, pending_id="h")) is R.OK
    assert model.expire_pending(T0 + timedelta(days=1)) == 0


def test_expiry_limit_takes_the_earliest():
    """If more holds are due than the limit, then the earliest are released first."""
    model = ledger()
    for i in (3, 1, 2):
        one(model, tr(f"h{i}", 10, kind=K.PENDING, expires_at=T0 + timedelta(seconds=i)))
    assert model.expire_pending(T0 + timedelta(hours=1), limit=2) == 2
    assert [model.pending_state(f"h{i}") for i in (1, 2, 3)] == [
        PendingState.EXPIRED,
        PendingState.EXPIRED,
        PendingState.PENDING,
    ]


# --- reversals --------------------------------------------------------------------------------------


def test_full_reversal_restores_balances():
    """If a purchase is reversed in full, then both accounts are back where they were."""
    model = ledger()
    one(model, tr("p", 1000))
    assert one(model, tr("r", 1000, MERCHANT, CARD, reverses_id="p")) is R.OK
    assert card(model).ledger_balance == 10_000
    assert card(model, MERCHANT).ledger_balance == 0


def test_partial_reversal_returns_part():
    """If 400 of a 1000 purchase is reversed, then 400 comes back."""
    model = ledger()
    one(model, tr("p", 1000))
    assert one(model, tr("r", 400, MERCHANT, CARD, reverses_id="p")) is R.OK
    assert card(model).available == 9400


def test_reversal_at_most_once():
    """If a purchase has a reversal, then another reversal is ALREADY_REVERSED."""
    model = ledger()
    one(model, tr("p", 1000))
    one(model, tr("r1", 400, MERCHANT, CARD, reverses_id="p"))
    assert one(model, tr("r2", 600, MERCHANT, CARD, reverses_id="p")) is R.ALREADY_REVERSED


def test_reversal_must_swap_accounts():
    """If a reversal does not swap the original's accounts, then REVERSAL_ACCOUNTS_MISMATCH."""
    model = ledger()
    one(model, tr("p", 1000))
    assert one(model, tr("r", 1000, CARD, MERCHANT, reverses_id="p")) is R.REVERSAL_ACCOUNTS_MISMATCH


def test_reversal_cannot_exceed_the_original():
    """If a reversal is larger than the original, then EXCEEDS_REVERSED_AMOUNT."""
    model = ledger()
    one(model, tr("p", 1000))
    assert one(model, tr("r", 1001, MERCHANT, CARD, reverses_id="p")) is R.EXCEEDS_REVERSED_AMOUNT


def test_only_purchases_can_be_reversed():
    """If reverses_id names nothing, a hold, or a reversal, then REVERSED_NOT_FOUND."""
    model = ledger()
    one(model, tr("p", 1000))
    one(model, tr("h", 10, kind=K.PENDING))
    one(model, tr("r", 10, MERCHANT, CARD, reverses_id="p"))
    assert one(model, tr("x1", 10, MERCHANT, CARD, reverses_id="nope")) is R.REVERSED_NOT_FOUND
    assert one(model, tr("x2", 10, MERCHANT, CARD, reverses_id="h")) is R.REVERSED_NOT_FOUND
    assert one(model, tr("x3", 10, CARD, MERCHANT, reverses_id="r")) is R.REVERSED_NOT_FOUND


def test_reversal_checks_funds_of_its_debit_account():
    """If a reversal debits a debit-limited account without funds, then EXCEEDS_CREDITS."""
    model = ledger(funds=100)
    one(model, tr("refund", 100, FUNDING, CARD_OVERDRAFT))
    one(model, tr("spend", 400, CARD_OVERDRAFT, MERCHANT))
    assert one(model, tr("r", 100, CARD_OVERDRAFT, FUNDING, reverses_id="refund")) is R.EXCEEDS_CREDITS


# --- usage limits -----------------------------------------------------------------------------------


def test_amount_limit_refuses_what_would_exceed_it():
    """If the counter's amount plus this transfer exceeds limit_amount_max, then EXCEEDS_AMOUNT_LIMIT."""
    model = ledger()
    lim: dict[str, Any] = {"limit_key": "k", "limit_amount_max": 1000}
    assert model.create_transfers([tr("a", 700, **lim), tr("b", 301, **lim), tr("c", 300, **lim)]) == [
        R.OK,
        R.EXCEEDS_AMOUNT_LIMIT,
        R.OK,
    ]
    assert model.usage("k") == Usage(1000, 2)


def test_count_limit_refuses_one_more():
    """If the counter's count is at limit_count_max, then EXCEEDS_COUNT_LIMIT."""
    model = ledger()
    lim: dict[str, Any] = {"limit_key": "k", "limit_count_max": 1}
    assert model.create_transfers([tr("a", 1, **lim), tr("b", 1, **lim)]) == [R.OK, R.EXCEEDS_COUNT_LIMIT]


def test_amount_limit_is_checked_before_count():
    """If both limits would be exceeded, then EXCEEDS_AMOUNT_LIMIT."""
    model = ledger()
    lim: dict[str, Any] = {"limit_key": "k", "limit_amount_max": 10, "limit_count_max": 1}
    one(model, tr("a", 10, **lim))
    assert one(model, tr("b", 1, **lim)) is R.EXCEEDS_AMOUNT_LIMIT


def test_funds_are_checked_before_limits():
    """If a transfer lacks funds and exceeds a limit, then EXCEEDS_CREDITS."""
    model = ledger(funds=10)
    assert one(model, tr("a", 11, limit_key="k", limit_amount_max=5)) is R.EXCEEDS_CREDITS


def test_void_gives_back_amount_and_count():
    """If a counted hold is voided, then the counter gets its amount and count back."""
    model = ledger()
    one(model, tr("h", 500, kind=K.PENDING, limit_key="k"))
    one(model, tr("v", 500, kind=K.VOID_PENDING, pending_id="h"))
    assert model.usage("k") == Usage(0, 0)


def test_partial_post_gives_back_the_released_amount_only():
    """If a counted hold of 500 is posted for 200, then the counter keeps 200 and the count of 1."""
    model = ledger()
    one(model, tr("h", 500, kind=K.PENDING, limit_key="k"))
    one(model, tr("c", 200, kind=K.POST_PENDING, pending_id="h"))
    assert model.usage("k") == Usage(200, 1)


def test_expiry_gives_back_amount_and_count():
    """If a counted hold expires, then the counter gets its amount and count back."""
    model = ledger()
    one(model, tr("h", 500, kind=K.PENDING, expires_at=T0, limit_key="k"))
    model.expire_pending(T0)
    assert model.usage("k") == Usage(0, 0)


def test_partial_reversal_gives_back_amount_not_count():
    """If a counted purchase is partly reversed, then the amount comes back and the count stays."""
    model = ledger()
    one(model, tr("p", 500, limit_key="k"))
    one(model, tr("r", 200, MERCHANT, CARD, reverses_id="p"))
    assert model.usage("k") == Usage(300, 1)


def test_full_reversal_gives_back_amount_and_count():
    """If a counted purchase is reversed in full, then the counter is back to zero."""
    model = ledger()
    one(model, tr("p", 500, limit_key="k"))
    one(model, tr("r", 500, MERCHANT, CARD, reverses_id="p"))
    assert model.usage("k") == Usage(0, 0)


def test_failed_transfer_does_not_count():
    """If a transfer fails, then its usage is not counted."""
    model = ledger(funds=10)
    one(model, tr("a", 11, limit_key="k"))
    assert model.usage("k") == Usage(0, 0)


# --- invariants -------------------------------------------------------------------------------------


def test_sound_ledger_has_no_violations():
    """If transfers of every kind were applied, then debits equal credits and no limit is broken."""
    model = ledger()
    model.create_transfers(
        [
            tr("p", 100),
            tr("h", 200, kind=K.PENDING),
            tr("c", 150, kind=K.POST_PENDING, pending_id="h"),
            tr("r", 50, MERCHANT, CARD, reverses_id="p"),
        ]
    )
    assert model.invariant_violations() == []


def test_invariant_check_catches_unbalanced_totals():
    """If an account's totals are tampered with, then invariant_violations reports it."""
    model = ledger()
    model._accounts[CARD].debits_posted += 1
    assert model.invariant_violations()
