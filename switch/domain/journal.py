"""One journal line: a request, its response (both masked) and the outcome, as settlement will read it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = ["JournalEntry"]


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalEntry:
    business_date: date
    node_name: str
    terminal_id: str
    merchant_id: str
    stan: str
    transmission: str
    mti: str
    processing_code: str
    transaction_type: str
    rrn: str
    auth_code: str
    pan_masked: str
    amount: int | None
    currency: int | None
    result: str
    response_code: str
    route: str
    transfer_id: str | None
    latency_us: int
    request: dict[str, str]  # masked fields, keyed by field number as text
    response: dict[str, str]
