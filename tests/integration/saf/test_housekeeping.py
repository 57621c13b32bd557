"""The interbank housekeeping sweep of switchd (`switch.app._prune_interbank`) on PostgreSQL: old finished
store-and-forward entries and old forwarded-transaction records go, everything else stays, and the sweep
says what it deleted without card data."""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any

import structlog
import trio

from switch.adapters.postgres.db import Database
from switch.adapters.postgres.network_keys import PgForwardedTransactions
from switch.adapters.postgres.saf import PgSafQueue
from switch.app import _prune_interbank
from switch.iso.message import Message
from switch.ports import ForwardedRecord
from tests.integration.saf.support import PAN, ManualClock, reversal

DAY = 24 * 3600.0


async def logged(logs: list[MutableMapping[str, Any]], event: str) -> None:
    """Until a captured log line is `event` (the sweep runs in a task of its own)."""
    while not any(e["event"] == event for e in logs):  # noqa: ASYNC110 - the sweep logs, it sets no event
        await trio.sleep(0.01)


def record(transfer_id: str, created_at) -> ForwardedRecord:
    return ForwardedRecord(
        transfer_id=transfer_id,
        network="visa",
        route="visa",
        message=Message("0200", {3: "000000", 4: "000000001234", 11: "000777", 7: "1123193501"}),
        pan_masked=PAN[:6] + "******" + PAN[-4:],
        amount=1234,
        currency=840,
        auth_code="A1B2C3",
        created_at=created_at,
    )


async def test_the_sweep_deletes_what_is_old_and_finished_and_logs_the_counts(
    queue: PgSafQueue, clock: ManualClock, db: Database
) -> None:
    """If an acknowledged entry finished 31 days ago, an expired one too, another entry is still queued, and
    one forwarded record is 31 days old and another new, then one pass of the sweep (30-day keeps) deletes
    the acknowledged entry and the old record only, and logs those counts; no log line holds the PAN."""
    await queue.enqueue(reversal(1))
    await queue.enqueue(reversal(2))
    await queue.enqueue(reversal(3))
    head = await queue.claim_next("visa", holder="w1", lease_s=40)
    assert head is not None
    await queue.acknowledge(
        head.entry_id, sent=head.message.with_fields({11: "000001", 7: "1123193500"}), response_code="00"
    )
    await db.execute(
        "UPDATE saf_queue SET state = 'expired', finished_at = $1 WHERE entry_id = 2", clock.now()
    )
    forwarded = PgForwardedTransactions(db)
    await forwarded.record(record("POS00001:1123193500:000001", clock.now()))
    clock.advance(31 * DAY)
    await forwarded.record(record("POS00001:1123193500:000002", clock.now()))
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_prune_interbank, queue, forwarded, clock, 0.01, 30 * DAY, 30 * DAY)
            with trio.fail_after(10):
                await logged(logs, "interbank housekeeping")
            nursery.cancel_scope.cancel()
    (line,) = [e for e in logs if e["event"] == "interbank housekeeping"]
    assert (line["saf_entries_deleted"], line["forwarded_records_deleted"]) == (1, 1)
    rows = await db.fetch("SELECT entry_id, state FROM saf_queue ORDER BY entry_id")
    assert [(r["entry_id"], r["state"]) for r in rows] == [(2, "expired"), (3, "queued")]
    assert await forwarded.find("POS00001:1123193500:000001") is None
    assert await forwarded.find("POS00001:1123193500:000002") is not None
    assert PAN not in repr(logs)


async def test_a_failing_pass_is_logged_and_the_sweep_goes_on(
    queue: PgSafQueue, clock: ManualClock, db: Database
) -> None:
    """If a pass fails (the forwarded table is gone for a moment), then the error is logged by type and
    the next pass runs."""
    forwarded = PgForwardedTransactions(db)
    await db.execute("ALTER TABLE forwarded_transactions RENAME TO forwarded_transactions_away")
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_prune_interbank, queue, forwarded, clock, 0.01, 30 * DAY, 30 * DAY)
            with trio.fail_after(10):
                await logged(logs, "interbank housekeeping failed")
                await db.execute("ALTER TABLE forwarded_transactions_away RENAME TO forwarded_transactions")
                await forwarded.record(record("POS00001:1123193500:000003", clock.now() - timedelta(days=31)))
                await logged(logs, "interbank housekeeping")
            nursery.cancel_scope.cancel()
    failed = next(e for e in logs if e["event"] == "interbank housekeeping failed")
    assert failed["error"].endswith("Error") and "forwarded_transactions" not in repr(failed)
