"""A network's zone PIN keys: the key exchange after sign-on, and which ZPK to use now.

docs/networks.md "Key exchange and PIN blocks" is the contract. After each sign-on (and every
`key_exchange_interval_s`) the app calls `exchange(link)`: a 0800/0820 with 70 = 101; the network answers
field 48 = ZPK + index + the key under the ZMK + its check value. The HSM imports the key (A6, under the
network's ZMK) and computes the check value itself; only when the two agree is the key stored and used.
A wrong check value, a refusal, a malformed or missing answer leave the keys as they were, logged and
counted (`counts`, and the optional `observe` hook for a metric).

The keys live in the `NetworkKeyStore` (under the LMK only), shared by every switchd process: each
process exchanges keys on its own links, and the store keeps the network's newest key current whatever
order their exchanges finish in. A process sees another's exchange within `reload_s` (the sending key is
re-read when the copy in memory is older than that), well inside `key_grace_s`, during which the network
still accepts the key before. When the network refuses a PIN block under the key in use anyway (63: its
answer to an exchange was lost, say), the forwarder calls `request_resync`: the keys are re-read on next
use and the app's key task (`resync_requested`) asks the network for a new key at once.
Nothing here logs a key, a check value or a field 48.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Literal

import trio

from switch.domain.translation import (
    KeyExchangeError,
    NetworkKeySet,
    NetworkProfile,
    ZoneKey,
    key_exchange_request,
    parse_key_exchange,
)
from switch.logs import get_logger
from switch.ports import Clock, Hsm, HsmFailure, Network, NetworkKeyStore, NetworkUnavailable

__all__ = ["KeyExchangeOutcome", "NetworkKeys"]

log = get_logger("network_keys")

KeyExchangeOutcome = Literal[
    "installed",  # a new key is current
    "unchanged",  # the network sent the key already current (or an older one another process had)
    "kcv_mismatch",  # the check value the network sent is not the imported key's: not used
    "refused",  # the network answered with a code other than 00
    "malformed",  # field 48 missing or not the contract's layout
    "unanswered",  # no answer before the deadline
    "unavailable",  # the link could not send
    "no_zmk",  # no zone master key configured for the network
    "hsm_failure",  # the HSM could not import the key
]


class NetworkKeys:
    """One network's ZPKs as the forwarding participant (sending) and the issuer side (receiving) use them."""

    def __init__(
        self,
        *,
        profile: NetworkProfile,
        hsm: Hsm,
        store: NetworkKeyStore,
        clock: Clock,
        key_grace_s: float,
        deadline_s: float,
        reload_s: float = 30.0,
        observe: Callable[[str, KeyExchangeOutcome], None] | None = None,
    ) -> None:
        if key_grace_s < 0 or deadline_s <= 0 or reload_s <= 0:
            raise ValueError("key_grace_s must be >= 0, deadline_s and reload_s > 0")
        self.profile = profile
        self.hsm = hsm
        self.store = store
        self.clock = clock
        self.key_grace_s = key_grace_s
        self.deadline_s = deadline_s
        self.reload_s = reload_s
        self._observe = observe
        self._keys = NetworkKeySet()
        self._loaded_at: datetime | None = None
        self._resync = trio.Event()
        self.last_exchange_at = -math.inf  # trio.current_time() when the last exchange began
        self.counts: Counter[KeyExchangeOutcome] = Counter()

    @property
    def network(self) -> str:
        return self.profile.name

    @property
    def keys(self) -> NetworkKeySet:
        """The keys as last loaded or installed (no I/O)."""
        return self._keys

    async def load(self) -> NetworkKeySet:
        """Read the keys from the store now."""
        self._keys = await self.store.load(self.network)
        self._loaded_at = self.clock.now()
        return self._keys

    async def _fresh(self) -> NetworkKeySet:
        loaded = self._loaded_at
        if loaded is None or (self.clock.now() - loaded).total_seconds() >= self.reload_s:
            return await self.load()
        return self._keys

    async def sending_key(self) -> ZoneKey | None:
        """The ZPK to translate outgoing PIN blocks to (the current one), or None before the first exchange."""
        return (await self._fresh()).current

    async def receiving_key(self, index: int) -> ZoneKey | None:
        """The ZPK a network's PIN block under key `index` (field 53) decrypts with: the current one, or the
        previous one for `key_grace_s` after the exchange; None: a security violation."""
        keys = await self._fresh()
        found = keys.for_index(index, now=self.clock.now(), grace_s=self.key_grace_s)
        if found is None and keys.current is not None and index != keys.current.index:
            # Another process may have installed a newer key this one has not seen yet: look once more.
            keys = await self.load()
            found = keys.for_index(index, now=self.clock.now(), grace_s=self.key_grace_s)
        return found

    def request_resync(self) -> None:
        """The network refused a PIN block under our current key: re-read the keys on next use (another
        process may hold a newer one) and wake whoever waits in `resync_requested` for a new exchange."""
        self._loaded_at = None
        self._resync.set()

    @property
    def resync_pending(self) -> bool:
        return self._resync.is_set()

    async def resync_requested(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for `request_resync`; True (and the request taken) if it came."""
        with trio.move_on_after(timeout_s):
            await self._resync.wait()
        if not self._resync.is_set():
            return False
        self._resync = trio.Event()
        return True

    async def exchange(self, link: Network) -> KeyExchangeOutcome:
        """Ask the network for a new ZPK and install it if its check value holds (docs/networks.md)."""
        self.last_exchange_at = trio.current_time()
        zmk = await self.store.zone_master_key(self.network)
        if not zmk:
            return self._done("no_zmk")
        before = (await self._fresh()).current
        try:
            exchange = await link.request(key_exchange_request(self.profile), timeout_s=self.deadline_s)
        except NetworkUnavailable:
            return self._done("unavailable")
        response = exchange.response
        if response is None:
            return self._done("unanswered")
        if response.response_code != "00":
            return self._done("refused", response_code=response.response_code)
        try:
            answer = parse_key_exchange(response.get(48))
        except KeyExchangeError as exc:
            return self._done("malformed", reason=str(exc))
        try:
            imported = await self.hsm.import_zone_pin_key(zmk=zmk, zpk_under_zmk=answer.key_under_zmk)
        except HsmFailure as exc:
            return self._done("hsm_failure", key_index=answer.index, reason=str(exc))
        if imported.check_value.upper() != answer.check_value:
            # Keep the old key: a key that does not match its check value would garble every PIN block.
            return self._done("kcv_mismatch", key_index=answer.index)
        key = ZoneKey(
            index=answer.index,
            under_lmk=imported.under_lmk,
            check_value=answer.check_value,
            installed_at=self.clock.now(),
        )
        self._keys = await self.store.install(self.network, key)
        self._loaded_at = self.clock.now()
        current = self._keys.current
        is_new = _same_key(current, key) and not _same_key(before, key)
        return self._done("installed" if is_new else "unchanged", key_index=answer.index)

    def _done(self, outcome: KeyExchangeOutcome, **fields: object) -> KeyExchangeOutcome:
        self.counts[outcome] += 1
        if self._observe is not None:
            self._observe(self.network, outcome)
        if outcome in ("installed", "unchanged"):
            log.info("network key exchange", network=self.network, outcome=outcome, **fields)
        else:
            log.warning("network key exchange failed", network=self.network, outcome=outcome, **fields)
        return outcome


def _same_key(a: ZoneKey | None, b: ZoneKey) -> bool:
    return a is not None and a.index == b.index and a.check_value == b.check_value
