"""`switch.ports.KsnCounters` in PostgreSQL (migration 0014): the DUKPT counters each PIN pad has used.

Every switchd process on the database, and every restart of one, sees the same counters, so a PIN block
captured with its KSN cannot be replayed by sending it to another process (a terminal's reconnection can
land on any of them) or after a restart. The rules are `switch.domain.dukpt.KsnReplayGuard`'s, in the
function `dukpt_use_counter`, which takes the PIN pad's advisory lock: of two processes using one counter
at once, one wins. One statement per DUKPT PIN check, committed (durably) before the PIN is verified.
"""

from __future__ import annotations

from switch.adapters.postgres.db import Database
from switch.domain.dukpt import REPLAY_WINDOW

__all__ = ["PgKsnCounters"]

_USE = "SELECT dukpt_use_counter($1, $2, $3, $4)"


class PgKsnCounters:
    def __init__(self, database: Database, *, window: int = REPLAY_WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be positive")
        self.database = database
        self.window = window

    async def use(self, pin_pad: str, counter: int, request_identity: str) -> bool:
        return bool(await self.database.fetchval(_USE, pin_pad, counter, request_identity, self.window))
