"""The edge around the pipeline: a failing dependency is a 96 for that request, counted and logged."""

from __future__ import annotations

import socket
from datetime import UTC, date, datetime

from hsm.client import HsmClient, TcpTransport
from switch.adapters.hsm import ClientHsm
from switch.domain.business_day import business_day
from switch.domain.journal import JournalEntry
from switch.metrics import Metrics
from switch.terminal_service import TerminalService
from tests.unit.pipeline.world import World


class ListJournal:
    def __init__(self) -> None:
        self.entries: list[JournalEntry] = []

    def record(self, entry: JournalEntry) -> None:
        self.entries.append(entry)


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_hsm_answers_96_and_counts_it():
    """If the HSM cannot be reached, then the purchase is answered 96, journaled, and counted as an HSM error."""
    world = World()
    await world.fund()
    down = ClientHsm(
        HsmClient(TcpTransport("127.0.0.1", unused_port(), timeout_s=0.5, connect_timeout_s=0.5))
    )
    world.authorizer.hsm = down
    metrics = Metrics.create(version="test", node_name="n1")
    journal = ListJournal()
    service = TerminalService(
        authorizer=world.authorizer, journal=journal, metrics=metrics, clock=world.clock, node_name="n1"
    )
    response = await service.handle(world.request(amount=100))
    assert response is not None and response[39] == "96"
    assert await world.available() == 100_000
    assert metrics.system_errors_total.labels("hsm")._value.get() == 1
    assert [e.response_code for e in journal.entries] == ["96"]


async def test_journal_entry_is_masked_and_complete():
    """If a purchase is answered, then its journal entry has the masked PAN and no track or PIN block."""
    world = World()
    await world.fund()
    journal = ListJournal()
    service = TerminalService(
        authorizer=world.authorizer,
        journal=journal,
        metrics=Metrics.create(version="test", node_name="n1"),
        clock=world.clock,
        node_name="n1",
    )
    response = await service.handle(world.request(amount=250))
    assert response is not None and response[39] == "00"
    (entry,) = journal.entries
    assert entry.pan_masked == "990001******0019"
    assert entry.amount == 250 and entry.response_code == "00" and entry.auth_code == response[38]
    assert {"35", "52"}.isdisjoint(entry.request)
    assert "9900010000000019" not in str(entry)


async def test_journal_business_date_is_the_banks_date():
    """If the bank is in Tehran (UTC+3:30) and a purchase is answered at 20:45 UTC, then the journal's
    business date is the next day, Tehran's; in UTC it is the same day."""
    for zone, expected in (("Asia/Tehran", date(2026, 11, 24)), ("UTC", date(2026, 11, 23))):
        world = World()
        await world.fund()
        world.clock.current = datetime(2026, 11, 23, 20, 45, tzinfo=UTC)
        journal = ListJournal()
        service = TerminalService(
            authorizer=world.authorizer,
            journal=journal,
            metrics=Metrics.create(version="test", node_name="n1"),
            clock=world.clock,
            node_name="n1",
            business=business_day(zone),
        )
        response = await service.handle(world.request(amount=250))
        assert response is not None and response[39] == "00"
        assert [e.business_date for e in journal.entries] == [expected]
