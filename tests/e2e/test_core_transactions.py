"""Every terminal transaction and reversal end to end: the simulators' terminal client over real TCP to one
real `switchd run --demo` process (started once for this module, on its own database), money checked by
balance inquiries, and at the end every line switchd printed checked for card data.

Each test uses its own demo cards (index in the test), so the tests do not depend on each other's order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import trio

from simulators.messages import Original, TransactionRequest, TxnType, demo_card
from specs import demo
from tests.e2e.support import (
    Switchd,
    assert_no_card_data_logged,
    atm,
    available,
    balances,
    connect,
    directory_sql,
    log_events,
    metrics_text,
    original_of,
    pos,
    purchase,
    sql,
    start_switchd,
    wait_for_log,
)
from tests.fixtures.pg import PgServer, rows_locked, wait_for_lock_waiters

EXPIRY_SWEEP_S = 0.2


@pytest.fixture(scope="module")
def switchd(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switchd]:
    # Holds are swept often, so a hold's expiry can be watched within a test.
    yield from start_switchd(
        pg_server,
        tmp_path_factory.mktemp("switchd-transactions"),
        SWITCH_LEDGER_HOLD_EXPIRY_CHECK_S=str(EXPIRY_SWEEP_S),
    )


def debit(index: int):
    return demo_card(demo.demo_pan(demo.DEBIT_BIN, index))


def prepaid(index: int):
    return demo_card(demo.demo_pan(demo.PREPAID_BIN, index))


# -- inquiries, completions, prepaid --------------------------------------------------------------------


async def test_balance_inquiry_at_a_pos_by_0200_and_0100(switchd):
    """If a POS asks a balance by 0200 and by 0100, then both answer field 54 with ledger and available."""
    card = debit(101)
    async with connect(switchd, pos(20)) as terminal:
        by_0200 = await terminal.transact(TransactionRequest(TxnType.BALANCE), card)
        by_0100 = await terminal.transact(TransactionRequest(TxnType.BALANCE, use_0100_balance=True), card)
    assert (by_0200.response_mti, by_0100.response_mti) == ("0210", "0110")
    expected = {"01": demo.DEBIT_OPENING_BALANCE, "02": demo.DEBIT_OPENING_BALANCE}
    assert balances(by_0200) == balances(by_0100) == expected


async def test_completion_as_0200_with_condition_06_posts_part_of_the_hold(switchd):
    """If a pre-auth of 80.00 is completed by an 0200 with 25 = 06 for 55.00, then 55.00 is taken in all."""
    card = debit(102)
    async with connect(switchd, pos(20)) as terminal:
        start = await available(terminal, card)
        held = await terminal.transact(
            TransactionRequest(TxnType.PREAUTH, amount_minor=8000, pin=demo.DEMO_PIN), card
        )
        assert held.response_mti == "0110" and held.approved
        done = await terminal.transact(
            TransactionRequest(
                TxnType.COMPLETION, amount_minor=5500, original=held.original(), use_0200_completion=True
            ),
            card,
        )
        assert done.response_mti == "0210" and done.approved
        assert await available(terminal, card) == start - 5500


async def test_completion_above_the_hold_is_13(switchd):
    """If a completion asks more than was held, then it is answered 13 and the hold stays."""
    card = debit(103)
    async with connect(switchd, pos(20)) as terminal:
        start = await available(terminal, card)
        held = await terminal.transact(
            TransactionRequest(TxnType.PREAUTH, amount_minor=1000, pin=demo.DEMO_PIN), card
        )
        over = await terminal.transact(
            TransactionRequest(TxnType.COMPLETION, amount_minor=1001, original=held.original()), card
        )
        assert over.response_code == "13"
        assert await available(terminal, card) == start - 1000


async def test_prepaid_funded_load_purchase_and_atm_balance(switchd):
    """If a prepaid card is loaded from the funding account and spends, then an ATM inquiry shows the rest."""
    card = prepaid(101)
    async with connect(switchd, pos(21)) as terminal:
        loaded = await terminal.transact(
            TransactionRequest(TxnType.LOAD, amount_minor=2500, funded=True), card
        )
        assert loaded.approved and loaded.request is not None and loaded.request[3] == "280000"
        assert (await terminal.transact(purchase(1500), card)).approved
    async with connect(switchd, atm(2)) as machine:
        left = await available(machine, card)
    assert left == demo.PREPAID_OPENING_BALANCE + 2500 - 1500


async def test_hold_expires_after_the_products_time_and_cannot_be_completed(switchd):
    """If a prepaid product's holds live 1 s, then a pre-auth's funds come back and its completion is 25."""
    # About a second of wall-clock time: expiry is switchd's own sweep against the real clock.
    card = prepaid(102)
    await directory_sql(switchd.dsn, "UPDATE products SET hold_expiry_s = 1 WHERE kind = 'prepaid'")
    try:
        async with connect(switchd, pos(21)) as terminal:
            start = await available(terminal, card)
            held = await terminal.transact(
                TransactionRequest(TxnType.PREAUTH, amount_minor=3000, pin=demo.DEMO_PIN), card
            )
            assert held.approved
            assert await available(terminal, card) == start - 3000
            with trio.fail_after(10):
                while True:  # switchd's sweep runs in its own process: nothing here to wait on but time
                    if await available(terminal, card) == start:
                        break
                    await trio.sleep(EXPIRY_SWEEP_S)
            completion = TransactionRequest(TxnType.COMPLETION, amount_minor=3000, original=held.original())
            assert (await terminal.transact(completion, card)).response_code == "25"
            assert await available(terminal, card) == start
    finally:
        await directory_sql(switchd.dsn, "UPDATE products SET hold_expiry_s = 604800 WHERE kind = 'prepaid'")


async def test_sign_off_and_echo_are_approved(switchd):
    """If a signed-on terminal sends an echo and signs off, then both are answered 00."""
    async with connect(switchd, pos(22)) as terminal:
        assert (await terminal.transact(TransactionRequest(TxnType.ECHO))).approved
        assert (await terminal.transact(TransactionRequest(TxnType.SIGN_OFF))).approved


# -- reversals ----------------------------------------------------------------------------------------


async def test_withdrawal_with_dispense_failure_is_reversed_in_full(switchd):
    """If an ATM dispensed nothing of a 150.00 withdrawal (95 actual = 0), then all of it comes back."""
    card = debit(104)
    async with connect(switchd, atm(3)) as machine:
        start = await available(machine, card)
        taken = await machine.transact(
            TransactionRequest(TxnType.WITHDRAWAL, amount_minor=15_000, pin=demo.DEMO_PIN), card
        )
        assert taken.approved
        failed = TransactionRequest(
            TxnType.REVERSAL, original=taken.original(), actual_amount_minor=0, advice=True
        )
        answer = await machine.transact(failed, card)
        assert (answer.response_mti, answer.response_code) == ("0430", "00")
        assert await available(machine, card) == start


async def test_reversal_repeats_and_advices_give_the_money_back_once(switchd):
    """If a purchase's reversal is sent as 0400, 0401, 0420 and 0421, then each is 00 and it is undone once."""
    card = debit(105)
    async with connect(switchd, pos(23)) as terminal:
        start = await available(terminal, card)
        bought = await terminal.transact(purchase(2000), card)
        answers = []
        for advice in (False, True):
            for repeat in (False, True):
                request = TransactionRequest(
                    TxnType.REVERSAL, original=bought.original(), advice=advice, repeat=repeat
                )
                result = await terminal.transact(request, card)
                answers.append((result.request_mti, result.response_mti, result.response_code))
        assert await available(terminal, card) == start
    assert answers == [
        ("0400", "0410", "00"),
        ("0401", "0410", "00"),
        ("0420", "0430", "00"),
        ("0421", "0430", "00"),
    ]


async def test_reversal_of_an_unknown_original_is_acknowledged_without_effect(switchd):
    """If a reversal names a purchase the switch never saw, then it is answered 00 and nothing moves."""
    card = debit(106)
    async with connect(switchd, pos(23)) as terminal:
        start = await available(terminal, card)
        ghost = Original(
            mti="0200", stan="999999", transmission="0101000000", processing_code="000000", amount_minor=500
        )
        answer = await terminal.transact(TransactionRequest(TxnType.REVERSAL, original=ghost), card)
        assert answer.response_code == "00"
        assert await available(terminal, card) == start


async def test_reversal_matched_by_terminal_stan_and_time(switchd):
    """If a reversal without field 90 repeats its purchase's STAN and time, then the purchase is undone."""
    card = debit(107)
    async with connect(switchd, pos(24)) as terminal:
        start = await available(terminal, card)
        sale = terminal.build(purchase(3300), card)
        assert (await terminal.send(sale))[39] == "00"
        reversal = sale.with_fields({52: None}, mti="0400")
        answer = await terminal.send(reversal)
        assert (answer.mti, answer[39]) == ("0410", "00")
        assert await available(terminal, card) == start


async def test_reversal_that_overtakes_its_purchase_still_reverses_it(switchd):
    """If a reversal arrives while its purchase still waits for the ledger (the merchant's account row is
    held by another transaction), then it is answered after the purchase and the money comes back; it is
    not acknowledged as one of an unknown original while the purchase then takes the money."""
    card = debit(116)
    identity = pos(30)
    async with connect(switchd, identity) as terminal:
        start = await available(terminal, card)
        sale = terminal.build(purchase(2100), card)
        original = original_of(sale)
        answers: dict[str, str | None] = {}

        async def purchase_then_answer() -> None:
            answers["purchase"] = (await terminal.send(sale))[39]

        async def reverse() -> None:
            result = await terminal.transact(TransactionRequest(TxnType.REVERSAL, original=original), card)
            answers["reversal"] = result.response_code

        merchant_account = (
            "SELECT a.id FROM ledger_accounts a JOIN merchants m ON m.settlement_account_id = a.id"
            " WHERE m.merchant_id = $1 FOR UPDATE OF a"
        )
        # The nursery outlives the lock: both answers come once the row is free.
        async with (
            trio.open_nursery() as nursery,
            rows_locked(switchd.dsn, merchant_account, identity.merchant_id),
        ):
            nursery.start_soon(purchase_then_answer)
            await wait_for_lock_waiters(switchd.dsn)
            nursery.start_soon(reverse)
            await trio.sleep(0.5)
            assert answers == {}  # both wait: the purchase for the row, the reversal for the purchase
        assert answers == {"purchase": "00", "reversal": "00"}
        assert await available(terminal, card) == start


async def test_purchase_that_comes_after_its_reversal_is_declined(switchd):
    """If a terminal's reversal reaches the switch before its purchase (the purchase sent again on a new
    connection, say), then the reversal is 00 and the purchase is declined 05 and takes nothing."""
    card = debit(117)
    identity = pos(31)
    # The second connection keeps the first's keys (no key exchange of its own).
    async with connect(switchd, identity) as first, connect(switchd, identity, sign_on=False) as second:
        start = await available(first, card)
        sale = first.build(purchase(2200), card)
        original = original_of(sale)
        reversal = await first.transact(TransactionRequest(TxnType.REVERSAL, original=original), card)
        assert reversal.response_code == "00"
        assert (await second.send(sale))[39] == "05"
        assert await available(first, card) == start


async def test_partial_reversal_of_a_pos_purchase(switchd):
    """If a 50.00 purchase is reversed with field 95 actual = 20.00, then 30.00 comes back."""
    card = debit(108)
    async with connect(switchd, pos(24)) as terminal:
        start = await available(terminal, card)
        bought = await terminal.transact(purchase(5000), card)
        partial = TransactionRequest(TxnType.REVERSAL, original=bought.original(), actual_amount_minor=2000)
        assert (await terminal.transact(partial, card)).approved
        assert await available(terminal, card) == start - 2000


async def test_partial_reversal_of_a_preauth_reduces_the_hold(switchd):
    """If a pre-auth of 90.00 is reversed with field 95 actual = 40.00, then only 40.00 stays held, a
    completion above it is 13, and the completion of 40.00 takes 40.00 in all."""
    card = debit(118)
    async with connect(switchd, pos(24)) as terminal:
        start = await available(terminal, card)
        held = await terminal.transact(
            TransactionRequest(TxnType.PREAUTH, amount_minor=9000, pin=demo.DEMO_PIN), card
        )
        assert held.approved and await available(terminal, card) == start - 9000
        partial = TransactionRequest(TxnType.REVERSAL, original=held.original(), actual_amount_minor=4000)
        assert (await terminal.transact(partial, card)).approved
        assert await available(terminal, card) == start - 4000
        over = await terminal.transact(
            TransactionRequest(TxnType.COMPLETION, amount_minor=4001, original=held.original()), card
        )
        assert over.response_code == "13"
        done = await terminal.transact(
            TransactionRequest(TxnType.COMPLETION, amount_minor=4000, original=held.original()), card
        )
        assert done.approved and await available(terminal, card) == start - 4000


async def test_reversal_of_a_void_takes_the_purchase_again(switchd):
    """If the void of a purchase is reversed, then the purchase's amount is taken again, once."""
    card = debit(109)
    async with connect(switchd, pos(25)) as terminal:
        start = await available(terminal, card)
        bought = await terminal.transact(purchase(1200), card)
        void = await terminal.transact(
            TransactionRequest(TxnType.VOID, amount_minor=1200, original=bought.original()), card
        )
        assert void.approved
        assert await available(terminal, card) == start
        for repeat in (False, True):
            request = TransactionRequest(TxnType.REVERSAL, original=void.original(), repeat=repeat)
            assert (await terminal.transact(request, card)).approved
        assert await available(terminal, card) == start - 1200


@pytest.mark.parametrize(
    ("index", "request_"),
    [
        (110, TransactionRequest(TxnType.REFUND, amount_minor=700)),
        (
            111,
            TransactionRequest(TxnType.CASHBACK, amount_minor=900, cashback_minor=300, pin=demo.DEMO_PIN),
        ),
    ],
    ids=["refund", "cashback"],
)
async def test_reversal_of_refund_and_cashback_restores_the_balance(switchd, index, request_):
    """If a refund or a cashback purchase is reversed, then the balance is what it was before it."""
    card = debit(index)
    async with connect(switchd, pos(25)) as terminal:
        start = await available(terminal, card)
        done = await terminal.transact(request_, card)
        assert done.approved and await available(terminal, card) != start
        reversal = TransactionRequest(TxnType.REVERSAL, original=done.original())
        assert (await terminal.transact(reversal, card)).approved
        assert await available(terminal, card) == start


async def test_retransmitted_reversal_is_answered_the_same_and_applied_once(switchd):
    """If the very same reversal frame arrives twice, then both answers are equal and it counts once."""
    card = debit(112)
    async with connect(switchd, pos(26)) as terminal:
        start = await available(terminal, card)
        bought = await terminal.transact(purchase(800), card)
        reversal = terminal.build(TransactionRequest(TxnType.REVERSAL, original=bought.original()), card)
        first = await terminal.send(reversal)
        second = await terminal.send(reversal)
        assert first.fields == second.fields
        assert await available(terminal, card) == start


# -- money under concurrency --------------------------------------------------------------------------


async def test_200_concurrent_purchases_on_one_account_never_overdraw_it(switchd):
    """If 200 purchases of 70.00 race on one 10,000.00 account, then exactly 142 are approved, the rest 51."""
    card = debit(400)
    codes: Counter[str | None] = Counter()

    async def one_terminal(n: int) -> None:
        async with connect(switchd, pos(n)) as terminal, trio.open_nursery() as nursery:
            for _ in range(25):
                nursery.start_soon(buy, terminal)

    async def buy(terminal) -> None:
        codes[(await terminal.transact(purchase(7000), card)).response_code] += 1

    async with trio.open_nursery() as nursery:
        for n in range(41, 49):
            nursery.start_soon(one_terminal, n)
    approved = demo.DEBIT_OPENING_BALANCE // 7000
    assert codes == {"00": approved, "51": 200 - approved}
    async with connect(switchd, pos(49)) as terminal:
        assert await available(terminal, card) == demo.DEBIT_OPENING_BALANCE - approved * 7000
    [totals] = await sql(
        switchd.dsn,
        "SELECT sum(debits_posted) - sum(credits_posted) AS posted, "
        "sum(debits_pending) - sum(credits_pending) AS pending, "
        "count(*) FILTER (WHERE debits_must_not_exceed_credits "
        "AND debits_posted + debits_pending > credits_posted + overdraft_limit) AS overdrawn "
        "FROM ledger_accounts",
    )
    assert (totals["posted"], totals["pending"], totals["overdrawn"]) == (0, 0, 0)


# -- what operators see ------------------------------------------------------------------------------


async def test_canonical_log_line_carries_every_field(switchd):
    """If a purchase is answered, then its one log line names every field of the canonical line, PAN masked."""
    card = debit(113)
    async with connect(switchd, pos(27)) as terminal:
        bought = await terminal.transact(purchase(4321), card)
    line = await wait_for_log(
        switchd, lambda e: e.get("event") == "transaction" and e.get("stan") == bought.stan
    )
    assert {k: line[k] for k in ("mti", "processing_code", "terminal", "merchant", "amount", "currency")} == {
        "mti": "0200",
        "processing_code": "000000",
        "terminal": "POS00027",
        "merchant": demo.MERCHANT_ID,
        "amount": 4321,
        "currency": demo.CURRENCY,
    }
    assert (line["rrn"], line["auth_code"], line["response_code"]) == (bought.rrn, bought.auth_code, "00")
    assert line["pan"] == card.masked_pan and line["route"] == "on-us"
    assert line["latency_ms"] >= 0 and len(line["trace_id"]) >= 16


async def test_metrics_count_results_latency_inflight_and_connections(switchd):
    """If transactions were answered, then /metrics counts them by code and has latency, in-flight and connections."""
    async with connect(switchd, pos(28)) as terminal:
        assert (await terminal.transact(purchase(1_000_000_000), debit(114))).response_code == "51"
        text = await metrics_text(switchd)
    assert 'switch_transactions_total{code="51"' in text or 'code="51"' in text
    for name in (
        "switch_transaction_latency_seconds_bucket",
        "switch_inflight_requests",
        'switch_connections_open{listener="terminal"}',
    ):
        assert name in text


def test_switchd_of_a_test_links_to_no_network(switchd):
    """If a test runs `switchd run --demo` without netsims of its own, then it links to no network: the
    demo networks' ports (a `make run` on this machine) never see its sign-ons."""
    [ready] = [e for e in log_events(switchd) if e.get("event_kind") == "ready"]
    assert ready["networks"] == {}
    assert not [e for e in log_events(switchd) if e.get("logger") == "network"]


async def test_no_card_data_in_any_log_line_of_switchd(switchd):
    """If manual-entry, track 2 and PIN transactions ran (this module's and these), then no line holds their card data."""
    card = debit(115)
    async with connect(switchd, pos(29)) as terminal:
        await terminal.transact(purchase(100), card)
        await terminal.transact(purchase(100, pin="0000"), card)
    async with connect(switchd, pos(29)) as terminal:
        terminal.client.entry_mode = "012"  # manual entry: the PAN travels in field 2
        manual = await terminal.transact(purchase(100), card)
    await wait_for_log(switchd, lambda e: e.get("event") == "transaction" and e.get("stan") == manual.stan)
    assert any(e.get("event") == "transaction" for e in log_events(switchd))
    assert_no_card_data_logged(switchd)
