"""The network as issuer of its own cards: the answer to each financial request the member sends.

docs/networks.md "Messages the switch sends" is what arrives; this module decides, in order:
sign-on (a member that is not signed on gets 91), mandatory fields (30), repeats (the first answer
again, nothing applied twice), the card (14 unknown, 57 currency not supported, 41 lost, 43 stolen,
54 expired), the PIN (field 52 under the ZPK that field 53 names: 63 when that key is unknown or past
its grace, 55 wrong, 75 after `pin_tries_max` wrong PINs in a row), the processing code (12 when not
supported, 13 for a zero amount) and the funds (51). Approvals get an auth code (field 38) and move
money in the `Ledger`. Reversals (0400/0401/0420/0421) find their original by field 90 and apply once
(field 95 makes them partial), except that a pre-authorization's hold shrinks to what each reversal's 95
keeps (a partial reversal reduces it for its completion, a later full one releases the rest); an
unknown original is acknowledged 00 and remembered, so that the
original, should it still arrive, is declined rather than applied. Advices (0220/0221) apply once,
without checks: the member already approved them on the network's behalf; one whose field 90 names a
pre-authorization of ours completes it (what is left of the hold released, the advice's amount, at most
that, posted).

Codes are this network's (`RESPONSE_CODES` of specs/<network>.py, first code listed for a result). Pure
code: the caller passes the time, the sign-on state and the fault decision.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from hsm.crypto.errors import CryptoError
from hsm.crypto.pinblock import decrypt_pin_block
from simulators.netsim.clearing import ClearingRecord
from simulators.netsim.keys import ZpkRing, parse_field53
from simulators.netsim.ledger import HISTORY_MAX_DEFAULT, CardBase, Effect, Entry, Ledger, NetsimCard, TxnKey
from specs.demo_networks import DemoNetwork
from switch.iso.codec import Codec
from switch.iso.errors import MandatoryFieldError
from switch.iso.message import Message

__all__ = [
    "Issuer",
    "Outcome",
    "base_mti",
    "code_for",
    "identity",
    "original_identity",
    "pan_of",
    "response_codes",
]

PIN_TRIES_MAX_DEFAULT = 3
_DEBITS = frozenset({"00", "01", "09"})  # purchase, withdrawal, purchase with cashback
_REFUND = "20"
_BALANCE = "31"


def response_codes(network: str) -> Mapping[str, str]:
    """Field 39 -> result name, from specs/<network>.py."""
    table: Mapping[str, str] = importlib.import_module(f"specs.{network}").RESPONSE_CODES
    return table


def code_for(codes: Mapping[str, str], result: str) -> str:
    """The first code of the table that means `result` (the network's own choice for its declines)."""
    for code, name in codes.items():
        if name == result:
            return code
    raise KeyError(result)


def base_mti(mti: str) -> str:
    """The MTI with the repeat bit cleared: 0421 -> 0420, 0201 -> 0200."""
    return mti[:3] + str(int(mti[3]) & ~1)


def _institution(value: str | None) -> str:
    # Field 32 is LLVAR ("990001") but field 90 carries it as n11 ("00000990001"): compare without zeros.
    return (value or "").lstrip("0") or "0"


def identity(message: Message) -> TxnKey:
    """The identity of a request: MTI (repeat bit cleared), STAN, transmission time, acquirer ID."""
    return (base_mti(message.mti), message.get(11) or "", message.get(7) or "", _institution(message.get(32)))


def original_identity(field90: str | None) -> TxnKey | None:
    """The identity of the original a reversal names in field 90; None when the field is malformed."""
    if field90 is None or len(field90) != 42 or not (field90.isascii() and field90.isdigit()):
        return None
    if field90[2] not in "02":
        return None
    return (base_mti(field90[:4]), field90[4:10], field90[10:20], _institution(field90[20:31]))


def pan_of(message: Message) -> str | None:
    """Field 2, or the PAN of track 2 (field 35, separator '=' or 'D')."""
    pan = message.get(2)
    if pan is not None:
        return pan
    track = message.get(35)
    if track is None:
        return None
    for separator in ("=", "D", "d"):
        if separator in track:
            return track.split(separator, 1)[0]
    return None


def _expiry_of(message: Message) -> str | None:
    if message.get(14) is not None:
        return message.get(14)
    track = message.get(35)
    if track is None:
        return None
    for separator in ("=", "D", "d"):
        if separator in track:
            return track.split(separator, 1)[1][:4] or None
    return None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one request (None: a message that takes none) and what happened, for counters."""

    response: Message | None
    outcome: str
    result: str  # the result name of field 39 ("approved", "insufficient_funds", ...)
    clearing: ClearingRecord | None = None


class Issuer:
    """Answers the member's financial requests for the network's cards."""

    def __init__(
        self,
        network: DemoNetwork,
        *,
        codec: Codec,
        ledger: Ledger,
        ring: ZpkRing,
        pin_tries_max: int = PIN_TRIES_MAX_DEFAULT,
        history_max: int = HISTORY_MAX_DEFAULT,
    ) -> None:
        self.network = network
        self.codec = codec
        self.ledger = ledger
        self.cards: CardBase = ledger.cards
        self.ring = ring
        self.pin_tries_max = pin_tries_max
        self.codes = response_codes(network.name)
        self._history_max = history_max
        # Every answer by request identity: a repeat of any request gets its first answer again. Kept as
        # (MTI, fields, result): plain values, which Python's cycle collector does not track (as Outcome
        # and Message objects, `history_max` of them made every full collection pause the simulator).
        self._answers: OrderedDict[TxnKey, tuple[str | None, tuple[tuple[int, str], ...], str]] = (
            OrderedDict()
        )
        # Originals that a reversal named before they were seen: they must not be applied later.
        self._reversed_unseen: OrderedDict[TxnKey, None] = OrderedDict()
        self._auth_counter = 0
        self._auth_prefix = network.name[0].upper()

    # -- entry point ---------------------------------------------------------------------------------

    def handle(
        self,
        request: Message,
        *,
        now: float,
        now_utc: datetime,
        signed_on: bool,
        decline_code: str | None = None,
    ) -> Outcome:
        """The answer to one financial request. `now` is monotonic (key grace), `now_utc` the wall clock."""
        if request.mti[2] not in "02":
            return Outcome(None, "no_answer_expected", "none")
        if not signed_on:
            return self._respond(request, "issuer_inoperative", "not_signed_on")
        try:
            self.codec.validate(request)
        except MandatoryFieldError:
            return self._respond(request, "format_error", "format_error")
        mti = base_mti(request.mti)
        if mti in ("0100", "0200"):
            return self._remembered(request, lambda: self._authorize(request, now, now_utc, decline_code))
        if mti in ("0400", "0420"):
            return self._reverse(request, now_utc)
        if mti == "0220":
            return self._advice(request, now_utc)
        return self._respond(request, "invalid_transaction", "unsupported_mti")

    def _remembered(self, request: Message, decide: Callable[[], Outcome]) -> Outcome:
        key = identity(request)
        prior = self._answers.get(key)
        if prior is not None:
            mti, fields, result = prior
            return Outcome(None if mti is None else Message(mti, dict(fields)), "repeat", result)
        outcome = decide()
        self._remember(key, outcome)
        return outcome

    def _remember(self, key: TxnKey, outcome: Outcome) -> None:
        response = outcome.response
        if response is None:
            self._answers[key] = (None, (), outcome.result)
        else:
            self._answers[key] = (response.mti, tuple(response.items()), outcome.result)
        if len(self._answers) > self._history_max:
            self._answers.popitem(last=False)

    def _respond(
        self,
        request: Message,
        result: str,
        outcome: str,
        *,
        updates: Mapping[int, str | None] | None = None,
        clearing: ClearingRecord | None = None,
        code: str | None = None,
    ) -> Outcome:
        response = self.codec.response(
            request, response_code=code or code_for(self.codes, result), updates=updates
        )
        return Outcome(response, outcome, result, clearing)

    # -- authorizations (0100, 0200) -----------------------------------------------------------------

    def _authorize(
        self, request: Message, now: float, now_utc: datetime, decline_code: str | None
    ) -> Outcome:
        key = identity(request)
        if key in self._reversed_unseen:
            return self._respond(request, "do_not_honor", "reversed_before_seen")
        if decline_code is not None:
            result = self.codes.get(decline_code, "issuer_inoperative")
            return self._respond(request, result, "declined_by_fault", code=decline_code)
        pan = pan_of(request)
        card = self.cards.find(pan) if pan is not None else None
        if card is None or pan is None:
            return self._respond(request, "invalid_card", "declined")
        currency = int(request.get(49) or "0")
        if currency not in self.network.currencies:
            return self._respond(request, "not_permitted_to_cardholder", "declined")
        if card.status == "lost":
            return self._respond(request, "lost_card", "declined")
        if card.status == "stolen":
            return self._respond(request, "stolen_card", "declined")
        today = now_utc.strftime("%y%m")
        presented = _expiry_of(request)
        if card.expiry_yymm < today or (presented is not None and presented < today):
            return self._respond(request, "expired_card", "declined")
        pin_result = self._check_pin(request, pan, card, now)
        if pin_result is not None:
            if pin_result == "incorrect_pin":
                card.wrong_pins += 1
            return self._respond(request, pin_result, "declined")
        if request.get(52) is not None:
            card.wrong_pins = 0
        processing = (request.get(3) or "")[:2]
        amount = int(request.get(4) or "0")
        effect: Effect
        if processing == _BALANCE:
            return self._approve(request, now_utc, pan, currency, amount=0, effect=None)
        if processing in _DEBITS:
            effect = "hold" if request.mti.startswith("01") else "debit"
            if amount <= 0:
                return self._respond(request, "invalid_amount", "declined")
            if amount > card.available(currency):
                return self._respond(request, "insufficient_funds", "declined")
        elif processing == _REFUND and request.mti.startswith("02"):
            effect = "credit"
            if amount <= 0:
                return self._respond(request, "invalid_amount", "declined")
        else:
            return self._respond(request, "invalid_transaction", "declined")
        return self._approve(request, now_utc, pan, currency, amount=amount, effect=effect)

    def _check_pin(self, request: Message, pan: str, card: NetsimCard, now: float) -> str | None:
        """None when there is no PIN block or it holds the card's PIN; else the result to decline with."""
        block = request.get(52)
        if block is None:
            return None
        if card.wrong_pins >= self.pin_tries_max:
            return "pin_tries_exceeded"
        named = request.get(53)
        # Without field 53 the block is taken to be under the current key (a lenient reading).
        current = self.ring.current.index if self.ring.current is not None else None
        index = parse_field53(named) if named is not None else current
        zone_key = self.ring.key_for(index, now) if index is not None else None
        if zone_key is None:
            return "security_violation"
        try:
            pin = decrypt_pin_block(bytes.fromhex(block), pan, 0, zone_key.key)
        except (CryptoError, ValueError):
            return "security_violation"
        if pin != card.pin:
            return "incorrect_pin"
        return None

    def _next_auth_code(self) -> str:
        self._auth_counter = self._auth_counter % 99_999 + 1
        return f"{self._auth_prefix}{self._auth_counter:05d}"

    def _approve(
        self,
        request: Message,
        now_utc: datetime,
        pan: str,
        currency: int,
        *,
        amount: int,
        effect: Effect | None,
    ) -> Outcome:
        auth_code = self._next_auth_code()
        updates: dict[int, str | None] = {38: auth_code}
        clearing = None
        if effect is not None:
            entry = self._entry(request, pan, currency, amount, effect, auth_code)
            self.ledger.apply(identity(request), entry)
            clearing = self._clearing(request, now_utc, pan, currency, amount, auth_code)
        card = self.cards.find(pan)
        assert card is not None
        if effect is None:
            updates[54] = _balances(card.posted.get(currency, 0), card.available(currency), currency)
        return self._respond(request, "approved", "approved", updates=updates, clearing=clearing)

    def _entry(
        self, request: Message, pan: str, currency: int, amount: int, effect: Effect, auth_code: str
    ) -> Entry:
        return Entry(
            role="issuer",
            effect=effect,
            pan=pan,
            currency=currency,
            amount_minor=amount,
            mti=request.mti,
            stan=request.get(11) or "",
            transmission=request.get(7) or "",
            rrn=request.get(37) or "",
            acquirer_id=request.get(32) or "",
            auth_code=auth_code,
        )

    def _clearing(
        self,
        request: Message,
        now_utc: datetime,
        pan: str,
        currency: int,
        amount: int,
        auth_code: str,
    ) -> ClearingRecord:
        return ClearingRecord.of(
            business_date=now_utc.date(),
            role="issuer",
            mti=request.mti,
            stan=request.get(11) or "",
            transmission=request.get(7) or "",
            rrn=request.get(37) or "",
            acquirer_id=request.get(32) or "",
            pan=pan,
            amount_minor=amount,
            currency=currency,
            auth_code=auth_code,
            response_code="00",
        )

    # -- reversals (0400, 0420 and repeats) ----------------------------------------------------------

    def _reverse(self, request: Message, now_utc: datetime) -> Outcome:
        original = original_identity(request.get(90))
        if original is None:
            return self._respond(request, "format_error", "format_error")
        entry = self.ledger.get(original)
        if entry is None:
            if original not in self._answers:
                self._reversed_unseen[original] = None
                if len(self._reversed_unseen) > self._history_max:
                    self._reversed_unseen.popitem(last=False)
                return self._respond(request, "approved", "reversal_unknown")
            return self._respond(request, "approved", "reversal_of_decline")
        replacement = request.get(95)
        keep = int(replacement[:12]) if replacement is not None and replacement[:12].isdigit() else 0
        if entry.effect == "hold":
            # A hold shrinks to what 95 keeps (nothing without it): a partial reversal reduces it for the
            # completion to come, a later full one releases the rest, repeats change nothing.
            reversed_minor = self.ledger.reduce_hold(original, keep)
            if not reversed_minor:
                return self._respond(request, "approved", "reversal_repeat")
        else:
            if entry.reversal_applied:
                return self._respond(request, "approved", "reversal_repeat")
            reversed_minor = self.ledger.reverse(original, max(0, entry.amount_minor - keep))
        clearing = ClearingRecord.of(
            business_date=now_utc.date(),
            role="issuer",
            mti=request.mti,
            stan=request.get(11) or "",
            transmission=request.get(7) or "",
            rrn=request.get(37) or entry.rrn,
            acquirer_id=request.get(32) or entry.acquirer_id,
            pan=entry.pan,
            amount_minor=reversed_minor,
            currency=entry.currency,
            auth_code=entry.auth_code,
            response_code="00",
        )
        return self._respond(request, "approved", "reversal_applied", clearing=clearing)

    # -- advices (0220, 0221) ------------------------------------------------------------------------

    def _advice(self, request: Message, now_utc: datetime) -> Outcome:
        key = identity(request)
        if self.ledger.get(key) is not None or key in self._answers:
            return self._respond(request, "approved", "advice_repeat")
        named = original_identity(request.get(90))
        held = self.ledger.get(named) if named is not None else None
        if named is not None and held is not None and held.effect == "hold":
            return self._completion(request, now_utc, key, named, held)
        pan = pan_of(request)
        card = self.cards.find(pan) if pan is not None else None
        amount = int(request.get(4) or "0")
        if card is None or pan is None or amount <= 0:
            # Acknowledged all the same: an advice is not a question, and a repeat would change nothing.
            outcome = self._respond(request, "approved", "advice_not_applicable")
            self._remember(key, outcome)
            return outcome
        currency = int(request.get(49) or "0")
        effect: Effect = "credit" if (request.get(3) or "").startswith(_REFUND) else "debit"
        auth_code = request.get(38) or self._next_auth_code()
        self.ledger.apply(key, self._entry(request, pan, currency, amount, effect, auth_code))
        clearing = self._clearing(request, now_utc, pan, currency, amount, auth_code)
        return self._respond(request, "approved", "advice_applied", clearing=clearing)

    def _completion(
        self, request: Message, now_utc: datetime, key: TxnKey, hold_key: TxnKey, held: Entry
    ) -> Outcome:
        """An advice naming one of our pre-authorizations (field 90): the member completed it. The hold is
        released and the advice's amount (at most what is left of it) posted, once; an advice for another card or
        more than the hold, or of a hold completed or reversed already, is acknowledged without effect."""
        amount = int(request.get(4) or "0") if (request.get(4) or "").isdigit() else 0
        pan = pan_of(request)
        entry = self._entry(request, held.pan, held.currency, amount, "debit", held.auth_code)
        if pan != held.pan or not self.ledger.complete(hold_key, key, entry):
            outcome = self._respond(request, "approved", "completion_not_applicable")
            self._remember(key, outcome)
            return outcome
        clearing = self._clearing(request, now_utc, held.pan, held.currency, amount, held.auth_code)
        return self._respond(request, "approved", "completion_applied", clearing=clearing)


def _balances(ledger_minor: int, available_minor: int, currency: int) -> str:
    """Field 54: account type 00, amount types 01 (ledger) and 02 (available), C or D, 12 digits."""

    def group(amount_type: str, amount: int) -> str:
        return f"00{amount_type}{currency:03d}{'C' if amount >= 0 else 'D'}{abs(amount):012d}"

    return group("01", ledger_minor) + group("02", available_minor)
