"""The store-and-forward worker: delivers queued reversals and advices to each network, in queue order,
until the network acknowledges them or they expire (docs/networks.md "Timeouts and store-and-forward").

One task per network. While the network's link is up, it takes the oldest undelivered entry from the
queue (a lease, so several switchd processes sharing the database never send the same entry at once),
sends it through the link (`Network.request`): the first attempt as 0420/0220, every repeat as 0421/0221
with the first attempt's STAN and field 7 (switch.domain.saf). A 0430/0230 answer acknowledges it, whatever
its response code except the try-again ones (91, 96: the network applied nothing); a timeout, an unmatched
or a try-again answer puts it back with backoff, and nothing behind it goes before it. An entry past its expiry is marked expired and logged as an error: an undelivered reversal is
money at risk (the network may keep an approval the cardholder was told had failed).

It looks again when an entry becomes due, when `wake()` is called (the app calls it when a link comes up;
`enqueue` here calls it itself), and at least every `poll_interval_s`, which is how it notices entries
queued by another switchd and a link that came up without telling it.

The worker is itself a `StoreAndForward` (its `enqueue` queues, then wakes the network's task), so the app
can hand it to the pipeline. It reaches the queue and the links only through `switch.ports`.
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from switch.domain.saf import SafPolicy, SafRecord, is_acknowledgement
from switch.logs import get_logger
from switch.ports import Network, NetworkExchange, NetworkUnavailable, SafEntry, SafQueue

__all__ = ["SafMetrics", "SafWorker", "SafWorkerSettings"]

log = get_logger("saf")
# Bookkeeping after a cancelled send must finish, but not hang a shutdown on a dead database.
_CLEANUP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class SafMetrics:
    """The queue's metrics. Depth and oldest age are the database's view (all switchd processes)."""

    depth: Gauge
    oldest_age_seconds: Gauge
    retries_total: Counter
    acknowledged_total: Counter
    expired_total: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SafMetrics:
        return cls(
            depth=Gauge(
                "switch_saf_depth", "Undelivered store-and-forward entries", ["network"], registry=registry
            ),
            oldest_age_seconds=Gauge(
                "switch_saf_oldest_age_seconds",
                "Age of the oldest undelivered store-and-forward entry (0 when none)",
                ["network"],
                registry=registry,
            ),
            retries_total=Counter(
                "switch_saf_retries",
                "Repeats sent (0421/0221): attempts after the first",
                ["network", "kind"],
                registry=registry,
            ),
            acknowledged_total=Counter(
                "switch_saf_acknowledged",
                "Entries the network acknowledged (0430/0230)",
                ["network", "kind"],
                registry=registry,
            ),
            expired_total=Counter(
                "switch_saf_expired",
                "Entries that expired undelivered (an expired reversal is money at risk)",
                ["network", "kind"],
                registry=registry,
            ),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class SafWorkerSettings:
    request_timeout_s: float = 10.0  # one attempt waits this long for the 0430/0230
    # The lease outlives the request by this much, so an entry is never taken from a worker still sending.
    lease_margin_s: float = 30.0
    poll_interval_s: float = 1.0  # look at the queue at least this often (other processes' entries)
    error_pause_s: float = 5.0  # after a failed pass (database down), wait this long before the next


class _Outcome(Enum):
    ACKNOWLEDGED = "acknowledged"
    NOT_ACKNOWLEDGED = "not_acknowledged"
    UNAVAILABLE = "unavailable"


class SafWorker:
    """Delivers the queue's entries to `networks`. Run `run()` in a nursery; `enqueue` from anywhere."""

    def __init__(
        self,
        queue: SafQueue,
        networks: Sequence[Network],
        *,
        policy: SafPolicy | None = None,
        settings: SafWorkerSettings | None = None,
        metrics: SafMetrics | None = None,
        holder: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.queue = queue
        self.policy = policy if policy is not None else SafPolicy()
        self.settings = settings if settings is not None else SafWorkerSettings()
        self.metrics = metrics
        # Unique per process run: a restarted switchd must not inherit the leases of the one before.
        self.holder = (
            holder if holder is not None else f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(4)}"
        )
        self._rng = rng if rng is not None else random.Random()
        self._networks = {n.name: n for n in networks}
        if len(self._networks) != len(networks):
            raise ValueError("each network is served once")
        self._wakeups = {name: trio.Event() for name in self._networks}

    @property
    def lease_s(self) -> float:
        return self.settings.request_timeout_s + self.settings.lease_margin_s

    # -- StoreAndForward -----------------------------------------------------------------------------

    async def enqueue(self, entry: SafEntry) -> bool:
        """Queue durably (see `switch.ports.StoreAndForward`), then start delivering it at once."""
        queued = await self.queue.enqueue(entry)
        if queued:
            self.wake(entry.network)
        return queued

    def wake(self, network: str | None = None) -> None:
        """Look at the queue of `network` (all networks if None) now rather than at the next poll."""
        for name, event in self._wakeups.items():
            if network is None or name == network:
                event.set()

    # -- the loop --------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve every network until cancelled."""
        async with trio.open_nursery() as nursery:
            for network in self._networks.values():
                nursery.start_soon(self._serve, network)
            task_status.started()

    async def _serve(self, network: Network) -> None:
        name = network.name
        log.info("saf_worker_started", network=name, holder=self.holder)
        while True:
            # A fresh event before the pass: a wake-up during it is not lost.
            self._wakeups[name] = trio.Event()
            wait_s: float | None
            try:
                wait_s = await self.deliver_due(network)
                await self.refresh_metrics(network)
            except Exception as exc:
                # The type only: database errors may quote the statement's parameters.
                log.error("saf_worker_pass_failed", network=name, error=type(exc).__name__)
                wait_s = self.settings.error_pause_s
            timeout_s = (
                self.settings.poll_interval_s
                if wait_s is None
                else min(wait_s, self.settings.poll_interval_s)
            )
            # A floor, so a head that is due but was just taken by another worker cannot spin this loop.
            with trio.move_on_after(max(timeout_s, 0.005)):
                await self._wakeups[name].wait()

    async def deliver_due(self, network: Network) -> float | None:
        """One pass over the network's queue: expire what is past its expiry, then send due entries in
        order while they are acknowledged. Returns the seconds until the queue's head is due again, or
        None when there is nothing to do until woken (queue empty, or the link is down)."""
        name = network.name
        for record in await self.queue.expire_due(name, holder=self.holder):
            self._expired(record)
        while network.up:
            claimed = await self.queue.claim_next(name, holder=self.holder, lease_s=self.lease_s)
            if claimed is None:
                return await self.queue.next_due_in_s(name)
            outcome = await self._attempt(network, claimed)
            if outcome is _Outcome.UNAVAILABLE:
                return None
            if outcome is _Outcome.NOT_ACKNOWLEDGED:
                return await self.queue.next_due_in_s(name)
        return None

    async def refresh_metrics(self, network: Network) -> None:
        if self.metrics is None:
            return
        depth = await self.queue.depth(network.name)
        self.metrics.depth.labels(network.name).set(depth.count)
        self.metrics.oldest_age_seconds.labels(network.name).set(depth.oldest_age_s)

    # -- one attempt -----------------------------------------------------------------------------------

    async def _attempt(self, network: Network, record: SafRecord) -> _Outcome:
        message = record.next_message()
        repeat = message.mti != record.message.mti
        try:
            exchange = await network.request(message, timeout_s=self.settings.request_timeout_s)
        except NetworkUnavailable:
            await self._release(record)
            log.info("saf_link_unavailable", network=network.name, entry_id=record.entry_id)
            return _Outcome.UNAVAILABLE
        except BaseException:
            # Cancelled (shutdown) or a bug in the link: give the entry back now rather than after the
            # lease. It may have been sent; the next attempt then goes out again, which the network must
            # take idempotently.
            await self._release(record)
            raise
        # What the network answered is written even if a shutdown cancels this task now: a lost
        # acknowledgement would send the entry again after the restart. The database's statement timeout
        # bounds how long this can hold a shutdown up.
        with trio.CancelScope(shield=True):
            outcome = await self._record_outcome(network, record, exchange, repeat=repeat)
        return outcome

    async def _record_outcome(
        self, network: Network, record: SafRecord, exchange: NetworkExchange, *, repeat: bool
    ) -> _Outcome:
        if repeat and self.metrics is not None:
            self.metrics.retries_total.labels(network.name, record.kind).inc()
        response = exchange.response
        code = response.response_code if response is not None else None
        context = {
            "network": network.name,
            "kind": record.kind,
            "entry_id": record.entry_id,
            "idempotency_key": record.key,
            "mti": exchange.sent.mti,
            "stan": exchange.sent.stan,
            "attempt": record.attempts + 1,
        }
        if is_acknowledgement(exchange.sent, response):
            if await self.queue.acknowledge(record.entry_id, sent=exchange.sent, response_code=code):
                log.info("saf_acknowledged", response_code=code, **context)
                if self.metrics is not None:
                    self.metrics.acknowledged_total.labels(network.name, record.kind).inc()
            else:
                log.warning("saf_acknowledged_after_purge", response_code=code, **context)
            return _Outcome.ACKNOWLEDGED
        delay_s = self.policy.backoff.delay_s(record.attempts + 1, self._rng)
        await self.queue.back_off(
            record.entry_id, holder=self.holder, sent=exchange.sent, response_code=code, retry_after_s=delay_s
        )
        log.warning(
            "saf_not_acknowledged",
            reason="timeout" if response is None else "unmatched_response",
            response_mti=response.mti if response is not None else None,
            retry_in_s=round(delay_s, 3),
            **context,
        )
        return _Outcome.NOT_ACKNOWLEDGED

    async def _release(self, record: SafRecord) -> None:
        with trio.move_on_after(_CLEANUP_TIMEOUT_S) as scope:
            scope.shield = True
            await self.queue.release(record.entry_id, holder=self.holder)

    def _expired(self, record: SafRecord) -> None:
        log.error(
            "saf_expired",
            network=record.network,
            kind=record.kind,
            entry_id=record.entry_id,
            idempotency_key=record.key,
            pan=record.pan_masked,
            amount_minor=record.message.amount,
            currency=record.message.currency,
            attempts=record.attempts,
            last_response_code=record.last_response_code,
            created_at=record.created_at.isoformat(),
            money_at_risk=record.kind == "reversal",
        )
        if self.metrics is not None:
            self.metrics.expired_total.labels(record.network, record.kind).inc()
