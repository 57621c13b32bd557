"""The card directory over PostgreSQL (`switch.ports.CardDirectory`), served from memory caches, and the
PAN vault's key store.

Why caches: every authorization reads a card, a terminal, a merchant and the lists; a database round trip
for each would cost more than the whole pipeline. Cards are cached by PAN hash (including "no such card"),
terminals, merchants and products by id, and the hot and black lists whole.

Freshness guarantee. Every change to the issuing tables fires `NOTIFY switch_directory '<table>:<key>'`
(triggers in migration 0003), delivered after the writing transaction commits. `run()` holds a LISTEN
connection and drops the entries each notification names, so a committed change is seen by every process
as soon as its notification arrives (milliseconds on one host). Two rules keep this exact rather than
"usually":
- caches are used only while the LISTEN connection is up: before `run()` has connected, or while it
  reconnects after a lost connection, every read goes to the database (and everything cached is dropped
  when the connection is (re)established, since notifications may have been missed);
- a value read from the database is cached only if no notification arrived while it was being read
  (an invalidation epoch), so a read racing with a change never re-caches the old value.
Writes made through this object (PIN tries, terminal keys, PVV) also drop the local entry at once.

"As soon as its notification arrives" still lets a request that reaches a switchd first see the old value.
For the operator's changes (card status, hot list, black list, through `switchctl`) that is not good
enough: they must hold for the very next request. So after such a change commits, the writer notifies a
sync token and waits until every live listener has acknowledged it (migration 0006; listening.py holds
the LISTEN session and the tokens for this and the routing table). Notifications reach a listener in
commit order, so an acknowledged token means the change's own notification was applied first.
The hot path pays nothing for this; the writer waits a few milliseconds (at most SYNC_TIMEOUT_S, then it
warns). Changes made with plain SQL get the notification behaviour only.

Vault keys (`VaultKeyStore`): the PAN data key and hash key are random 32-byte keys, each encrypted by the
HSM (M0, TDES-CBC) under a ZEK that is itself stored under the LMK. They are created once and loaded at
start. The HSM is reached through the `DataKeyHsm` protocol (which `hsm.client.HsmClient` satisfies) so
this adapter does not import another adapter or the `hsm` package.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import asyncpg
import structlog
import trio

from switch.adapters.postgres.db import AnyConnection, Database
from switch.adapters.postgres.listening import ChangeListener, ListenerTables
from switch.domain.model import (
    Account,
    AccountKind,
    Card,
    CardStatus,
    DukptPinPad,
    ListEntry,
    ListKind,
    Merchant,
    Pan,
    PinMethod,
    Product,
    ProductKind,
    Terminal,
)
from switch.domain.pan_vault import PanVault

__all__ = [
    "CHANNEL",
    "NEGATIVE_ENTRIES_MAX",
    "BlackListRow",
    "CardRecord",
    "DataKeyHsm",
    "DirectoryError",
    "HotListRow",
    "NewCard",
    "PgDirectory",
    "VaultKeyError",
    "VaultKeyStore",
    "insert_cards",
]

CHANNEL = "switch_directory"
# An operator's change waits at most this long for every listening directory to confirm it has dropped
# what the change touched (then it warns and returns); a listener whose heartbeat is older than
# listening.LISTENER_STALE_S is taken for gone and not waited for (migration 0006).
SYNC_TIMEOUT_S = 5.0
_TABLES = ListenerTables(
    name="directory",
    channel=CHANNEL,
    listeners="directory_listeners",
    token_sequence="directory_change_token",
)
_log = structlog.get_logger("switch.directory")


class DirectoryError(Exception):
    """A directory write could not be done (unknown card or terminal, bad value). Never holds a PAN."""


# --- the directory --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardRecord:
    """A card as an operator sees it (`switchctl card show`): masked PAN only."""

    card: Card
    product_name: str


@dataclass(frozen=True, slots=True)
class HotListRow:
    pan_masked: str
    reason: str
    response_code: str
    added_at: str


@dataclass(frozen=True, slots=True)
class TerminalRow:
    """A terminal as an operator sees it: whether each key is set, never a key."""

    terminal_id: str
    merchant_id: str
    kind: str
    active: bool
    allowed_transactions: tuple[str, ...]
    mac_required: bool
    has_tmk: bool
    has_tpk: bool
    has_tak: bool
    dukpt_key_set_id: str | None
    dukpt_device_id: int | None
    keys_changed_at: str


@dataclass(frozen=True, slots=True)
class BlackListRow:
    kind: str
    display: str
    reason: str
    added_at: str


# Negative entries ("no such card/terminal/merchant") come from input anyone can send: past this many the
# negative entries are dropped wholesale, so a stream of random PANs cannot grow memory without bound.
NEGATIVE_ENTRIES_MAX = 100_000

_CARD_SQL = """
SELECT c.card_id, c.first6, c.last4, c.pan_length, c.expiry_yymm, c.status, c.product_id, c.pvki,
       c.pin_verification_value, c.pin_tries, c.activation_date
FROM cards c WHERE c.pan_hash = $1
"""
_ACCOUNTS_SQL = """
SELECT ca.account_id, ca.account_type, la.currency, la.overdraft_limit
FROM card_accounts ca JOIN ledger_accounts la ON la.id = ca.account_id
WHERE ca.card_id = $1 ORDER BY ca.position, ca.account_type
"""
_PRODUCT_SQL = "SELECT * FROM products WHERE product_id = $1"
# A DUKPT terminal's PIN pad: its key set's BDK comes with it (migration 0005).
_TERMINAL_SQL = """
SELECT t.*, k.bdk_under_lmk AS dukpt_bdk_under_lmk
FROM terminals t LEFT JOIN dukpt_key_sets k ON k.key_set_id = t.dukpt_key_set_id
WHERE t.terminal_id = $1
"""


def _masked(first6: str, last4: str, length: int) -> str:
    return first6 + "*" * (length - 10) + last4


def _limits(value: Any) -> dict[str, int]:
    data = json.loads(value) if isinstance(value, str) else value
    return {str(k): int(v) for k, v in (data or {}).items()}


def _product_from_row(row: asyncpg.Record) -> Product:
    return Product(
        product_id=row["product_id"],
        name=row["name"],
        kind=ProductKind(row["kind"]),
        pin_method=PinMethod(row["pin_method"]),
        allowed_transactions=frozenset(row["allowed_transactions"]),
        per_transaction_amount_max=_limits(row["per_transaction_amount_max"]),
        daily_amount_max=_limits(row["daily_amount_max"]),
        daily_count_max=_limits(row["daily_count_max"]),
        currency=row["currency"],
        pin_tries_max=row["pin_tries_max"],
        pvk_under_lmk=row["pvk_under_lmk"],
        cvk_under_lmk=row["cvk_under_lmk"],
        hold_expiry_s=row["hold_expiry_s"],
        decimalization_table=row["decimalization_table"],
        pin_validation_data=row["pin_validation_data"],
        pin_check_length=row["pin_check_length"],
    )


def _terminal_from_row(row: asyncpg.Record) -> Terminal:
    return Terminal(
        terminal_id=row["terminal_id"],
        merchant_id=row["merchant_id"],
        kind=row["kind"],
        active=row["active"],
        allowed_transactions=frozenset(row["allowed_transactions"]),
        tmk_under_lmk=row["tmk_under_lmk"],
        tpk_under_lmk=row["tpk_under_lmk"],
        tak_under_lmk=row["tak_under_lmk"],
        mac_required=row["mac_required"],
        dukpt=None
        if row["dukpt_key_set_id"] is None
        else DukptPinPad(
            key_set_id=row["dukpt_key_set_id"],
            bdk_under_lmk=row["dukpt_bdk_under_lmk"],
            device_id=row["dukpt_device_id"],
        ),
    )


def _merchant_from_row(row: asyncpg.Record) -> Merchant:
    return Merchant(
        merchant_id=row["merchant_id"],
        name=row["name"],
        settlement_account_id=row["settlement_account_id"],
        category_code=row["category_code"],
        active=row["active"],
    )


@dataclass(frozen=True, slots=True)
class _Lists:
    hot: dict[bytes, ListEntry]
    black_pans: dict[str, ListEntry]  # hex of PAN hash
    black_bins: dict[str, ListEntry]  # prefix
    black_terminals: dict[str, ListEntry]
    black_merchants: dict[str, ListEntry]


class PgDirectory:
    """`CardDirectory` over PostgreSQL with memory caches; run `run()` in a nursery to enable the caches.

    Without `run()` every read goes to the database (correct, slower): what a CLI wants.
    """

    def __init__(self, database: Database, vault: PanVault, *, reconnect_delay_s: float = 1.0) -> None:
        self._db = database
        self._vault = vault
        self._reconnect_delay_s = reconnect_delay_s
        self._cards: dict[bytes, Card] = {}
        self._unknown_cards: set[bytes] = set()  # PAN hashes known to have no card
        self._card_hash_by_id: dict[int, bytes] = {}
        self._terminals: dict[str, Terminal | None] = {}
        self._merchants: dict[str, Merchant | None] = {}
        self._products: dict[int, Product] = {}
        self._lists: _Lists | None = None
        self._epoch = 0
        self._listener = ChangeListener(database, _TABLES, _log)
        self.notifications_received = 0

    # -- cache control --

    @property
    def caching(self) -> bool:
        """True while the LISTEN connection is up (caches are used and kept fresh)."""
        return self._listener.listening

    def clear_caches(self) -> None:
        self._epoch += 1
        self._cards.clear()
        self._unknown_cards.clear()
        self._card_hash_by_id.clear()
        self._terminals.clear()
        self._merchants.clear()
        self._products.clear()
        self._lists = None

    def _on_notification(self, payload: str) -> None:
        """Drop what a `<table>:<key>` notification names (runs in the trio thread)."""
        self.notifications_received += 1
        self._epoch += 1
        table, _, key = payload.partition(":")
        if table in ("cards", "card_accounts"):
            try:
                card_id = int(key)
            except ValueError:
                card_id = -1
            pan_hash = self._card_hash_by_id.pop(card_id, None)
            if pan_hash is not None:
                self._cards.pop(pan_hash, None)
            # A new card may be one we remembered as unknown: forget every negative entry.
            self._unknown_cards.clear()
        elif table == "products":
            # Every cached card embeds its product: drop them all (product changes are rare).
            self._products.clear()
            self._cards.clear()
            self._unknown_cards.clear()
            self._card_hash_by_id.clear()
        elif table == "terminals":
            self._terminals.pop(key, None)
        elif table == "dukpt_key_sets":
            # Cached terminals embed their key set's BDK: drop them all (key sets change rarely).
            self._terminals.clear()
        elif table == "merchants":
            self._merchants.pop(key, None)
        elif table in ("hot_list", "black_list"):
            self._lists = None
        elif table == "sync":
            # A writer waits until we confirm; notifications come in commit order, so everything its
            # change touched has been dropped above by now.
            self._listener.sync_requested(key)
        # bin_ranges and unknown tables: nothing cached here depends on them.

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a LISTEN connection open (reconnecting after loss); `task_status.started()` once listening."""
        await self._listener.run(
            self._on_notification,
            reset=self.clear_caches,
            reconnect_delay_s=self._reconnect_delay_s,
            task_status=task_status,
        )

    async def _sync_listeners(self) -> None:
        """Return once every listening directory (every switchd) has dropped what our committed change
        touched, so the very next request anywhere sees it; warn after SYNC_TIMEOUT_S instead.

        For operator writes only (rare): the pipeline's own writes are not waited for.
        """
        await self._listener.wait_for_listeners(timeout_s=SYNC_TIMEOUT_S)

    def _store(self, epoch: int) -> bool:
        """May a value read since `epoch` be cached?"""
        return self._listener.listening and epoch == self._epoch

    # -- reads --

    async def _product(self, product_id: int) -> Product:
        cached = self._products.get(product_id)
        if cached is not None and self._listener.listening:
            return cached
        epoch = self._epoch
        row = await self._db.fetchrow(_PRODUCT_SQL, product_id)
        if row is None:
            raise DirectoryError(f"product {product_id} does not exist")
        product = _product_from_row(row)
        if self._store(epoch):
            self._products[product_id] = product
        return product

    async def _load_card(self, pan_hash: bytes) -> Card | None:
        async def work(conn: AnyConnection) -> tuple[asyncpg.Record | None, list[asyncpg.Record]]:
            row = await conn.fetchrow(_CARD_SQL, pan_hash)
            if row is None:
                return None, []
            return row, await conn.fetch(_ACCOUNTS_SQL, row["card_id"])

        row, accounts = await self._db.run(work)
        if row is None:
            return None
        product = await self._product(row["product_id"])
        return Card(
            card_id=row["card_id"],
            pan_masked=_masked(row["first6"], row["last4"], row["pan_length"]),
            expiry_yymm=row["expiry_yymm"],
            status=CardStatus(row["status"]),
            product=product,
            accounts=tuple(
                Account(
                    account_id=a["account_id"],
                    kind=AccountKind(a["account_type"]),
                    currency=a["currency"],
                    overdraft_limit=a["overdraft_limit"],
                )
                for a in accounts
            ),
            pvki=row["pvki"],
            pin_verification_value=row["pin_verification_value"],
            pin_tries=row["pin_tries"],
            activation_date=row["activation_date"],
        )

    async def card_by_pan(self, pan: Pan) -> Card | None:
        pan_hash = self._vault.lookup_hash(pan)
        if self._listener.listening:
            cached = self._cards.get(pan_hash)
            if cached is not None:
                return cached
            if pan_hash in self._unknown_cards:
                return None
        epoch = self._epoch
        card = await self._load_card(pan_hash)
        if self._store(epoch):
            if card is None:
                if len(self._unknown_cards) >= NEGATIVE_ENTRIES_MAX:
                    self._unknown_cards.clear()
                self._unknown_cards.add(pan_hash)
            else:
                self._cards[pan_hash] = card
                self._card_hash_by_id[card.card_id] = pan_hash
        return card

    async def terminal(self, terminal_id: str) -> Terminal | None:
        if self._listener.listening and terminal_id in self._terminals:
            return self._terminals[terminal_id]
        epoch = self._epoch
        row = await self._db.fetchrow(_TERMINAL_SQL, terminal_id)
        value = _terminal_from_row(row) if row is not None else None
        if self._store(epoch):
            if value is None and len(self._terminals) >= NEGATIVE_ENTRIES_MAX:
                self._terminals.clear()
            self._terminals[terminal_id] = value
        return value

    async def merchant(self, merchant_id: str) -> Merchant | None:
        if self._listener.listening and merchant_id in self._merchants:
            return self._merchants[merchant_id]
        epoch = self._epoch
        row = await self._db.fetchrow("SELECT * FROM merchants WHERE merchant_id = $1", merchant_id)
        value = _merchant_from_row(row) if row is not None else None
        if self._store(epoch):
            if value is None and len(self._merchants) >= NEGATIVE_ENTRIES_MAX:
                self._merchants.clear()
            self._merchants[merchant_id] = value
        return value

    async def _load_lists(self) -> _Lists:
        async def work(conn: AnyConnection) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
            hot = await conn.fetch("SELECT pan_hash, reason, response_code FROM hot_list")
            black = await conn.fetch("SELECT kind, value, reason FROM black_list")
            return hot, black

        hot_rows, black_rows = await self._db.run(work)
        lists = _Lists(
            hot={
                bytes(r["pan_hash"]): ListEntry(ListKind.HOT, r["reason"], r["response_code"])
                for r in hot_rows
            },
            black_pans={},
            black_bins={},
            black_terminals={},
            black_merchants={},
        )
        by_kind = {
            "pan": lists.black_pans,
            "bin": lists.black_bins,
            "terminal": lists.black_terminals,
            "merchant": lists.black_merchants,
        }
        for r in black_rows:
            # A black-listed item is refused outright: 62 (restricted).
            by_kind[r["kind"]][r["value"]] = ListEntry(ListKind.BLACK, r["reason"], "62")
        return lists

    async def list_entry(self, pan: Pan, terminal_id: str, merchant_id: str) -> ListEntry | None:
        lists = self._lists if self._listener.listening else None
        if lists is None:
            epoch = self._epoch
            lists = await self._load_lists()
            if self._store(epoch):
                self._lists = lists
        pan_hash = self._vault.lookup_hash(pan)
        found = lists.hot.get(pan_hash) or lists.black_pans.get(pan_hash.hex())
        if found is not None:
            return found
        if lists.black_bins:
            for length in range(min(12, len(pan.digits)), 0, -1):
                entry = lists.black_bins.get(pan.digits[:length])
                if entry is not None:
                    return entry
        return lists.black_terminals.get(terminal_id) or lists.black_merchants.get(merchant_id)

    # -- writes the pipeline makes --

    def _drop_card(self, card_id: int) -> None:
        self._epoch += 1
        pan_hash = self._card_hash_by_id.pop(card_id, None)
        if pan_hash is not None:
            self._cards.pop(pan_hash, None)

    def _cached_card(self, card_id: int) -> Card | None:
        pan_hash = self._card_hash_by_id.get(card_id)
        return self._cards.get(pan_hash) if pan_hash is not None and self._listener.listening else None

    async def record_pin_result(self, card_id: int, *, ok: bool) -> int:
        if ok:
            cached = self._cached_card(card_id)
            if cached is not None and cached.pin_tries == 0:
                # Nothing to reset (the common case): no round trip. A failure elsewhere that our cache
                # has not heard of yet would stay counted, which errs on the strict side.
                return 0
            # Only rows that change fire a notification (and drop caches everywhere).
            await self._db.execute(
                "UPDATE cards SET pin_tries = 0, updated_at = now() WHERE card_id = $1 AND pin_tries <> 0",
                card_id,
            )
            self._drop_card(card_id)
            return 0
        tries = await self._db.fetchval(
            "UPDATE cards SET pin_tries = pin_tries + 1, updated_at = now() WHERE card_id = $1 "
            "RETURNING pin_tries",
            card_id,
        )
        self._drop_card(card_id)
        if tries is None:
            raise DirectoryError(f"card {card_id} does not exist")
        return int(tries)

    async def set_terminal_keys(self, terminal_id: str, *, tpk_under_lmk: str, tak_under_lmk: str) -> None:
        status = await self._db.execute(
            "UPDATE terminals SET tpk_under_lmk = $2, tak_under_lmk = $3, keys_changed_at = now() "
            "WHERE terminal_id = $1",
            terminal_id,
            tpk_under_lmk,
            tak_under_lmk,
        )
        self._epoch += 1
        self._terminals.pop(terminal_id, None)
        if status.endswith(" 0"):
            raise DirectoryError(f"terminal {terminal_id!r} does not exist")

    async def add_terminal(self, terminal: Terminal) -> None:
        """An operator's new terminal (`switchctl terminal add`): keys under the LMK only (its TPK and TAK
        come with its first key exchange, unless given). DirectoryError when the id is taken, the merchant
        does not exist, or the DUKPT key set does not. Served from the very next request on every switchd."""
        dukpt = terminal.dukpt
        try:
            await self._db.execute(
                "INSERT INTO terminals (terminal_id, merchant_id, kind, active, allowed_transactions, "
                "tmk_under_lmk, tpk_under_lmk, tak_under_lmk, mac_required, dukpt_key_set_id, dukpt_device_id) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                terminal.terminal_id,
                terminal.merchant_id,
                terminal.kind,
                terminal.active,
                sorted(terminal.allowed_transactions),
                terminal.tmk_under_lmk,
                terminal.tpk_under_lmk,
                terminal.tak_under_lmk,
                terminal.mac_required,
                dukpt.key_set_id if dukpt is not None else None,
                dukpt.device_id if dukpt is not None else None,
            )
        except asyncpg.UniqueViolationError as exc:
            if "dukpt" in (exc.constraint_name or ""):
                raise DirectoryError("another terminal has that DUKPT key set and device id") from None
            raise DirectoryError(f"terminal {terminal.terminal_id!r} exists already") from None
        except asyncpg.ForeignKeyViolationError as exc:
            what = "DUKPT key set" if "dukpt" in (exc.constraint_name or "") else "merchant"
            raise DirectoryError(f"no such {what} for terminal {terminal.terminal_id!r}") from None
        except asyncpg.CheckViolationError:
            raise DirectoryError(f"terminal {terminal.terminal_id!r}: a value the table refuses") from None
        self._epoch += 1
        self._terminals.pop(terminal.terminal_id, None)
        await self._sync_listeners()

    async def set_terminal_active(self, terminal_id: str, active: bool) -> Terminal:
        """Serve (True) or refuse (False: 58) a terminal from the very next request on every switchd."""
        status = await self._db.execute(
            "UPDATE terminals SET active = $2 WHERE terminal_id = $1", terminal_id, active
        )
        if status.endswith(" 0"):
            raise DirectoryError(f"terminal {terminal_id!r} does not exist")
        self._epoch += 1
        self._terminals.pop(terminal_id, None)
        await self._sync_listeners()
        found = await self.terminal(terminal_id)
        assert found is not None
        return found

    async def terminal_rows(
        self, merchant_id: str | None = None, *, terminal_id: str | None = None
    ) -> list[TerminalRow]:
        """Terminals (of one merchant, one by id, or all) for an operator: no key, whether each key is set."""
        rows = await self._db.fetch(
            "SELECT terminal_id, merchant_id, kind, active, allowed_transactions, mac_required, "
            "tmk_under_lmk <> '' AS has_tmk, tpk_under_lmk <> '' AS has_tpk, tak_under_lmk <> '' AS has_tak, "
            "dukpt_key_set_id, dukpt_device_id, keys_changed_at FROM terminals "
            "WHERE ($1::text IS NULL OR merchant_id = $1) AND ($2::text IS NULL OR terminal_id = $2) "
            "ORDER BY terminal_id",
            merchant_id,
            terminal_id,
        )
        return [
            TerminalRow(
                terminal_id=r["terminal_id"],
                merchant_id=r["merchant_id"].rstrip(),
                kind=r["kind"],
                active=r["active"],
                allowed_transactions=tuple(r["allowed_transactions"]),
                mac_required=r["mac_required"],
                has_tmk=r["has_tmk"],
                has_tpk=r["has_tpk"],
                has_tak=r["has_tak"],
                dukpt_key_set_id=r["dukpt_key_set_id"],
                dukpt_device_id=r["dukpt_device_id"],
                keys_changed_at=r["keys_changed_at"].isoformat() if r["keys_changed_at"] else "",
            )
            for r in rows
        ]

    async def add_merchant(self, merchant: Merchant, *, currency: int) -> bool:
        """An operator's new merchant (`switchctl merchant add`), settling into ledger account
        `merchant.settlement_account_id` in `currency`: created with the merchant when it does not exist;
        an existing one must already be another merchant's settlement account in that currency (a chain's
        shops settling together), never a cardholder's or the bank's own. True when the account was
        created. DirectoryError when the id is taken or the account is not fit."""
        account_id = merchant.settlement_account_id

        async def work(conn: AnyConnection) -> bool:
            # Locked, so two adds naming a new account create it once and see each other's merchant.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('merchant-account:' || $1, 0))",
                str(account_id),
            )
            existing = await conn.fetchval("SELECT currency FROM ledger_accounts WHERE id = $1", account_id)
            if existing is None:
                await conn.execute(
                    "INSERT INTO ledger_accounts (id, currency, debits_must_not_exceed_credits) VALUES ($1, $2, false)",
                    account_id,
                    currency,
                )
            elif existing != currency or not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM merchants WHERE settlement_account_id = $1)", account_id
            ):
                raise DirectoryError(
                    f"ledger account {account_id} exists and is not a merchant's settlement account in {currency:03d}"
                )
            await conn.execute(
                "INSERT INTO merchants (merchant_id, name, settlement_account_id, category_code, active) "
                "VALUES ($1, $2, $3, $4, $5)",
                merchant.merchant_id,
                merchant.name,
                account_id,
                merchant.category_code,
                merchant.active,
            )
            return existing is None

        try:
            created = await self._db.transaction(work)
        except asyncpg.UniqueViolationError:
            raise DirectoryError(f"merchant {merchant.merchant_id.strip()!r} exists already") from None
        except asyncpg.CheckViolationError:
            raise DirectoryError(
                f"merchant {merchant.merchant_id.strip()!r}: a value the table refuses"
            ) from None
        self._epoch += 1
        self._merchants.pop(merchant.merchant_id, None)
        await self._sync_listeners()
        return bool(created)

    async def set_merchant_active(self, merchant_id: str, active: bool) -> None:
        """Serve (True) or refuse (False: 03) a merchant's terminals from the very next request everywhere."""
        status = await self._db.execute(
            "UPDATE merchants SET active = $2 WHERE merchant_id = $1", merchant_id, active
        )
        if status.endswith(" 0"):
            raise DirectoryError(f"merchant {merchant_id.strip()!r} does not exist")
        self._epoch += 1
        self._merchants.pop(merchant_id, None)
        await self._sync_listeners()

    async def merchant_rows(self) -> list[tuple[Merchant, int, int]]:
        """Every merchant with its settlement account's currency and its number of terminals."""
        rows = await self._db.fetch(
            "SELECT m.*, a.currency, (SELECT count(*) FROM terminals t WHERE t.merchant_id = m.merchant_id) AS n "
            "FROM merchants m JOIN ledger_accounts a ON a.id = m.settlement_account_id ORDER BY m.merchant_id"
        )
        return [(_merchant_from_row(r), r["currency"], r["n"]) for r in rows]

    async def set_pin_verification_value(self, card_id: int, value: str) -> None:
        status = await self._db.execute(
            "UPDATE cards SET pin_verification_value = $2, pin_tries = 0, updated_at = now() "
            "WHERE card_id = $1",
            card_id,
            value,
        )
        self._drop_card(card_id)
        if status.endswith(" 0"):
            raise DirectoryError(f"card {card_id} does not exist")

    # -- operator reads and writes (switchctl) --

    async def card_record(self, pan: Pan) -> CardRecord | None:
        card = await self._load_card(self._vault.lookup_hash(pan))
        return None if card is None else CardRecord(card=card, product_name=card.product.name)

    async def set_card_status(self, pan: Pan, status: CardStatus) -> Card:
        pan_hash = self._vault.lookup_hash(pan)
        card_id = await self._db.fetchval(
            "UPDATE cards SET status = $2, updated_at = now() WHERE pan_hash = $1 RETURNING card_id",
            pan_hash,
            status.value,
        )
        if card_id is None:
            raise DirectoryError(f"no card {pan.masked}")
        self._drop_card(card_id)
        await self._sync_listeners()
        card = await self._load_card(pan_hash)
        assert card is not None
        return card

    async def hot_list_add(self, pan: Pan, *, reason: str, response_code: str = "04") -> None:
        if response_code not in ("04", "62"):
            raise DirectoryError("hot list response code must be 04 (pick up) or 62 (restricted)")
        await self._db.execute(
            "INSERT INTO hot_list (pan_hash, first6, last4, reason, response_code) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (pan_hash) DO UPDATE SET reason = EXCLUDED.reason, "
            "response_code = EXCLUDED.response_code, added_at = now()",
            self._vault.lookup_hash(pan),
            pan.digits[:6],
            pan.digits[-4:],
            reason,
            response_code,
        )
        self._epoch += 1
        self._lists = None
        await self._sync_listeners()

    async def hot_list_remove(self, pan: Pan) -> bool:
        status = await self._db.execute(
            "DELETE FROM hot_list WHERE pan_hash = $1", self._vault.lookup_hash(pan)
        )
        self._epoch += 1
        self._lists = None
        await self._sync_listeners()
        return not status.endswith(" 0")

    async def hot_list_rows(self) -> list[HotListRow]:
        rows = await self._db.fetch(
            "SELECT first6, last4, reason, response_code, added_at FROM hot_list ORDER BY added_at, first6"
        )
        return [
            HotListRow(
                pan_masked=r["first6"] + "******" + r["last4"],
                reason=r["reason"],
                response_code=r["response_code"],
                added_at=r["added_at"].isoformat(timespec="seconds"),
            )
            for r in rows
        ]

    def _black_value(self, kind: str, value: str) -> tuple[str, str]:
        """(stored value, display) for a black list entry given as the operator typed it."""
        if kind == "pan":
            pan = Pan(value)
            return self._vault.lookup_hash(pan).hex(), pan.masked
        if kind == "bin":
            if not (value.isdigit() and 1 <= len(value) <= 12):
                raise DirectoryError("a BIN prefix is 1 to 12 digits")
        elif kind == "terminal":
            if len(value) != 8:
                raise DirectoryError("a terminal id is 8 characters")
        elif kind == "merchant":
            if len(value) != 15:
                raise DirectoryError("a merchant id is 15 characters")
        else:
            raise DirectoryError("black list kind must be pan, bin, terminal or merchant")
        return value, value

    async def black_list_add(self, kind: str, value: str, *, reason: str) -> str:
        stored, display = self._black_value(kind, value)
        await self._db.execute(
            "INSERT INTO black_list (kind, value, display, reason) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (kind, value) DO UPDATE SET reason = EXCLUDED.reason, added_at = now()",
            kind,
            stored,
            display,
            reason,
        )
        self._epoch += 1
        self._lists = None
        await self._sync_listeners()
        return display

    async def black_list_remove(self, kind: str, value: str) -> bool:
        stored, _ = self._black_value(kind, value)
        status = await self._db.execute("DELETE FROM black_list WHERE kind = $1 AND value = $2", kind, stored)
        self._epoch += 1
        self._lists = None
        await self._sync_listeners()
        return not status.endswith(" 0")

    async def black_list_rows(self) -> list[BlackListRow]:
        rows = await self._db.fetch(
            "SELECT kind, display, reason, added_at FROM black_list ORDER BY kind, added_at, display"
        )
        return [
            BlackListRow(
                kind=r["kind"],
                display=r["display"],
                reason=r["reason"],
                added_at=r["added_at"].isoformat(timespec="seconds"),
            )
            for r in rows
        ]


# --- card creation (seed, future issuing API) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewCard:
    """A card to create. `accounts`: (ledger account id, account type code) in order; the first is default."""

    pan: Pan
    expiry_yymm: str
    status: CardStatus
    product_id: int
    accounts: tuple[tuple[int, AccountKind], ...]
    pvki: int = 1
    pin_verification_value: str = ""
    activation_date: date | None = None

    def __repr__(self) -> str:
        return f"NewCard(pan={self.pan.masked}, product_id={self.product_id}, status={self.status.value})"


async def insert_cards(conn: AnyConnection, vault: PanVault, cards: Sequence[NewCard]) -> list[int]:
    """Insert cards and their account links in the caller's transaction; returns the new card ids in order."""
    rows = [
        (
            vault.lookup_hash(c.pan),
            vault.encrypt(c.pan),
            c.pan.digits[:6],
            c.pan.digits[-4:],
            len(c.pan.digits),
            c.expiry_yymm,
            c.status.value,
            c.product_id,
            c.pvki,
            c.pin_verification_value,
            c.activation_date,
        )
        for c in cards
    ]
    inserted = await conn.fetch(
        """
        INSERT INTO cards (pan_hash, pan_ciphertext, first6, last4, pan_length, expiry_yymm, status,
                           product_id, pvki, pin_verification_value, activation_date)
        SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::text[], $5::smallint[],
                             $6::text[], $7::text[], $8::integer[], $9::smallint[], $10::text[],
                             $11::date[])
        RETURNING card_id, pan_hash
        """,
        *[list(col) for col in zip(*rows, strict=True)],
    )
    id_by_hash = {bytes(r["pan_hash"]): r["card_id"] for r in inserted}
    ids: list[int] = [id_by_hash[row[0]] for row in rows]
    links = [
        (card_id, account_id, kind.value, position)
        for card_id, card in zip(ids, cards, strict=True)
        for position, (account_id, kind) in enumerate(card.accounts)
    ]
    if links:
        await conn.executemany(
            "INSERT INTO card_accounts (card_id, account_id, account_type, position) VALUES ($1, $2, $3, $4)",
            links,
        )
    return ids


# --- vault keys -----------------------------------------------------------------------------------------


class VaultKeyError(Exception):
    """The vault keys cannot be loaded (missing, or the HSM's LMK/ZEK does not open them)."""


class GeneratedKeyLike(Protocol):
    @property
    def key_under_lmk(self) -> str: ...


class DataKeyHsm(Protocol):
    """The HSM calls the key store needs (`hsm.client.HsmClient` has them)."""

    async def generate_key(self, key_type: str, scheme: str = "U") -> GeneratedKeyLike: ...

    async def encrypt_data(
        self, *, key: str, data: bytes, mode: str = "cbc", iv: bytes = bytes(8), key_type: str = "00A"
    ) -> bytes: ...

    async def decrypt_data(
        self, *, key: str, data: bytes, mode: str = "cbc", iv: bytes = bytes(8), key_type: str = "00A"
    ) -> bytes: ...


_KEY_NAMES = ("pan_data", "pan_hash")
_CHECK_LABEL = b"cardswitch-vault-check"


def _check_value(key: bytes) -> str:
    return hmac.new(key, _CHECK_LABEL, hashlib.sha256).digest()[:8].hex()


class VaultKeyStore:
    """Creates the PAN vault keys once (through the HSM) and loads them at start."""

    def __init__(self, database: Database, hsm: DataKeyHsm) -> None:
        self._db = database
        self._hsm = hsm

    async def load_or_create(self) -> PanVault:
        """The vault with the stored keys, creating them first if this database has none."""
        vault = await self.load()
        if vault is not None:
            return vault
        zek = (await self._hsm.generate_key("00A", "U")).key_under_lmk
        rows = []
        for name in _KEY_NAMES:
            key, iv = os.urandom(32), os.urandom(8)
            cryptogram = await self._hsm.encrypt_data(key=zek, data=key, mode="cbc", iv=iv)
            rows.append((name, zek, iv, cryptogram, _check_value(key)))

        async def work(conn: AnyConnection) -> None:
            # Two nodes starting at once: the first commit wins, the other's rows are ignored.
            await conn.executemany(
                "INSERT INTO vault_keys (name, zek_under_lmk, iv, cryptogram, check_value) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
                rows,
            )

        await self._db.transaction(work)
        _log.info("vault_keys_created")
        vault = await self.load()
        if vault is None:  # pragma: no cover - only if someone deletes rows meanwhile
            raise VaultKeyError("vault keys vanished right after creation")
        return vault

    async def load(self) -> PanVault | None:
        """The vault with the stored keys, or None if there are none yet."""
        rows = {
            r["name"]: r
            for r in await self._db.fetch(
                "SELECT name, zek_under_lmk, iv, cryptogram, check_value FROM vault_keys"
            )
        }
        if not rows:
            return None
        missing = [n for n in _KEY_NAMES if n not in rows]
        if missing:
            raise VaultKeyError(f"vault key(s) missing: {', '.join(missing)}")
        keys: dict[str, bytes] = {}
        for name in _KEY_NAMES:
            row = rows[name]
            try:
                key = await self._hsm.decrypt_data(
                    key=row["zek_under_lmk"], data=bytes(row["cryptogram"]), mode="cbc", iv=bytes(row["iv"])
                )
            except Exception as exc:
                raise VaultKeyError(
                    f"the HSM could not decrypt vault key {name} ({type(exc).__name__})"
                ) from None
            if not hmac.compare_digest(_check_value(key), row["check_value"]):
                raise VaultKeyError(
                    f"vault key {name} does not match its check value: the HSM holds another LMK than the "
                    "one the keys were created under"
                )
            keys[name] = key
        return PanVault(keys["pan_data"], keys["pan_hash"])
