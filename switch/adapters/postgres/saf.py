"""The store-and-forward queue in PostgreSQL (`saf_queue`, migration 0008): `switch.ports.SafQueue`, plus
what `switchctl saf` needs (list, retry, purge).

Durable: `enqueue` returns once its row is committed, so an entry survives any restart; the worker reads
the queue again when it starts. Idempotent: one row per idempotency key (a second enqueue is refused).

Concurrency between switchd processes sharing the database: the worker is handed only the oldest
undelivered entry of a network, and only by a conditional UPDATE that leases it (`leased_by`,
`lease_until`) when nobody else's lease is running. Two workers racing for it both compute the same head;
the row lock makes the second re-check the lease after the first commits, and find it taken. No entry is
skipped over while the one before it is undelivered, so a network gets its entries in queue order and one
at a time. A lease is only as good as its length: the worker takes one longer than its request timeout,
so a worker that dies mid-send lets another take over after that, not before. (A worker that hangs longer
than its lease while sending could overlap with its successor; the network sees a repeat of the same
reversal, which it must treat idempotently anyway.)

Card data: rows hold the message without fields 2, 35, 36, 45, 52 and 55 (switch.domain.saf and a CHECK
in the table), the PAN encrypted by the PAN vault, and first 6 / last 4 for display. The vault is needed
to enqueue and to hand entries to the worker; listing, retrying and purging work without it (switchctl).

Time is the queue's `Clock`: every timestamp it writes and every "is it due" comparison uses it, so tests
can step time exactly and several processes agree as far as their clocks do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import asyncpg

from switch.adapters.postgres.db import Database
from switch.domain.model import Pan
from switch.domain.pan_vault import PanVault, PanVaultError
from switch.domain.saf import (
    ACTIVE_STATES,
    SafDepth,
    SafError,
    SafEvent,
    SafKind,
    SafPolicy,
    SafRecord,
    SafState,
    next_state,
    restore_message,
    source_states,
    storable_message,
)
from switch.iso.message import Message
from switch.logs import get_logger
from switch.ports import Clock, SafEntry

__all__ = ["PgSafQueue", "SafListing", "SafStoreError"]

log = get_logger("saf")
LIST_LIMIT_MAX = 10_000


class SafStoreError(Exception):
    """The queue cannot do this (no PAN vault given, a stored PAN that does not decrypt). No card data."""


@dataclass(frozen=True, slots=True)
class SafListing:
    """An entry as an operator sees it (`switchctl saf list`): masked PAN, never the message."""

    entry_id: int
    network: str
    kind: str
    key: str
    mti: str
    state: SafState
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    expires_at: datetime
    last_attempt_at: datetime | None
    last_response_code: str | None
    stan: str | None
    pan_masked: str
    amount: int | None
    currency: str | None
    purge_reason: str | None


def _states(event: SafEvent) -> str:
    """The SQL list of states `event` is allowed in, from the rules' table (literal: partial-index friendly)."""
    return "(" + ", ".join(f"'{s.value}'" for s in source_states(event)) + ")"


_ACTIVE = "(" + ", ".join(f"'{s.value}'" for s in sorted(ACTIVE_STATES)) + ")"
# Claim and expire act on undelivered entries only; the worker's SQL relies on that for its index.
assert _states(SafEvent.CLAIM) == _ACTIVE and _states(SafEvent.EXPIRE) == _ACTIVE

_INSERT = """
INSERT INTO saf_queue (network, kind, idempotency_key, mti, fields, pan_encrypted, pan_first6, pan_last4,
                       pan_length, state, created_at, expires_at, next_attempt_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, 'queued', $10, $11, $10)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING entry_id
"""

# The head of the network's queue, whatever its lease or due time: if it cannot be claimed now, nothing
# behind it may go either. The outer conditions are re-checked on the current row version when another
# worker updated it first (READ COMMITTED), which is what keeps two workers from both taking it.
_CLAIM = f"""
WITH head AS (
    SELECT entry_id FROM saf_queue
    WHERE network = $1 AND state IN {_ACTIVE}
    ORDER BY entry_id LIMIT 1
)
UPDATE saf_queue q
SET state = '{next_state(SafState.QUEUED, SafEvent.CLAIM).value}', leased_by = $2, lease_until = $4
FROM head
WHERE q.entry_id = head.entry_id
  AND q.state IN {_states(SafEvent.CLAIM)}
  AND q.next_attempt_at <= $3
  AND q.expires_at > $3
  AND (q.leased_by IS NULL OR q.lease_until <= $3 OR q.leased_by = $2)
RETURNING q.*
"""

_EXPIRE = f"""
UPDATE saf_queue
SET state = '{SafState.EXPIRED.value}', finished_at = $2, leased_by = NULL, lease_until = NULL
WHERE network = $1 AND state IN {_states(SafEvent.EXPIRE)} AND expires_at <= $2
  AND (leased_by IS NULL OR lease_until <= $2 OR leased_by = $3)
RETURNING *
"""

_HEAD = f"""
SELECT next_attempt_at, expires_at, leased_by, lease_until FROM saf_queue
WHERE network = $1 AND state IN {_ACTIVE}
ORDER BY entry_id LIMIT 1
"""

_DEPTH = f"SELECT count(*) AS n, min(created_at) AS oldest FROM saf_queue WHERE network = $1 AND state IN {_ACTIVE}"

_RELEASE = f"""
UPDATE saf_queue SET state = '{SafState.QUEUED.value}', leased_by = NULL, lease_until = NULL
WHERE entry_id = $1 AND leased_by = $2 AND state IN {_states(SafEvent.RELEASE)}
"""

_ACKNOWLEDGE = f"""
UPDATE saf_queue
SET state = '{SafState.ACKNOWLEDGED.value}', attempts = attempts + 1, last_attempt_at = $2,
    stan = COALESCE(stan, $3), transmission = COALESCE(transmission, $4), last_response_code = $5,
    finished_at = $2, leased_by = NULL, lease_until = NULL
WHERE entry_id = $1 AND state IN {_states(SafEvent.ACKNOWLEDGE)}
RETURNING entry_id
"""

# The attempt happened whoever holds the lease now, so it is always counted and its STAN kept; the entry
# goes back to the queue only if the lease is still ours (otherwise another worker is sending it).
_BACK_OFF = f"""
UPDATE saf_queue
SET attempts = attempts + 1, last_attempt_at = $3,
    stan = COALESCE(stan, $4), transmission = COALESCE(transmission, $5), last_response_code = $6,
    state = CASE WHEN leased_by = $2 THEN '{SafState.QUEUED.value}' ELSE state END,
    next_attempt_at = CASE WHEN leased_by = $2 THEN $7 ELSE next_attempt_at END,
    lease_until = CASE WHEN leased_by = $2 THEN NULL ELSE lease_until END,
    leased_by = CASE WHEN leased_by = $2 THEN NULL ELSE leased_by END
WHERE entry_id = $1 AND state IN {_states(SafEvent.RELEASE)}
"""

_LISTING_COLUMNS = """
entry_id, network, kind, idempotency_key, mti, state, attempts, created_at, next_attempt_at, expires_at,
last_attempt_at, last_response_code, stan, pan_first6, pan_last4, pan_length, purge_reason,
fields ->> '4' AS amount, fields ->> '49' AS currency
"""

_SELECTION = "($1::bigint[] IS NULL OR entry_id = ANY($1)) AND ($2::text IS NULL OR network = $2)"


def _masked(first6: str, last4: str, length: int) -> str:
    if length == 0:
        return ""
    return first6 + "*" * (length - len(first6) - len(last4)) + last4


def _pan_display(pan: Pan | None) -> tuple[str, str, int]:
    if pan is None:
        return "", "", 0
    n = len(pan.digits)
    # Under 13 digits, first 6 + last 4 would show most of the number: keep the last 4 only (mask_pan).
    return (pan.digits[:6] if n >= 13 else ""), pan.digits[-4:], n


def _listing(row: asyncpg.Record) -> SafListing:
    amount = row["amount"]
    return SafListing(
        entry_id=row["entry_id"],
        network=row["network"],
        kind=row["kind"],
        key=row["idempotency_key"],
        mti=row["mti"],
        state=SafState(row["state"]),
        attempts=row["attempts"],
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        expires_at=row["expires_at"],
        last_attempt_at=row["last_attempt_at"],
        last_response_code=row["last_response_code"],
        stan=row["stan"],
        pan_masked=_masked(row["pan_first6"], row["pan_last4"], row["pan_length"]),
        amount=int(amount) if amount is not None and amount.isdigit() else None,
        currency=row["currency"],
        purge_reason=row["purge_reason"],
    )


def _sent_identity(sent: Message) -> tuple[str | None, str | None]:
    """Fields 11 and 7 of what the link sent; both or neither (the table keeps them as a pair)."""
    stan, transmission = sent.get(11), sent.get(7)
    if stan is None or transmission is None:
        return None, None
    return stan, transmission


class PgSafQueue:
    """The `saf_queue` table. `vault` may be None for operator commands that never touch a PAN."""

    def __init__(
        self, database: Database, vault: PanVault | None, *, clock: Clock, policy: SafPolicy | None = None
    ) -> None:
        self.database = database
        self.clock = clock
        self.policy = policy if policy is not None else SafPolicy()
        self._vault = vault

    def _need_vault(self) -> PanVault:
        if self._vault is None:
            raise SafStoreError("this store-and-forward queue was opened without the PAN vault")
        return self._vault

    # -- the port: StoreAndForward -------------------------------------------------------------------

    async def enqueue(self, entry: SafEntry) -> bool:
        """Queue durably (committed on return); False if an entry with this key already exists.

        Raises SafError for an entry the rules refuse (wrong MTI for its kind, a card number in the key).
        """
        stored = storable_message(
            network=entry.network, kind=entry.kind, key=entry.key, message=entry.message
        )
        vault = self._need_vault()
        now = self.clock.now()
        first6, last4, length = _pan_display(stored.pan)
        entry_id = await self.database.fetchval(
            _INSERT,
            entry.network,
            entry.kind,
            entry.key,
            stored.mti,
            json.dumps({str(n): v for n, v in stored.fields.items()}),
            vault.encrypt(stored.pan) if stored.pan is not None else None,
            first6,
            last4,
            length,
            now,
            self.policy.expires_at(entry.kind, now),
        )
        if stored.dropped:
            # Field numbers only: the values are exactly what must not be kept or shown.
            log.warning(
                "saf_fields_not_stored", network=entry.network, kind=entry.kind, fields=stored.dropped
            )
        if entry_id is None:
            log.info("saf_duplicate", network=entry.network, kind=entry.kind, idempotency_key=entry.key)
            return False
        log.info(
            "saf_enqueued",
            network=entry.network,
            kind=entry.kind,
            idempotency_key=entry.key,
            entry_id=entry_id,
        )
        return True

    # -- the port: SafQueue (the worker) ---------------------------------------------------------------

    async def expire_due(self, network: str, *, holder: str) -> list[SafRecord]:
        rows = await self.database.fetch(_EXPIRE, network, self.clock.now(), holder)
        # Reported, not sent: a PAN that does not decrypt must not keep the expiry from being reported.
        return [
            self._record(r, pan_required=False) for r in sorted(rows, key=lambda r: cast(int, r["entry_id"]))
        ]

    async def claim_next(self, network: str, *, holder: str, lease_s: float) -> SafRecord | None:
        while True:
            now = self.clock.now()
            row = await self.database.fetchrow(_CLAIM, network, holder, now, now + timedelta(seconds=lease_s))
            if row is None:
                return None
            try:
                return self._record(row)
            except SafStoreError:
                # It cannot be sent (its PAN does not decrypt: the vault's key changed, or the row was
                # altered). Left at the head it would hold back every entry behind it, for days.
                await self._set_aside(row, now)

    async def _set_aside(self, row: asyncpg.Record, now: datetime) -> None:
        """Take an entry that cannot be sent out of delivery as expired: logged as an error, and an operator
        can bring it back (`switchctl saf retry --expired`) once the PAN vault's key is right again."""
        await self.database.execute(
            f"""
            UPDATE saf_queue
            SET state = '{SafState.EXPIRED.value}', finished_at = $2, leased_by = NULL, lease_until = NULL
            WHERE entry_id = $1 AND state IN {_states(SafEvent.EXPIRE)}
            """,
            row["entry_id"],
            now,
        )
        log.error(
            "saf_entry_unreadable",
            entry_id=row["entry_id"],
            network=row["network"],
            kind=row["kind"],
            idempotency_key=row["idempotency_key"],
            pan=_masked(row["pan_first6"], row["pan_last4"], row["pan_length"]),
            attempts=row["attempts"],
            reason="the PAN does not decrypt under the PAN vault's key",
            action="set aside as expired; switchctl saf retry --expired once the key is right",
            money_at_risk=row["kind"] == "reversal",
        )

    async def next_due_in_s(self, network: str) -> float | None:
        row = await self.database.fetchrow(_HEAD, network)
        if row is None:
            return None
        now = self.clock.now()
        due: datetime = row["next_attempt_at"]
        if row["leased_by"] is not None and row["lease_until"] > due:
            due = row["lease_until"]
        # It may expire before it is due: the worker has to look again then, to expire it.
        due = min(due, row["expires_at"])
        return max(0.0, (due - now).total_seconds())

    async def release(self, entry_id: int, *, holder: str) -> None:
        await self.database.execute(_RELEASE, entry_id, holder)

    async def acknowledge(self, entry_id: int, *, sent: Message, response_code: str | None) -> bool:
        stan, transmission = _sent_identity(sent)
        done = await self.database.fetchval(
            _ACKNOWLEDGE, entry_id, self.clock.now(), stan, transmission, response_code
        )
        return done is not None

    async def back_off(
        self, entry_id: int, *, holder: str, sent: Message, response_code: str | None, retry_after_s: float
    ) -> None:
        stan, transmission = _sent_identity(sent)
        now = self.clock.now()
        await self.database.execute(
            _BACK_OFF,
            entry_id,
            holder,
            now,
            stan,
            transmission,
            response_code,
            now + timedelta(seconds=retry_after_s),
        )

    async def depth(self, network: str) -> SafDepth:
        row = await self.database.fetchrow(_DEPTH, network)
        assert row is not None  # an aggregate always returns a row
        oldest: datetime | None = row["oldest"]
        age = 0.0 if oldest is None else max(0.0, (self.clock.now() - oldest).total_seconds())
        return SafDepth(network=network, count=row["n"], oldest_age_s=age)

    # -- operators (switchctl saf) ---------------------------------------------------------------------

    async def list_entries(
        self, *, network: str | None = None, states: Sequence[SafState] | None = None, limit: int = 100
    ) -> list[SafListing]:
        """Entries in queue order; by default the undelivered ones."""
        wanted = sorted(ACTIVE_STATES) if states is None else list(states)
        rows = await self.database.fetch(
            f"SELECT {_LISTING_COLUMNS} FROM saf_queue "
            "WHERE ($1::text IS NULL OR network = $1) AND state = ANY($2::text[]) "
            "ORDER BY entry_id LIMIT $3",
            network,
            [s.value for s in wanted],
            max(1, min(limit, LIST_LIMIT_MAX)),
        )
        return [_listing(r) for r in rows]

    async def retry(
        self,
        *,
        entry_ids: Sequence[int] | None = None,
        network: str | None = None,
        include_expired: bool = False,
    ) -> list[SafListing]:
        """Make queued entries (and, if asked, expired ones, with a fresh lifetime) due now. Entries being
        sent are left alone. Returns the entries retried."""
        now = self.clock.now()
        states = [SafState.QUEUED.value] + ([SafState.EXPIRED.value] if include_expired else [])
        allowed = {s.value for s in source_states(SafEvent.RETRY)}
        assert set(states) <= allowed, "retry of a state the rules do not allow"

        rows = await self.database.fetch(
            f"""
                UPDATE saf_queue
                SET expires_at = CASE WHEN state <> '{SafState.EXPIRED.value}' THEN expires_at
                                      WHEN kind = 'reversal' THEN $5 ELSE $6 END,
                    state = '{SafState.QUEUED.value}', next_attempt_at = $3, finished_at = NULL
                WHERE {_SELECTION} AND state = ANY($4::text[])
                RETURNING {_LISTING_COLUMNS}
                """,
            list(entry_ids) if entry_ids is not None else None,
            network,
            now,
            states,
            self.policy.expires_at("reversal", now),
            self.policy.expires_at("advice", now),
        )

        listings = sorted((_listing(r) for r in rows), key=lambda r: r.entry_id)
        for item in listings:
            log.info(
                "saf_retry",
                entry_id=item.entry_id,
                network=item.network,
                kind=item.kind,
                idempotency_key=item.key,
            )
        return listings

    async def purge(
        self, *, reason: str, entry_ids: Sequence[int] | None = None, network: str | None = None
    ) -> list[SafListing]:
        """Take entries out of delivery for good (queued, in flight or expired), recording why. Each one is
        logged as a warning: a purged reversal is one the network will never hear of from us."""
        reason = reason.strip()
        if not reason:
            raise SafError("a purge needs a reason")
        rows = await self.database.fetch(
            f"""
            UPDATE saf_queue
            SET state = '{SafState.PURGED.value}', purge_reason = $3, finished_at = $4,
                leased_by = NULL, lease_until = NULL
            WHERE {_SELECTION} AND state IN {_states(SafEvent.PURGE)}
            RETURNING {_LISTING_COLUMNS}
            """,
            list(entry_ids) if entry_ids is not None else None,
            network,
            reason,
            self.clock.now(),
        )
        listings = sorted((_listing(r) for r in rows), key=lambda r: r.entry_id)
        for item in listings:
            log.warning(
                "saf_purged",
                entry_id=item.entry_id,
                network=item.network,
                kind=item.kind,
                idempotency_key=item.key,
                pan=item.pan_masked,
                amount_minor=item.amount,
                currency=item.currency,
                attempts=item.attempts,
                reason=reason,
            )
        return listings

    async def prune_finished(self, before: datetime, limit: int = 10_000) -> int:
        """Delete entries acknowledged or purged before `before`, at most `limit` (their encrypted PAN with
        them). Entries that expired undelivered are kept whatever their age: money at risk until an
        operator retries or purges them. A key whose entry is gone may be queued again, and would be
        sent again: the keep time (`saf.finished_keep_s`) is far longer than anything repeats."""
        deleted = await self.database.fetchval(
            f"""
            WITH old AS (
                SELECT entry_id FROM saf_queue
                 WHERE state IN ('{SafState.ACKNOWLEDGED.value}', '{SafState.PURGED.value}') AND finished_at < $1
                 ORDER BY finished_at LIMIT $2
            ), gone AS (
                DELETE FROM saf_queue AS q USING old WHERE q.entry_id = old.entry_id RETURNING 1
            )
            SELECT count(*) FROM gone
            """,
            before,
            limit,
        )
        return int(deleted)

    # -- rows --------------------------------------------------------------------------------------------

    def _record(self, row: asyncpg.Record, *, pan_required: bool = True) -> SafRecord:
        """The entry as the worker sends it; SafStoreError when its PAN does not decrypt, unless
        `pan_required` is False (then the message has no field 2)."""
        blob = row["pan_encrypted"]
        pan: Pan | None = None
        if blob is not None:
            try:
                pan = self._need_vault().decrypt(bytes(blob))
            except PanVaultError:
                if pan_required:
                    raise SafStoreError(
                        f"the PAN of queue entry {row['entry_id']} does not decrypt"
                    ) from None
        raw = row["fields"]
        fields = {int(k): str(v) for k, v in (json.loads(raw) if isinstance(raw, str) else raw).items()}
        kind: SafKind = "reversal" if row["kind"] == "reversal" else "advice"
        return SafRecord(
            entry_id=row["entry_id"],
            network=row["network"],
            kind=kind,
            key=row["idempotency_key"],
            message=restore_message(row["mti"], fields, pan),
            state=SafState(row["state"]),
            attempts=row["attempts"],
            stan=row["stan"],
            transmission=row["transmission"],
            created_at=row["created_at"],
            next_attempt_at=row["next_attempt_at"],
            expires_at=row["expires_at"],
            last_response_code=row["last_response_code"],
            pan_masked=_masked(row["pan_first6"], row["pan_last4"], row["pan_length"]),
        )
