"""The authorization pipeline: one flat run of guard clauses per request, for three kinds of request.

Terminal requests for our cards (on-us):
validate format -> identify terminal/merchant -> MAC -> retransmission check -> card lookup -> card
checks (status, expiry, lists, product and terminal rules, currency, track 2 CVV) -> PIN (HSM) ->
limits -> ledger (one round trip, batched with concurrent requests) -> response.

Terminal requests for cards we do not issue (acquirer side, when `routes` and `forwarder` are given):
the same format, terminal, merchant and MAC steps, then the terminal's own rules (its allowed
transactions, the lists), the routing decision (`switch.domain.routing.decide`) and the forwarder
(`switch.pipeline.forward`), which translates the PIN block and sends the request to the network. No
route for the card (no BIN range holds it, or rules exclude every network) is 15, no such issuer. A
terminal's reversal goes to the forwarder first; it reverses what it forwarded and says None otherwise.

A network's requests for our cards (issuer side, `handle_network`): the very card checks of on-us,
except that the PIN block is under the network's zone PIN key of field 53 and there is no terminal or
merchant of ours (the network's terminal and merchant ids are checked against the lists); the credit
goes to the network's settlement account, and the answer uses the network's response codes.

Each step that declines returns a `Result`; the edge maps it to field 39 (`TERMINAL_RESPONSE_CODES`, or
the network's table). Exceptions are for bugs and for a broken HSM or database (answered 96 by the
caller). The pipeline does no I/O of its own: it talks to the ports, and returns an `Outcome` that the
caller journals and logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import trio

from switch.domain.business_day import UTC_DAY, BusinessDay
from switch.domain.dukpt import KsnProblem, MemoryKsnCounters, ksn_for_request, parse_field53
from switch.domain.ledger_types import (
    Transfer,
    TransferKind,
    TransferResult,
    give_back,
    reduced_hold_id,
    resolve_pending,
    reverse_posted,
)
from switch.domain.model import AccountKind, Card, CardStatus, Merchant, Pan, PinMethod, Terminal
from switch.domain.results import TERMINAL_RESPONSE_CODES, Result
from switch.domain.routing import ON_US, DecisionKind, decide
from switch.domain.transactions import (
    DEBITS,
    AdditionalAmount,
    CardData,
    Classified,
    OriginalData,
    TransactionType,
    auth_code_for,
    classify,
    format_additional_amounts,
    parse_amount,
    parse_card_data,
    parse_original_data,
    parse_replacement_amount,
    retrieval_reference,
    transmission_datetime,
)
from switch.domain.translation import AcquiredRequest
from switch.domain.translation import parse_field53 as parse_zone_key_field53
from switch.iso.message import Message
from switch.logs import get_logger
from switch.pipeline.forward import Forwarder, ForwardRequest
from switch.pipeline.holds import hold_reduced, partial_void_id, release, release_late_reduced_hold
from switch.pipeline.issuer import (
    ISSUER_TRANSACTIONS,
    IssuerNetwork,
    advice_recovery,
    advice_recovery_id,
    advice_suspense_account,
    advice_suspense_card,
    advice_suspense_reference,
    network_transfer_id,
    parse_network_original,
    recovery_account,
)
from switch.ports import (
    CardDirectory,
    Clock,
    DukptPinKey,
    Hsm,
    Ibm3624Offset,
    KsnCounters,
    Ledger,
    PinKey,
    PinVerification,
    Routes,
    TpkPinKey,
    VisaPvv,
)

__all__ = ["Answerer", "Authorizer", "NetworkRequests", "Outcome"]

log = get_logger("authorize")

Responder = Callable[[Message, str], Message]

# Entry modes whose card data came from the chip (iCVV, service code 999, instead of the stripe's CVV).
_CHIP_ENTRY = ("05", "07")
_PIN_REQUIRED = frozenset(
    {
        TransactionType.WITHDRAWAL,
        TransactionType.TRANSFER,
        TransactionType.PIN_CHANGE,
        TransactionType.BALANCE,
    }
)
_TRANSFER_TO_RESULT = {
    TransferResult.EXCEEDS_CREDITS: Result.INSUFFICIENT_FUNDS,
    TransferResult.EXCEEDS_AMOUNT_LIMIT: Result.EXCEEDS_AMOUNT_LIMIT,
    TransferResult.EXCEEDS_COUNT_LIMIT: Result.EXCEEDS_FREQUENCY_LIMIT,
    TransferResult.EXISTS_WITH_DIFFERENT_FIELDS: Result.DUPLICATE,
    TransferResult.BARRED: Result.DO_NOT_HONOR,  # its reversal came first
    TransferResult.CURRENCY_MISMATCH: Result.UNSUPPORTED_CURRENCY,
    TransferResult.PENDING_NOT_FOUND: Result.RECORD_NOT_FOUND,
    TransferResult.PENDING_ALREADY_POSTED: Result.RECORD_NOT_FOUND,
    TransferResult.PENDING_ALREADY_VOIDED: Result.RECORD_NOT_FOUND,
    TransferResult.PENDING_EXPIRED: Result.RECORD_NOT_FOUND,
    TransferResult.EXCEEDS_PENDING_AMOUNT: Result.INVALID_AMOUNT,
    TransferResult.REVERSED_NOT_FOUND: Result.RECORD_NOT_FOUND,
    TransferResult.ALREADY_REVERSED: Result.RECORD_NOT_FOUND,
    TransferResult.EXCEEDS_REVERSED_AMOUNT: Result.INVALID_AMOUNT,
    TransferResult.AMOUNT_MUST_BE_POSITIVE: Result.INVALID_AMOUNT,
}
_RETRANSMISSION_CACHE_MAX = 50_000

# An answer kept for retransmissions, as plain values only: response MTI (or None), response fields as
# (number, value) pairs, result value, transaction type, masked PAN, route, transfer id, RRN, auth code,
# amount, currency. Strings, numbers and tuples of them are not tracked by Python's cycle collector,
# so 50,000 remembered answers cost a full collection next to nothing; kept as Outcome and Message
# objects they were a few hundred thousand objects that every full collection walked (pauses of 50 ms
# and more, growing with the cache, in `make bench ARGS=switch`).
_Remembered = tuple[
    str | None,
    tuple[tuple[int, str], ...],
    str,
    str,
    str,
    str,
    str | None,
    str,
    str,
    int | None,
    int | None,
]


def _remembered(outcome: Outcome) -> _Remembered:
    response = outcome.response
    return (
        response.mti if response is not None else None,
        tuple(response.items()) if response is not None else (),
        outcome.result.value,
        outcome.transaction_type,
        outcome.pan_masked,
        outcome.route,
        outcome.transfer_id,
        outcome.rrn,
        outcome.auth_code,
        outcome.amount,
        outcome.currency,
    )


def _recalled(kept: _Remembered) -> Outcome:
    """The remembered answer, marked as the answer to a retransmission."""
    (
        mti,
        fields,
        result,
        transaction_type,
        pan_masked,
        route,
        transfer_id,
        rrn,
        auth_code,
        amount,
        currency,
    ) = kept
    return Outcome(
        Message(mti, dict(fields)) if mti is not None else None,
        Result(result),
        transaction_type=transaction_type,
        pan_masked=pan_masked,
        route=route,
        transfer_id=transfer_id,
        rrn=rrn,
        auth_code=auth_code,
        amount=amount,
        currency=currency,
        retransmission=True,
    )


@dataclass(slots=True)
class Outcome:
    """What happened, for the journal, the canonical log line and the metrics."""

    response: Message | None
    result: Result
    transaction_type: str = ""
    pan_masked: str = ""
    route: str = "on-us"
    transfer_id: str | None = None
    rrn: str = ""
    auth_code: str = ""
    amount: int | None = None
    currency: int | None = None
    retransmission: bool = False
    # Set when the terminal MACs: the response gets its MAC under this TAK (under the LMK) before it goes.
    mac_tak: str | None = None


@dataclass(slots=True)
class _Context:
    request: Message
    classified: Classified
    # Where the card is used. On the issuer side: the network's terminal and merchant ids, and the
    # network's settlement account where our merchant's would be.
    terminal: Terminal
    merchant: Merchant
    own_id: str  # the request's ledger identity (idempotency key of what it moves)
    issuer: IssuerNetwork | None = None  # set for a network's request (issuer side)
    card_data: CardData | None = None
    card: Card | None = None
    amount: int | None = None
    currency: int | None = None
    rrn: str = ""
    transmitted: datetime | None = None
    transfer_id: str | None = None
    extra: dict[int, str] = field(default_factory=dict)
    pin_key: PinKey | None = None  # set once the PIN check has found the terminal's PIN key
    route: str = ON_US
    auth_code: str | None = None  # the network's field 38 of a forwarded approval (None: derive ours)


class Answerer(Protocol):
    """What the edge (switch.terminal_service) drives: answers, and the answer when a dependency failed."""

    async def handle(self, request: Message) -> Outcome: ...

    async def system_failure(self, request: Message) -> Outcome: ...


class Authorizer:
    def __init__(
        self,
        *,
        directory: CardDirectory,
        ledger: Ledger,
        hsm: Hsm,
        clock: Clock,
        respond: Responder,
        encode: Callable[[Message], bytes],
        routes: Routes | None = None,
        forwarder: Forwarder | None = None,
        ksn_counters: KsnCounters | None = None,
        business: BusinessDay = UTC_DAY,
    ) -> None:
        if (routes is None) != (forwarder is None):
            raise ValueError("forwarding needs both the routing table and the forwarder")
        self.directory = directory
        self.ledger = ledger
        self.hsm = hsm
        self.clock = clock
        self.routes = routes
        self.forwarder = forwarder
        # The bank's calendar: daily limits and card dates are on its dates, not UTC's.
        self.business = business
        self._respond = respond
        self._encode = encode
        # identity -> (fingerprint, the outcome as plain values): answers a retransmission with the
        # original response.
        self._recent: OrderedDict[str, tuple[str, _Remembered]] = OrderedDict()
        # identity -> set when its first copy has been answered: a copy that arrives meanwhile waits for it.
        self._in_flight: dict[str, trio.Event] = {}
        # ledger identity (own_id) of a request being answered -> set when it has been: a reversal naming
        # it meanwhile waits for it, instead of finding nothing in the ledger yet and acknowledging.
        self._deciding: dict[str, trio.Event] = {}
        # DUKPT transaction counters each PIN pad has used (replays are refused): switchd's are in the
        # database, shared by its processes and kept across restarts; without one, this process's memory.
        self.ksn_counters: KsnCounters = ksn_counters if ksn_counters is not None else MemoryKsnCounters()

    # -- entry ---------------------------------------------------------------------------------------

    async def handle(self, request: Message) -> Outcome:
        mti = request.mti
        if mti[2] not in "02":  # responses and notifications are not answered
            return Outcome(None, Result.APPROVED, transaction_type="none")
        if mti[:2] == "08":
            return await self._network_management(request)
        return await self._once(request, _identity(request), None)

    async def _once(self, request: Message, identity: str | None, issuer: IssuerNetwork | None) -> Outcome:
        """Answer `request` once per identity: a retransmission gets the first answer."""
        fingerprint = _fingerprint(request)
        if identity is None:
            # Without terminal, time and STAN there is nothing to match a retransmission by: the format
            # check answers it, and nothing is remembered under a half-empty key.
            return await self._answer(request, None, fingerprint, issuer)
        while (first := self._in_flight.get(identity)) is not None:
            # A copy sent while the first is still being answered (a terminal's short timeout, say) gets
            # the first's answer, not a second PIN check or a second try at the ledger.
            await first.wait()
        seen = self._recent.get(identity)
        if seen is not None:
            if seen[0] == fingerprint:
                return _recalled(seen[1])
            return self._decline(request, Result.DUPLICATE, None, issuer=issuer)
        done = self._in_flight[identity] = trio.Event()
        try:
            return await self._answer(request, identity, fingerprint, issuer)
        finally:
            del self._in_flight[identity]
            done.set()

    async def _answer(
        self, request: Message, identity: str | None, fingerprint: str, issuer: IssuerNetwork | None
    ) -> Outcome:
        if issuer is None:
            outcome = await self._financial(request)
        else:
            outcome = await self._network_financial(issuer, request)
        if outcome.mac_tak is not None and outcome.response is not None:
            outcome.response = await self._with_mac(outcome.response, outcome.mac_tak)
        if identity is not None:
            self._remember(identity, fingerprint, outcome)
        return outcome

    @contextlib.contextmanager
    def _deciding_on(self, own_id: str | None) -> Iterator[None]:
        """Mark `own_id` as being answered for the block (None, or already marked: nothing to do)."""
        if own_id is None or own_id in self._deciding:
            yield
            return
        done = self._deciding[own_id] = trio.Event()
        try:
            yield
        finally:
            del self._deciding[own_id]
            done.set()

    async def _original_decided(self, original_id: str) -> None:
        """Wait until the original named `original_id` is no longer being answered in this process.

        A reversal can overtake its original: both in flight on one connection, or a terminal that gave
        up early while the original waits for the ledger (or a network). Looked up before the original's
        posting is committed, the original would be "unknown", the reversal acknowledged without effect,
        and the original would then take the money anyway.
        """
        while (deciding := self._deciding.get(original_id)) is not None:
            await deciding.wait()

    def _remember(self, identity: str, fingerprint: str, outcome: Outcome) -> None:
        self._recent[identity] = (fingerprint, _remembered(outcome))
        if len(self._recent) > _RETRANSMISSION_CACHE_MAX:
            self._recent.popitem(last=False)

    # -- network management --------------------------------------------------------------------------

    async def _network_management(self, request: Message) -> Outcome:
        code = request.get(70)
        if code == "301":
            # An echo only proves the link is alive; it is answered whoever asks (it serves nothing).
            return Outcome(self._respond(request, "00"), Result.APPROVED, transaction_type="netmgmt:301")
        if code not in ("001", "002", "101"):
            return self._decline(request, Result.FUNCTION_NOT_SUPPORTED, None, txn="netmgmt")
        terminal, refused = await self._served_terminal(request)
        if terminal is None:
            return self._decline(request, refused, None, txn=f"netmgmt:{code}")
        if code == "101":
            return await self._key_exchange(request, terminal)
        return Outcome(self._respond(request, "00"), Result.APPROVED, transaction_type=f"netmgmt:{code}")

    async def _served_terminal(self, request: Message) -> tuple[Terminal | None, Result]:
        """The configured, active terminal of a sign-on or key exchange; else why it is refused.

        Field 42 is optional on network management; when present it must be the terminal's merchant.
        """
        terminal = await self.directory.terminal(request.get(41) or "")
        if terminal is None or not terminal.active:
            return None, Result.NOT_PERMITTED_TO_TERMINAL
        merchant_id = request.get(42)
        if merchant_id is not None:
            merchant = await self.directory.merchant(merchant_id)
            if merchant is None or not merchant.active or terminal.merchant_id != merchant.merchant_id:
                return None, Result.INVALID_MERCHANT
        return terminal, Result.APPROVED

    async def _key_exchange(self, request: Message, terminal: Terminal) -> Outcome:
        if not terminal.tmk_under_lmk:
            return self._decline(request, Result.NOT_PERMITTED_TO_TERMINAL, None, txn="netmgmt:101")
        tpk = await self.hsm.generate_working_key(kind="tpk", tmk=terminal.tmk_under_lmk)
        tak = await self.hsm.generate_working_key(kind="tak", tmk=terminal.tmk_under_lmk)
        await self.directory.set_terminal_keys(
            terminal.terminal_id, tpk_under_lmk=tpk.under_lmk, tak_under_lmk=tak.under_lmk
        )
        field48 = f"TPK{_strip_scheme(tpk.under_tmk)}{tpk.check_value}TAK{_strip_scheme(tak.under_tmk)}{tak.check_value}"
        response = self._respond(request, "00").with_fields({48: field48})
        return Outcome(response, Result.APPROVED, transaction_type="netmgmt:101")

    # -- financial -----------------------------------------------------------------------------------

    async def _financial(self, request: Message) -> Outcome:
        classified = classify(request.mti, request.get(3) or "", request.get(25))
        if classified is None:
            return self._decline(request, Result.INVALID_TRANSACTION, None)
        if any(request.get(n) is None for n in (3, 7, 11, 41, 42)):
            return self._decline(request, Result.FORMAT_ERROR, None, txn=classified.type)
        own_id = _transfer_id(request)
        with self._deciding_on(None if classified.reversal else own_id):
            return await self._terminal_financial(request, classified, own_id)

    async def _terminal_financial(self, request: Message, classified: Classified, own_id: str) -> Outcome:
        terminal = await self.directory.terminal(request[41])
        if terminal is None or not terminal.active:
            return self._decline(request, Result.NOT_PERMITTED_TO_TERMINAL, None, txn=classified.type)
        merchant = await self.directory.merchant(request[42])
        if merchant is None or not merchant.active or terminal.merchant_id != merchant.merchant_id:
            return self._decline(request, Result.INVALID_MERCHANT, None, txn=classified.type)
        ctx = _Context(
            request=request,
            classified=classified,
            terminal=terminal,
            merchant=merchant,
            own_id=own_id,
        )
        transmitted = transmission_datetime(request[7], self.clock.now())
        if transmitted is None:
            return self._decline(request, Result.FORMAT_ERROR, None, txn=classified.type)
        ctx.transmitted = transmitted
        ctx.rrn = request.get(37) or retrieval_reference(transmitted, ctx.own_id)
        if terminal.mac_required and not await self._mac_ok(ctx):
            return self._finish(ctx, Result.SECURITY_VIOLATION)
        if classified.reversal:
            return await self._reversal(ctx)
        if classified.type in (TransactionType.COMPLETION, TransactionType.VOID):
            return await self._follow_up(ctx)
        return await self._authorize(ctx)

    async def _mac_ok(self, ctx: _Context) -> bool:
        mac = ctx.request.get(64)
        if mac is None or not ctx.terminal.tak_under_lmk:
            return False
        data = self._encode(ctx.request)[:-8]
        try:
            mac_bytes = bytes.fromhex(mac)
        except ValueError:
            return False
        return await self.hsm.verify_mac(tak=ctx.terminal.tak_under_lmk, data=data, mac=mac_bytes)

    @property
    def _forwarding(self) -> bool:
        return self.forwarder is not None

    async def _card_checks(self, ctx: _Context, *, pin: bool) -> Result | None:
        """Card lookup and every card rule; None when the card may transact."""
        declined = await self._find_card(ctx)
        if declined is not None:
            return declined
        if ctx.card is None:
            return Result.INVALID_CARD
        return await self._check_card(ctx, ctx.card, pin=pin)

    async def _find_card(self, ctx: _Context) -> Result | None:
        """The card data of the request and, if we issue the card, the card (`ctx.card`; None: not ours)."""
        request = ctx.request
        ctx.card_data = parse_card_data(request.get(2), request.get(35), request.get(14))
        if ctx.card_data is None:
            return Result.FORMAT_ERROR
        pan = ctx.card_data.pan
        if not pan.luhn_ok:
            return Result.INVALID_CARD
        ctx.card = await self.directory.card_by_pan(pan)
        return None

    async def _check_card(self, ctx: _Context, card: Card, *, pin: bool) -> Result | None:
        """Every rule for one of our cards: status, dates, lists, product and terminal, currency, CVV, PIN."""
        request, t = ctx.request, ctx.classified.type
        assert ctx.card_data is not None
        pan = ctx.card_data.pan
        status_result = _STATUS_RESULT.get(card.status)
        if status_result is not None:
            return status_result
        today = self.business.local(self.clock.now())
        if card.activation_date is not None and card.activation_date > today.date():
            return Result.NOT_PERMITTED_TO_CARDHOLDER  # issued active, but valid only from a later date
        if card.expiry_yymm < today.strftime("%y%m"):
            return Result.EXPIRED_CARD
        if ctx.card_data.expiry_yymm is not None and ctx.card_data.expiry_yymm != card.expiry_yymm:
            return Result.EXPIRED_CARD
        listed = await self.directory.list_entry(pan, ctx.terminal.terminal_id, ctx.merchant.merchant_id)
        if listed is not None:
            return Result.PICK_UP if listed.response_code == "04" else Result.RESTRICTED_CARD
        if t.value not in card.product.allowed_transactions:
            return Result.NOT_PERMITTED_TO_CARDHOLDER
        if ctx.terminal.allowed_transactions and t.value not in ctx.terminal.allowed_transactions:
            return Result.NOT_PERMITTED_TO_TERMINAL
        currency_text = request.get(49)
        if currency_text is not None and (
            not currency_text.isdigit() or int(currency_text) != card.product.currency
        ):
            return Result.UNSUPPORTED_CURRENCY
        ctx.currency = card.product.currency
        if ctx.card_data.from_track2 and card.product.cvk_under_lmk and not await self._cvv_ok(ctx, card):
            return Result.SUSPECTED_FRAUD
        if pin or request.get(52) is not None:
            return await self._pin_check(ctx, card)
        return None

    async def _cvv_ok(self, ctx: _Context, card: Card) -> bool:
        data = ctx.card_data
        assert data is not None
        if data.service_code is None or data.discretionary is None or len(data.discretionary) < 8:
            return False
        chip = (ctx.request.get(22) or "")[:2] in _CHIP_ENTRY
        return await self.hsm.verify_cvv(
            cvk=card.product.cvk_under_lmk,
            pan=data.pan.digits,
            expiry_yymm=data.expiry_yymm or card.expiry_yymm,
            service_code="999" if chip else data.service_code,
            cvv=data.discretionary[5:8],
        )

    async def _pin_check(self, ctx: _Context, card: Card) -> Result | None:
        if card.pin_tries >= card.product.pin_tries_max:
            return Result.PIN_TRIES_EXCEEDED
        pin_block = ctx.request.get(52)
        if pin_block is None:
            return Result.INCORRECT_PIN
        try:
            block = bytes.fromhex(pin_block)
        except ValueError:
            return Result.FORMAT_ERROR
        assert ctx.card_data is not None
        if ctx.issuer is not None:
            zpk = await self._zone_pin_key(ctx, ctx.issuer)
            if isinstance(zpk, Result):
                return zpk  # refused before the HSM, and never counted as a wrong PIN
            if not card.pin_verification_value:
                return Result.INCORRECT_PIN
            ok = await self.hsm.verify_pin_under_zpk(
                zpk=zpk,
                pin_block=block,
                pan=ctx.card_data.pan.digits,
                method=_pin_verification(card),
                value=card.pin_verification_value,
            )
        else:
            key = await self._pin_key(ctx)
            if isinstance(key, Result):
                return key  # refused before the HSM, and never counted as a wrong PIN
            ctx.pin_key = key
            if not card.pin_verification_value:
                return Result.INCORRECT_PIN  # no PIN set for this card: nothing can match, nothing to count
            ok = await self.hsm.verify_pin(
                key=key,
                pin_block=block,
                pan=ctx.card_data.pan.digits,
                method=_pin_verification(card),
                value=card.pin_verification_value,
            )
        if ok:
            if card.pin_tries:
                await self.directory.record_pin_result(card.card_id, ok=True)
            return None
        tries = await self.directory.record_pin_result(card.card_id, ok=False)
        return Result.PIN_TRIES_EXCEEDED if tries >= card.product.pin_tries_max else Result.INCORRECT_PIN

    async def _zone_pin_key(self, ctx: _Context, issuer: IssuerNetwork) -> str | Result:
        """The ZPK (under the LMK) a network's PIN block is under: the key of field 53's index (without
        field 53, the current one); the previous key only within its grace period."""
        field53 = ctx.request.get(53)
        if field53 is None:
            current = await issuer.keys.sending_key()
            return current.under_lmk if current is not None else Result.SECURITY_VIOLATION
        index = parse_zone_key_field53(field53)
        if index is None:
            return Result.FORMAT_ERROR
        key = await issuer.keys.receiving_key(index)
        return key.under_lmk if key is not None else Result.SECURITY_VIOLATION

    async def _pin_key(self, ctx: _Context) -> PinKey | Result:
        """The key the terminal's PIN blocks are under: its TPK, or the DUKPT key of the KSN in field 53.

        A KSN of another PIN pad, a replayed counter, or a DUKPT field 53 from a terminal set up for a TPK
        is a security violation: the PIN was never tried, so it must not count against the cardholder.
        """
        terminal, field53 = ctx.terminal, ctx.request.get(53)
        if terminal.dukpt is None:
            if parse_field53(field53) is not None:
                return Result.SECURITY_VIOLATION  # a DUKPT PIN pad where the switch expects a TPK
            if not terminal.tpk_under_lmk:
                return Result.SECURITY_VIOLATION  # the terminal never exchanged keys
            return TpkPinKey(tpk=terminal.tpk_under_lmk)
        ksn = ksn_for_request(terminal.dukpt, field53)
        if ksn is KsnProblem.MALFORMED:
            return Result.FORMAT_ERROR
        if isinstance(ksn, KsnProblem):
            return Result.SECURITY_VIOLATION
        if not await self.ksn_counters.use(ksn.pin_pad, ksn.counter, _transfer_id(ctx.request)):
            return Result.SECURITY_VIOLATION
        return DukptPinKey(bdk=terminal.dukpt.bdk_under_lmk, ksn=ksn.hex)

    async def _authorize(self, ctx: _Context) -> Outcome:
        t = ctx.classified.type
        request = ctx.request
        if t not in (TransactionType.BALANCE, TransactionType.PIN_CHANGE):
            ctx.amount = parse_amount(request.get(4))
            if ctx.amount is None or ctx.amount <= 0:
                return self._finish(ctx, Result.INVALID_AMOUNT)
        pin = t in _PIN_REQUIRED and (ctx.terminal.kind == "atm" or t is not TransactionType.BALANCE)
        declined = await self._find_card(ctx)
        if declined is not None:
            return self._finish(ctx, declined)
        card = ctx.card
        if card is None:
            if self._forwarding and ctx.issuer is None:
                return await self._forward(ctx, pin=pin)
            return self._finish(ctx, Result.INVALID_CARD)
        declined = await self._check_card(ctx, card, pin=pin)
        if declined is not None:
            return self._finish(ctx, declined)
        account = card.account_for(_account_kind(ctx.classified.from_account))
        if account is None:
            return self._finish(ctx, Result.NOT_PERMITTED_TO_CARDHOLDER)
        if t is TransactionType.BALANCE:
            return await self._balance(ctx, account.account_id)
        if t is TransactionType.PIN_CHANGE:
            return await self._pin_change(ctx, card)
        amount = ctx.amount
        assert amount is not None
        per_txn_max = card.product.per_transaction_amount_max.get(t.value)
        if per_txn_max is not None and amount > per_txn_max:
            return self._finish(ctx, Result.EXCEEDS_AMOUNT_LIMIT)
        ctx.transfer_id = ctx.own_id
        debit, credit = account.account_id, ctx.merchant.settlement_account_id
        kind = TransferKind.POSTED
        expires = None
        if t in (TransactionType.REFUND, TransactionType.LOAD, TransactionType.LOAD_FUNDED):
            debit, credit = credit, debit
        elif t is TransactionType.TRANSFER:
            target = card.account_for(_account_kind(ctx.classified.to_account))
            if target is None or target.account_id == account.account_id:
                return self._finish(ctx, Result.NOT_PERMITTED_TO_CARDHOLDER)
            credit = target.account_id
        elif t is TransactionType.PREAUTH:
            kind = TransferKind.PENDING
            # From the request's own time, so a retransmission builds the very same transfer.
            assert ctx.transmitted is not None
            expires = ctx.transmitted + timedelta(seconds=card.product.hold_expiry_s)
        limit_key = None
        if t in DEBITS and (
            t.value in card.product.daily_amount_max or t.value in card.product.daily_count_max
        ):
            assert ctx.transmitted is not None
            limit_key = f"card:{card.card_id}:{t.value}:{self.business.date_of(ctx.transmitted).isoformat()}"
        transfer = Transfer(
            transfer_id=ctx.transfer_id,
            kind=kind,
            debit_account_id=debit,
            credit_account_id=credit,
            amount=amount,
            currency=card.product.currency,
            expires_at=expires,
            limit_key=limit_key,
            limit_amount_max=card.product.daily_amount_max.get(t.value) if limit_key else None,
            limit_count_max=card.product.daily_count_max.get(t.value) if limit_key else None,
            reference=f"rrn:{ctx.rrn}",
        )
        (outcome,) = await self.ledger.create_transfers([transfer])
        if outcome in (TransferResult.OK, TransferResult.EXISTS):
            # No balances on the receipt of a debit: that would be a second database round trip on the
            # hot path. A balance inquiry asks for them.
            return self._finish(ctx, Result.APPROVED)
        if outcome is TransferResult.BARRED:
            # For an operator who wonders why a purchase that looks fine was declined.
            log.warning("original refused: its reversal came first", transfer_id=ctx.transfer_id, rrn=ctx.rrn)
        return self._finish(ctx, _TRANSFER_TO_RESULT.get(outcome, Result.SYSTEM_MALFUNCTION))

    async def _pin_change(self, ctx: _Context, card: Card) -> Outcome:
        """The old PIN was verified with the card checks; the new one (field 120) becomes the card's PVV
        or IBM offset, computed inside the HSM."""
        new_block = ctx.request.get(120)
        if new_block is None or len(new_block) != 16:
            return self._finish(ctx, Result.FORMAT_ERROR)
        try:
            block = bytes.fromhex(new_block)
        except ValueError:
            return self._finish(ctx, Result.FORMAT_ERROR)
        assert ctx.card_data is not None and ctx.pin_key is not None
        # The new PIN block is under the same key as the old one (for DUKPT: the same KSN, field 53).
        value = await self.hsm.verification_value_for_new_pin(
            key=ctx.pin_key, pin_block=block, pan=ctx.card_data.pan.digits, method=_pin_verification(card)
        )
        if value is None:
            return self._finish(ctx, Result.INCORRECT_PIN)  # the new PIN block holds no PIN the method takes
        await self.directory.set_pin_verification_value(card.card_id, value)
        return self._finish(ctx, Result.APPROVED)

    async def _balance(self, ctx: _Context, account_id: int) -> Outcome:
        await self._add_balances(ctx, account_id)
        return self._finish(ctx, Result.APPROVED)

    async def _add_balances(self, ctx: _Context, account_id: int) -> None:
        balances = await self.ledger.balances([account_id])
        balance = balances.get(account_id)
        if balance is None:
            return
        account_type = ctx.classified.from_account
        ctx.extra[54] = format_additional_amounts(
            [
                AdditionalAmount(account_type, "01", balance.currency, balance.ledger_balance),
                AdditionalAmount(account_type, "02", balance.currency, balance.available),
            ]
        )

    async def _follow_up(self, ctx: _Context) -> Outcome:
        """Completion of a pre-auth, or void of a purchase: both name an original, by field 90 (MTI, STAN,
        transmission time) or, without 90, by its RRN in field 37."""
        request, t = ctx.request, ctx.classified.type
        original = parse_original_data(request.get(90))
        if original is None and (request.get(90) is not None or request.get(37) is None):
            return self._finish(ctx, Result.RECORD_NOT_FOUND)
        ctx.amount = parse_amount(request.get(4))
        if ctx.amount is None or ctx.amount <= 0:
            return self._finish(ctx, Result.INVALID_AMOUNT)
        declined = await self._find_card(ctx)
        if declined is None and ctx.card is None and self._forwarding:
            return await self._forwarded_follow_up(ctx, original)
        if declined is None:
            declined = (
                await self._check_card(ctx, ctx.card, pin=False)
                if ctx.card is not None
                else Result.INVALID_CARD
            )
        if declined is not None:
            return self._finish(ctx, declined)
        if original is not None:
            original_id = f"{request[41]}:{original.transmission}:{original.stan}"
            found = await self.ledger.lookup_transfers([original_id, reduced_hold_id(original_id)])
            # A hold partially reversed was replaced by a reduced one: that is the one to complete.
            first = found.get(reduced_hold_id(original_id)) or found.get(original_id)
        else:
            first = await self._original_by_rrn(ctx)
        if first is None:
            return self._finish(ctx, Result.RECORD_NOT_FOUND)
        ctx.transfer_id = ctx.own_id
        if t is TransactionType.COMPLETION:
            transfer = resolve_pending(ctx.transfer_id, first, TransferKind.POST_PENDING, ctx.amount)
        else:
            transfer = reverse_posted(ctx.transfer_id, first, min(ctx.amount, first.amount))
        (outcome,) = await self.ledger.create_transfers([transfer])
        if outcome in (TransferResult.OK, TransferResult.EXISTS):
            return self._finish(ctx, Result.APPROVED)
        return self._finish(ctx, _TRANSFER_TO_RESULT.get(outcome, Result.SYSTEM_MALFUNCTION))

    async def _original_by_rrn(self, ctx: _Context) -> Transfer | None:
        """The original a void or completion names by RRN: a transfer of this terminal with that RRN, on
        the card's own account, of the kind the follow-up resolves (a hold for a completion, a plain
        debit for a void). RRNs are unique per terminal and hour, not overall, hence the filters; none
        or more than one candidate is "not found" rather than a guess."""
        request, card = ctx.request, ctx.card
        assert card is not None
        kind = (
            TransferKind.PENDING if ctx.classified.type is TransactionType.COMPLETION else TransferKind.POSTED
        )
        accounts = {account.account_id for account in card.accounts}
        candidates = [
            transfer
            for transfer in await self.ledger.lookup_by_reference(f"rrn:{request[37]}")
            if transfer.transfer_id.startswith(f"{request[41]}:")
            and transfer.kind is kind
            and transfer.reverses_id is None
            and transfer.debit_account_id in accounts
        ]
        # A hold partially reversed and the reduced hold that replaced it carry the same RRN: the reduced
        # one stands for both.
        ids = {transfer.transfer_id for transfer in candidates}
        candidates = [t for t in candidates if reduced_hold_id(t.transfer_id) not in ids]
        return candidates[0] if len(candidates) == 1 else None

    async def _reversal(self, ctx: _Context) -> Outcome:
        """0400/0420 and repeats: cancel the original once; unknown or already reversed is acknowledged."""
        request = ctx.request
        ctx.card_data = parse_card_data(request.get(2), request.get(35), request.get(14))
        ctx.amount = parse_amount(request.get(4))
        if request.get(90) is None:
            # Without field 90 a reversal names its original by carrying the original's terminal, STAN
            # and transmission time as its own.
            original_id = _transfer_id(request)
        else:
            original = parse_original_data(request.get(90))
            if original is None:
                return self._finish(ctx, Result.FORMAT_ERROR)
            original_id = f"{request[41]}:{original.transmission}:{original.stan}"
        await self._original_decided(original_id)
        if self.forwarder is not None and await self._maybe_forwarded(ctx):
            forwarded = await self.forwarder.reverse(
                original_transfer_id=original_id,
                card=ctx.card_data,
                replacement_amount=parse_replacement_amount(request.get(95)),
            )
            if forwarded is not None:
                ctx.route = forwarded.route or ctx.route
                if forwarded.result.approved and forwarded.reversal_queued:
                    ctx.transfer_id = f"rev:{original_id}"
                return self._finish(ctx, forwarded.result)
        return await self._reverse_original(ctx, original_id)

    async def _maybe_forwarded(self, ctx: _Context) -> bool:
        """Could this reversal's original have been forwarded? Not when the card is one of ours (a memory
        lookup): that spares every on-us reversal a look in the forwarded-transaction store."""
        if ctx.card_data is None:
            return True
        return await self.directory.card_by_pan(ctx.card_data.pan) is None

    async def _card_took_part(self, pan: Pan, transfer: Transfer) -> bool:
        """Is one of the transfer's two accounts an account of the card with this PAN (or, for a network
        advice booked to suspense, is it the card the advice is owed by)?"""
        card = await self.directory.card_by_pan(pan)
        if card is None:
            return False
        accounts = {account.account_id for account in card.accounts}
        if transfer.debit_account_id in accounts or transfer.credit_account_id in accounts:
            return True
        return advice_suspense_card(transfer.reference) == card.card_id

    async def _reverse_original(self, ctx: _Context, original_id: str) -> Outcome:
        """Cancel the ledger transfer `original_id` once; unknown or already reversed is acknowledged."""
        request = ctx.request
        reduced_id = reduced_hold_id(original_id)
        # With the original, the hold a partial reversal may have put in its place: one look for both.
        found = await self.ledger.lookup_transfers([original_id, reduced_id])
        first = found.get(original_id)
        if first is None and not await self.ledger.bar(original_id):
            # Applied meanwhile (by another switchd process, between the look and the bar): reverse it.
            first = (await self.ledger.lookup_transfers([original_id])).get(original_id)
        if first is None:
            # Nothing to give back now; the original's id is barred, so should the original still come
            # (late, or still being answered by another process) it is refused, not applied.
            return self._finish(ctx, Result.APPROVED)
        if ctx.card_data is not None and not await self._card_took_part(ctx.card_data.pan, first):
            # The reversal names a card (2 or 35) that is not the original's: it is not a reversal of
            # that original, so, like one of an unknown original, it is acknowledged without effect.
            if await self.directory.card_by_pan(ctx.card_data.pan) is None:
                # A foreign card, and a posting of ours under that id: a forwarded transaction whose record
                # is missing (its writing failed), so the network's reversal cannot be built from it.
                log.error(
                    "reversal of a forwarded transaction without its record: nothing reversed",
                    original=original_id,
                )
            else:
                log.warning("reversal card does not match its original", original=original_id)
            return self._finish(ctx, Result.APPROVED)
        ctx.currency = first.currency
        ctx.transfer_id = f"rev:{original_id}"
        actual = parse_replacement_amount(request.get(95))
        paid_back: list[Transfer] = []
        if first.kind is TransferKind.PENDING:
            if actual is not None and actual > 0:
                return await self._reduce_hold(ctx, first, actual)
            transfer = resolve_pending(ctx.transfer_id, first, TransferKind.VOID_PENDING, first.amount)
            reduced = found.get(reduced_id)
            if reduced is not None:
                # Reduced by a partial reversal before: the original is voided already, the reduced hold
                # is what is left to release.
                paid_back = [release(reduced)]
        else:
            amount = first.amount - actual if actual is not None else first.amount
            if amount <= 0:
                return self._finish(ctx, Result.APPROVED)  # everything was dispensed: nothing to give back
            transfer = give_back(ctx.transfer_id, first, amount)
            paid_back = await self._recovery_given_back(ctx, first, amount)
        outcome, *others = await self.ledger.create_transfers([transfer, *paid_back])
        for extra, extra_outcome in zip(paid_back, others, strict=True):
            if extra_outcome not in (
                TransferResult.OK,
                TransferResult.EXISTS,
                TransferResult.REVERSED_NOT_FOUND,
                TransferResult.PENDING_ALREADY_VOIDED,
                TransferResult.PENDING_ALREADY_POSTED,
                TransferResult.PENDING_EXPIRED,
            ):
                log.error(
                    "reduced hold not released"
                    if first.kind is TransferKind.PENDING
                    else "advice recovery not given back",
                    original=original_id,
                    transfer=extra.transfer_id,
                    ledger_result=extra_outcome.value,
                )
        if outcome in (
            TransferResult.OK,
            TransferResult.EXISTS,
            TransferResult.ALREADY_REVERSED,
            # A repeat asking for a different amount than the reversal already applied: it is the
            # same reversal, acknowledged without a second effect.
            TransferResult.EXISTS_WITH_DIFFERENT_FIELDS,
        ):
            return self._finish(ctx, Result.APPROVED)
        if (
            outcome is TransferResult.PENDING_ALREADY_VOIDED
            and first.kind is TransferKind.PENDING
            and not paid_back
        ):
            # Voided by something else since the look: perhaps a partial reversal, whose reduced hold then
            # follows (or came just after the look). Release that too, so the cancel leaves nothing held.
            released = await release_late_reduced_hold(self.ledger, reduced_id, log=log)
            # Not acknowledged when the release was refused: the repeat of the reversal releases it.
            return self._finish(ctx, Result.APPROVED if released else Result.SYSTEM_MALFUNCTION)
        if outcome in (
            TransferResult.PENDING_ALREADY_VOIDED,
            TransferResult.PENDING_ALREADY_POSTED,
            TransferResult.PENDING_EXPIRED,
        ):
            return self._finish(ctx, Result.APPROVED)  # nothing left to reverse
        return self._finish(ctx, _TRANSFER_TO_RESULT.get(outcome, Result.SYSTEM_MALFUNCTION))

    async def _reduce_hold(self, ctx: _Context, hold: Transfer, actual: int) -> Outcome:
        """A partial reversal of a pre-authorization (field 95 above zero): the merchant will complete it
        for `actual`. The ledger cannot shrink a hold, so the hold is voided (under an id of its own,
        `rev:<id>:partial`, apart from a full reversal's) and, only once that void stands, `actual` is
        held anew (`reduced_hold`), for the completion to come. A repeat finds both done. Two steps, so
        a failure between them leaves the hold released whole, never held twice, and the reversal is
        answered 96 (or not at all): the terminal's repeat of it then makes the reduced hold."""
        if actual >= hold.amount:
            ctx.transfer_id = None
            return self._finish(ctx, Result.APPROVED)  # nothing to release
        ctx.transfer_id = partial_void_id(hold.transfer_id)
        void = resolve_pending(ctx.transfer_id, hold, TransferKind.VOID_PENDING, hold.amount)
        (voided,) = await self.ledger.create_transfers([void])
        if voided not in (TransferResult.OK, TransferResult.EXISTS):
            # Completed, expired or reversed whole already: nothing is held any more to reduce.
            ctx.transfer_id = None
            return self._finish(ctx, Result.APPROVED)
        # 96 when the ledger refuses the reduced hold: the terminal repeats the reversal (0401), which
        # finds the void done and makes it.
        refused = await hold_reduced(self.ledger, hold, actual, log=log)
        if refused is not None:
            return self._finish(ctx, refused)
        return self._finish(ctx, Result.APPROVED)

    async def _recovery_given_back(self, ctx: _Context, first: Transfer, amount: int) -> list[Transfer]:
        """With the reversal of a network advice booked to suspense, what the cardholder paid of it
        (`switchctl suspense recover`) goes back to the cardholder too: the reversal of that payment, in the
        same batch. When no payment is found the batch still carries the reversal of the payment as it would
        be made: should one be committed between this look and the batch (the batch waits for it, by the
        advisory lock on the reversal's id that the payment takes too), it is given back; if none comes, the
        ledger refuses it as naming nothing. A repeat of the reversal gives nothing back again."""
        if advice_suspense_card(first.reference) is None:
            return []
        recovery_id = advice_recovery_id(first.transfer_id)
        reversal_id = f"rev:{first.transfer_id}"
        found = await self.ledger.lookup_transfers([recovery_id, reversal_id])
        if reversal_id in found:
            return []  # a repeat: the first reversal settled it
        recovery = found.get(recovery_id)
        if recovery is None:
            card = await self.directory.card_by_pan(ctx.card_data.pan) if ctx.card_data is not None else None
            named = advice_suspense_account(first.reference)
            account = recovery_account(card, first.currency, named) if card is not None else None
            if account is None:
                return []
            recovery = advice_recovery(first, account.account_id, first.amount)
        return [give_back(f"rev:{recovery_id}", recovery, min(amount, recovery.amount))]

    # -- responses -----------------------------------------------------------------------------------

    def _finish(self, ctx: _Context, result: Result) -> Outcome:
        updates: dict[int, str | None] = {37: ctx.rrn}
        auth_code = ""
        if result.approved:
            if ctx.auth_code is not None:
                auth_code = ctx.auth_code  # the network's (forwarded): passed on as it came, even none
            elif ctx.transfer_id is not None:
                auth_code = auth_code_for(ctx.transfer_id)
            if auth_code:
                updates[38] = auth_code
            updates.update(ctx.extra)
        response = self._response(ctx.request, result, ctx.issuer).with_fields(updates)
        suffix = ":reversal" if ctx.classified.reversal else ":advice" if ctx.request.mti[1:3] == "22" else ""
        return Outcome(
            response,
            result,
            transaction_type=ctx.classified.type.value + suffix,
            pan_masked=ctx.card_data.pan.masked if ctx.card_data else "",
            route=ctx.route,
            transfer_id=ctx.transfer_id,
            rrn=ctx.rrn,
            auth_code=auth_code,
            amount=ctx.amount,
            currency=ctx.currency,
            mac_tak=ctx.terminal.tak_under_lmk
            if ctx.terminal.mac_required and ctx.terminal.tak_under_lmk
            else None,
        )

    async def _with_mac(self, response: Message, tak: str) -> Message:
        """The response with field 64: the MAC over its encoding up to (not including) the MAC itself."""
        placeholder = response.with_fields({64: "0" * 16})
        mac = await self.hsm.generate_mac(tak=tak, data=self._encode(placeholder)[:-8])
        return placeholder.with_fields({64: mac.hex().upper()})

    def _response(self, request: Message, result: Result, issuer: IssuerNetwork | None) -> Message:
        if issuer is not None:
            return issuer.answer(request, result)
        return self._respond(request, TERMINAL_RESPONSE_CODES[result])

    def _decline(
        self,
        request: Message,
        result: Result,
        rrn: str | None,
        txn: str = "",
        *,
        issuer: IssuerNetwork | None = None,
    ) -> Outcome:
        response = self._response(request, result, issuer)
        return Outcome(
            response,
            result,
            transaction_type=str(txn) or "unknown",
            rrn=rrn or "",
            route=issuer.route if issuer is not None else ON_US,
        )

    async def system_failure(self, request: Message) -> Outcome:
        """The answer when the HSM or the database failed: 96, no effect known to the terminal."""
        return self._decline(request, Result.SYSTEM_MALFUNCTION, None)

    # -- acquirer side: cards of other issuers ---------------------------------------------------------

    def _link_up(self, network: str) -> bool:
        assert self.forwarder is not None
        net = self.forwarder.networks.get(network)
        return net is not None and net.link.up

    async def _forward(self, ctx: _Context, *, pin: bool) -> Outcome:
        """A card we do not issue: the terminal's own rules, then routing, then the forwarder."""
        assert self.forwarder is not None and self.routes is not None
        assert ctx.card_data is not None and ctx.transmitted is not None
        request, t = ctx.request, ctx.classified.type
        pan = ctx.card_data.pan
        refused = await self._foreign_card_refusal(ctx)
        if refused is not None:
            return self._finish(ctx, refused)
        assert ctx.currency is not None
        amount = ctx.amount if ctx.amount is not None else 0
        decision = decide(
            await self.routes.table(), pan=pan, amount=amount, currency=ctx.currency, link_up=self._link_up
        )
        if decision.kind is DecisionKind.ON_US:
            ctx.route = ON_US
            return self._finish(ctx, Result.INVALID_CARD)  # in one of our ranges, but never issued
        if decision.kind in (DecisionKind.UNKNOWN_BIN, DecisionKind.NO_ELIGIBLE_ROUTE):
            ctx.route = "none"
            return self._finish(ctx, Result.NO_SUCH_ISSUER)
        pin_key: PinKey | None = None
        if request.get(52) is not None:
            key = await self._pin_key(ctx)
            if isinstance(key, Result):
                return self._finish(ctx, key)
            pin_key = ctx.pin_key = key
        elif pin:
            return self._finish(ctx, Result.INCORRECT_PIN)  # this terminal asks a PIN for this type
        forwarded = await self.forwarder.forward(
            ForwardRequest(
                acquired=AcquiredRequest(
                    request=request,
                    transaction=t,
                    card=ctx.card_data,
                    terminal=ctx.terminal,
                    merchant=ctx.merchant,
                    rrn=ctx.rrn,
                    amount=amount,
                    currency=ctx.currency,
                ),
                route=decision,
                transfer_id=ctx.own_id,
                transmitted=ctx.transmitted,
                pin_key=pin_key,
            )
        )
        ctx.route = forwarded.route or forwarded.network or "none"
        if forwarded.result.approved:
            ctx.auth_code = forwarded.auth_code
            ctx.extra.update({n: v for n, v in forwarded.response_fields.items() if n != 38})
            if t is not TransactionType.BALANCE:
                ctx.transfer_id = ctx.own_id
        return self._finish(ctx, forwarded.result)

    async def _foreign_card_refusal(self, ctx: _Context) -> Result | None:
        """The terminal's own rules for a card we do not issue (sets `ctx.currency`); None: it may go on."""
        assert ctx.card_data is not None
        ctx.route = "none"  # until a network is named
        currency_text = ctx.request.get(49) or ""
        if not (len(currency_text) == 3 and currency_text.isdigit() and currency_text != "000"):
            # Nothing else says which currency a terminal priced a foreign card's purchase in.
            return Result.FORMAT_ERROR
        ctx.currency = int(currency_text)
        t = ctx.classified.type
        if ctx.terminal.allowed_transactions and t.value not in ctx.terminal.allowed_transactions:
            return Result.NOT_PERMITTED_TO_TERMINAL
        listed = await self.directory.list_entry(
            ctx.card_data.pan, ctx.terminal.terminal_id, ctx.merchant.merchant_id
        )
        if listed is not None:
            return Result.PICK_UP if listed.response_code == "04" else Result.RESTRICTED_CARD
        return None

    async def _forwarded_follow_up(self, ctx: _Context, original: OriginalData | None) -> Outcome:
        """A foreign card's completion (of a forwarded pre-authorization) or void (of a forwarded purchase):
        named by field 90, or else by its RRN in field 37 (`_follow_up` has checked it has one of them)."""
        assert self.forwarder is not None
        assert ctx.card_data is not None and ctx.transmitted is not None and ctx.amount is not None
        refused = await self._foreign_card_refusal(ctx)
        if refused is not None:
            return self._finish(ctx, refused)
        assert ctx.currency is not None
        completion = ctx.classified.type is TransactionType.COMPLETION
        # Not waited for as a reversal waits (`_original_decided`): a completion or void is itself marked
        # while it is answered, and two naming each other would wait for each other forever.
        if original is not None:
            original_id: str | None = f"{ctx.request[41]}:{original.transmission}:{original.stan}"
        else:  # named by its RRN alone (field 37)
            original_id = await self.forwarder.original_by_rrn(
                terminal_id=ctx.request[41], rrn=ctx.request[37], completion=completion
            )
        if original_id is None:
            return self._finish(ctx, Result.RECORD_NOT_FOUND)
        if completion:
            forwarded = await self.forwarder.complete(
                original_transfer_id=original_id,
                transfer_id=ctx.own_id,
                card=ctx.card_data,
                amount=ctx.amount,
                currency=ctx.currency,
                transmitted=ctx.transmitted,
            )
            transfer_id = ctx.own_id
        else:
            forwarded = await self.forwarder.void(
                original_transfer_id=original_id,
                card=ctx.card_data,
                amount=ctx.amount,
                currency=ctx.currency,
                transfer_id=ctx.own_id,
            )
            transfer_id = f"rev:{original_id}"
        if forwarded is None:
            return self._finish(ctx, Result.RECORD_NOT_FOUND)
        ctx.route = forwarded.route or forwarded.network or "none"
        if forwarded.result.approved:
            ctx.auth_code = forwarded.auth_code or None
            ctx.transfer_id = transfer_id
        return self._finish(ctx, forwarded.result)

    # -- issuer side: a network's requests for our cards -----------------------------------------------

    async def handle_network(self, issuer: IssuerNetwork, request: Message) -> Outcome:
        """Answer a network's request for one of our cards, in the network's dialect (see the module
        doc). A repeat (same MTI, field 32, 7 and 11) gets the first answer."""
        mti = request.mti
        if mti[2] not in "02":
            return Outcome(None, Result.APPROVED, transaction_type="none", route=issuer.route)
        if mti[:2] == "08":
            # The link answers sign-on, sign-off and echo itself; nothing else is offered to a network.
            return self._decline(request, Result.FUNCTION_NOT_SUPPORTED, None, "netmgmt", issuer=issuer)
        acquirer, transmitted, stan = request.get(32), request.get(7), request.get(11)
        identity = (
            f"{issuer.name}:{mti}:{acquirer}:{transmitted}:{stan}"
            if acquirer and transmitted and stan
            else None
        )
        return await self._once(request, identity, issuer)

    async def network_system_failure(self, issuer: IssuerNetwork, request: Message) -> Outcome:
        """The answer to a network when the HSM or the database failed: 96 in its table."""
        return self._decline(request, Result.SYSTEM_MALFUNCTION, None, issuer=issuer)

    async def _network_financial(self, issuer: IssuerNetwork, request: Message) -> Outcome:
        advice = request.mti[1:3] == "22"
        # An advice tells of an approval the network made for us: classified as the request it advises.
        classified = classify("0200" if advice else request.mti, request.get(3) or "", request.get(25))
        if classified is None or classified.type.value not in ISSUER_TRANSACTIONS:
            return self._decline(request, Result.INVALID_TRANSACTION, None, issuer=issuer)
        if any(request.get(n) is None for n in (3, 7, 11, 32)):
            return self._decline(request, Result.FORMAT_ERROR, None, classified.type, issuer=issuer)
        currency_text = request.get(49) or ""
        currency = int(currency_text) if len(currency_text) == 3 and currency_text.isdigit() else None
        terminal_id, merchant_id = request.get(41) or "", request.get(42) or ""
        ctx = _Context(
            request=request,
            classified=classified,
            # The network's acceptor as far as our rules need it: its ids for the lists, ATM or not for
            # the PIN rule, and the network's settlement account where our merchant's would be.
            terminal=Terminal(
                terminal_id=terminal_id,
                merchant_id=merchant_id,
                kind="atm" if request.get(18) == "6011" else "pos",
            ),
            merchant=Merchant(
                merchant_id=merchant_id,
                name="",
                settlement_account_id=issuer.settlement_accounts.get(currency or 0, 0),
                category_code=request.get(18) or "",
            ),
            own_id=network_transfer_id(
                issuer.name, acquirer=request[32], transmission=request[7], stan=request[11]
            ),
            issuer=issuer,
            route=issuer.route,
        )
        transmitted = transmission_datetime(request[7], self.clock.now())
        if transmitted is None:
            return self._finish(ctx, Result.FORMAT_ERROR)
        ctx.transmitted = transmitted
        ctx.rrn = request.get(37) or retrieval_reference(transmitted, ctx.own_id)
        if classified.reversal:
            return await self._network_reversal(ctx)
        with self._deciding_on(ctx.own_id):
            return await self._network_original(ctx, currency, advice=advice)

    async def _network_original(self, ctx: _Context, currency: int | None, *, advice: bool) -> Outcome:
        request = ctx.request
        assert ctx.issuer is not None
        if currency is None or currency not in ctx.issuer.settlement_accounts:
            ctx.card_data = parse_card_data(request.get(2), request.get(35), request.get(14))
            return self._finish(ctx, Result.UNSUPPORTED_CURRENCY)  # nothing to settle it in
        if advice:
            return await self._network_advice(ctx)
        return await self._authorize(ctx)

    async def _network_reversal(self, ctx: _Context) -> Outcome:
        """0420/0421 (and 0400/0401) naming its original in field 90: reversed once; an original we never
        saw is acknowledged (there is nothing to give back)."""
        assert ctx.issuer is not None
        request = ctx.request
        ctx.card_data = parse_card_data(request.get(2), request.get(35), request.get(14))
        ctx.amount = parse_amount(request.get(4))
        original = parse_network_original(request.get(90))
        if original is None:
            return self._finish(ctx, Result.FORMAT_ERROR)
        original_id = network_transfer_id(
            ctx.issuer.name,
            acquirer=original.acquirer,
            transmission=original.transmission,
            stan=original.stan,
        )
        await self._original_decided(original_id)
        return await self._reverse_original(ctx, original_id)

    async def _network_advice(self, ctx: _Context) -> Outcome:
        """0220/0221: the network approved for us (its stand-in); booked once, without card rules (the
        cardholder was served already). An advice the cardholder's account cannot cover is booked to the
        network's advice suspense account instead (we owe the network all the same; the cardholder owes
        us), acknowledged, and logged for an operator. What the ledger refuses otherwise is answered with
        its code and logged: the network holds the approval, so it needs an operator."""
        request, t = ctx.request, ctx.classified.type
        declined = await self._find_card(ctx)
        if declined is not None:
            return self._finish(ctx, declined)
        card = ctx.card
        if card is None:
            return self._finish(ctx, Result.INVALID_CARD)
        ctx.amount = parse_amount(request.get(4))
        if ctx.amount is None or ctx.amount <= 0 or t is TransactionType.BALANCE:
            return self._finish(ctx, Result.INVALID_AMOUNT)
        currency = int(request[49])
        if currency != card.product.currency:
            return self._finish(ctx, Result.UNSUPPORTED_CURRENCY)
        ctx.currency = currency
        account = card.account_for(_account_kind(ctx.classified.from_account))
        if account is None:
            return self._finish(ctx, Result.NOT_PERMITTED_TO_CARDHOLDER)
        ctx.transfer_id = ctx.own_id
        debit, credit = account.account_id, ctx.merchant.settlement_account_id
        if t is TransactionType.REFUND:
            debit, credit = credit, debit
        transfer = Transfer(
            transfer_id=ctx.transfer_id,
            kind=TransferKind.POSTED,
            debit_account_id=debit,
            credit_account_id=credit,
            amount=ctx.amount,
            currency=currency,
            reference=f"advice:rrn:{ctx.rrn}",
        )
        (outcome,) = await self.ledger.create_transfers([transfer])
        if outcome in (TransferResult.OK, TransferResult.EXISTS):
            return self._finish(ctx, Result.APPROVED)
        assert ctx.issuer is not None
        suspense = ctx.issuer.suspense_accounts.get(currency)
        if suspense is not None and t is not TransactionType.REFUND and outcome in _SUSPENSE_WORTHY:
            # Same id as the cardholder's booking would have had: a repeat of the advice finds this one
            # (the cardholder's try then says "different fields", and this one "exists"), and so does a
            # reversal of it, which gives it back from suspense.
            booked = dataclasses.replace(
                transfer,
                debit_account_id=suspense,
                reference=advice_suspense_reference(ctx.rrn, card.card_id, transfer.debit_account_id),
            )
            (outcome,) = await self.ledger.create_transfers([booked])
            if outcome in (TransferResult.OK, TransferResult.EXISTS):
                if outcome is TransferResult.OK:
                    log.warning(
                        "network advice booked to suspense",
                        network=ctx.issuer.name,
                        rrn=ctx.rrn,
                        amount=ctx.amount,
                        currency=currency,
                        card_id=card.card_id,
                    )
                return self._finish(ctx, Result.APPROVED)
        result = _TRANSFER_TO_RESULT.get(outcome, Result.SYSTEM_MALFUNCTION)
        log.error(
            "network advice not booked",
            network=ctx.issuer.name if ctx.issuer is not None else None,
            rrn=ctx.rrn,
            ledger_result=outcome.value,
        )
        return self._finish(ctx, result)


class NetworkRequests:
    """One network's requests for our cards as the edge (switch.terminal_service) drives them."""

    def __init__(self, authorizer: Authorizer, issuer: IssuerNetwork) -> None:
        self.authorizer = authorizer
        self.issuer = issuer

    async def handle(self, request: Message) -> Outcome:
        return await self.authorizer.handle_network(self.issuer, request)

    async def system_failure(self, request: Message) -> Outcome:
        return await self.authorizer.network_system_failure(self.issuer, request)


# A cardholder booking of an advice refused for one of these goes to the advice suspense account: the
# account cannot take it, or (on a repeat) the id is taken, by that very suspense booking if all is well.
_SUSPENSE_WORTHY = frozenset({TransferResult.EXCEEDS_CREDITS, TransferResult.EXISTS_WITH_DIFFERENT_FIELDS})

_STATUS_RESULT = {
    CardStatus.LOST: Result.LOST_CARD,
    CardStatus.STOLEN: Result.STOLEN_CARD,
    CardStatus.BLOCKED: Result.RESTRICTED_CARD,
    CardStatus.CLOSED: Result.RESTRICTED_CARD,
    CardStatus.INACTIVE: Result.NOT_PERMITTED_TO_CARDHOLDER,
}


def _pin_verification(card: Card) -> PinVerification:
    """How the HSM checks this card's PIN: its product's method, keys and parameters."""
    product = card.product
    if product.pin_method is PinMethod.IBM_3624:
        return Ibm3624Offset(
            pvk=product.pvk_under_lmk,
            decimalization_table=product.decimalization_table,
            validation_data=product.pin_validation_data,
            check_length=product.pin_check_length,
        )
    return VisaPvv(pvk=product.pvk_under_lmk, pvki=card.pvki)


def _account_kind(code: str) -> AccountKind:
    try:
        return AccountKind(code)
    except ValueError:
        return AccountKind.DEFAULT


def _identity(request: Message) -> str | None:
    """The retransmission key: MTI + terminal + transmission time + STAN, or None if one is missing.

    The MTI is part of it because a reversal may carry its original's terminal, STAN and time (that is
    how it is matched without field 90): it is another message, not a retransmission of the original.
    """
    terminal, transmitted, stan = request.get(41), request.get(7), request.get(11)
    if not (terminal and transmitted and stan):
        return None
    return f"{request.mti}:{terminal}:{transmitted}:{stan}"


def _transfer_id(request: Message) -> str:
    """The ledger idempotency key of a request: terminal, transmission time and STAN."""
    return f"{request[41]}:{request[7]}:{request[11]}"


def _fingerprint(request: Message) -> str:
    """What must be equal for a retransmission (PIN block, MAC and times may legitimately differ)."""
    parts = [f"{n}={request.get(n) or ''}" for n in (2, 3, 4, 35, 41, 42, 49, 90, 95)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _strip_scheme(key: str) -> str:
    return key[1:] if key[:1] in ("U", "X", "T", "Y") else key
