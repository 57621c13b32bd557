"""PgLedger on a real PostgreSQL: money rules, concurrency, idempotency, group commit."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import trio
import trio.testing

from switch.adapters.postgres.db import Database, DatabaseSettings
from switch.adapters.postgres.ledger import LedgerError, PgLedger
from switch.domain.ledger_model import LedgerModel
from switch.domain.ledger_types import LedgerAccount, Transfer, TransferKind, TransferResult
from switch.ports import Ledger
from tests.fixtures.pg import rows_locked, wait_for_lock_waiters

R = TransferResult
K = TransferKind
EUR = 978
USD = 840
CARD = 1  # cardholder account: debits must not exceed credits
MERCHANT = 2
FUNDING = 3  # where card loads come from
CARD_OVERDRAFT = 4  # debit-limited with an overdraft of 500
DOLLARS = 5  # another currency
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

ACCOUNTS = [
    LedgerAccount(account_id=CARD, currency=EUR, debits_must_not_exceed_credits=True),
    LedgerAccount(account_id=MERCHANT, currency=EUR),
    LedgerAccount(account_id=FUNDING, currency=EUR),
    LedgerAccount(
        account_id=CARD_OVERDRAFT, currency=EUR, debits_must_not_exceed_credits=True, overdraft_limit=500
    ),
    LedgerAccount(account_id=DOLLARS, currency=USD),
]


def posted(tid: str, amount: int, debit: int = CARD, credit: int = MERCHANT, **kw: object) -> Transfer:
    return Transfer(
        transfer_id=tid,
        kind=K.POSTED,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        currency=EUR,
        **kw,  # type: ignore[arg-type]
    )


def pending(tid: str, amount: int, **kw: object) -> Transfer:
    return Transfer(
        transfer_id=tid,
        kind=K.PENDING,
        debit_account_id=CARD,
        credit_account_id=MERCHANT,
        amount=amount,
        currency=EUR,
        **kw,  # type: ignore[arg-type]
    )


def resolve(tid: str, kind: TransferKind, pending_id: str, amount: int) -> Transfer:
    return Transfer(
        transfer_id=tid,
        kind=kind,
        debit_account_id=CARD,
        credit_account_id=MERCHANT,
        amount=amount,
        currency=EUR,
        pending_id=pending_id,
    )


def as_port(ledger: PgLedger) -> Ledger:
    """Typed as the port, so mypy checks that PgLedger implements switch.ports.Ledger."""
    return ledger


async def make_ledger(db: Database, card_funds: int = 10_000) -> PgLedger:
    ledger = PgLedger(db)
    await as_port(ledger).create_accounts(ACCOUNTS)
    if card_funds:
        assert await ledger.create_transfers([posted("load:1", card_funds, FUNDING, CARD)]) == [R.OK]
    return ledger


async def card(ledger: PgLedger, account_id: int = CARD):
    return (await ledger.balances([account_id]))[account_id]


async def totals_balance(db: Database) -> None:
    row = await db.fetchrow(
        "SELECT sum(debits_posted) AS dp, sum(credits_posted) AS cp, sum(debits_pending) AS dq,"
        " sum(credits_pending) AS cq FROM ledger_accounts"
    )
    assert row is not None
    assert row["dp"] == row["cp"]
    assert row["dq"] == row["cq"]


async def usage(db: Database, key: str) -> tuple[int, int]:
    row = await db.fetchrow("SELECT amount_used, count_used FROM ledger_usage WHERE limit_key = $1", key)
    return (0, 0) if row is None else (row["amount_used"], row["count_used"])


async def test_posted_purchase_moves_money(db):
    """If a funded card makes a POSTED purchase, then the card is debited and the merchant credited."""
    ledger = await make_ledger(db)
    assert await ledger.create_transfers([posted("p1", 2500)]) == [R.OK]
    balances = await ledger.balances([CARD, MERCHANT])
    assert balances[CARD].available == 7500
    assert balances[MERCHANT].credits_posted == 2500
    await totals_balance(db)


async def test_concurrent_purchases_never_overdraw(db):
    """If 200 concurrent purchases hit one account funded for 66, then exactly 66 succeed and none overdraws."""
    ledger = await make_ledger(db, card_funds=10_000)
    results: list[TransferResult] = []

    async def buy(i: int) -> None:
        results.extend(await ledger.create_transfers([posted(f"buy:{i}", 150, reference=f"rrn:{i:012d}")]))

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(buy, i)
    assert results.count(R.OK) == 10_000 // 150
    assert results.count(R.EXCEEDS_CREDITS) == 200 - 10_000 // 150
    balance = await card(ledger)
    assert balance.debits_posted == 150 * (10_000 // 150)
    assert balance.available >= 0
    await totals_balance(db)


async def test_retry_with_same_fields_exists_and_applies_once(db):
    """If a transfer is retried with the same id and fields, then it reports EXISTS and moves money once."""
    ledger = await make_ledger(db)
    t = posted("p1", 1000, reference="rrn:000000000001")
    assert await ledger.create_transfers([t]) == [R.OK]
    assert await ledger.create_transfers([t]) == [R.EXISTS]
    assert await ledger.create_transfers([t, t]) == [R.EXISTS, R.EXISTS]
    assert (await card(ledger)).debits_posted == 1000
    assert await ledger.lookup_transfers(["p1", "nope"]) == {"p1": t}


async def test_same_id_twice_in_one_call_applies_once(db):
    """If one call carries the same transfer twice, then the second reports EXISTS."""
    ledger = await make_ledger(db)
    t = posted("p1", 1000)
    assert await ledger.create_transfers([t, t]) == [R.OK, R.EXISTS]
    assert (await card(ledger)).debits_posted == 1000


async def test_retry_with_different_fields_is_refused(db):
    """If an existing id comes back with other fields, then EXISTS_WITH_DIFFERENT_FIELDS and nothing moves."""
    ledger = await make_ledger(db)
    assert await ledger.create_transfers([posted("p1", 1000)]) == [R.OK]
    assert await ledger.create_transfers([posted("p1", 1001)]) == [R.EXISTS_WITH_DIFFERENT_FIELDS]
    assert await ledger.create_transfers([posted("p1", 1000, reference="x")]) == [
        R.EXISTS_WITH_DIFFERENT_FIELDS
    ]
    assert (await card(ledger)).debits_posted == 1000


async def test_failed_transfer_leaves_nothing_and_does_not_stop_others(db):
    """If one transfer of a call fails, then it leaves no trace and the following ones still apply."""
    ledger = await make_ledger(db, card_funds=1000)
    results = await ledger.create_transfers([posted("a", 600), posted("b", 600), posted("c", 400)])
    assert results == [R.OK, R.EXCEEDS_CREDITS, R.OK]
    assert set(await ledger.lookup_transfers(["a", "b", "c"])) == {"a", "c"}
    assert (await card(ledger)).available == 0


async def test_overdraft_allows_going_below_zero_up_to_the_limit(db):
    """If a debit-limited account has an overdraft of 500, then it may spend 500 more and not a unit more."""
    ledger = await make_ledger(db, card_funds=0)
    assert await ledger.create_transfers(
        [posted("o1", 500, CARD_OVERDRAFT, MERCHANT), posted("o2", 1, CARD_OVERDRAFT, MERCHANT)]
    ) == [R.OK, R.EXCEEDS_CREDITS]
    assert (await card(ledger, CARD_OVERDRAFT)).available == 0


async def test_basic_refusals(db):
    """If amount, accounts or currency are wrong, then the matching result comes back."""
    ledger = await make_ledger(db)
    bad_currency = Transfer(
        transfer_id="x4",
        kind=K.POSTED,
        debit_account_id=CARD,
        credit_account_id=MERCHANT,
        amount=1,
        currency=USD,
    )
    assert await ledger.create_transfers(
        [posted("x1", 0), posted("x2", 5, CARD, CARD), posted("x3", 5, CARD, 99), bad_currency]
    ) == [R.AMOUNT_MUST_BE_POSITIVE, R.SAME_ACCOUNT, R.ACCOUNT_NOT_FOUND, R.CURRENCY_MISMATCH]


async def test_malformed_transfer_raises_before_anything_is_sent(db):
    """If a call carries a malformed transfer, then ValueError is raised and none of its transfers apply."""
    ledger = await make_ledger(db)
    with pytest.raises(ValueError):
        await ledger.create_transfers([posted("ok", 5), posted("x" * 65, 5)])
    assert await ledger.lookup_transfers(["ok"]) == {}


async def test_partial_post_releases_the_rest(db):
    """If a hold of 1000 is posted for 600, then 600 is posted and the other 400 is released."""
    ledger = await make_ledger(db)
    assert await ledger.create_transfers([pending("h1", 1000)]) == [R.OK]
    assert (await card(ledger)).available == 9000
    assert await ledger.create_transfers([resolve("c1", K.POST_PENDING, "h1", 600)]) == [R.OK]
    balance = await card(ledger)
    assert (balance.debits_pending, balance.debits_posted, balance.available) == (0, 600, 9400)
    assert (await card(ledger, MERCHANT)).credits_posted == 600
    await totals_balance(db)


async def test_post_more_than_held_is_refused(db):
    """If a completion asks for more than the hold, then EXCEEDS_PENDING_AMOUNT and the hold stays."""
    ledger = await make_ledger(db)
    await ledger.create_transfers([pending("h1", 1000)])
    assert await ledger.create_transfers([resolve("c1", K.POST_PENDING, "h1", 1001)]) == [
        R.EXCEEDS_PENDING_AMOUNT
    ]
    assert (await card(ledger)).debits_pending == 1000


async def test_void_releases_the_hold(db):
    """If a hold is voided, then the whole amount is available again and nothing is posted."""
    ledger = await make_ledger(db)
    await ledger.create_transfers([pending("h1", 1000)])
    assert await ledger.create_transfers([resolve("v1", K.VOID_PENDING, "h1", 1000)]) == [R.OK]
    balance = await card(ledger)
    assert (balance.debits_pending, balance.debits_posted, balance.available) == (0, 0, 10_000)


async def test_pending_is_resolved_at_most_once(db):
    """If a posted hold is posted or voided again, then PENDING_ALREADY_POSTED; a voided one, _VOIDED."""
    ledger = await make_ledger(db)
    await ledger.create_transfers([pending("h1", 1000), pending("h2", 1000)])
    assert await ledger.create_transfers(
        [
            resolve("c1", K.POST_PENDING, "h1", 1000),
            resolve("c2", K.POST_PENDING, "h1", 1000),
            resolve("v1", K.VOID_PENDING, "h1", 1000),
            resolve("v2", K.VOID_PENDING, "h2", 1000),
            resolve("v3", K.VOID_PENDING, "h2", 1000),
            resolve("c3", K.POST_PENDING, "h2", 1000),
            resolve("c4", K.POST_PENDING, "nope", 1000),
        ]
    ) == [
        R.OK,
        R.PENDING_ALREADY_POSTED,
        R.PENDING_ALREADY_POSTED,
        R.OK,
        R.PENDING_ALREADY_VOIDED,
        R.PENDING_ALREADY_VOIDED,
        R.PENDING_NOT_FOUND,
    ]
    assert (await card(ledger)).debits_posted == 1000


async def test_concurrent_completions_of_one_hold_post_once(db):
    """If 20 tasks post the same hold at once under different ids, then exactly one succeeds."""
    ledger = await make_ledger(db)
    await ledger.create_transfers([pending("h1", 1000)])
    results: list[TransferResult] = []

    async def complete(i: int) -> None:
        results.extend(await ledger.create_transfers([resolve(f"c{i}", K.POST_PENDING, "h1", 1000)]))

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(complete, i)
    assert results.count(R.OK) == 1
    assert results.count(R.PENDING_ALREADY_POSTED) == 19
    assert (await card(ledger)).debits_posted == 1000


async def test_expiry_releases_holds(db):
    """If expire_pending runs after a hold's expires_at, then the hold is released and cannot be posted."""
    ledger = await make_ledger(db)
    await ledger.create_transfers(
        [pending("h1", 1000, expires_at=T0), pending("h2", 2000, expires_at=T0 + timedelta(hours=1))]
    )
    assert await ledger.expire_pending(T0 - timedelta(seconds=1)) == 0
    assert await ledger.expire_pending(T0) == 1
    assert (await card(ledger)).debits_pending == 2000
    assert await ledger.create_transfers([resolve("c1", K.POST_PENDING, "h1", 1000)]) == [R.PENDING_EXPIRED]
    assert await ledger.expire_pending(T0 + timedelta(days=1)) == 1
    assert await ledger.expire_pending(T0 + timedelta(days=1)) == 0
    assert (await card(ledger)).available == 10_000
    await totals_balance(db)


async def test_expiry_respects_the_limit(db):
    """If more holds are due than `limit`, then only `limit` are released, earliest first."""
    ledger = await make_ledger(db)
    await ledger.create_transfers(
        [pending(f"h{i}", 100, expires_at=T0 + timedelta(seconds=i)) for i in range(5)]
    )
    assert await ledger.expire_pending(T0 + timedelta(hours=1), limit=2) == 2
    assert await ledger.create_transfers([resolve("v0", K.VOID_PENDING, "h0", 100)]) == [R.PENDING_EXPIRED]
    assert await ledger.create_transfers([resolve("v2", K.VOID_PENDING, "h2", 100)]) == [R.OK]


async def test_full_reversal_restores_balances(db):
    """If a purchase is reversed in full, then both accounts are back where they were."""
    ledger = await make_ledger(db)
    await ledger.create_transfers([posted("p1", 1000)])
    assert await ledger.create_transfers([posted("r1", 1000, MERCHANT, CARD, reverses_id="p1")]) == [R.OK]
    assert (await card(ledger)).ledger_balance == 10_000
    assert (await card(ledger, MERCHANT)).ledger_balance == 0


async def test_partial_reversal_then_no_second_one(db):
    """If a purchase is partially reversed, then a second reversal is ALREADY_REVERSED."""
    ledger = await make_ledger(db)
    await ledger.create_transfers([posted("p1", 1000)])
    assert await ledger.create_transfers(
        [
            posted("r1", 1001, MERCHANT, CARD, reverses_id="p1"),
            posted("r2", 400, MERCHANT, CARD, reverses_id="p1"),
            posted("r3", 600, MERCHANT, CARD, reverses_id="p1"),
        ]
    ) == [R.EXCEEDS_REVERSED_AMOUNT, R.OK, R.ALREADY_REVERSED]
    assert (await card(ledger)).available == 9400


async def test_reversal_must_swap_the_accounts(db):
    """If a reversal does not swap the original's accounts, then REVERSAL_ACCOUNTS_MISMATCH."""
    ledger = await make_ledger(db)
    await ledger.create_transfers([posted("p1", 1000)])
    assert await ledger.create_transfers(
        [
            posted("r1", 1000, CARD, MERCHANT, reverses_id="p1"),
            posted("r2", 1000, MERCHANT, FUNDING, reverses_id="p1"),
            posted("r3", 1000, MERCHANT, CARD, reverses_id="nope"),
        ]
    ) == [R.REVERSAL_ACCOUNTS_MISMATCH, R.REVERSAL_ACCOUNTS_MISMATCH, R.REVERSED_NOT_FOUND]


async def test_amount_limit(db):
    """If a purchase would take the daily amount above its limit, then EXCEEDS_AMOUNT_LIMIT."""
    ledger = await make_ledger(db)
    lim: dict[str, Any] = {"limit_key": "card:1:purchase:2026-11-23", "limit_amount_max": 1000}
    assert await ledger.create_transfers(
        [posted("p1", 700, **lim), posted("p2", 301, **lim), posted("p3", 300, **lim)]
    ) == [
        R.OK,
        R.EXCEEDS_AMOUNT_LIMIT,
        R.OK,
    ]
    assert await usage(db, "card:1:purchase:2026-11-23") == (1000, 2)


async def test_count_limit(db):
    """If a purchase would exceed the daily count, then EXCEEDS_COUNT_LIMIT."""
    ledger = await make_ledger(db)
    lim: dict[str, Any] = {"limit_key": "card:1:cash:2026-11-23", "limit_count_max": 2}
    assert await ledger.create_transfers([posted(f"p{i}", 10, **lim) for i in range(3)]) == [
        R.OK,
        R.OK,
        R.EXCEEDS_COUNT_LIMIT,
    ]


async def test_void_gives_usage_back(db):
    """If a counted hold is voided, then its amount and count are given back to the counter."""
    ledger = await make_ledger(db)
    lim: dict[str, Any] = {"limit_key": "k", "limit_amount_max": 1000, "limit_count_max": 1}
    await ledger.create_transfers([pending("h1", 1000, **lim)])
    assert await ledger.create_transfers([pending("h2", 1, **lim)]) == [R.EXCEEDS_AMOUNT_LIMIT]
    await ledger.create_transfers([resolve("v1", K.VOID_PENDING, "h1", 1000)])
    assert await usage(db, "k") == (0, 0)
    assert await ledger.create_transfers([pending("h3", 1000, **lim)]) == [R.OK]


async def test_partial_post_gives_back_the_released_amount(db):
    """If a counted hold of 1000 is posted for 600, then the counter keeps 600 and the count."""
    ledger = await make_ledger(db)
    await ledger.create_transfers([pending("h1", 1000, limit_key="k")])
    await ledger.create_transfers([resolve("c1", K.POST_PENDING, "h1", 600)])
    assert await usage(db, "k") == (600, 1)


async def test_reversal_gives_usage_back(db):
    """If a counted purchase is reversed partly then fully elsewhere, then amount (and count when whole) return."""
    ledger = await make_ledger(db)
    await ledger.create_transfers([posted("p1", 1000, limit_key="k"), posted("p2", 500, limit_key="k")])
    await ledger.create_transfers(
        [
            posted("r1", 300, MERCHANT, CARD, reverses_id="p1"),
            posted("r2", 500, MERCHANT, CARD, reverses_id="p2"),
        ]
    )
    assert await usage(db, "k") == (700, 1)


async def test_expiry_gives_usage_back(db):
    """If a counted hold expires, then its usage is given back."""
    ledger = await make_ledger(db)
    await ledger.create_transfers([pending("h1", 1000, expires_at=T0, limit_key="k")])
    assert await ledger.expire_pending(T0) == 1
    assert await usage(db, "k") == (0, 0)


async def test_unused_counter_is_not_kept(db):
    """If every transfer naming a new counter fails, then no counter row is left behind."""
    ledger = await make_ledger(db, card_funds=10)
    assert await ledger.create_transfers([posted("p1", 11, limit_key="fresh")]) == [R.EXCEEDS_CREDITS]
    assert await db.fetchval("SELECT count(*) FROM ledger_usage") == 0


async def test_lookup_returns_every_field(db):
    """If a transfer with all optional fields is stored, then lookup returns it equal to what was sent."""
    ledger = await make_ledger(db)
    t = pending(
        "h1",
        10,
        expires_at=T0,
        limit_key="k",
        limit_amount_max=100,
        limit_count_max=3,
        reference="rrn:000000000042",
    )
    await ledger.create_transfers([t])
    assert await ledger.lookup_transfers(["h1"]) == {"h1": t}


async def test_database_refuses_an_overdrawn_row(db):
    """If anything writes an overdrawn debit-limited account directly, then the CHECK constraint refuses it."""
    await make_ledger(db, card_funds=100)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE ledger_accounts SET debits_posted = 101 WHERE id = $1", CARD)


async def test_group_commit_batches_concurrent_callers(db):
    """If 100 callers create transfers at once, then far fewer database calls carry them all."""
    ledger = await make_ledger(db, card_funds=1_000_000)
    before = ledger.stats().db_calls
    results: list[TransferResult] = []

    async def buy(i: int) -> None:
        results.extend(await ledger.create_transfers([posted(f"buy:{i}", 10)]))

    async with trio.open_nursery() as nursery:
        for i in range(100):
            nursery.start_soon(buy, i)
    assert results == [R.OK] * 100
    assert ledger.stats().db_calls - before <= 10
    assert (await card(ledger)).debits_posted == 1000


async def test_batch_size_max_splits_large_calls(db):
    """If one call carries more transfers than batch_size_max, then it is split and still applied in order."""
    ledger = PgLedger(db, batch_size_max=4)
    await ledger.create_accounts(ACCOUNTS)
    transfers = [posted("load", 10, FUNDING, CARD)] + [posted(f"p{i}", 1) for i in range(11)]
    assert await ledger.create_transfers(transfers) == [R.OK] * 11 + [R.EXCEEDS_CREDITS]
    assert ledger.stats().batch_size_counts == {4: 3}


async def test_cancelled_callers_do_not_disturb_the_others(db):
    """If some callers (the leader among them) are cancelled mid-flight, then the others get their results."""
    ledger = await make_ledger(db, card_funds=1_000_000)
    outcome: dict[int, list[TransferResult]] = {}
    scopes: dict[int, trio.CancelScope] = {}

    async def buy(i: int) -> None:
        with trio.CancelScope() as scope:
            scopes[i] = scope
            outcome[i] = await ledger.create_transfers([posted(f"buy:{i}", 10 + i)])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(buy, 0)
        await trio.testing.wait_all_tasks_blocked()  # task 0 leads: its batch is in flight
        for i in range(1, 60):
            nursery.start_soon(buy, i)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(0, 60, 3):
            scopes[i].cancel()
    kept = [i for i in range(60) if i % 3]
    assert all(outcome[i] == [R.OK] for i in kept)
    stored = await ledger.lookup_transfers([f"buy:{i}" for i in range(60)])
    assert {f"buy:{i}" for i in kept} <= set(stored)
    assert (await card(ledger)).debits_posted == sum(t.amount for t in stored.values())
    # The ledger is not stuck: a later caller is served.
    assert await ledger.create_transfers([posted("after", 1)]) == [R.OK]
    await totals_balance(db)


async def test_database_error_reaches_only_its_caller(db):
    """If one call in a batch makes the database fail, then only that caller gets LedgerError."""
    ledger = await make_ledger(db, card_funds=0)
    suspense = 6
    await ledger.create_accounts([LedgerAccount(account_id=suspense, currency=EUR)])
    assert await ledger.create_transfers([posted("huge", 2**63 - 1, suspense, MERCHANT)]) == [R.OK]
    outcome: dict[int, object] = {}

    async def call(i: int, transfer: Transfer) -> None:
        try:
            outcome[i] = await ledger.create_transfers([transfer])
        except LedgerError as exc:
            outcome[i] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, 0, posted("first", 1, FUNDING, CARD))
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(call, 1, posted("ok1", 1, FUNDING, CARD))
        nursery.start_soon(call, 2, posted("overflow", 1, FUNDING, MERCHANT))  # credits_posted overflows
        nursery.start_soon(call, 3, posted("ok2", 1, FUNDING, CARD))
    assert outcome[0] == outcome[1] == outcome[3] == [R.OK]
    assert isinstance(outcome[2], LedgerError)
    assert (await card(ledger)).credits_posted == 3


async def test_two_processes_never_deadlock_or_overdraw(database_url):
    """If two ledgers on separate pools hammer the same accounts in random orders, then no deadlock, no overdraft."""
    dbs = [Database(DatabaseSettings(dsn=database_url, pool_size_min=1, pool_size_max=2)) for _ in range(2)]
    for d in dbs:
        await d.open()
    try:
        ledgers = [PgLedger(d, batch_size_max=16) for d in dbs]
        limited = [10 + i for i in range(6)]
        await ledgers[0].create_accounts(
            [LedgerAccount(account_id=a, currency=EUR, debits_must_not_exceed_credits=True) for a in limited]
            + [LedgerAccount(account_id=FUNDING, currency=EUR)]
        )
        await ledgers[0].create_transfers([posted(f"load:{a}", 1000, FUNDING, a) for a in limited])
        rng = random.Random(7)
        plans = [
            [(rng.sample(limited, 2), rng.randrange(1, 300), f"t{rng.randrange(400)}") for _ in range(150)]
            for _ in range(8)
        ]

        async def worker(w: int) -> None:
            ledger = ledgers[w % 2]
            for (debit, credit), amount, tid in plans[w]:
                await ledger.create_transfers([posted(tid, amount, debit, credit, limit_key=f"k{debit % 3}")])

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for w in range(8):
                    nursery.start_soon(worker, w)
        balances = await ledgers[1].balances(limited)
        assert all(b.available >= 0 for b in balances.values())
        assert sum(b.ledger_balance for b in balances.values()) == 6000
        await totals_balance(dbs[0])
    finally:
        for d in dbs:
            await d.close()


async def test_one_call_may_refer_to_its_own_earlier_transfers(db):
    """If a call posts, voids or reverses transfers made earlier in the same call, then results match the model."""
    ledger = await make_ledger(db)
    model = LedgerModel()
    model.create_accounts(ACCOUNTS)
    model.create_transfers([posted("load:1", 10_000, FUNDING, CARD)])
    lim: dict[str, Any] = {"limit_key": "k", "limit_amount_max": 5000}
    batch = [
        pending("h1", 1000, **lim),
        resolve("c1", K.POST_PENDING, "h1", 400),
        resolve("c2", K.POST_PENDING, "h1", 400),
        pending("h2", 500, **lim),
        resolve("v2", K.VOID_PENDING, "h2", 500),
        posted("p1", 700, **lim),
        posted("r1", 300, MERCHANT, CARD, reverses_id="p1"),
        posted("r2", 300, MERCHANT, CARD, reverses_id="p1"),
        posted("p1", 700, **lim),
        posted("p1", 701),
        pending("h3", 9000),
    ]
    expected = model.create_transfers(batch)
    assert expected == [
        R.OK,
        R.OK,
        R.PENDING_ALREADY_POSTED,
        R.OK,
        R.OK,
        R.OK,
        R.OK,
        R.ALREADY_REVERSED,
        R.EXISTS,
        R.EXISTS_WITH_DIFFERENT_FIELDS,
        R.OK,
    ]
    assert await ledger.create_transfers(batch) == expected
    assert await ledger.balances([CARD, MERCHANT]) == model.balances([CARD, MERCHANT])
    assert await usage(db, "k") == (model.usage("k").amount, model.usage("k").count)
    stored = await ledger.lookup_transfers([t.transfer_id for t in batch])
    assert stored == model.lookup_transfers([t.transfer_id for t in batch])
    # Holds made in the call are stored with their state: h1 posted, h2 voided, h3 still pending.
    states = await db.fetch("SELECT id, state FROM ledger_transfers WHERE kind = 'pending' ORDER BY id")
    assert [(r["id"], r["state"]) for r in states] == [("h1", "posted"), ("h2", "voided"), ("h3", "pending")]


async def test_call_naming_only_unknown_accounts(db):
    """If no account a call names exists, then every transfer gets ACCOUNT_NOT_FOUND."""
    ledger = await make_ledger(db)
    assert await ledger.create_transfers([posted("x1", 5, 777, 778), posted("x2", 5, 779, 777)]) == [
        R.ACCOUNT_NOT_FOUND,
        R.ACCOUNT_NOT_FOUND,
    ]


async def test_create_accounts_keeps_the_first_of_duplicates(db):
    """If accounts are created twice, in one call or two, then the first definition stays."""
    ledger = await make_ledger(db)
    await ledger.create_accounts(
        [LedgerAccount(account_id=50, currency=EUR), LedgerAccount(account_id=50, currency=USD)]
    )
    await ledger.create_accounts([LedgerAccount(account_id=CARD, currency=USD)])
    balances = await ledger.balances([50, CARD])
    assert (balances[50].currency, balances[CARD].currency, balances[CARD].credits_posted) == (
        EUR,
        EUR,
        10_000,
    )


async def test_lookup_by_reference_finds_exactly_those_transfers(db):
    """If transfers carry references, then a lookup by one reference returns exactly the transfers with it."""
    ledger = await make_ledger(db)
    await ledger.create_transfers(
        [
            posted("T1:a", 100, reference="rrn:312345000001"),
            posted("T2:b", 200, reference="rrn:312345000001"),
            posted("T1:c", 300, reference="rrn:312345000002"),
        ]
    )
    found = await ledger.lookup_by_reference("rrn:312345000001")
    assert sorted(t.transfer_id for t in found) == ["T1:a", "T2:b"]
    assert await ledger.lookup_by_reference("rrn:312345000009") == []
    assert len(await ledger.lookup_by_reference("rrn:312345000001", limit=1)) == 1


async def test_barred_id_is_refused_in_a_batch_and_the_others_are_applied_in_order(db):
    """If an id is barred before its transfer comes, then a batch holding it gets BARRED for it (twice if
    it is there twice) and the other transfers are applied as if it were not there, results in order; a
    bar of an applied id says it exists, and a bar is idempotent."""
    ledger = await make_ledger(db)
    assert await ledger.bar("late") is True
    assert await ledger.bar("late") is True
    batch = [posted("a", 100), posted("late", 200), posted("b", 300), posted("late", 200), pending("h", 50)]
    assert await ledger.create_transfers(batch) == [R.OK, R.BARRED, R.OK, R.BARRED, R.OK]
    assert await ledger.create_transfers([posted("late", 200)]) == [R.BARRED]
    balance = await card(ledger)
    assert (balance.debits_posted, balance.debits_pending) == (400, 50)
    assert await ledger.bar("a") is False
    assert await ledger.create_transfers([posted("a", 100)]) == [R.EXISTS]
    assert "late" not in await ledger.lookup_transfers(["late", "a"])
    await totals_balance(db)


async def test_bar_while_its_transfer_is_being_applied_waits_and_finds_it(db, database_url):
    """If a bar comes while a batch applying that id is still open (held up on the card's row), then the
    bar waits for the batch and says the transfer exists; it does not bar an id that is then applied."""
    ledger = await make_ledger(db)
    answers: dict[str, object] = {}

    async def buy() -> None:
        [answers["buy"]] = await ledger.create_transfers([posted("race", 10)])

    async def bar() -> None:
        answers["bar"] = await ledger.bar("race")

    card_row = "SELECT id FROM ledger_accounts WHERE id = $1 FOR UPDATE"
    async with trio.open_nursery() as nursery, rows_locked(database_url, card_row, CARD):
        nursery.start_soon(buy)
        await wait_for_lock_waiters(
            database_url, 1
        )  # the batch waits for the card's row, its ids locked and checked
        nursery.start_soon(bar)
        await wait_for_lock_waiters(database_url, 2)  # the bar waits for the batch's id lock
        assert answers == {}
    assert answers == {"buy": R.OK, "bar": False}
    assert (await card(ledger)).debits_posted == 10


async def test_barred_ids_older_than_the_cut_are_pruned(db):
    """If barred ids are pruned with a cut, then those barred before it are forgotten (their transfer
    could be applied again) and the newer ones stay barred."""
    ledger = await make_ledger(db)
    for transfer_id in ("old:1", "old:2", "new:1"):
        assert await ledger.bar(transfer_id)
    await db.execute(
        "UPDATE ledger_barred_transfers SET barred_at = $1 WHERE id LIKE 'old:%'", T0 - timedelta(days=31)
    )
    assert await ledger.prune_barred(T0 - timedelta(days=30)) == 2
    assert await ledger.prune_barred(T0 - timedelta(days=30)) == 0
    assert await ledger.create_transfers([posted("old:1", 10), posted("new:1", 10)]) == [R.OK, R.BARRED]
