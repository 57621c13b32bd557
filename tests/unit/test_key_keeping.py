"""The app's key-keeping task per network (`switch.app._keep_keys`): exchanges on the timer, and at once
when the network has refused our key, at most once per KEY_RESYNC_MIN_S after the last exchange. Virtual
time (trio's autojump clock); the keys and the link are small fakes, their exchange only noted."""

from __future__ import annotations

import math
from typing import cast

import trio
import trio.lowlevel

from switch.adapters.network_link import NetworkLink
from switch.app import KEY_RESYNC_MIN_S, _keep_keys
from switch.pipeline.network_keys import NetworkKeys

LINK = cast(NetworkLink, type("FakeLink", (), {"name": "visa", "up": True})())


class NotedKeys(NetworkKeys):
    """NetworkKeys whose exchange only notes the time it was called."""

    def __init__(self) -> None:  # the parts _keep_keys uses, not a network's configuration
        self._resync = trio.Event()
        self.last_exchange_at = -math.inf
        self.exchanged_at: list[float] = []

    async def exchange(self, link: object) -> str:  # type: ignore[override]
        self.last_exchange_at = trio.current_time()
        self.exchanged_at.append(self.last_exchange_at)
        await trio.lowlevel.checkpoint()
        return "installed"


async def test_refusals_bring_one_exchange_at_once_then_at_most_one_per_pause(autojump_clock):
    """If the network refuses our key, then the key is exchanged at once; refusals soon after (PIN blocks
    sent meanwhile) bring one more exchange, KEY_RESYNC_MIN_S after the first, not one each."""
    keys, start = NotedKeys(), trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_keep_keys, LINK, keys, 0.0)
        await trio.sleep(1)
        keys.request_resync()
        await trio.sleep(1)
        for _ in range(3):
            keys.request_resync()
            await trio.sleep(0.5)
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert [round(t - start, 3) for t in keys.exchanged_at] == [1, 1 + KEY_RESYNC_MIN_S]


async def test_timer_exchanges_go_on_beside_refusals(autojump_clock):
    """If the interval is 100 s, then the key is exchanged every 100 s, and a refusal in between brings
    one at once (the timer restarts from it); with interval 0 only refusals bring one."""
    keys, start = NotedKeys(), trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_keep_keys, LINK, keys, 100.0)
        await trio.sleep(150)
        keys.request_resync()
        await trio.sleep(120)
        nursery.cancel_scope.cancel()
    assert [round(t - start, 3) for t in keys.exchanged_at] == [100, 150, 250]
    idle = NotedKeys()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_keep_keys, LINK, idle, 0.0)
        await trio.sleep(10_000)
        nursery.cancel_scope.cancel()
    assert idle.exchanged_at == []
