"""The journal writer against PostgreSQL: batched, complete, masked."""

from __future__ import annotations

from datetime import date

import trio

from switch.adapters.postgres.journal import PgJournal
from switch.domain.journal import JournalEntry
from switch.iso.message import Message
from switch.terminal_service import masked_fields

PAN = "9900010000000019"


def entry(stan: str, request: Message) -> JournalEntry:
    return JournalEntry(
        business_date=date(2026, 11, 23),
        node_name="n1",
        terminal_id="POS00001",
        merchant_id="DEMOMERCHANT001",
        stan=stan,
        transmission="1123193500",
        mti="0200",
        processing_code="000000",
        transaction_type="purchase",
        rrn="612319000001",
        auth_code="123456",
        pan_masked="990001******0019",
        amount=1234,
        currency=840,
        result="approved",
        response_code="00",
        route="on-us",
        transfer_id=f"POS00001:1123193500:{stan}",
        latency_us=1500,
        request=masked_fields(request),
        response={"39": "00"},
    )


def test_masked_fields_drop_card_secrets():
    """If a request with PAN, track 2, PIN block and MAC is journaled, then only the masked PAN remains."""
    request = Message(
        "0200", {2: PAN, 35: f"{PAN}=30122011234567", 52: "0123456789ABCDEF", 64: "A1B2C3D4E5F60708", 41: "T"}
    )
    fields = masked_fields(request)
    assert fields["2"] == "990001******0019"
    assert {"35", "52", "64"}.isdisjoint(fields)
    assert PAN not in str(fields)


async def test_entries_are_written_in_batches(db):
    """If many entries are queued, then the writer stores all of them, with no clear PAN in the table."""
    journal = PgJournal(db, batch_size_max=50, flush_interval_s=0.01)
    request = Message("0200", {2: PAN, 3: "000000", 41: "POS00001"})
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        for i in range(120):
            journal.record(entry(f"{i:06d}", request))
        await journal.flush()
        nursery.cancel_scope.cancel()
    assert journal.written == 120
    assert await db.fetchval("SELECT count(*) FROM journal") == 120
    dump = await db.fetchval("SELECT string_agg(request::text || response::text, '') FROM journal")
    assert PAN not in dump
    rows = await journal.by_rrn("612319000001")
    assert len(rows) == 120


async def test_queued_entries_are_flushed_when_the_writer_stops(db):
    """If the writer is cancelled with entries queued, then it flushes them before it ends."""
    journal = PgJournal(db, batch_size_max=1000, flush_interval_s=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        journal.record(entry("000001", Message("0200", {3: "000000"})))
        nursery.cancel_scope.cancel()
    assert await db.fetchval("SELECT count(*) FROM journal") == 1
