"""The issuer side: what the pipeline needs to answer a network's requests for our own cards.

docs/networks.md "Messages the switch answers (issuer side)". A network (Visa, CUPS, Shetab) brings
0100/0200 requests, 0420/0421 reversals and 0220/0221 advices for cards we issue, acquired at other
banks. The Authorizer authorizes them with the very checks it applies to its own terminals' requests
(`Authorizer.handle_network`); this module holds what differs, as data and pure functions:
- `IssuerNetwork`: one network as the issuer side sees it (its zone PIN keys, its settlement accounts,
  how to answer in its dialect and with which response codes);
- the ledger identity of a network's request (`network_transfer_id`): the network, the acquirer in
  field 32 and the request's 7 and 11, which is exactly what a network reversal names in field 90;
- the reverse of the network's `RESPONSE_CODES` table (the switch's result -> the network's field 39).

No I/O: the keys are read through `NetworkKeys` (ports), everything else is computed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from switch.domain.ledger_types import Transfer, TransferKind
from switch.domain.model import Account, Card
from switch.domain.results import Result
from switch.iso.message import Message
from switch.pipeline.network_keys import NetworkKeys

__all__ = [
    "ADVICE_SUSPENSE_ACCOUNT_BASE",
    "ISSUER_TRANSACTIONS",
    "IssuerNetwork",
    "NetworkOriginal",
    "advice_recovery",
    "advice_recovery_id",
    "advice_rrn",
    "advice_suspense_account",
    "advice_suspense_account_id",
    "advice_suspense_card",
    "advice_suspense_reference",
    "issuer_response_codes",
    "network_transfer_id",
    "parse_network_original",
    "recovery_account",
]

# What a network may ask of us as issuer (the acquirer side forwards the same set). Transfers, PIN
# changes, loads, voids and completions have no message in the interbank contract yet.
ISSUER_TRANSACTIONS = frozenset({"purchase", "cashback", "refund", "withdrawal", "balance", "preauth"})

_INSTITUTION_DIGITS = 11
# Ledger ids of the advice suspense accounts (`network:<name>:<currency>:advice-suspense` in
# docs/networks.md), derived from that name like the settlement accounts' (switch.pipeline.forward), in a
# block of their own above those.
ADVICE_SUSPENSE_ACCOUNT_BASE = 8_500_000_000_000_000_000
# A result the network's table has no code for is answered with the nearest one it has; what is left
# is a plain decline.
_FALLBACK: Mapping[Result, Result] = {
    Result.UNSUPPORTED_CURRENCY: Result.INVALID_TRANSACTION,
    Result.FUNCTION_NOT_SUPPORTED: Result.INVALID_TRANSACTION,
    Result.NO_SUCH_ISSUER: Result.INVALID_CARD,
}
_PLAIN_DECLINE = "05"


def issuer_response_codes(table: Mapping[str, str]) -> dict[Result, str]:
    """Field 39 for every result, from a network's `RESPONSE_CODES` (code -> result name): the first
    code listed for the result (as netsim answers), else the code of its fallback, else do-not-honor."""
    first: dict[str, str] = {}
    for listed, name in table.items():
        first.setdefault(name, listed)
    decline = first.get(Result.DO_NOT_HONOR.value, _PLAIN_DECLINE)
    codes: dict[Result, str] = {}
    for result in Result:
        fallback = _FALLBACK.get(result)
        code: str | None = first.get(result.value)
        if code is None and fallback is not None:
            code = first.get(fallback.value)
        codes[result] = code or decline
    return codes


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuerNetwork:
    """One network as the issuer side answers it."""

    name: str
    keys: NetworkKeys  # the ZPKs its PIN blocks are under (field 53 names the index)
    settlement_accounts: Mapping[int, int]  # currency -> the network's settlement account id
    # currency -> the account an advice is booked to when the cardholder's account cannot take it
    # (advice_suspense_account_id); without one for the currency, such an advice is refused.
    suspense_accounts: Mapping[int, int] = field(default_factory=dict)
    # Builds the dialect's response to a request with a field 39 (the network codec's `response`).
    respond: Callable[[Message, str], Message]
    response_codes: Mapping[Result, str] = field(default_factory=dict)  # issuer_response_codes(table)

    @property
    def route(self) -> str:
        """The journal's and the canonical log line's route of what this network brings."""
        return f"issuer:{self.name}"

    def answer(self, request: Message, result: Result) -> Message:
        """The response to `request` with the network's code for `result`."""
        code = self.response_codes.get(result) or _PLAIN_DECLINE
        return self.respond(request, code)


def advice_suspense_account_id(network: str, currency: int) -> int:
    """The ledger id of the account where this network's advices in `currency` go that the cardholder's
    account cannot take: what the cardholder owes the bank for an approval the network made for us."""
    if not 1 <= currency <= 999:
        raise ValueError("currency must be an ISO 4217 numeric code")
    digest = int.from_bytes(hashlib.sha256(f"network:{network}:advice-suspense".encode()).digest()[:5], "big")
    return ADVICE_SUSPENSE_ACCOUNT_BASE + digest * 1000 + currency


_SUSPENSE_CARD = ":suspense:card:"


_SUSPENSE_ACCOUNT = re.compile(r":account:([0-9]+)" + re.escape(_SUSPENSE_CARD))


def advice_suspense_reference(rrn: str, card_id: int, account_id: int | None = None) -> str:
    """The reference of an advice booked to suspense: its RRN, the card's account the advice was for (the
    one field 3 chose, which pays it back) and the card it is owed by (the card's internal id, not its
    PAN), which is how a reversal of the advice is matched to its card."""
    account = f":account:{account_id}" if account_id is not None else ""
    return f"advice:rrn:{rrn}{account}{_SUSPENSE_CARD}{card_id}"


def advice_suspense_account(reference: str) -> int | None:
    """The card's account in the reference of an advice booked to suspense; None when it names none
    (booked before the account was recorded: the card's first account in the currency pays it)."""
    found = _SUSPENSE_ACCOUNT.search(reference) if reference.startswith("advice:rrn:") else None
    return int(found.group(1)) if found else None


def advice_suspense_card(reference: str) -> int | None:
    """The card id in the reference of an advice booked to suspense; None for any other reference."""
    if not reference.startswith("advice:rrn:"):
        return None
    _, found, card_id = reference.rpartition(_SUSPENSE_CARD)
    return int(card_id) if found and card_id.isdigit() else None


def advice_recovery_id(advice_id: str) -> str:
    """The ledger id of the cardholder's payment of an advice booked to suspense (`switchctl suspense
    recover`): from the card's recovery account to the suspense account, once."""
    return f"recover:{advice_id}"


def advice_recovery(advice: Transfer, account_id: int, amount: int) -> Transfer:
    """The cardholder's payment of `advice` (booked to suspense): `amount` from the card's account
    `account_id` to the suspense account the advice debited, under `advice_recovery_id`. The one shape
    of it, for `switchctl suspense recover` to post and for a reversal of the advice to give back."""
    return Transfer(
        transfer_id=advice_recovery_id(advice.transfer_id),
        kind=TransferKind.POSTED,
        debit_account_id=account_id,
        credit_account_id=advice.debit_account_id,
        amount=amount,
        currency=advice.currency,
        reference=f"advice:rrn:{advice_rrn(advice.reference)}:recovered",
    )


def advice_rrn(reference: str) -> str:
    """The RRN in the reference of an advice booked to suspense (`advice_suspense_reference`)."""
    return reference.removeprefix("advice:rrn:").split(":", 1)[0]


def recovery_account(card: Card, currency: int, named: int | None = None) -> Account | None:
    """The account of the card that pays an advice booked to suspense: the one the advice was for
    (`named`, from its reference) while it is still the card's in that currency, else its first in the
    advice's currency (in the card's own order, as the directory lists them and `switchctl suspense
    recover` picks it)."""
    in_currency = [account for account in card.accounts if account.currency == currency]
    return next((a for a in in_currency if a.account_id == named), in_currency[0] if in_currency else None)


def _institution(value: str) -> str:
    return value.rjust(_INSTITUTION_DIGITS, "0")[-_INSTITUTION_DIGITS:]


def network_transfer_id(network: str, *, acquirer: str, transmission: str, stan: str) -> str:
    """The ledger id of a network's request: network, acquiring institution (field 32, zero-filled to 11
    digits as field 90 carries it), field 7, field 11. A repeat of the request has the same id, and a
    reversal's field 90 names it."""
    return f"iss:{network}:{_institution(acquirer)}:{transmission}:{stan}"


@dataclass(frozen=True, slots=True)
class NetworkOriginal:
    """Field 90 of a network's reversal: the original's MTI, STAN, field 7, acquirer and forwarder."""

    mti: str
    stan: str
    transmission: str
    acquirer: str  # 11 digits
    forwarder: str  # 11 digits


def parse_network_original(field90: str | None) -> NetworkOriginal | None:
    """Field 90 (n42: MTI 4, STAN 6, field 7 10, field 32 11, field 33 11); None when absent or malformed."""
    if field90 is None or len(field90) != 42 or not field90.isdigit():
        return None
    return NetworkOriginal(
        mti=field90[:4],
        stan=field90[4:10],
        transmission=field90[10:20],
        acquirer=field90[20:31],
        forwarder=field90[31:42],
    )
