"""The store-and-forward worker against a fake network on a real TCP socket (Visa dialect, real codec) and
the real queue: first attempt and repeats, acknowledgement, backoff, expiry, order, restarts, two workers
on one database, metrics, and no card data in logs."""

from __future__ import annotations

import random

import pytest
import structlog
import trio
import trio.lowlevel
from prometheus_client import CollectorRegistry, generate_latest

from switch.adapters.postgres.db import Database
from switch.adapters.postgres.saf import PgSafQueue
from switch.adapters.saf_worker import SafMetrics, SafWorker, SafWorkerSettings
from switch.domain.pan_vault import PanVault
from switch.domain.saf import SafBackoff, SafPolicy, SafRecord, SafState
from switch.iso.message import Message
from switch.ports import Network, NetworkExchange, StoreAndForward
from tests.integration.saf.conftest import POLICY, OpenDatabase
from tests.integration.saf.support import (
    PAN,
    PIN_BLOCK,
    TRACK2,
    DownNetwork,
    FakeNetworkServer,
    ManualClock,
    TcpNetwork,
    UtcClock,
    advice,
    answer_all,
    answer_none,
    reversal,
)

# Where the fake network stays silent, the worker waits only 50 ms for an answer; where it answers, it gets
# seconds, so a busy machine cannot turn an answer into a timeout. The queue's time is the hand-stepped
# clock, so backoff is checked exactly without waiting for it.
SILENT_TIMEOUT_S = 0.05
ANSWERED_TIMEOUT_S = 5.0
FAST = SafWorkerSettings(
    request_timeout_s=SILENT_TIMEOUT_S, lease_margin_s=30, poll_interval_s=0.05, error_pause_s=0.05
)
WAIT_S = 5.0  # bound on waits for something that normally takes milliseconds


def worker(
    queue: PgSafQueue,
    *networks: Network,
    metrics: SafMetrics | None = None,
    holder: str = "w1",
    timeout_s: float = ANSWERED_TIMEOUT_S,
) -> SafWorker:
    settings = SafWorkerSettings(request_timeout_s=timeout_s, poll_interval_s=0.05, error_pause_s=0.05)
    return SafWorker(queue, list(networks), policy=POLICY, settings=settings, metrics=metrics, holder=holder)


async def rows(db: Database) -> list[tuple[str, int, str | None]]:
    return [
        tuple(r)
        for r in await db.fetch("SELECT state, attempts, last_response_code FROM saf_queue ORDER BY entry_id")
    ]


async def test_first_attempt_is_0420_and_repeats_are_0421_with_its_stan_and_time(
    queue: PgSafQueue, server: FakeNetworkServer, link: TcpNetwork, clock: ManualClock
) -> None:
    """If the network does not answer, then the first attempt is 0420 and each repeat 0421 with its 11 and 7."""
    server.answer = answer_none
    silent = worker(queue, link, timeout_s=SILENT_TIMEOUT_S)
    await silent.enqueue(reversal(1))
    for _ in range(3):
        await silent.deliver_due(link)
        clock.advance(60)
    mtis = [m.mti for m in server.messages]
    assert mtis == ["0420", "0421", "0421"]
    identities = {(m.stan, m.transmission_datetime) for m in server.messages}
    assert len(identities) == 1 and None not in next(iter(identities))
    first, repeat = server.messages[0], server.messages[1]
    assert repeat.with_fields(mti="0420") == first  # nothing else changes between attempts


async def test_acknowledgement_stops_the_repeats(
    queue: PgSafQueue, server: FakeNetworkServer, link: TcpNetwork, clock: ManualClock, db: Database
) -> None:
    """If the network answers the repeat 0430 (even with 05), then the entry is acknowledged and not sent again."""
    server.answer = answer_none
    silent = worker(queue, link, timeout_s=SILENT_TIMEOUT_S)
    await silent.enqueue(reversal(1))
    await silent.deliver_due(link)
    server.answer = answer_all("05")
    saf = worker(queue, link)
    clock.advance(10)
    assert await saf.deliver_due(link) is None
    clock.advance(3600)
    await saf.deliver_due(link)
    assert [m.mti for m in server.messages] == ["0420", "0421"]
    assert await rows(db) == [("acknowledged", 2, "05")]


async def test_an_inoperative_answer_is_repeated_until_applied(
    queue: PgSafQueue, server: FakeNetworkServer, link: TcpNetwork, clock: ManualClock, db: Database
) -> None:
    """If the network answers 0430 with 91 (it applied nothing), then the entry stays queued and is repeated."""
    server.answer = answer_all("91")
    saf = worker(queue, link)
    await saf.enqueue(reversal(1))
    await saf.deliver_due(link)
    assert await rows(db) == [("queued", 1, "91")]
    server.answer = answer_all("00")
    clock.advance(3600)
    await saf.deliver_due(link)
    assert [m.mti for m in server.messages] == ["0420", "0421"]
    assert await rows(db) == [("acknowledged", 2, "00")]


async def test_backoff_follows_the_schedule(
    queue: PgSafQueue, server: FakeNetworkServer, link: TcpNetwork, clock: ManualClock
) -> None:
    """If attempts go unanswered, then the next ones are due 10 s, 20 s, 40 s, 60 s (cap) later, not earlier."""
    server.answer = answer_none
    saf = worker(queue, link, timeout_s=SILENT_TIMEOUT_S)
    await saf.enqueue(reversal(1))
    waits = []
    for expected in (10.0, 20.0, 40.0, 60.0, 60.0):
        count = len(server.messages)
        waits.append(await saf.deliver_due(link))
        assert len(server.messages) == count + 1
        clock.advance(expected - 0.001)
        assert await saf.deliver_due(link) is not None
        assert len(server.messages) == count + 1  # not yet due: nothing sent
        clock.advance(0.001)
    assert waits == [10.0, 20.0, 40.0, 60.0, 60.0]


async def test_jittered_backoff_with_a_seed_is_reproducible(
    queue: PgSafQueue, server: FakeNetworkServer, link: TcpNetwork
) -> None:
    """If the worker's RNG is seeded, then the first retry delay is the one the policy gives for that seed."""
    server.answer = answer_none
    policy = SafPolicy(backoff=SafBackoff(initial_s=10, factor=2, max_s=60, jitter=0.5))
    saf = SafWorker(queue, [link], policy=policy, settings=FAST, rng=random.Random(42))
    await saf.enqueue(reversal(1))
    wait = await saf.deliver_due(link)
    assert wait == pytest.approx(policy.backoff.delay_s(1, random.Random(42)), abs=1e-6)  # timestamps: us
    assert wait is not None and 5.0 <= wait < 10.0


async def test_expired_reversal_is_marked_and_logged_loudly_without_card_data(
    queue: PgSafQueue, clock: ManualClock, db: Database
) -> None:
    """If a reversal stays undelivered past its expiry, then it is expired, logged as an error and counted."""
    down = DownNetwork("visa")
    metrics = SafMetrics.create(CollectorRegistry())
    saf = worker(queue, down, metrics=metrics)
    await saf.enqueue(reversal(1, with_secrets=True))
    clock.advance(POLICY.reversal_lifetime_s)
    with structlog.testing.capture_logs() as logs:
        assert await saf.deliver_due(down) is None
    assert await rows(db) == [("expired", 0, None)]
    [line] = [e for e in logs if e["event"] == "saf_expired"]
    assert line["log_level"] == "error" and line["money_at_risk"] is True
    assert line["pan"] == PAN[:6] + "******" + PAN[-4:] and line["amount_minor"] == 1001
    for secret in (PAN, TRACK2, PIN_BLOCK):
        assert secret not in repr(logs)
    assert metrics.expired_total.labels("visa", "reversal")._value.get() == 1


async def test_entries_of_a_network_are_delivered_in_queue_order(
    queue: PgSafQueue, server: FakeNetworkServer, link: TcpNetwork, clock: ManualClock
) -> None:
    """If a reversal, an advice and a reversal are queued, then they reach the network in that order, each
    only after the one before it was acknowledged."""
    server.answer = answer_none
    silent = worker(queue, link, timeout_s=SILENT_TIMEOUT_S)
    entries = [reversal(1), advice(2), reversal(3)]
    for entry in entries:
        await silent.enqueue(entry)
    await silent.deliver_due(link)
    assert [m.mti for m in server.messages] == ["0420"]  # the head holds back the others
    server.answer = answer_all()
    clock.advance(10)
    await worker(queue, link).deliver_due(link)
    assert [(m.mti, m.rrn) for m in server.messages] == [
        ("0420", entries[0].message.rrn),
        ("0421", entries[0].message.rrn),
        ("0220", entries[1].message.rrn),
        ("0420", entries[2].message.rrn),
    ]


async def test_link_down_sends_nothing_and_loses_nothing(queue: PgSafQueue, db: Database) -> None:
    """If the link is down, then no attempt is made or counted and the entry waits."""
    down = DownNetwork("visa")
    saf = worker(queue, down)
    await saf.enqueue(reversal(1))
    assert await saf.deliver_due(down) is None
    assert down.requests == 0
    assert await rows(db) == [("queued", 0, None)]


async def test_restarted_worker_repeats_what_the_old_one_left(
    queue: PgSafQueue,
    server: FakeNetworkServer,
    link: TcpNetwork,
    clock: ManualClock,
    vault: PanVault,
    open_database: OpenDatabase,
    nursery: trio.Nursery,
) -> None:
    """If switchd restarts after an unanswered 0420, then the new process sends the 0421 with the same STAN."""
    server.answer = answer_none
    before = worker(queue, link, holder="before", timeout_s=SILENT_TIMEOUT_S)
    await before.enqueue(reversal(1))
    await before.deliver_due(link)
    # A new process: its own database pool, its own queue object, worker and link connection.
    database = await open_database()
    new_queue = PgSafQueue(database, vault, clock=clock, policy=POLICY)
    new_link = TcpNetwork("visa", server.port)
    await nursery.start(new_link.run)
    server.answer = answer_all()
    clock.advance(10)
    await worker(new_queue, new_link, holder="after").deliver_due(new_link)
    first, repeat = server.messages
    assert (first.mti, repeat.mti) == ("0420", "0421") and repeat.stan == first.stan
    assert await rows(database) == [("acknowledged", 2, "00")]


async def test_worker_stopped_mid_send_gives_its_entry_back_at_once(
    queue: PgSafQueue, server: FakeNetworkServer, link: TcpNetwork, clock: ManualClock, db: Database
) -> None:
    """If a worker is cancelled while waiting for the answer, then another worker can take the entry at once."""
    server.answer = answer_none
    slow = SafWorker(
        queue, [link], policy=POLICY, settings=SafWorkerSettings(request_timeout_s=30), holder="stopping"
    )
    await queue.enqueue(reversal(1))
    with trio.move_on_after(WAIT_S):
        async with trio.open_nursery() as inner:
            inner.start_soon(slow.run)
            while not server.messages:
                await server.arrived.wait()
            inner.cancel_scope.cancel()
    assert await db.fetchval("SELECT leased_by FROM saf_queue") is None
    server.answer = answer_all()
    await worker(queue, link, holder="next").deliver_due(link)
    assert await rows(db) == [("acknowledged", 1, "00")]


async def test_two_workers_on_one_database_never_send_the_same_entry(
    vault: PanVault, server: FakeNetworkServer, open_database: OpenDatabase, nursery: trio.Nursery
) -> None:
    """If two switchd processes deliver the same queue at once, then each entry is sent once, in order,
    and never two at a time."""
    server.answer_delay_s = 0.002
    clock = UtcClock()
    processes = []
    for name in ("a", "b"):
        queue = PgSafQueue(await open_database(), vault, clock=clock, policy=POLICY)
        link = TcpNetwork("visa", server.port)
        await nursery.start(link.run)
        processes.append((worker(queue, link, holder=name), link, queue))
    entries = [reversal(n) for n in range(1, 31)]
    for entry in entries:
        await processes[0][2].enqueue(entry)

    async def drain(saf: SafWorker, link: TcpNetwork, queue: PgSafQueue) -> None:
        while (await queue.depth("visa")).count:
            await saf.deliver_due(link)
            await trio.lowlevel.checkpoint()

    with trio.fail_after(30):
        async with trio.open_nursery() as both:
            for process in processes:
                both.start_soon(drain, *process)
    assert [m.rrn for m in server.messages] == [e.message.rrn for e in entries]
    assert server.outstanding_max == 1
    assert all(link.requests > 0 for _, link, _ in processes)  # both took part


async def test_running_worker_delivers_at_once_when_woken(
    queue: PgSafQueue, server: FakeNetworkServer, link: TcpNetwork, nursery: trio.Nursery
) -> None:
    """If an entry is queued through the worker, then it is delivered without waiting for the next poll."""
    saf = SafWorker(queue, [link], policy=POLICY, settings=SafWorkerSettings(poll_interval_s=3600))
    port: StoreAndForward = saf  # what the pipeline is handed (checked by mypy)
    await nursery.start(saf.run)
    await trio.sleep(0.05)  # let the first (empty) pass finish and go to sleep
    with trio.fail_after(WAIT_S):
        await port.enqueue(reversal(1))
        while not server.messages:
            await server.arrived.wait()
    assert server.messages[0].mti == "0420"


async def test_running_worker_finds_entries_of_other_processes_by_polling(
    queue: PgSafQueue, server: FakeNetworkServer, link: TcpNetwork, nursery: trio.Nursery, db: Database
) -> None:
    """If another process queues an entry (no wake-up here), then the poll finds and delivers it."""
    saf = worker(queue, link)
    await nursery.start(saf.run)
    await queue.enqueue(reversal(1))  # straight into the database, as another switchd would
    with trio.fail_after(WAIT_S):
        # The outcome is a row another task writes: nothing to wait on but the database itself.
        while await db.fetchval("SELECT state FROM saf_queue") != SafState.ACKNOWLEDGED.value:  # noqa: ASYNC110
            await trio.sleep(0.02)


async def test_metrics_count_depth_age_retries_and_acknowledgements_without_card_data(
    queue: PgSafQueue, server: FakeNetworkServer, link: TcpNetwork, clock: ManualClock
) -> None:
    """If an entry waits 30 s, is repeated once and acknowledged, then the metrics say so and hold no PAN."""
    registry = CollectorRegistry()
    metrics = SafMetrics.create(registry)
    silent = worker(queue, link, metrics=metrics, timeout_s=SILENT_TIMEOUT_S)
    server.answer = answer_none
    await silent.enqueue(reversal(1, with_secrets=True))
    await silent.deliver_due(link)
    clock.advance(30)
    await silent.refresh_metrics(link)
    assert registry.get_sample_value("switch_saf_depth", {"network": "visa"}) == 1
    assert registry.get_sample_value("switch_saf_oldest_age_seconds", {"network": "visa"}) == 30
    server.answer = answer_all()
    saf = worker(queue, link, metrics=metrics)
    await saf.deliver_due(link)
    await saf.refresh_metrics(link)
    labels = {"network": "visa", "kind": "reversal"}
    assert registry.get_sample_value("switch_saf_retries_total", labels) == 1
    assert registry.get_sample_value("switch_saf_acknowledged_total", labels) == 1
    assert registry.get_sample_value("switch_saf_depth", {"network": "visa"}) == 0
    exported = generate_latest(registry).decode()
    assert PAN not in exported and PAN[-4:] not in exported


async def test_no_card_data_in_any_log_line_of_a_delivery(
    queue: PgSafQueue, server: FakeNetworkServer, link: TcpNetwork, clock: ManualClock
) -> None:
    """If an entry with PAN, track and PIN block is queued, timed out, repeated and acknowledged, then no log
    event (before any masking) holds the PAN, the track or the PIN block."""
    server.answer = answer_none
    silent = worker(queue, link, timeout_s=SILENT_TIMEOUT_S)
    with structlog.testing.capture_logs() as logs:
        await silent.enqueue(reversal(1, with_secrets=True))
        await silent.deliver_due(link)
        server.answer = answer_all()
        clock.advance(10)
        await worker(queue, link).deliver_due(link)
    events = [e["event"] for e in logs]
    assert {"saf_enqueued", "saf_not_acknowledged", "saf_acknowledged"} <= set(events)
    for secret in (PAN, TRACK2, PIN_BLOCK):
        assert secret not in repr(logs)
    # The network itself did get the PAN (field 2), and never the track or PIN block.
    assert all(m.pan == PAN and 35 not in m and 52 not in m for m in server.messages)


async def test_answer_with_another_stan_is_no_acknowledgement(
    queue: PgSafQueue, server: FakeNetworkServer, link: TcpNetwork, db: Database
) -> None:
    """If the link hands back a 0430 of another STAN, then the entry is backed off, not acknowledged."""
    lax = _WrongStan(link)
    saf = worker(queue, lax)
    await saf.enqueue(reversal(1))
    await saf.deliver_due(lax)
    assert await rows(db) == [("queued", 1, "00")]
    assert [m.mti for m in server.messages] == ["0420"]


class _WrongStan:
    """A link that matches responses too loosely: the 0430 it returns carries another STAN."""

    def __init__(self, link: TcpNetwork) -> None:
        self._link = link
        self.name = link.name

    @property
    def up(self) -> bool:
        return self._link.up

    async def request(self, message: Message, *, timeout_s: float) -> NetworkExchange:
        exchange = await self._link.request(message, timeout_s=timeout_s)
        assert exchange.response is not None
        return NetworkExchange(exchange.sent, exchange.response.with_fields({11: "999999"}))


async def test_failed_pass_is_logged_and_the_worker_carries_on(
    vault: PanVault, server: FakeNetworkServer, link: TcpNetwork, nursery: trio.Nursery, db: Database
) -> None:
    """If a pass fails (the database went away for a moment), then the error type is logged and the entry is
    still delivered on a later pass."""
    flaky = _FailsOnce(db, vault, clock=UtcClock(), policy=POLICY)
    saf = SafWorker(
        flaky, [link], policy=POLICY, settings=SafWorkerSettings(poll_interval_s=0.05, error_pause_s=0.05)
    )
    with structlog.testing.capture_logs() as logs:
        await nursery.start(saf.run)
        await saf.enqueue(reversal(1))
        with trio.fail_after(WAIT_S):
            # The outcome is a row another task writes: nothing to wait on but the database itself.
            while await db.fetchval("SELECT state FROM saf_queue") != SafState.ACKNOWLEDGED.value:  # noqa: ASYNC110
                await trio.sleep(0.02)
    [failure] = [e for e in logs if e["event"] == "saf_worker_pass_failed"]
    assert failure["error"] == "ConnectionResetError" and failure["log_level"] == "error"


class _FailsOnce(PgSafQueue):
    """The real queue, except that its first expiry query fails as a dropped connection would."""

    failed = False

    async def expire_due(self, network: str, *, holder: str) -> list[SafRecord]:
        if not self.failed:
            self.failed = True
            raise ConnectionResetError("connection lost")
        return await super().expire_due(network, holder=holder)
