"""Operator changes hold for the very next request, caches or not: the writer waits until every listening
directory has confirmed it dropped what the change touched (sync tokens, migration 0006)."""

from __future__ import annotations

import pytest
import trio

from switch.adapters.postgres import directory as directory_module
from switch.adapters.postgres.db import Database
from switch.adapters.postgres.directory import PgDirectory
from switch.adapters.postgres.ledger import PgLedger
from switch.domain.model import CardStatus, ListKind
from switch.domain.pan_vault import PanVault
from tests.integration.issuing.test_directory import MERCHANT, PAN, TERMINAL, _world

# Notifications reach the listening directory this much later than the writer's commit: a switchd that
# is busy, or across a network. Without the sync protocol the writer would return before they arrive.
NOTIFY_DELAY_S = 0.2


@pytest.fixture
async def listening(
    directory: PgDirectory, db: Database, ledger: PgLedger, vault: PanVault, nursery: trio.Nursery
) -> PgDirectory:
    """The directory tests' world, and the directory listening (caches on) with late notifications."""
    await _world(db, ledger, vault)
    apply_now = directory._on_notification
    send, receive = trio.open_memory_channel[tuple[float, str]](1000)

    async def deliver_late() -> None:
        async for arrived, payload in receive:  # in order, each NOTIFY_DELAY_S after it arrived
            await trio.sleep_until(arrived + NOTIFY_DELAY_S)
            apply_now(payload)

    def arrive(payload: str) -> None:
        send.send_nowait((trio.current_time(), payload))

    nursery.start_soon(deliver_late)
    directory._on_notification = arrive  # type: ignore[method-assign]
    await nursery.start(directory.run)
    return directory


async def test_hot_list_entry_holds_for_the_very_next_cached_read(
    listening: PgDirectory, db: Database, vault: PanVault
) -> None:
    """If another process hot-lists a card this directory has cached lists for, then the next read sees it."""
    assert await listening.list_entry(PAN, TERMINAL, MERCHANT) is None  # lists cached now
    operator = PgDirectory(db, vault)  # not listening: like switchctl
    await operator.hot_list_add(PAN, reason="stolen", response_code="04")
    entry = await listening.list_entry(PAN, TERMINAL, MERCHANT)
    assert entry is not None and entry.kind is ListKind.HOT
    await operator.hot_list_remove(PAN)
    assert await listening.list_entry(PAN, TERMINAL, MERCHANT) is None


async def test_black_list_entry_holds_for_the_very_next_cached_read(
    listening: PgDirectory, db: Database, vault: PanVault
) -> None:
    """If another process black-lists a terminal, then this directory's next read (cached lists) bars it."""
    assert await listening.list_entry(PAN, TERMINAL, MERCHANT) is None
    operator = PgDirectory(db, vault)
    await operator.black_list_add("terminal", TERMINAL, reason="skimmer found")
    entry = await listening.list_entry(PAN, TERMINAL, MERCHANT)
    assert entry is not None and entry.kind is ListKind.BLACK


async def test_blocked_card_holds_for_the_very_next_cached_read(
    listening: PgDirectory, db: Database, vault: PanVault
) -> None:
    """If another process blocks a card this directory has cached, then the next lookup says blocked."""
    card = await listening.card_by_pan(PAN)
    assert card is not None and card.status is CardStatus.ACTIVE
    await PgDirectory(db, vault).set_card_status(PAN, CardStatus.BLOCKED)
    card = await listening.card_by_pan(PAN)
    assert card is not None and card.status is CardStatus.BLOCKED


async def test_listener_is_registered_while_listening_only(directory: PgDirectory, db: Database) -> None:
    """If a directory listens, then it has a row in directory_listeners; once it stops, the row is gone."""
    async with trio.open_nursery() as nursery:
        await nursery.start(directory.run)
        assert await db.fetchval("SELECT count(*) FROM directory_listeners") == 1
        nursery.cancel_scope.cancel()
    assert await db.fetchval("SELECT count(*) FROM directory_listeners") == 0


async def test_stale_listener_is_not_waited_for(db: Database, vault: PanVault) -> None:
    """If a listener's heartbeat is old (its process died), then an operator's change does not wait for it."""
    await db.execute(
        "INSERT INTO directory_listeners (listener_id, acked_token, seen_at) VALUES ('dead', 0, now() - interval '1 hour')"
    )
    with trio.fail_after(directory_module.SYNC_TIMEOUT_S / 2):
        await PgDirectory(db, vault).hot_list_add(PAN, reason="lost")


async def test_silent_live_listener_is_waited_for_until_the_timeout(
    db: Database, vault: PanVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a live listener never confirms, then the change is made and the writer returns after the timeout."""
    monkeypatch.setattr(directory_module, "SYNC_TIMEOUT_S", 0.3)
    await db.execute("INSERT INTO directory_listeners (listener_id, acked_token) VALUES ('mute', 0)")
    started = trio.current_time()
    with trio.fail_after(5):
        await PgDirectory(db, vault).hot_list_add(PAN, reason="lost")
    assert trio.current_time() - started >= 0.3
    assert await db.fetchval("SELECT count(*) FROM hot_list") == 1
