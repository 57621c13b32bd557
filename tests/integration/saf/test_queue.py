"""The store-and-forward queue on PostgreSQL: durable and idempotent enqueue, no card data at rest, queue
order, leases between workers, expiry, and the operator's retry and purge."""

from __future__ import annotations

import asyncpg
import pytest
import structlog

from switch.adapters.postgres.db import Database
from switch.adapters.postgres.saf import PgSafQueue, SafStoreError
from switch.domain.pan_vault import PanVault
from switch.domain.saf import SafError, SafState
from switch.ports import SafQueue
from tests.integration.saf.conftest import POLICY, OpenDatabase
from tests.integration.saf.support import PAN, PIN_BLOCK, TRACK2, ManualClock, advice, reversal

LEASE_S = 40.0


async def test_queue_satisfies_the_worker_port(queue: PgSafQueue) -> None:
    """If the worker is given the PostgreSQL queue, then it is a SafQueue (checked by mypy) and starts empty."""
    port: SafQueue = queue
    depth = await port.depth("visa")
    assert (depth.count, depth.oldest_age_s) == (0, 0.0)


async def test_enqueue_is_idempotent_by_key(queue: PgSafQueue, db: Database) -> None:
    """If the same reversal is queued twice, then the second is refused and one row exists."""
    assert await queue.enqueue(reversal(1)) is True
    assert await queue.enqueue(reversal(1)) is False
    assert await db.fetchval("SELECT count(*) FROM saf_queue") == 1


async def test_enqueue_is_committed_when_it_returns(queue: PgSafQueue, open_database: OpenDatabase) -> None:
    """If enqueue returned, then another connection (another process) sees the entry."""
    await queue.enqueue(reversal(1))
    other = await open_database()
    assert await other.fetchval("SELECT state FROM saf_queue") == "queued"


async def test_no_clear_card_data_in_the_table(queue: PgSafQueue, db: Database, vault: PanVault) -> None:
    """If a reversal with PAN, track 2 and PIN block is queued, then no row holds them, and the PAN decrypts."""
    with structlog.testing.capture_logs() as logs:
        await queue.enqueue(reversal(1, with_secrets=True))
    dump = await db.fetchval("SELECT string_agg(t::text, '|') FROM saf_queue t")
    for secret in (PAN, TRACK2, PIN_BLOCK, PAN[6:12]):
        assert secret not in dump
    row = await db.fetchrow("SELECT pan_encrypted, pan_first6, pan_last4 FROM saf_queue")
    assert row is not None
    assert vault.decrypt(bytes(row["pan_encrypted"])).digits == PAN
    assert (row["pan_first6"], row["pan_last4"]) == (PAN[:6], PAN[-4:])
    assert [e["fields"] for e in logs if e["event"] == "saf_fields_not_stored"] == [(35, 52)]
    assert PAN not in repr(logs) and PIN_BLOCK not in repr(logs)


async def test_table_refuses_pin_block_even_from_plain_sql(db: Database) -> None:
    """If someone inserts fields with a PIN block by hand, then the table's check refuses the row."""
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "INSERT INTO saf_queue (network, kind, idempotency_key, mti, fields, created_at, expires_at, "
            "next_attempt_at) VALUES ('visa', 'reversal', 'k', '0420', '{\"52\": \"00\"}', now(), now(), now())"
        )


async def test_queue_without_vault_cannot_enqueue(db: Database, clock: ManualClock) -> None:
    """If the queue was opened without the PAN vault (switchctl), then enqueue refuses."""
    with pytest.raises(SafStoreError):
        await PgSafQueue(db, None, clock=clock).enqueue(reversal(1))


async def test_invalid_entry_is_refused_before_the_database(queue: PgSafQueue, db: Database) -> None:
    """If a reversal is queued as 0200, then it is refused and nothing is stored."""
    bad = reversal(1)
    with pytest.raises(SafError):
        await queue.enqueue(type(bad)(bad.network, bad.kind, bad.key, bad.message.with_fields(mti="0200")))
    assert await db.fetchval("SELECT count(*) FROM saf_queue") == 0


async def test_claim_hands_out_the_head_of_the_network_only(queue: PgSafQueue) -> None:
    """If three entries are queued, then only the oldest is claimed until it is acknowledged."""
    for entry in (reversal(1), advice(2), reversal(3)):
        await queue.enqueue(entry)
    first = await queue.claim_next("visa", holder="w1", lease_s=LEASE_S)
    assert first is not None and first.key == reversal(1).key and first.state is SafState.IN_FLIGHT
    assert first.message == reversal(1).message  # PAN restored in field 2
    same = await queue.claim_next("visa", holder="w1", lease_s=LEASE_S)
    assert same is not None and same.entry_id == first.entry_id  # its own lease: still the head, not the next
    sent = first.message.with_fields({11: "000001", 7: "1123193500"})
    assert await queue.acknowledge(first.entry_id, sent=sent, response_code="00")
    second = await queue.claim_next("visa", holder="w1", lease_s=LEASE_S)
    assert second is not None and second.kind == "advice"


async def test_head_not_due_holds_back_the_entries_behind_it(queue: PgSafQueue, clock: ManualClock) -> None:
    """If the head was backed off for 10 s, then nothing of that network is claimed for 10 s."""
    await queue.enqueue(reversal(1))
    await queue.enqueue(reversal(2))
    head = await queue.claim_next("visa", holder="w1", lease_s=LEASE_S)
    sent = head.message.with_fields({11: "000001", 7: "1123193500"})
    await queue.back_off(head.entry_id, holder="w1", sent=sent, response_code=None, retry_after_s=10)
    clock.advance(9.9)
    assert await queue.claim_next("visa", holder="w1", lease_s=LEASE_S) is None
    assert await queue.next_due_in_s("visa") == pytest.approx(0.1)
    clock.advance(0.1)
    again = await queue.claim_next("visa", holder="w1", lease_s=LEASE_S)
    assert again is not None and again.entry_id == head.entry_id
    assert (again.stan, again.transmission, again.attempts) == ("000001", "1123193500", 1)


async def test_networks_have_separate_queues(queue: PgSafQueue) -> None:
    """If visa's head is being sent, then cups' head can still be claimed."""
    await queue.enqueue(reversal(1))
    await queue.enqueue(reversal(2, network="cups"))
    assert await queue.claim_next("visa", holder="w1", lease_s=LEASE_S) is not None
    cups = await queue.claim_next("cups", holder="w1", lease_s=LEASE_S)
    assert cups is not None and cups.network == "cups"


async def test_other_workers_lease_is_respected_until_it_lapses(
    queue: PgSafQueue, clock: ManualClock, open_database: OpenDatabase
) -> None:
    """If worker 1 holds the head, then worker 2 gets nothing until the lease has passed, then takes it over."""
    other = PgSafQueue(await open_database(), None, clock=clock, policy=POLICY)
    await queue.enqueue(reversal(1))
    assert await queue.claim_next("visa", holder="w1", lease_s=LEASE_S) is not None
    assert await other.claim_next("visa", holder="w2", lease_s=LEASE_S) is None
    assert await other.next_due_in_s("visa") == pytest.approx(LEASE_S)
    clock.advance(LEASE_S)
    taken = await queue.claim_next("visa", holder="w2", lease_s=LEASE_S)
    assert taken is not None and taken.state is SafState.IN_FLIGHT


async def test_release_gives_the_entry_back_unchanged(queue: PgSafQueue) -> None:
    """If a claimed entry could not be sent, then after release it is claimable at once, no attempt counted."""
    await queue.enqueue(reversal(1))
    head = await queue.claim_next("visa", holder="w1", lease_s=LEASE_S)
    await queue.release(head.entry_id, holder="w1")
    again = await queue.claim_next("visa", holder="w2", lease_s=LEASE_S)
    assert again is not None and again.attempts == 0 and again.stan is None


async def test_back_off_by_a_worker_that_lost_its_lease_keeps_the_new_holders_lease(
    queue: PgSafQueue, clock: ManualClock, db: Database
) -> None:
    """If worker 1 reports after its lease went to worker 2, then the attempt counts but worker 2 keeps it."""
    await queue.enqueue(reversal(1))
    head = await queue.claim_next("visa", holder="w1", lease_s=LEASE_S)
    clock.advance(LEASE_S)
    assert await queue.claim_next("visa", holder="w2", lease_s=LEASE_S) is not None
    sent = head.message.with_fields({11: "000009", 7: "1123193500"})
    await queue.back_off(head.entry_id, holder="w1", sent=sent, response_code=None, retry_after_s=10)
    row = await db.fetchrow("SELECT state, leased_by, attempts, stan FROM saf_queue")
    assert row is not None
    assert tuple(row) == ("in_flight", "w2", 1, "000009")


async def test_expired_entries_are_marked_and_leave_the_queue(queue: PgSafQueue, clock: ManualClock) -> None:
    """If an entry outlives its lifetime, then expire_due marks it expired and the next one becomes head."""
    await queue.enqueue(reversal(1))
    clock.advance(POLICY.reversal_lifetime_s - 1)
    await queue.enqueue(reversal(2))
    assert await queue.expire_due("visa", holder="w1") == []
    clock.advance(1)
    [expired] = await queue.expire_due("visa", holder="w1")
    assert expired.key == reversal(1).key and expired.state is SafState.EXPIRED
    head = await queue.claim_next("visa", holder="w1", lease_s=LEASE_S)
    assert head is not None and head.key == reversal(2).key


async def test_depth_counts_undelivered_entries_and_oldest_age(queue: PgSafQueue, clock: ManualClock) -> None:
    """If two entries wait, queued 30 s apart, then depth is 2 and the oldest age 30 s."""
    await queue.enqueue(reversal(1))
    clock.advance(30)
    await queue.enqueue(reversal(2))
    depth = await queue.depth("visa")
    assert (depth.count, depth.oldest_age_s) == (2, 30.0)
    empty = await queue.depth("cups")
    assert (empty.count, empty.oldest_age_s) == (0, 0.0)


async def test_retry_makes_a_backed_off_entry_due_now(queue: PgSafQueue) -> None:
    """If an operator retries a backed-off entry, then it is claimable at once."""
    await queue.enqueue(reversal(1))
    head = await queue.claim_next("visa", holder="w1", lease_s=LEASE_S)
    sent = head.message.with_fields({11: "000001", 7: "1123193500"})
    await queue.back_off(head.entry_id, holder="w1", sent=sent, response_code=None, retry_after_s=60)
    [retried] = await queue.retry(entry_ids=[head.entry_id])
    assert retried.entry_id == head.entry_id
    assert await queue.claim_next("visa", holder="w1", lease_s=LEASE_S) is not None


async def test_retry_brings_expired_entries_back_only_when_asked(
    queue: PgSafQueue, clock: ManualClock
) -> None:
    """If an entry expired, then a plain retry leaves it, and retry with expired re-queues it for a new lifetime."""
    await queue.enqueue(reversal(1))
    clock.advance(POLICY.reversal_lifetime_s)
    await queue.expire_due("visa", holder="w1")
    assert await queue.retry(network="visa") == []
    [back] = await queue.retry(network="visa", include_expired=True)
    assert back.state is SafState.QUEUED
    assert (back.expires_at - clock.now()).total_seconds() == POLICY.reversal_lifetime_s
    assert await queue.claim_next("visa", holder="w1", lease_s=LEASE_S) is not None


async def test_purge_needs_a_reason_and_takes_entries_out_for_good(queue: PgSafQueue, db: Database) -> None:
    """If an operator purges an entry with a reason, then it is never claimed again and the reason is kept."""
    await queue.enqueue(reversal(1))
    with pytest.raises(SafError):
        await queue.purge(entry_ids=[1], reason="  ")
    with structlog.testing.capture_logs() as logs:
        [purged] = await queue.purge(network="visa", reason="settled by phone")
    assert purged.state is SafState.PURGED and purged.purge_reason == "settled by phone"
    assert await queue.claim_next("visa", holder="w1", lease_s=LEASE_S) is None
    [line] = [e for e in logs if e["event"] == "saf_purged"]
    assert line["reason"] == "settled by phone" and line["pan"] == PAN[:6] + "******" + PAN[-4:]
    assert PAN not in repr(logs)
    assert await db.fetchval("SELECT purge_reason FROM saf_queue") == "settled by phone"


async def test_acknowledgement_after_purge_does_not_revive_the_entry(queue: PgSafQueue) -> None:
    """If an entry in flight is purged and then acknowledged, then it stays purged."""
    await queue.enqueue(reversal(1))
    head = await queue.claim_next("visa", holder="w1", lease_s=LEASE_S)
    await queue.purge(entry_ids=[head.entry_id], reason="operator")
    sent = head.message.with_fields({11: "000001", 7: "1123193500"})
    assert await queue.acknowledge(head.entry_id, sent=sent, response_code="00") is False
    [row] = await queue.list_entries(states=list(SafState))
    assert row.state is SafState.PURGED


async def test_entry_whose_pan_does_not_decrypt_is_set_aside_not_left_at_the_head(
    queue: PgSafQueue, db: Database
) -> None:
    """If the head's PAN no longer decrypts (the vault's key changed, the row was altered), then it is
    set aside as expired with an error naming it (masked PAN only), the entries behind it are delivered,
    and once the PAN decrypts again an operator's retry of expired entries brings it back."""
    await queue.enqueue(reversal(1))
    await queue.enqueue(reversal(2))
    key = reversal(1).key
    good = await db.fetchval("SELECT pan_encrypted FROM saf_queue WHERE idempotency_key = $1", key)
    await db.execute(
        "UPDATE saf_queue SET pan_encrypted = $2 WHERE idempotency_key = $1", key, b"\x00" * len(good)
    )
    with structlog.testing.capture_logs() as logs:
        claimed = await queue.claim_next("visa", holder="w1", lease_s=LEASE_S)
    assert claimed is not None and claimed.key == reversal(2).key
    assert await db.fetchval("SELECT state FROM saf_queue WHERE idempotency_key = $1", key) == "expired"
    [line] = [e for e in logs if e["event"] == "saf_entry_unreadable"]
    assert (line["log_level"], line["idempotency_key"], line["money_at_risk"]) == ("error", key, True)
    assert line["pan"] == PAN[:6] + "*" * (len(PAN) - 10) + PAN[-4:] and PAN not in repr(logs)
    sent = claimed.message.with_fields({11: "000002", 7: "1123193500"})
    assert await queue.acknowledge(claimed.entry_id, sent=sent, response_code="00")
    await db.execute("UPDATE saf_queue SET pan_encrypted = $2 WHERE idempotency_key = $1", key, good)
    [back] = await queue.retry(network="visa", include_expired=True)
    again = await queue.claim_next("visa", holder="w1", lease_s=LEASE_S)
    assert back.key == key and again is not None and again.message == reversal(1).message


async def test_prune_deletes_old_acknowledged_and_purged_entries_and_keeps_expired_ones(
    queue: PgSafQueue, clock: ManualClock, db: Database
) -> None:
    """If entries finished long enough ago (one acknowledged, one purged, one expired undelivered), then
    the prune deletes the acknowledged and the purged ones, never the expired one (money at risk) nor
    one still queued, nor any that finished after the cut-off."""
    for n in range(1, 5):
        await queue.enqueue(reversal(n))
    head = await queue.claim_next("visa", holder="w1", lease_s=LEASE_S)
    sent = head.message.with_fields({11: "000001", 7: "1123193500"})
    assert await queue.acknowledge(head.entry_id, sent=sent, response_code="00")
    await queue.purge(entry_ids=[2], reason="settled by phone")
    await db.execute(
        "UPDATE saf_queue SET state = 'expired', finished_at = $1 WHERE entry_id = 3", clock.now()
    )
    cut_off = clock.now()
    assert await queue.prune_finished(cut_off) == 0  # finished at the cut-off, not before it
    clock.advance(1)
    assert await queue.prune_finished(clock.now(), limit=1) == 1
    assert await queue.prune_finished(clock.now()) == 1
    rows = await db.fetch("SELECT entry_id, state FROM saf_queue ORDER BY entry_id")
    assert [(r["entry_id"], r["state"]) for r in rows] == [(3, "expired"), (4, "queued")]
    assert await queue.prune_finished(clock.now()) == 0
