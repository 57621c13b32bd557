"""The edge between the terminal listener and the pipeline: one request in, one response out, and around
it the canonical log line, the journal entry and the metrics.

A dependency that fails (HSM, database) turns into 96 for that request only, counted and logged by
exception type; the connection and every other request go on.
"""

from __future__ import annotations

import os
import time
from typing import Any

import structlog

from switch.domain.business_day import UTC_DAY, BusinessDay
from switch.domain.journal import JournalEntry
from switch.domain.results import TERMINAL_RESPONSE_CODES
from switch.iso.message import Message
from switch.logs import get_logger
from switch.masking import mask_pan
from switch.metrics import Metrics
from switch.pipeline.authorize import Answerer, Outcome
from switch.ports import Clock, HsmFailure, Journal

__all__ = ["TerminalService", "masked_fields"]

log = get_logger("txn")

# Never stored or logged: track data, PIN blocks, ICC data, MACs, key material (48 carries keys on a key
# exchange), the new PIN block of a PIN change.
_DROPPED_FIELDS = frozenset({35, 36, 45, 48, 52, 55, 64, 120, 128})


def masked_fields(message: Message | None) -> dict[str, str]:
    """A message's fields fit for the journal: PAN masked, sensitive fields dropped."""
    if message is None:
        return {}
    out: dict[str, str] = {"mti": message.mti}
    for number, value in message.items():
        if number in _DROPPED_FIELDS:
            continue
        out[str(number)] = mask_pan(value) if number == 2 else value
    return out


class TerminalService:
    def __init__(
        self,
        *,
        authorizer: Answerer,
        journal: Journal,
        metrics: Metrics,
        clock: Clock,
        node_name: str,
        business: BusinessDay = UTC_DAY,
    ) -> None:
        self.authorizer = authorizer
        self.business = business
        self.journal = journal
        self.metrics = metrics
        self.clock = clock
        self.node_name = node_name
        # Bound once, after logging is configured: the module's lazy proxy would rebuild its processor
        # chain on every call, and this line is written for every transaction.
        self._log = log.bind()
        # Metric children resolved once per label set (labels() takes a lock and a dict lookup each time).
        self._counted: dict[tuple[str, str, str], Any] = {}
        self._timed: dict[str, Any] = {}

    async def handle(self, request: Message) -> Message | None:
        started_ns = time.perf_counter_ns()
        trace_id = os.urandom(8).hex()
        structlog.contextvars.bind_contextvars(trace_id=trace_id)
        try:
            try:
                outcome = await self.authorizer.handle(request)
            except HsmFailure as exc:
                outcome = await self._failed(request, "hsm", exc)
            except Exception as exc:  # the database or a bug: answer 96, keep serving
                outcome = await self._failed(request, "database" if _is_db_error(exc) else "internal", exc)
            latency_us = (time.perf_counter_ns() - started_ns) // 1000
            self._account(request, outcome, latency_us)
            return outcome.response
        finally:
            structlog.contextvars.unbind_contextvars("trace_id")

    async def _failed(self, request: Message, dependency: str, exc: Exception) -> Outcome:
        self.metrics.system_errors_total.labels(dependency).inc()
        # Only the type: messages of driver errors can quote SQL parameters.
        log.error("request failed", dependency=dependency, error=type(exc).__name__)
        return await self.authorizer.system_failure(request)

    def _account(self, request: Message, outcome: Outcome, latency_us: int) -> None:
        if outcome.response is None:
            return
        code = outcome.response.get(39) or TERMINAL_RESPONSE_CODES.get(outcome.result, "")
        txn_type = outcome.transaction_type or "unknown"
        key = (txn_type, outcome.result.value, code)
        counter = self._counted.get(key)
        if counter is None:
            counter = self._counted[key] = self.metrics.transactions_total.labels(*key)
        counter.inc()
        histogram = self._timed.get(txn_type)
        if histogram is None:
            histogram = self._timed[txn_type] = self.metrics.transaction_latency.labels(txn_type)
        histogram.observe(latency_us / 1e6)
        self._log.info(
            "transaction",
            mti=request.mti,
            processing_code=request.get(3),
            stan=request.get(11),
            rrn=outcome.rrn,
            terminal=request.get(41),
            merchant=request.get(42),
            pan=outcome.pan_masked,
            amount=outcome.amount,
            currency=outcome.currency,
            type=txn_type,
            result=outcome.result.value,
            response_code=code,
            auth_code=outcome.auth_code,
            route=outcome.route,
            retransmission=outcome.retransmission,
            latency_ms=round(latency_us / 1000, 3),
        )
        if request.mti[:2] == "08" or outcome.retransmission:
            return
        now = self.clock.now()
        self.journal.record(
            JournalEntry(
                business_date=self.business.date_of(now),
                node_name=self.node_name,
                terminal_id=request.get(41) or "",
                merchant_id=request.get(42) or "",
                stan=request.get(11) or "",
                transmission=request.get(7) or "",
                mti=request.mti,
                processing_code=request.get(3) or "",
                transaction_type=txn_type,
                rrn=outcome.rrn,
                auth_code=outcome.auth_code,
                pan_masked=outcome.pan_masked,
                amount=outcome.amount,
                currency=outcome.currency,
                result=outcome.result.value,
                response_code=code,
                route=outcome.route,
                transfer_id=outcome.transfer_id,
                latency_us=latency_us,
                request=masked_fields(request),
                response=masked_fields(outcome.response),
            )
        )


def _is_db_error(exc: Exception) -> bool:
    module = type(exc).__module__
    return module.startswith("asyncpg") or isinstance(exc, (OSError, ConnectionError))
