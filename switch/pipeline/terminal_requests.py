"""What the switch answers a terminal today: network management, and a clear 'not yet' for the rest.

The authorization pipeline (card checks, PIN, limits, ledger, routing) arrives with the switch-core
work; until then a financial request gets response code 40 ("requested function not supported") so a
terminal or simulator gets a well-formed, honest answer instead of silence. Network management (0800)
is answered for sign-on (001), sign-off (002) and echo (301); key exchange (101) needs the HSM link and
is answered 40 as well.
"""

from __future__ import annotations

from collections.abc import Callable

from switch.iso.message import Message

__all__ = ["APPROVED", "FUNCTION_NOT_SUPPORTED", "TerminalRequests"]

APPROVED = "00"
FUNCTION_NOT_SUPPORTED = "40"
_NETWORK_MANAGEMENT_SUPPORTED = frozenset({"001", "002", "301"})

# Builds the response to a request with the dialect's echo rules and the given field 39.
Responder = Callable[[Message, str], Message]


class TerminalRequests:
    def __init__(self, respond: Responder) -> None:
        self._respond = respond

    async def handle(self, request: Message) -> Message | None:
        mti = request.mti
        if mti[2] not in "02":  # responses, notifications: nothing to answer
            return None
        if mti[:2] == "08":
            code = request.get(70)
            return self._respond(
                request, APPROVED if code in _NETWORK_MANAGEMENT_SUPPORTED else FUNCTION_NOT_SUPPORTED
            )
        return self._respond(request, FUNCTION_NOT_SUPPORTED)
