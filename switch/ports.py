"""The interfaces the pipeline needs from the outside world (typing.Protocol, implemented by adapters).

The pipeline imports only these, the domain and the iso message types; `switch.app` wires concrete
adapters in (PostgreSQL ledger and card directory, in-process or TCP HSM, system clock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from switch.domain.journal import JournalEntry
from switch.domain.ledger_types import AccountBalance, LedgerAccount, Transfer, TransferResult
from switch.domain.model import Card, ListEntry, Merchant, Pan, Terminal
from switch.domain.routing import RoutingTable
from switch.domain.saf import SafDepth, SafRecord
from switch.domain.translation import NetworkKeySet, ZoneKey
from switch.iso.message import Message

__all__ = [
    "CardDirectory",
    "Clock",
    "DukptPinKey",
    "ForwardedRecord",
    "ForwardedTransactions",
    "Hsm",
    "HsmFailure",
    "Ibm3624Offset",
    "ImportedKey",
    "Journal",
    "KsnCounters",
    "Ledger",
    "Network",
    "NetworkExchange",
    "NetworkKeyStore",
    "NetworkUnavailable",
    "PinKey",
    "PinVerification",
    "Routes",
    "SafEntry",
    "SafKind",
    "SafQueue",
    "StoreAndForward",
    "TpkPinKey",
    "VisaPvv",
    "WorkingKey",
]


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC datetime."""
        ...


class KsnCounters(Protocol):
    """The DUKPT transaction counters each PIN pad has used (switch.domain.dukpt, `KsnReplayGuard`'s
    rules). `use` is True, and the counter remembered, when `counter` is new for `pin_pad` and not too far
    behind its highest, or when the same request (its retransmission) uses it again; False is a replay."""

    async def use(self, pin_pad: str, counter: int, request_identity: str) -> bool: ...


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

    async def bar(self, transfer_id: str) -> bool:
        """Bar `transfer_id` unless a transfer with that id exists (then False): a reversal that finds no
        original bars it, so the original is refused (BARRED) should it still come. True when barred."""
        ...

    async def lookup_by_reference(self, reference: str, limit: int = 10) -> list[Transfer]:
        """Transfers whose reference is exactly `reference` (at most `limit`, oldest first): how a void or
        completion that names its original only by RRN finds it (references are "rrn:<RRN>")."""
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


@dataclass(frozen=True, slots=True)
class TpkPinKey:
    """A terminal PIN block under the terminal's TPK (the TPK under the LMK)."""

    tpk: str


@dataclass(frozen=True, slots=True)
class DukptPinKey:
    """A terminal PIN block under the DUKPT PIN key of `ksn`, which only the HSM derives from the BDK."""

    bdk: str  # under the LMK
    ksn: str  # 20 hex digits


PinKey = TpkPinKey | DukptPinKey


@dataclass(frozen=True, slots=True)
class VisaPvv:
    """Visa PVV: the PVK pair (under the LMK) and the card's PVK index."""

    pvk: str
    pvki: int


@dataclass(frozen=True, slots=True)
class Ibm3624Offset:
    """IBM 3624 offset: the PVK (under the LMK) and the product's parameters."""

    pvk: str
    decimalization_table: str  # 16 digits
    validation_data: str  # 12 characters as the HSM takes them ("N" = last 5 account digits)
    check_length: int


PinVerification = VisaPvv | Ibm3624Offset


@dataclass(frozen=True, slots=True)
class ImportedKey:
    """A key received under a zone master key, now under the LMK, and its check value (6 hex)."""

    under_lmk: str = field(repr=False)
    check_value: str


class Hsm(Protocol):
    """The PIN, MAC and key work the pipeline needs. Keys are passed as they are stored: under the LMK."""

    async def verify_pin(
        self, *, key: PinKey, pin_block: bytes, pan: str, method: PinVerification, value: str
    ) -> bool:
        """True if the terminal's PIN block (ISO format 0) holds the PIN whose verification value (the
        card's PVV or IBM offset, per `method`) is `value`. A block that holds no valid PIN is False."""
        ...

    async def verify_cvv(
        self, *, cvk: str, pan: str, expiry_yymm: str, service_code: str, cvv: str
    ) -> bool: ...

    async def verification_value_for_new_pin(
        self, *, key: PinKey, pin_block: bytes, pan: str, method: PinVerification
    ) -> str | None:
        """The PVV or IBM offset of the PIN in a terminal's format 0 PIN block; None if the block holds
        no PIN the method can take (no valid PIN, or an IBM PIN shorter than the check length).

        The clear PIN stays inside the HSM (translated to the LMK, then the value computed from it).
        """
        ...

    async def verify_mac(self, *, tak: str, data: bytes, mac: bytes) -> bool:
        """ISO 9797-1 algorithm 3, padding 1, 8-byte MAC under the terminal's TAK."""
        ...

    async def generate_mac(self, *, tak: str, data: bytes) -> bytes: ...

    async def generate_working_key(self, *, kind: Literal["tpk", "tak"], tmk: str) -> WorkingKey:
        """A new terminal key, under the LMK (to store) and under the terminal's TMK (to send)."""
        ...

    # -- interbank (docs/networks.md "Key exchange and PIN blocks") --

    async def translate_pin_to_zpk(
        self, *, key: PinKey, zpk: str, pin_block: bytes, pan: str
    ) -> bytes | None:
        """The terminal's PIN block (ISO format 0 under its TPK or DUKPT key) re-encrypted under a network's
        zone PIN key (under the LMK), ISO format 0: CA or CI, inside the HSM. None if the block holds no
        valid PIN (the terminal's problem: nothing to send)."""
        ...

    async def import_zone_pin_key(self, *, zmk: str, zpk_under_zmk: str) -> ImportedKey:
        """A ZPK as a network sends it (32 hex, each half TDES-ECB under the zone master key, `zmk` under the
        LMK), re-encrypted under the LMK (A6), with the check value the HSM computed from it."""
        ...

    async def verify_pin_under_zpk(
        self, *, zpk: str, pin_block: bytes, pan: str, method: PinVerification, value: str
    ) -> bool:
        """Issuer side: True if a network's PIN block (ISO format 0 under its ZPK) holds the PIN of this PVV
        or IBM offset (EC, EA). A block that holds no valid PIN is False."""
        ...


class Journal(Protocol):
    def record(self, entry: JournalEntry) -> None:
        """Queue one journal line; the writer persists it in the background (never blocks the request)."""
        ...


# -- interbank networks (docs/networks.md) -----------------------------------------------------------


class NetworkUnavailable(Exception):
    """No signed-on link to the network (down, reconnecting, draining, or its pending table is full)."""


@dataclass(frozen=True, slots=True)
class NetworkExchange:
    """One request on a network link: the message as sent (with the link's STAN and field 7) and the
    matched response, or None when the deadline passed first (a late response goes to the link's
    late-response handler)."""

    sent: Message
    response: Message | None


class Network(Protocol):
    """One interbank network's link as the pipeline and the store-and-forward worker use it."""

    @property
    def name(self) -> str: ...

    @property
    def up(self) -> bool:
        """True while at least one connection is signed on."""
        ...

    async def request(self, message: Message, *, timeout_s: float) -> NetworkExchange:
        """Send a request in the network's dialect and wait up to `timeout_s` for its response.

        The link fills field 11 (its own STAN counter) and field 7 (now) when the message has none, so a
        repeat can reuse the original's. Raises NetworkUnavailable when it cannot send at all.
        """
        ...


SafKind = Literal["reversal", "advice"]


@dataclass(frozen=True, slots=True)
class SafEntry:
    """A reversal or advice that must reach a network, however long it takes."""

    network: str
    kind: SafKind
    key: str  # idempotency key: the identity of what it reverses or advises; one entry per key
    message: Message  # the first attempt (0420 or 0220) in the network's dialect, PAN in field 2


class StoreAndForward(Protocol):
    async def enqueue(self, entry: SafEntry) -> bool:
        """Queue durably (committed when this returns); False if an entry with this key already exists.

        The store keeps no PIN block, track or ICC data, and the PAN only encrypted (PAN vault).
        Entries of one network are delivered in the order they were queued.
        """
        ...


class SafQueue(StoreAndForward, Protocol):
    """The store-and-forward queue as its worker uses it (docs/networks.md): beyond `enqueue`, take the
    next entry of a network in queue order and record what each attempt did.

    Several workers (switchd processes) may share one queue: an entry is leased to one `holder` at a
    time, and only the oldest undelivered entry of a network is ever handed out, so entries of one
    network are sent one after the other, in order. Time is the queue's clock.
    """

    async def expire_due(self, network: str, *, holder: str) -> list[SafRecord]:
        """Mark the network's undelivered entries past their expiry as expired (except those another
        holder is sending right now); returns them."""
        ...

    async def claim_next(self, network: str, *, holder: str, lease_s: float) -> SafRecord | None:
        """Lease the network's oldest undelivered entry to `holder` for `lease_s`, if it is due and no
        other holder's lease on it is running; None otherwise (the queue order is never skipped)."""
        ...

    async def next_due_in_s(self, network: str) -> float | None:
        """Seconds until the network's oldest undelivered entry may be claimed (0 if now); None if none."""
        ...

    async def release(self, entry_id: int, *, holder: str) -> None:
        """Give a claimed entry back unchanged (it could not be sent: the link was unavailable)."""
        ...

    async def acknowledge(self, entry_id: int, *, sent: Message, response_code: str | None) -> bool:
        """Record an attempt the network acknowledged; False if the entry was no longer undelivered."""
        ...

    async def back_off(
        self, entry_id: int, *, holder: str, sent: Message, response_code: str | None, retry_after_s: float
    ) -> None:
        """Record an attempt that was sent but not acknowledged, keeping fields 11 and 7 of the first one
        sent; the entry is due again after `retry_after_s`."""
        ...

    async def depth(self, network: str) -> SafDepth:
        """How many entries of the network are undelivered and the oldest one's age."""
        ...


# -- routing (docs/networks.md "Routing") --------------------------------------------------------------


class Routes(Protocol):
    """The routing table as the pipeline reads it; `switch.domain.routing.decide` makes the decision."""

    async def table(self) -> RoutingTable:
        """The table as of now (from memory while the adapter listens for changes; an operator's change is
        seen by the next call once `switchctl` has returned)."""
        ...


# -- network keys and forwarded transactions (docs/networks.md "Key exchange", "Messages the switch sends")


class NetworkKeyStore(Protocol):
    """Each network's zone master key and working zone PIN keys, shared by every switchd process.

    Keys are stored under the LMK only. `install` merges under a lock (`NetworkKeySet.installed`), so two
    processes exchanging keys at once end with the network's newest key current.
    """

    async def zone_master_key(self, network: str) -> str | None:
        """The network's ZMK under the LMK, or None when none is configured."""
        ...

    async def set_zone_master_key(self, network: str, *, zmk_under_lmk: str, check_value: str) -> None:
        """Configure (or replace) the network's ZMK; its working keys stay until the next exchange."""
        ...

    async def load(self, network: str) -> NetworkKeySet:
        """The network's current and previous ZPK as stored now (empty when it has none yet)."""
        ...

    async def install(self, network: str, key: ZoneKey) -> NetworkKeySet:
        """Store a ZPK a key exchange brought (committed when this returns); the set as it is after."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardedRecord:
    """A forwarded transaction that moved money, kept so a terminal's reversal can reverse it later.

    `message` is what the network holds, as it was sent: the request (11 and 7 the link gave it), or for a
    stand-in the advice. It carries no card data (`switch.domain.translation.CARD_DATA_FIELDS`): every
    terminal reversal brings its card, and the reversal goes to the store-and-forward queue, which keeps
    the PAN encrypted.
    """

    transfer_id: str  # the ledger transfer of the approval (the terminal request's identity)
    network: str
    route: str  # as journaled: "visa", "visa->cups", "visa:standin"
    message: Message
    pan_masked: str
    amount: int
    currency: int
    auth_code: str
    created_at: datetime


class ForwardedTransactions(Protocol):
    async def record(self, entry: ForwardedRecord) -> bool:
        """Keep durably (committed when this returns); False if one with this transfer id exists."""
        ...

    async def post_and_record(self, transfer: Transfer, entry: ForwardedRecord) -> TransferResult:
        """Apply `transfer` in the ledger (as `Ledger.create_transfers` would) and, only if it is applied
        now (OK), keep `entry` (of the same transfer id), both in one commit: a forwarded approval is never
        booked without its record. Committed when this returns; an error leaves the outcome unknown."""
        ...

    async def find(self, transfer_id: str) -> ForwardedRecord | None: ...

    async def find_by_rrn(self, terminal_id: str, rrn: str) -> list[ForwardedRecord]:
        """The records of this terminal's requests (transfer ids "<terminal>:...") whose message carries
        `rrn` in field 37, oldest first (at most 10): how a follow-up that names its original only by RRN
        finds it."""
        ...
