"""The PostgreSQL card directory: lookups, caches kept fresh by NOTIFY, lists, PIN tries, and the vault
key store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio

from hsm.client import HsmClient, InProcessTransport
from hsm.host.processor import HostCommandProcessor
from hsm.keys import KeyVault
from hsm.lmk import VariantLmk
from switch.adapters.postgres.db import AnyConnection, Database
from switch.adapters.postgres.directory import (
    NewCard,
    PgDirectory,
    VaultKeyError,
    VaultKeyStore,
    insert_cards,
)
from switch.adapters.postgres.ledger import PgLedger
from switch.domain.ledger_types import LedgerAccount
from switch.domain.model import AccountKind, CardStatus, ListKind, Pan, ProductKind
from switch.domain.pan_vault import PanVault

PAN = Pan("9900010000000019")
OTHER_PAN = Pan("9900010000000027")
TERMINAL = "POS00001"
MERCHANT = "DEMOMERCHANT001"
NOTIFY_WAIT_S = 5.0  # bounded wait for a notification to reach the cache (normally milliseconds)


async def _world(db: Database, ledger: PgLedger, vault: PanVault) -> int:
    """One product, one card with two accounts, one merchant and terminal; returns the card id."""
    await ledger.create_accounts(
        [
            LedgerAccount(account_id=i, currency=840, debits_must_not_exceed_credits=i > 10)
            for i in (1, 11, 12)
        ]
    )

    async def work(conn: AnyConnection) -> int:
        institution = await conn.fetchval(
            "INSERT INTO institutions (code, name) VALUES ('T', 'T') RETURNING institution_id"
        )
        product = await conn.fetchval(
            "INSERT INTO products (institution_id, name, kind, pin_method, allowed_transactions, daily_count_max, "
            "currency) VALUES ($1, 'Test debit', 'debit', 'pvv', '{purchase,balance}', '{\"withdrawal\": 3}', 840) "
            "RETURNING product_id",
            institution,
        )
        [card_id] = await insert_cards(
            conn,
            vault,
            [
                NewCard(
                    pan=PAN,
                    expiry_yymm="3012",
                    status=CardStatus.ACTIVE,
                    product_id=product,
                    accounts=((11, AccountKind.CHECKING), (12, AccountKind.SAVINGS)),
                    pin_verification_value="1234",
                )
            ],
        )
        await conn.execute(
            "INSERT INTO merchants (merchant_id, name, settlement_account_id) VALUES ($1, 'Shop', 1)",
            MERCHANT,
        )
        await conn.execute(
            "INSERT INTO terminals (terminal_id, merchant_id, kind) VALUES ($1, $2, 'pos')",
            TERMINAL,
            MERCHANT,
        )
        return int(card_id)

    return await db.transaction(work)


@pytest.fixture
async def card_id(db: Database, ledger: PgLedger, vault: PanVault) -> int:
    return await _world(db, ledger, vault)


@pytest.fixture
async def listening(
    directory: PgDirectory, nursery: trio.Nursery, card_id: int
) -> AsyncIterator[PgDirectory]:
    """The directory with its LISTEN task running (caches on), started after the world was created."""
    await nursery.start(directory.run)
    yield directory
    nursery.cancel_scope.cancel()


async def _eventually(check: Callable[[], Awaitable[bool]]) -> None:
    step_s = 0.01
    for _ in range(int(NOTIFY_WAIT_S / step_s)):
        if await check():
            return
        await trio.sleep(step_s)
    raise AssertionError(f"not seen within {NOTIFY_WAIT_S} s")


async def test_card_lookup_by_pan_builds_the_card(directory: PgDirectory, card_id: int) -> None:
    """If a card exists, then card_by_pan returns it with product, accounts and a masked PAN only."""
    card = await directory.card_by_pan(PAN)
    assert card is not None
    assert card.card_id == card_id
    assert card.pan_masked == "990001******0019"
    assert card.product.kind is ProductKind.DEBIT
    assert card.product.allowed_transactions == frozenset({"purchase", "balance"})
    assert card.product.daily_count_max == {"withdrawal": 3}
    assert [(a.account_id, a.kind) for a in card.accounts] == [
        (11, AccountKind.CHECKING),
        (12, AccountKind.SAVINGS),
    ]
    assert PAN.digits not in repr(card)


async def test_unknown_pan_terminal_and_merchant_are_none(directory: PgDirectory, card_id: int) -> None:
    """If nothing matches, then the lookups return None."""
    assert await directory.card_by_pan(OTHER_PAN) is None
    assert await directory.terminal("NOSUCH01") is None
    assert await directory.merchant("NOSUCHMERCHANT1") is None


async def test_terminal_and_merchant_lookups(directory: PgDirectory, card_id: int) -> None:
    """If terminal and merchant exist, then they are returned with their settings."""
    terminal = await directory.terminal(TERMINAL)
    merchant = await directory.merchant(MERCHANT)
    assert terminal is not None and terminal.kind == "pos" and terminal.merchant_id == MERCHANT
    assert merchant is not None and merchant.settlement_account_id == 1


async def test_no_clear_pan_in_the_database(db: Database, card_id: int) -> None:
    """If a card is stored, then its digits appear in no column of any issuing table."""
    for table in ("cards", "card_accounts", "hot_list", "black_list", "products"):
        rows = await db.fetch(f"SELECT t::text AS row FROM {table} t")
        assert all(PAN.digits not in r["row"] for r in rows)
        assert all(PAN.digits.encode().hex() not in r["row"] for r in rows)


async def test_cached_card_is_served_without_the_database(
    listening: PgDirectory, db: Database, card_id: int
) -> None:
    """If caching is on and a card was read once, then a second read comes from memory (no notification)."""
    first = await listening.card_by_pan(PAN)
    # Changed behind the triggers' back (triggers disabled): the cache cannot know.
    await db.execute("ALTER TABLE cards DISABLE TRIGGER cards_notify")
    await db.execute("UPDATE cards SET status = 'blocked' WHERE card_id = $1", card_id)
    second = await listening.card_by_pan(PAN)
    assert first is not None and second is first


async def test_card_change_invalidates_the_cache_via_notify(
    listening: PgDirectory, db: Database, card_id: int
) -> None:
    """If another writer changes a cached card, then the next reads see the change within a bounded wait."""
    card = await listening.card_by_pan(PAN)
    assert card is not None and card.status is CardStatus.ACTIVE
    await db.execute("UPDATE cards SET status = 'blocked' WHERE card_id = $1", card_id)

    async def blocked() -> bool:
        c = await listening.card_by_pan(PAN)
        return c is not None and c.status is CardStatus.BLOCKED

    await _eventually(blocked)


async def test_new_card_replaces_a_cached_miss(
    listening: PgDirectory, db: Database, vault: PanVault, card_id: int
) -> None:
    """If an unknown PAN was looked up and the card is then created, then the lookup finds it."""
    assert await listening.card_by_pan(OTHER_PAN) is None
    product = await db.fetchval("SELECT product_id FROM products")

    async def work(conn: AnyConnection) -> None:
        card = NewCard(
            pan=OTHER_PAN, expiry_yymm="3012", status=CardStatus.ACTIVE, product_id=product, accounts=()
        )
        await insert_cards(conn, vault, [card])

    await db.transaction(work)

    async def found() -> bool:
        return await listening.card_by_pan(OTHER_PAN) is not None

    await _eventually(found)


async def test_terminal_and_product_changes_invalidate(
    listening: PgDirectory, db: Database, card_id: int
) -> None:
    """If a terminal or a product changes in the database, then cached terminals and cards follow."""
    assert (await listening.terminal(TERMINAL)) is not None
    assert (await listening.card_by_pan(PAN)) is not None
    await db.execute("UPDATE terminals SET active = false WHERE terminal_id = $1", TERMINAL)
    await db.execute("UPDATE products SET pin_tries_max = 5")

    async def changed() -> bool:
        t = await listening.terminal(TERMINAL)
        c = await listening.card_by_pan(PAN)
        return t is not None and not t.active and c is not None and c.product.pin_tries_max == 5

    await _eventually(changed)


async def test_hot_list_add_takes_effect(listening: PgDirectory, card_id: int) -> None:
    """If a card is hot-listed, then list_entry reports it with the chosen response code; removal clears it."""
    assert await listening.list_entry(PAN, TERMINAL, MERCHANT) is None
    await listening.hot_list_add(PAN, reason="stolen", response_code="04")
    entry = await listening.list_entry(PAN, TERMINAL, MERCHANT)
    assert entry is not None and entry.kind is ListKind.HOT and entry.response_code == "04"
    assert await listening.list_entry(OTHER_PAN, TERMINAL, MERCHANT) is None
    assert await listening.hot_list_remove(PAN)
    assert await listening.list_entry(PAN, TERMINAL, MERCHANT) is None


async def test_hot_list_change_by_another_process_reaches_the_cache(
    listening: PgDirectory, db: Database, vault: PanVault, card_id: int
) -> None:
    """If another process hot-lists a card, then this directory's cached lists follow within a bounded wait."""
    assert await listening.list_entry(PAN, TERMINAL, MERCHANT) is None
    other = PgDirectory(db, vault)
    await other.hot_list_add(PAN, reason="lost", response_code="62")

    async def listed() -> bool:
        return await listening.list_entry(PAN, TERMINAL, MERCHANT) is not None

    await _eventually(listed)


@pytest.mark.parametrize(
    ("kind", "value", "pan", "terminal", "merchant"),
    [
        ("pan", PAN.digits, PAN, TERMINAL, MERCHANT),
        ("bin", "990001", OTHER_PAN, TERMINAL, MERCHANT),
        ("terminal", "POS00009", PAN, "POS00009", MERCHANT),
        ("merchant", "BADMERCHANT0001", PAN, TERMINAL, "BADMERCHANT0001"),
    ],
)
async def test_black_list_bars_each_kind(
    directory: PgDirectory, card_id: int, kind: str, value: str, pan: Pan, terminal: str, merchant: str
) -> None:
    """If a PAN, BIN, terminal or merchant is black-listed, then a transaction involving it gets a 62 entry."""
    await directory.black_list_add(kind, value, reason="test")
    entry = await directory.list_entry(pan, terminal, merchant)
    assert entry is not None and entry.kind is ListKind.BLACK and entry.response_code == "62"


async def test_black_list_stores_no_clear_pan(directory: PgDirectory, db: Database, card_id: int) -> None:
    """If a PAN is black-listed, then the table holds its hash and masked form only."""
    shown = await directory.black_list_add("pan", PAN.digits, reason="fraud")
    assert shown == "990001******0019"
    rows = await db.fetch("SELECT value, display FROM black_list")
    assert all(PAN.digits not in r["value"] + r["display"] for r in rows)


async def test_pin_tries_persist_and_reset(
    listening: PgDirectory, db: Database, vault: PanVault, card_id: int
) -> None:
    """If PIN checks fail, then the counter rises in the database; a success resets it to 0."""
    await listening.card_by_pan(PAN)
    assert await listening.record_pin_result(card_id, ok=False) == 1
    assert await listening.record_pin_result(card_id, ok=False) == 2
    fresh = PgDirectory(db, vault)  # another process, no cache
    card = await fresh.card_by_pan(PAN)
    assert card is not None and card.pin_tries == 2
    card = await listening.card_by_pan(PAN)
    assert card is not None and card.pin_tries == 2
    assert await listening.record_pin_result(card_id, ok=True) == 0
    assert await db.fetchval("SELECT pin_tries FROM cards WHERE card_id = $1", card_id) == 0


async def test_terminal_keys_and_pvv_are_stored(directory: PgDirectory, db: Database, card_id: int) -> None:
    """If new terminal keys or a new PVV are set, then the next lookups return them."""
    await directory.set_terminal_keys(TERMINAL, tpk_under_lmk="U" + "A" * 32, tak_under_lmk="U" + "B" * 32)
    terminal = await directory.terminal(TERMINAL)
    assert terminal is not None and terminal.tpk_under_lmk == "U" + "A" * 32
    await directory.set_pin_verification_value(card_id, "9876")
    card = await directory.card_by_pan(PAN)
    assert card is not None and card.pin_verification_value == "9876"


async def test_without_listening_reads_always_go_to_the_database(
    directory: PgDirectory, db: Database, card_id: int
) -> None:
    """If run() is not running, then a change is seen at once (no cache is used)."""
    assert not directory.caching
    await directory.card_by_pan(PAN)
    await db.execute("ALTER TABLE cards DISABLE TRIGGER cards_notify")
    await db.execute("UPDATE cards SET status = 'lost' WHERE card_id = $1", card_id)
    card = await directory.card_by_pan(PAN)
    assert card is not None and card.status is CardStatus.LOST


async def test_vault_keys_load_the_same_vault(db: Database, hsm_client: HsmClient, vault: PanVault) -> None:
    """If the vault keys exist, then loading them again gives a vault with the same keys."""
    again = await VaultKeyStore(db, hsm_client).load_or_create()
    assert again.lookup_hash(PAN) == vault.lookup_hash(PAN)
    assert again.decrypt(vault.encrypt(PAN)) == PAN
    assert await db.fetchval("SELECT count(*) FROM vault_keys") == 2


async def test_vault_keys_under_another_lmk_are_refused(db: Database, vault: PanVault) -> None:
    """If the HSM holds another LMK than the keys were made under, then loading fails with a clear error."""
    other = VariantLmk(tuple(bytes([i + 2]) * 16 for i in range(20)))
    client = HsmClient(InProcessTransport(HostCommandProcessor(KeyVault(other))))
    with pytest.raises(VaultKeyError):
        await VaultKeyStore(db, client).load()


async def test_lost_listen_connection_reconnects_and_caching_resumes(
    db: Database, vault: PanVault, nursery: trio.Nursery, card_id: int
) -> None:
    """If the LISTEN connection is killed, then caching stops, the directory reconnects, and a change made
    while it was down is seen."""
    directory = PgDirectory(db, vault, reconnect_delay_s=0.05)
    await nursery.start(directory.run)
    assert directory.caching
    await directory.card_by_pan(PAN)
    killed = await db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE '%-directory'"
    )
    assert killed == 1
    await db.execute("UPDATE cards SET status = 'stolen' WHERE card_id = $1", card_id)

    async def stolen_and_caching() -> bool:
        card = await directory.card_by_pan(PAN)
        return directory.caching and card is not None and card.status is CardStatus.STOLEN

    await _eventually(stolen_and_caching)
    nursery.cancel_scope.cancel()


async def test_dukpt_key_set_change_reaches_cached_terminals(
    listening: PgDirectory, db: Database, card_id: int
) -> None:
    """If a DUKPT terminal's key set gets a new BDK, then the cached terminal follows."""
    await db.execute(
        "INSERT INTO dukpt_key_sets (key_set_id, bdk_under_lmk) VALUES ('FFFF987654', 'U' || repeat('A', 32))"
    )
    await db.execute(
        "UPDATE terminals SET dukpt_key_set_id = 'FFFF987654', dukpt_device_id = 7 WHERE terminal_id = $1",
        TERMINAL,
    )

    async def dukpt_bdk(expected: str) -> bool:
        t = await listening.terminal(TERMINAL)
        return t is not None and t.dukpt is not None and t.dukpt.bdk_under_lmk == expected

    await _eventually(lambda: dukpt_bdk("U" + "A" * 32))
    await db.execute("UPDATE dukpt_key_sets SET bdk_under_lmk = 'U' || repeat('B', 32)")
    await _eventually(lambda: dukpt_bdk("U" + "B" * 32))
    terminal = await listening.terminal(TERMINAL)
    assert terminal is not None and terminal.dukpt is not None and terminal.dukpt.device_id == 7
