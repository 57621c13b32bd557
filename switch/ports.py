"""The interfaces the pipeline needs from the outside world (typing.Protocol, implemented by adapters).

The pipeline imports only these, the domain and the iso message types; `switch.app` wires concrete
adapters in (PostgreSQL ledger and card directory, in-process or TCP HSM, system clock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from switch.domain.journal import JournalEntry
from switch.domain.ledger_types import AccountBalance, LedgerAccount, Transfer, TransferResult
from switch.domain.model import Card, ListEntry, Merchant, Pan, Terminal

__all__ = ["CardDirectory", "Clock", "Hsm", "HsmFailure", "Journal", "Ledger", "WorkingKey"]


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC datetime."""
        ...


class Ledger(Protocol):
    """Two-phase, double-entry, idempotent ledger. Calls from concurrent tasks are batched (group commit)."""

    async def create_accounts(self, accounts: Sequence[LedgerAccount]) -> None:
        """Create accounts that do not exist yet (existing ids are left as they are)."""
        ...

    async def create_transfers(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        """Apply transfers in order, each atomically; one result per transfer, same order.

        A failed transfer changes nothing and does not stop the following ones.
        """
        ...

    async def lookup_transfers(self, transfer_ids: Sequence[str]) -> dict[str, Transfer]:
        """The stored transfers among `transfer_ids` (for answering an idempotent retry)."""
        ...

    async def balances(self, account_ids: Sequence[int]) -> dict[int, AccountBalance]:
        """Current balances of the accounts that exist among `account_ids`."""
        ...

    async def expire_pending(self, now: datetime, limit: int = 1000) -> int:
        """Void pending transfers whose `expires_at` has passed; returns how many were released."""
        ...


class CardDirectory(Protocol):
    """Cards, terminals, merchants and lists, served from memory caches kept fresh from the database.

    Reads are cheap (memory); writes go to the database, which notifies every switchd process
    (LISTEN/NOTIFY) so their caches drop the changed entries.
    """

    async def card_by_pan(self, pan: Pan) -> Card | None:
        """The card with this PAN (looked up by keyed hash), or None."""
        ...

    async def terminal(self, terminal_id: str) -> Terminal | None: ...

    async def merchant(self, merchant_id: str) -> Merchant | None: ...

    async def list_entry(self, pan: Pan, terminal_id: str, merchant_id: str) -> ListEntry | None:
        """The hot- or black-list entry that bars this transaction (PAN, BIN range, terminal, merchant)."""
        ...

    async def record_pin_result(self, card_id: int, *, ok: bool) -> int:
        """Persist a PIN check: a failure increments the card's PIN try counter, a success resets it.

        Returns the counter after the update.
        """
        ...

    async def set_terminal_keys(self, terminal_id: str, *, tpk_under_lmk: str, tak_under_lmk: str) -> None:
        """Store a terminal's new working keys (after a key exchange)."""
        ...

    async def set_pin_verification_value(self, card_id: int, value: str) -> None:
        """Store a card's new PIN verification value (after a PIN change)."""
        ...


class HsmFailure(Exception):
    """The HSM could not answer (link down, timeout, key rejected): a system problem, never a decline."""


@dataclass(frozen=True, slots=True)
class WorkingKey:
    under_lmk: str
    under_tmk: str
    check_value: str


class Hsm(Protocol):
    """The PIN, MAC and key work the pipeline needs. Keys are passed as they are stored: under the LMK."""

    async def verify_pin_pvv(
        self, *, tpk: str, pvk: str, pin_block: bytes, pan: str, pvki: int, pvv: str
    ) -> bool:
        """True if the ISO format 0 PIN block (under the terminal's TPK) holds the PIN of this PVV."""
        ...

    async def verify_cvv(
        self, *, cvk: str, pan: str, expiry_yymm: str, service_code: str, cvv: str
    ) -> bool: ...

    async def pvv_for_new_pin(
        self, *, tpk: str, pvk: str, pin_block: bytes, pan: str, pvki: int
    ) -> str | None:
        """The PVV of the PIN in a format 0 PIN block under the TPK; None if the block holds no valid PIN.

        The clear PIN stays inside the HSM (translated to the LMK, then the PVV computed from it).
        """
        ...

    async def verify_mac(self, *, tak: str, data: bytes, mac: bytes) -> bool:
        """ISO 9797-1 algorithm 3, padding 1, 8-byte MAC under the terminal's TAK."""
        ...

    async def generate_mac(self, *, tak: str, data: bytes) -> bytes: ...

    async def generate_working_key(self, *, kind: Literal["tpk", "tak"], tmk: str) -> WorkingKey:
        """A new terminal key, under the LMK (to store) and under the terminal's TMK (to send)."""
        ...


class Journal(Protocol):
    def record(self, entry: JournalEntry) -> None:
        """Queue one journal line; the writer persists it in the background (never blocks the request)."""
        ...
