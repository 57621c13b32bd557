"""Every decline code end to end, and the operator's changes taking effect for the next request: the
simulators' terminal client over real TCP to one real `switchd run --demo` process (started once for this
module, on its own database); lists, card status and terminal settings changed by `switchctl` or SQL while
switchd keeps its caches warm.

Each test uses its own demo cards and terminals, and puts back what it changed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from hsm.crypto.des import kcv_tdes
from hsm.keys import TMK as TMK_TYPE
from hsm.keys import KeyVault
from hsm.lmk import VariantLmk
from simulators.messages import Card, Original, TerminalIdentity, TransactionRequest, TxnType, demo_card
from simulators.terminal import TerminalClient, open_terminal
from specs import demo
from tests.e2e.support import (
    TMK,
    Switchctl,
    Switchd,
    assert_no_card_data_logged,
    atm,
    available,
    connect,
    directory_sql,
    pos,
    purchase,
    sql,
    start_switchd,
    switchctl_runner,
)
from tests.fixtures.pg import PgServer


@pytest.fixture(scope="module")
def switchd(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switchd]:
    yield from start_switchd(pg_server, tmp_path_factory.mktemp("switchd-declines"))


@pytest.fixture
def switchctl(switchd, monkeypatch, capsys, tmp_path: Path) -> Switchctl:
    return switchctl_runner(switchd, monkeypatch, capsys, tmp_path)


def debit(index: int) -> Card:
    return demo_card(demo.demo_pan(demo.DEBIT_BIN, index))


def prepaid(index: int) -> Card:
    return demo_card(demo.demo_pan(demo.PREPAID_BIN, index))


async def code_of(terminal, request: TransactionRequest, card: Card) -> str | None:
    return (await terminal.transact(request, card)).response_code


def withdrawal(amount: int, pin: str | None = demo.DEMO_PIN) -> TransactionRequest:
    return TransactionRequest(TxnType.WITHDRAWAL, amount_minor=amount, pin=pin)


@asynccontextmanager
async def unsigned(switchd: Switchd, identity: TerminalIdentity) -> AsyncIterator[TerminalClient]:
    async with open_terminal(switchd.host, switchd.port, identity=identity, tmk=TMK, timeout_s=10) as client:
        yield client


# -- terminal and merchant -----------------------------------------------------------------------------


async def test_unknown_terminal_is_refused_58_from_sign_on_on(switchd):
    """If an unconfigured terminal signs on, asks for keys and buys, then each is answered 58."""
    stranger = TerminalIdentity(terminal_id="NOPE0001", merchant_id=demo.MERCHANT_ID)
    async with unsigned(switchd, stranger) as client:
        assert (await client.sign_on()).response_code == "58"
        assert (await client.key_exchange()).response_code == "58"
        assert (await client.transact(purchase(100, pin=None), debit(201))).response_code == "58"


async def test_terminal_at_another_merchant_is_03(switchd):
    """If a configured terminal names a merchant that is not its own, then it is answered 03."""
    wrong = TerminalIdentity(terminal_id=demo.POS_TERMINALS[29], merchant_id=demo.ATM_MERCHANT_ID)
    async with unsigned(switchd, wrong) as client:
        assert (await client.sign_on()).response_code == "03"
        assert (await client.transact(purchase(100, pin=None), debit(201))).response_code == "03"


async def test_transaction_not_allowed_at_the_terminal_is_58(switchd):
    """If a terminal is limited to purchases, then its refund is answered 58 and its purchase approved."""
    card = debit(202)
    async with connect(switchd, pos(31)) as terminal:
        await directory_sql(
            switchd.dsn,
            "UPDATE terminals SET allowed_transactions = '{purchase}' WHERE terminal_id = $1",
            "POS00031",
        )
        try:
            assert await code_of(terminal, TransactionRequest(TxnType.REFUND, amount_minor=100), card) == "58"
            assert await code_of(terminal, purchase(100), card) == "00"
        finally:
            await directory_sql(
                switchd.dsn,
                "UPDATE terminals SET allowed_transactions = '{}' WHERE terminal_id = $1",
                "POS00031",
            )


# -- card and request ---------------------------------------------------------------------------------


async def test_unknown_card_and_bad_luhn_are_14(switchd):
    """If the PAN was never issued, or fails Luhn, then the answer is 14."""
    unknown = debit(5000)  # right BIN, valid Luhn, beyond the issued cards
    good = demo.demo_pan(demo.DEBIT_BIN, 203)
    bad_luhn = demo_card(good[:-1] + str((int(good[-1]) + 1) % 10))
    async with connect(switchd, pos(32)) as terminal:
        assert await code_of(terminal, purchase(100), unknown) == "14"
        assert await code_of(terminal, purchase(100), bad_luhn) == "14"


async def test_card_verification_value_mismatch_is_59(switchd):
    """If track 2 carries a CVV the card's keys did not make, then the answer is 59."""
    genuine = debit(204)
    cloned = Card(
        pan=genuine.pan, expiry_yymm=genuine.expiry_yymm, pvv=genuine.pvv, cvk=bytes.fromhex("11" * 16)
    )
    async with connect(switchd, pos(32)) as terminal:
        assert await code_of(terminal, purchase(100), cloned) == "59"
        assert await code_of(terminal, purchase(100), genuine) == "00"


async def test_card_valid_only_from_tomorrow_is_57(switchd):
    """If an active card's activation date is tomorrow, then it is declined 57; from today it is approved."""
    card = debit(205)
    where = "first6 = $1 AND last4 = $2"
    async with connect(switchd, pos(32)) as terminal:
        assert await code_of(terminal, purchase(100), card) == "00"  # cached now
        await directory_sql(
            switchd.dsn,
            f"UPDATE cards SET activation_date = (now() AT TIME ZONE 'UTC')::date + 1 WHERE {where}",
            card.pan[:6],
            card.pan[-4:],
        )
        assert await code_of(terminal, purchase(100), card) == "57"
        await directory_sql(
            switchd.dsn,
            f"UPDATE cards SET activation_date = (now() AT TIME ZONE 'UTC')::date WHERE {where}",
            card.pan[:6],
            card.pan[-4:],
        )
        assert await code_of(terminal, purchase(100), card) == "00"


async def test_wrong_currency_and_zero_amount(switchd):
    """If a purchase is in a currency the card has not, it gets 12; if its amount is zero, 13."""
    card = debit(206)
    euro = TerminalIdentity(terminal_id=demo.POS_TERMINALS[32], merchant_id=demo.MERCHANT_ID, currency=978)
    async with connect(switchd, euro) as terminal:
        assert await code_of(terminal, purchase(100), card) == "12"
    async with connect(switchd, pos(33)) as terminal:
        assert await code_of(terminal, purchase(0), card) == "13"
        assert await available(terminal, card) == demo.DEBIT_OPENING_BALANCE


async def test_missing_mandatory_field_is_30(switchd):
    """If a purchase comes without field 42, then the answer is 30."""
    async with connect(switchd, pos(34)) as terminal:
        message = terminal.build(purchase(100), debit(207)).with_fields({42: None})
        answer = await terminal.send(message)
    assert answer[39] == "30"


async def test_unknown_network_management_code_is_40(switchd):
    """If field 70 asks for a function the switch does not offer, then the answer is 40."""
    async with connect(switchd, pos(34)) as terminal:
        echo = terminal.build(TransactionRequest(TxnType.ECHO), None)
        answer = await terminal.send(echo.with_fields({70: "999"}))
    assert answer[39] == "40"


async def test_void_of_an_unknown_purchase_is_25(switchd):
    """If a void names a purchase the switch never saw, then the answer is 25 and nothing moves."""
    card = debit(208)
    ghost = Original(
        mti="0200", stan="999998", transmission="0101000000", processing_code="000000", amount_minor=500
    )
    async with connect(switchd, pos(35)) as terminal:
        void = TransactionRequest(TxnType.VOID, amount_minor=500, original=ghost)
        assert await code_of(terminal, void, card) == "25"
        assert await available(terminal, card) == demo.DEBIT_OPENING_BALANCE


async def test_same_identity_with_other_content_is_94(switchd):
    """If a terminal reuses a purchase's STAN and time for another amount, then it gets 94 and pays once."""
    card = debit(209)
    async with connect(switchd, pos(35)) as terminal:
        first = terminal.build(purchase(400), card)
        assert (await terminal.send(first))[39] == "00"
        second = await terminal.send(first.with_fields({4: f"{500:012d}"}))
        assert second[39] == "94"
        assert await available(terminal, card) == demo.DEBIT_OPENING_BALANCE - 400


# -- PIN tries ------------------------------------------------------------------------------------------


async def test_pin_tries_exceeded_is_75_and_persists(switchd):
    """If a wrong PIN is entered three times, then 55, 55, 75, and the right PIN afterwards is still 75."""
    card = debit(210)
    async with connect(switchd, pos(36)) as terminal:
        codes = [await code_of(terminal, purchase(100, pin="0000"), card) for _ in range(3)]
    async with connect(
        switchd, pos(37)
    ) as terminal:  # another terminal, same card: the counter is the card's
        codes.append(await code_of(terminal, purchase(100), card))
    assert codes == ["55", "55", "75", "75"]


# -- product rules and limits ------------------------------------------------------------------------


async def test_transaction_the_product_does_not_allow_is_57(switchd):
    """If a debit card asks for a load, or a prepaid card for a transfer, then the answer is 57."""
    async with connect(switchd, pos(38)) as terminal:
        load = TransactionRequest(TxnType.LOAD, amount_minor=100)
        assert await code_of(terminal, load, debit(211)) == "57"
    async with connect(switchd, atm(4)) as machine:
        transfer = TransactionRequest(
            TxnType.TRANSFER, amount_minor=100, from_account="00", to_account="10", pin=demo.DEMO_PIN
        )
        assert await code_of(machine, transfer, prepaid(151)) == "57"


async def test_per_transaction_amount_limit_is_61(switchd):
    """If a debit withdrawal is 0.01 above the product's 1,000.00 per-transaction maximum, then 61."""
    async with connect(switchd, atm(4)) as machine:
        assert await code_of(machine, withdrawal(100_001), debit(212)) == "61"
        assert await code_of(machine, withdrawal(100_000), debit(212)) == "00"


async def test_daily_amount_limit_is_61(switchd):
    """If debit withdrawals reach the daily 2,000.00, then one more cent that day is answered 61."""
    card = debit(213)
    async with connect(switchd, atm(5)) as machine:
        codes = [await code_of(machine, withdrawal(100_000), card) for _ in range(2)]
        codes.append(await code_of(machine, withdrawal(1), card))
    assert codes == ["00", "00", "61"]


async def test_daily_count_limit_is_65(switchd):
    """If a prepaid card made its 3 withdrawals of the day, then a fourth is answered 65."""
    card = prepaid(152)
    async with connect(switchd, atm(5)) as machine:
        codes = [await code_of(machine, withdrawal(1000), card) for _ in range(4)]
    assert codes == ["00", "00", "00", "65"]


async def test_reversed_withdrawal_gives_its_daily_count_back(switchd):
    """If a prepaid withdrawal is reversed, then it no longer counts against the day's 3."""
    card = prepaid(153)
    async with connect(switchd, atm(6)) as machine:
        first = await machine.transact(withdrawal(1000), card)
        reversal = TransactionRequest(TxnType.REVERSAL, original=first.original(), advice=True)
        assert (await machine.transact(reversal, card)).approved
        codes = [await code_of(machine, withdrawal(1000), card) for _ in range(3)]
    assert codes == ["00", "00", "00"]


# -- the operator's changes, for the very next request -----------------------------------------------


async def test_hot_list_entry_takes_effect_for_the_next_request(switchd, switchctl):
    """If switchctl hot-lists a card switchd has cached, then its next request is 04 (or 62), and 00 once removed."""
    card = debit(214)
    async with connect(switchd, pos(39)) as terminal:
        assert await code_of(terminal, purchase(100), card) == "00"
        try:
            assert "990001******" in await switchctl(
                "hotlist", "add", card.pan, "--reason", "reported stolen"
            )
            assert await code_of(terminal, purchase(100), card) == "04"
            await switchctl("hotlist", "add", card.pan, "--response", "62")
            assert await code_of(terminal, purchase(100), card) == "62"
            listed = await switchctl("hotlist", "list")
            assert card.masked_pan in listed and card.pan not in listed
        finally:
            await switchctl("hotlist", "remove", card.pan)
        assert await code_of(terminal, purchase(100), card) == "00"


@pytest.mark.parametrize("kind", ["pan", "bin", "terminal", "merchant"])
async def test_black_list_entry_bars_the_next_request_with_62(switchd, switchctl, kind):
    """If switchctl black-lists the card's PAN, BIN range, the terminal or the merchant, then the next request is 62."""
    card = debit({"pan": 215, "bin": 216, "terminal": 217, "merchant": 218}[kind])
    identity = atm(7) if kind == "merchant" else pos(40)
    value = {
        "pan": card.pan,
        "bin": card.pan[:12],  # a range holding this card only
        "terminal": identity.terminal_id,
        "merchant": identity.merchant_id,
    }[kind]
    async with connect(switchd, identity) as terminal:
        request = withdrawal(100) if kind == "merchant" else purchase(100)
        assert await code_of(terminal, request, card) == "00"
        try:
            await switchctl("blacklist", "add", kind, value, "--reason", "test")
            assert await code_of(terminal, request, card) == "62"
        finally:
            await switchctl("blacklist", "remove", kind, value)
        assert await code_of(terminal, request, card) == "00"


async def test_blocked_card_is_62_until_unblocked(switchd, switchctl):
    """If switchctl blocks a card, then its next request is 62; unblocked, it is approved again."""
    card = debit(219)
    async with connect(switchd, pos(40)) as terminal:
        assert await code_of(terminal, purchase(100), card) == "00"
        try:
            assert "blocked" in await switchctl("card", "block", card.pan)
            assert await code_of(terminal, purchase(100), card) == "62"
        finally:
            await switchctl("card", "unblock", card.pan)
        assert await code_of(terminal, purchase(100), card) == "00"


async def test_switchctl_topup_is_spendable_at_once(switchd, switchctl):
    """If switchctl tops up a prepaid card by 12.50, then the card's next balance inquiry shows it."""
    card = prepaid(154)
    async with connect(switchd, pos(40)) as terminal:
        before = await available(terminal, card)
        out = await switchctl("prepaid", "topup", card.pan, "12.50")
        assert card.pan not in out
        assert await available(terminal, card) == before + 1250


async def test_no_card_data_in_any_log_line_of_switchd(switchd):
    """If this module's declined and approved requests ran, then no line switchd printed holds their card data."""
    async with connect(switchd, pos(30)) as terminal:
        await terminal.transact(purchase(100, pin="0000"), debit(220))
    assert_no_card_data_logged(switchd)


async def test_a_terminal_added_by_the_operator_is_served_and_disabling_it_refuses_the_next_request(
    switchd, switchctl
):
    """If an operator adds a merchant (with a new settlement account) and a terminal there with its TMK
    (under the LMK, checked by its KCV), then the terminal signs on, gets its working keys and buys with a
    PIN (00, the money on the new account); a type it may not send is 58; disabled, its very next request
    is 58; its merchant disabled, 03; both enabled again, 00."""
    await switchctl(
        "merchant", "add", "OPSSHOP", "--name", "Operator's shop", "--settlement-account", "9100001"
    )
    under_lmk = KeyVault(VariantLmk.test_lmk()).wrap(TMK, TMK_TYPE, "U")
    added = await switchctl(
        "terminal", "add", "OPS00001", "--merchant", "OPSSHOP",
        "--tmk", under_lmk, "--tmk-kcv", kcv_tdes(TMK, 6), "--allow", "purchase,refund",
    )  # fmt: skip
    assert "terminal OPS00001 added" in added and under_lmk not in added
    card = debit(219)
    identity = TerminalIdentity(terminal_id="OPS00001", merchant_id="OPSSHOP".ljust(15))
    async with connect(switchd, identity) as terminal:
        assert await code_of(terminal, purchase(100), card) == "00"
        assert await code_of(terminal, TransactionRequest(TxnType.BALANCE, pin=demo.DEMO_PIN), card) == "58"
        shown = await switchctl("terminal", "show", "OPS00001")
        assert "TPK set, TAK set" in shown and under_lmk not in shown
        await switchctl("terminal", "disable", "OPS00001")
        try:
            assert await code_of(terminal, purchase(100), card) == "58"
        finally:
            await switchctl("terminal", "enable", "OPS00001")
        await switchctl("merchant", "disable", "OPSSHOP")
        try:
            assert await code_of(terminal, purchase(100), card) == "03"
        finally:
            await switchctl("merchant", "enable", "OPSSHOP")
        assert await code_of(terminal, purchase(100), card) == "00"
    balance = await sql(switchd.dsn, "SELECT credits_posted FROM ledger_accounts WHERE id = 9100001")
    assert balance[0]["credits_posted"] == 200
