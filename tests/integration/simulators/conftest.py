"""Fixtures for simulator tests: the fake switch running in its own thread and trio loop.

The simulators' `main` functions call `trio.run` themselves, so the server they talk to cannot share
the test's loop; a thread with its own loop is how a real separate process would look to them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from tests.integration.simulators.fake_switch import FakeSwitch


@pytest.fixture
def fake_switch() -> Iterator[FakeSwitch]:
    fake = FakeSwitch()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            holder["token"] = trio.lowlevel.current_trio_token()
            holder["scope"] = nursery.cancel_scope
            await nursery.start(fake.serve)
            started.set()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    assert started.wait(5), "fake switch did not start"
    yield fake
    trio.from_thread.run_sync(holder["scope"].cancel, trio_token=holder["token"])
    thread.join(5)
