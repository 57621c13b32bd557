"""The forwarding participant: a terminal's request for a foreign card, sent to the network that owns it.

Steps (docs/networks.md "Messages the switch sends", "Timeouts and store-and-forward", "Stand-in"):
PIN block TPK/DUKPT -> the network's current ZPK (HSM, field 53 names the key) -> translate -> send on
the link with the network's deadline ->
- answered: field 39 through the network's table; an approval is posted (debit the network's settlement
  account for the currency, credit the merchant's; a refund the other way; a pre-authorization as a
  hold), in one ledger call with the request's idempotent transfer id, then recorded for a later
  terminal reversal, all before the terminal hears the answer;
- link unavailable (down, draining, full, or no ZPK yet for a PIN): the next fallback network;
- deadline passed (response None): the 0420 reversal of the request as it was sent is queued
  (store-and-forward) BEFORE the answer, then stand-in if a rule allows it, else 91;
- nothing could be sent anywhere: stand-in if a rule allows it, else 91.
Stand-in: purchases without a PIN block within the rule's per-transaction maximum, and its per-card daily
amount and count, counted by the ledger's limit counters in the same transfer (so concurrent stand-ins
cannot pass them); then the 0220 advice is queued (after the reversal, when there is one).

A terminal's reversal of a forwarded transaction (`reverse`) reverses the ledger posting once and queues
the network 0420 built from the original as it was sent.

Durability: the original's network identity (11, 7, 32, 33 as sent, the rest of the message, amount,
masked PAN) is kept through the `ForwardedTransactions` port, without any card data: the terminal's
reversal brings the card (the terminal dialect requires field 2 or 35 on 0400/0420), and the network
reversal goes to the store-and-forward queue, which keeps the PAN encrypted. Only transactions that
moved money are recorded; a declined or timed-out one has nothing to reverse here (the timeout's reversal
is queued already).

No I/O of its own, and no card data in logs or in what it stores: PANs appear in messages handed to the
link and to the store-and-forward queue only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from switch.domain.business_day import UTC_DAY, BusinessDay
from switch.domain.ledger_types import (
    LedgerAccount,
    Transfer,
    TransferKind,
    TransferResult,
    give_back,
    reduced_hold_id,
    resolve_pending,
)
from switch.domain.model import Pan
from switch.domain.results import Result
from switch.domain.routing import RouteDecision
from switch.domain.transactions import CardData, TransactionType, auth_code_for
from switch.domain.translation import (
    FORWARDABLE,
    REVERSAL_REASON_ACQUIRER_CANNOT_COMPLETE,
    REVERSAL_REASON_CUSTOMER_CANCELLATION,
    REVERSAL_REASON_TIMEOUT,
    AcquiredRequest,
    NetworkProfile,
    advice_key,
    advice_stan,
    completion_advice,
    network_answer,
    network_request,
    network_reversal,
    reversal_key,
    standin_advice,
    with_pin_block,
    without_card_data,
)
from switch.iso.message import Message
from switch.logs import get_logger
from switch.pipeline.holds import RELEASED, hold_reduced, partial_void_id, release, release_late_reduced_hold
from switch.pipeline.network_keys import NetworkKeys
from switch.ports import (
    Clock,
    ForwardedRecord,
    ForwardedTransactions,
    Hsm,
    Ledger,
    Network,
    NetworkExchange,
    NetworkUnavailable,
    PinKey,
    SafEntry,
    StoreAndForward,
)

__all__ = [
    "NETWORK_SETTLEMENT_ACCOUNT_BASE",
    "ForwardOutcome",
    "ForwardRequest",
    "Forwarder",
    "ForwardingNetwork",
    "network_settlement_account_id",
    "settlement_accounts_for",
]

log = get_logger("forward")

# Ledger ids of the network settlement accounts (`network:<name>:<currency>` in docs/networks.md) are
# derived from that name in a block of their own, far above the demo bank's card and merchant accounts,
# so every switchd process (and the issuer side) computes the same id without a lookup.
NETWORK_SETTLEMENT_ACCOUNT_BASE = 8_000_000_000_000_000_000
_STANDIN_TYPES = frozenset({TransactionType.PURCHASE})
_PREAUTH_HOLD_S_DEFAULT = 7 * 24 * 3600
# A ledger refusal of a network approval -> the answer (the network's approval is reversed).
_LEDGER_REFUSAL: Mapping[TransferResult, Result] = {
    TransferResult.EXISTS_WITH_DIFFERENT_FIELDS: Result.DUPLICATE,
    TransferResult.BARRED: Result.DO_NOT_HONOR,  # the terminal's reversal came first
    TransferResult.CURRENCY_MISMATCH: Result.UNSUPPORTED_CURRENCY,
    TransferResult.AMOUNT_MUST_BE_POSITIVE: Result.INVALID_AMOUNT,
}
_APPLIED = (TransferResult.OK, TransferResult.EXISTS)
# A completion the ledger refuses -> the terminal's answer.
_COMPLETION_REFUSAL: Mapping[TransferResult, Result] = {
    TransferResult.PENDING_ALREADY_POSTED: Result.RECORD_NOT_FOUND,
    TransferResult.PENDING_ALREADY_VOIDED: Result.RECORD_NOT_FOUND,
    TransferResult.PENDING_EXPIRED: Result.RECORD_NOT_FOUND,
    TransferResult.PENDING_NOT_FOUND: Result.RECORD_NOT_FOUND,
    TransferResult.EXCEEDS_PENDING_AMOUNT: Result.INVALID_AMOUNT,
    TransferResult.EXISTS_WITH_DIFFERENT_FIELDS: Result.DUPLICATE,
}
# A reversal the ledger has nothing (more) to do for: acknowledged, the network is still told. The same
# results as a hold's release.
_REVERSED_ALREADY = RELEASED


def network_settlement_account_id(network: str, currency: int) -> int:
    """The ledger id of the network's settlement account in `currency` (ISO 4217 numeric)."""
    if not 1 <= currency <= 999:
        raise ValueError("currency must be an ISO 4217 numeric code")
    digest = int.from_bytes(hashlib.sha256(f"network:{network}".encode()).digest()[:5], "big")
    return NETWORK_SETTLEMENT_ACCOUNT_BASE + digest * 1000 + currency


def settlement_accounts_for(pairs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """(network, currency) -> settlement account id, for each network and currency it settles."""
    return {
        (network, currency): network_settlement_account_id(network, currency) for network, currency in pairs
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardingNetwork:
    """One network as the participant uses it: translation profile, link, zone PIN keys, deadline."""

    profile: NetworkProfile
    link: Network
    keys: NetworkKeys
    deadline_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardRequest:
    """What the Authorizer hands over once the request passed its checks and routing chose a network."""

    acquired: AcquiredRequest
    route: RouteDecision  # kind NETWORK (network + fallbacks) or ALL_LINKS_DOWN; its stand-in rule
    transfer_id: str  # the request's idempotent ledger id (terminal, field 7, STAN)
    transmitted: datetime  # the terminal's field 7: business day of the limits, hold expiry, advice time
    pin_key: PinKey | None  # the key the terminal's PIN block is under (None: no PIN block)


@dataclass(frozen=True, slots=True)
class ForwardOutcome:
    """What happened, for the terminal's answer, the journal and the canonical log line."""

    result: Result
    route: str  # "visa", "visa->cups" (a fallback), "visa:standin"; "" when no network was named
    network: str | None  # the network that answered, timed out or stood in for
    auth_code: str = ""
    response_fields: Mapping[int, str] = field(default_factory=dict)  # 38 and 54 for the terminal
    network_response_code: str | None = None  # field 39 as the network sent it
    network_stan: str | None = None  # field 11 the link gave the request
    reversal_queued: bool = False
    advice_queued: bool = False
    standin: bool = False


class Forwarder:
    def __init__(
        self,
        *,
        networks: Mapping[str, ForwardingNetwork],
        hsm: Hsm,
        ledger: Ledger,
        saf: StoreAndForward,
        forwarded: ForwardedTransactions,
        settlement_accounts: Mapping[tuple[str, int], int],
        card_token: Callable[[Pan], str],
        clock: Clock,
        preauth_hold_s: int = _PREAUTH_HOLD_S_DEFAULT,
        business: BusinessDay = UTC_DAY,
    ) -> None:
        self.networks = networks
        self.hsm = hsm
        self.ledger = ledger
        self.saf = saf
        self.forwarded = forwarded
        self.settlement_accounts = settlement_accounts
        # A stable, keyed, irreversible name of a card (the PAN vault's lookup hash): stand-in counters
        # are per card, and their keys are stored in clear.
        self._card_token = card_token
        self.clock = clock
        self.preauth_hold_s = preauth_hold_s
        self.business = business  # stand-in's daily counters turn at the bank's midnight

    async def ensure_settlement_accounts(self) -> None:
        """Create the network settlement accounts that do not exist yet (at start; idempotent)."""
        await self.ledger.create_accounts(
            [
                LedgerAccount(account_id=account_id, currency=currency)
                for (_, currency), account_id in sorted(self.settlement_accounts.items())
            ]
        )

    # -- forwarding ----------------------------------------------------------------------------------

    async def forward(self, req: ForwardRequest) -> ForwardOutcome:
        acquired, decision = req.acquired, req.route
        candidates = ([decision.network] if decision.network else []) + list(decision.fallbacks)
        owner = decision.network or (decision.unavailable[0] if decision.unavailable else None)
        if acquired.transaction not in FORWARDABLE:
            return ForwardOutcome(Result.INVALID_TRANSACTION, owner or "", owner)
        pin_block: bytes | None = None
        pin_text = acquired.request.get(52)
        if pin_text is not None:
            try:
                pin_block = bytes.fromhex(pin_text)
            except ValueError:
                return ForwardOutcome(Result.FORMAT_ERROR, owner or "", owner)
            if len(pin_block) != 8:
                return ForwardOutcome(Result.FORMAT_ERROR, owner or "", owner)
            if req.pin_key is None:
                return ForwardOutcome(Result.SECURITY_VIOLATION, owner or "", owner)
        tried: list[str] = []
        no_currency = 0
        for name in candidates:
            tried.append(name)
            net = self.networks.get(name)
            if net is None:
                continue  # routed to, but no link configured in this process
            if self._moves_money(acquired) and (name, acquired.currency) not in self.settlement_accounts:
                no_currency += 1  # this network cannot settle the currency here: the next one may
                continue
            message = network_request(net.profile, acquired)
            if pin_block is not None:
                assert req.pin_key is not None
                zpk = await net.keys.sending_key()
                if zpk is None:
                    log.warning("network has no zone PIN key yet", network=name)
                    continue
                translated = await self.hsm.translate_pin_to_zpk(
                    key=req.pin_key, zpk=zpk.under_lmk, pin_block=pin_block, pan=acquired.card.pan.digits
                )
                if translated is None:
                    # Never sent: nothing to undo. The terminal's block holds no PIN (or not under its key).
                    return ForwardOutcome(Result.INCORRECT_PIN, "->".join(tried), name)
                message = with_pin_block(message, pin_block=translated, key_index=zpk.index)
            try:
                exchange = await net.link.request(message, timeout_s=net.deadline_s)
            except NetworkUnavailable:
                continue
            route = "->".join(tried)
            if exchange.response is None:
                await self._queue_reversal(net, exchange.sent, REVERSAL_REASON_TIMEOUT)
                return await self._stand_in(req, owner=name, sent=exchange.sent, route=route)
            return await self._answered(req, net, exchange, route)
        if candidates and no_currency == len(candidates):
            return ForwardOutcome(Result.UNSUPPORTED_CURRENCY, "->".join(tried), owner)
        return await self._stand_in(req, owner=owner, sent=None, route="->".join(tried) or owner or "")

    async def _answered(
        self, req: ForwardRequest, net: ForwardingNetwork, exchange: NetworkExchange, route: str
    ) -> ForwardOutcome:
        assert exchange.response is not None
        name, sent = net.profile.name, exchange.sent
        answer = network_answer(net.profile.dialect, exchange.response)
        stan = sent.get(11)
        if answer.result is Result.SECURITY_VIOLATION and sent.get(52) is not None:
            # The network does not take the PIN key we translated to: the terminal gets 63 now, and the
            # keys are exchanged again so that the next PIN does not fail for the same reason.
            log.warning("network refused our zone PIN key", network=name, key_index=sent.get(53), stan=stan)
            net.keys.request_resync()
        if not answer.result.approved:
            return ForwardOutcome(
                answer.result, route, name, network_response_code=answer.response_code, network_stan=stan
            )
        response_fields = {38: answer.auth_code} if answer.auth_code else {}
        if answer.balances:
            response_fields[54] = answer.balances
        transfer = self._settlement_transfer(req, name, reference=f"{name}:rrn:{req.acquired.rrn}")
        if transfer is None:  # a balance inquiry moves no money
            return ForwardOutcome(
                Result.APPROVED,
                route,
                name,
                auth_code=answer.auth_code,
                response_fields=response_fields,
                network_response_code=answer.response_code,
                network_stan=stan,
            )
        record = self._forwarded_record(req, name, route, sent, answer.auth_code)
        try:
            # The posting and its record in one commit: booked means recorded.
            posted = await self.forwarded.post_and_record(transfer, record)
        except Exception:
            await self._undo(net, sent, transfer)
            raise
        if posted in (TransferResult.EXISTS, TransferResult.EXISTS_WITH_DIFFERENT_FIELDS):
            duplicate = await self._answered_before(req, net, sent)
            if duplicate is not None:
                return duplicate
        if posted not in _APPLIED:
            # The network approved what the switch cannot book: the network is told to forget it.
            log.warning(
                "network approval not booked", network=name, rrn=req.acquired.rrn, ledger_result=posted.value
            )
            await self._queue_reversal(net, sent, REVERSAL_REASON_ACQUIRER_CANNOT_COMPLETE)
            return ForwardOutcome(
                _LEDGER_REFUSAL.get(posted, Result.SYSTEM_MALFUNCTION),
                route,
                name,
                network_response_code=answer.response_code,
                network_stan=stan,
                reversal_queued=True,
            )
        if posted is not TransferResult.OK:
            # Posted before without its record (booked by a switchd from before postings and records went
            # in one commit): this approval is recorded instead, as then.
            try:
                await self.forwarded.record(record)
            except Exception:
                await self._undo(net, sent, transfer)
                raise
        return ForwardOutcome(
            Result.APPROVED,
            route,
            name,
            auth_code=answer.auth_code,
            response_fields=response_fields,
            network_response_code=answer.response_code,
            network_stan=stan,
        )

    async def _answered_before(
        self, req: ForwardRequest, net: ForwardingNetwork, sent: Message
    ) -> ForwardOutcome | None:
        """A terminal's retransmission that reached the network again (after a restart, or on another
        switchd, where the Authorizer's memory of answers does not reach): the network now holds a second
        approval, which is reversed, and the terminal gets the first one's answer. None if the first
        approval was not recorded (it failed between ledger and record): this one is recorded instead."""
        first = await self.forwarded.find(req.transfer_id)
        if first is None:
            undo_id = _reversal_transfer_id(req.transfer_id)
            if undo_id in await self.ledger.lookup_transfers([undo_id]):
                # That failure undid the posting, and its id cannot be posted again: this approval is
                # reversed too, and the terminal hears of a failure rather than of money that is not booked.
                await self._queue_reversal(net, sent, REVERSAL_REASON_ACQUIRER_CANNOT_COMPLETE)
                return ForwardOutcome(
                    Result.SYSTEM_MALFUNCTION, net.profile.name, net.profile.name, reversal_queued=True
                )
            return None
        await self._queue_reversal(net, sent, REVERSAL_REASON_ACQUIRER_CANNOT_COMPLETE)
        return ForwardOutcome(
            Result.APPROVED,
            first.route,
            first.network,
            auth_code=first.auth_code,
            response_fields={38: first.auth_code} if first.auth_code else {},
            network_stan=first.message.get(11),
            reversal_queued=True,
            standin=first.route.endswith(":standin"),
        )

    # -- stand-in ------------------------------------------------------------------------------------

    async def _stand_in(
        self, req: ForwardRequest, *, owner: str | None, sent: Message | None, route: str
    ) -> ForwardOutcome:
        """Approve on the network's behalf if its rule allows it; else 91. `sent` is the request that timed
        out (its reversal is queued already), None when nothing could be sent."""
        acquired, rule = req.acquired, req.route.standin
        queued = sent is not None
        declined = ForwardOutcome(
            Result.ISSUER_INOPERATIVE,
            route,
            owner,
            network_stan=sent.get(11) if sent is not None else None,
            reversal_queued=queued,
        )
        net = self.networks.get(owner) if owner is not None else None
        if rule is None or net is None or rule.network != owner:
            return declined
        if acquired.request.get(52) is not None:
            return declined  # a foreign issuer's PIN cannot be checked here
        if acquired.transaction not in _STANDIN_TYPES:
            return declined
        if rule.currency != acquired.currency or not rule.covers_amount(acquired.amount):
            return declined
        day = self.business.date_of(req.transmitted).isoformat()
        transfer = self._settlement_transfer(
            req,
            net.profile.name,
            reference=f"standin:{net.profile.name}:rrn:{acquired.rrn}",
            limit_key=f"standin:{net.profile.name}:{self._card_token(acquired.card.pan)}:{day}",
            limit_amount_max=rule.daily_amount_max,
            limit_count_max=rule.daily_count_max,
        )
        if transfer is None:
            return declined
        (posted,) = await self.ledger.create_transfers([transfer])
        if posted not in _APPLIED:
            log.info("stand-in refused", network=owner, rrn=acquired.rrn, ledger_result=posted.value)
            return declined
        auth_code = auth_code_for(req.transfer_id)
        advice = standin_advice(
            net.profile,
            acquired,
            stan=advice_stan(req.transfer_id),
            transmitted=req.transmitted,
            auth_code=auth_code,
            original=sent,
        )
        standin_route = f"{net.profile.name}:standin"
        try:
            await self.saf.enqueue(
                SafEntry(
                    network=net.profile.name,
                    kind="advice",
                    key=advice_key(net.profile.name, advice),
                    message=advice,
                )
            )
            await self._record(req, net.profile.name, standin_route, advice, auth_code)
        except Exception:
            await self._undo_ledger(transfer)
            raise
        return ForwardOutcome(
            Result.APPROVED,
            standin_route,
            net.profile.name,
            auth_code=auth_code,
            response_fields={38: auth_code},
            network_stan=sent.get(11) if sent is not None else None,
            reversal_queued=queued,
            advice_queued=True,
            standin=True,
        )

    # -- terminal reversals --------------------------------------------------------------------------

    async def reverse(
        self,
        *,
        original_transfer_id: str,
        card: CardData | None,
        replacement_amount: int | None = None,
    ) -> ForwardOutcome | None:
        """A terminal's reversal (0400/0420) of `original_transfer_id`: the ledger posting reversed once
        and the network's 0420 queued. None when no forwarded transaction of that id moved money (the caller
        acknowledges it, as for any unknown original)."""
        record = await self.forwarded.find(original_transfer_id)
        if record is None:
            return None
        name, route = record.network, record.route
        if card is None:
            return ForwardOutcome(Result.FORMAT_ERROR, route, name)
        if card.pan.masked != record.pan_masked:
            return ForwardOutcome(Result.RECORD_NOT_FOUND, route, name)  # another card: not this original
        if record.message.mti[:2] == "04":
            # A void: the network has reversed the original, and a reversal cannot be reversed there. The
            # terminal is acknowledged, as for any original with nothing to undo; the operator is told.
            log.warning(
                "reversal of a forwarded void has no effect: the network reversed the original",
                network=name,
                transfer_id=original_transfer_id,
            )
            return ForwardOutcome(Result.APPROVED, route, name)
        net = self.networks.get(name)
        if net is None:
            # Nothing changed: a repeat once the network is configured again does it all.
            log.error("reversal for a network not configured", network=name, transfer_id=original_transfer_id)
            return ForwardOutcome(Result.SYSTEM_MALFUNCTION, route, name)
        amount = record.amount
        if replacement_amount is not None and replacement_amount >= amount:
            # Everything was dispensed: nothing to give back.
            return ForwardOutcome(Result.APPROVED, route, name)
        reduced_id = reduced_hold_id(record.transfer_id)
        partial_id = partial_void_id(record.transfer_id)
        # With the original, what a partial reversal of a hold may have left: one look for all three.
        found = await self.ledger.lookup_transfers([record.transfer_id, reduced_id, partial_id])
        original = found.get(record.transfer_id)
        if original is not None and original.kind is TransferKind.PENDING:
            return await self._reverse_hold(net, record, card, original, found, replacement_amount)
        partial = replacement_amount is not None and replacement_amount > 0
        if original is not None:
            reversal = _reversal_transfer(original, replacement_amount if partial else None)
            (posted,) = await self.ledger.create_transfers([reversal])
            if posted not in _REVERSED_ALREADY:
                log.error(
                    "ledger refused a reversal of a forwarded transaction",
                    network=name,
                    transfer_id=original_transfer_id,
                    ledger_result=posted.value,
                )
                return ForwardOutcome(Result.SYSTEM_MALFUNCTION, route, name)
        message = network_reversal(
            net.profile,
            record.message,
            reason=REVERSAL_REASON_CUSTOMER_CANCELLATION,
            pan=card.pan,
            replacement_amount=replacement_amount if partial else None,
        )
        await self.saf.enqueue(
            SafEntry(network=name, kind="reversal", key=reversal_key(name, record.message), message=message)
        )
        return ForwardOutcome(
            Result.APPROVED, route, name, network_stan=record.message.get(11), reversal_queued=True
        )

    async def _reverse_hold(
        self,
        net: ForwardingNetwork,
        record: ForwardedRecord,
        card: CardData,
        hold: Transfer,
        found: Mapping[str, Transfer],
        replacement_amount: int | None,
    ) -> ForwardOutcome:
        """A terminal's reversal of a forwarded pre-authorization. With field 95 above zero (and below the
        hold) it is partial: the merchant will complete it for that much. The hold on the network's
        settlement account is then reduced as an on-us hold is (voided as `rev:<id>:partial`, the amount
        held anew as `<id>:reduced`) and the network gets a 0420 with 95, which reduces its hold too.
        Without it, the hold (and a reduced hold left by a partial reversal) is released and the network
        gets a 0420 releasing what it still holds: after a partial reversal that is a second reversal of
        the same original, under a store-and-forward key of its own."""
        name, route = record.network, record.route
        keep = replacement_amount if replacement_amount is not None and replacement_amount > 0 else 0
        reduced_id = reduced_hold_id(record.transfer_id)
        if keep:
            void = resolve_pending(
                partial_void_id(record.transfer_id),
                hold,
                TransferKind.VOID_PENDING,
                hold.amount,
                reference=f"partial reversal of {record.transfer_id}",
            )
            (voided,) = await self.ledger.create_transfers([void])
            if voided not in (*_APPLIED, TransferResult.PENDING_EXPIRED):
                # Completed or reversed whole already: nothing is held any more to reduce, and the network
                # heard of that from the completion's advice or the full reversal.
                return ForwardOutcome(Result.APPROVED, route, name)
            # Expired here, nothing is held anew; the network's hold may still stand: it is told all the same.
            if voided is not TransferResult.PENDING_EXPIRED:
                refused = await hold_reduced(self.ledger, hold, keep, log=log)
                if refused is not None:
                    return ForwardOutcome(refused, route, name)
            message = network_reversal(
                net.profile,
                record.message,
                reason=REVERSAL_REASON_CUSTOMER_CANCELLATION,
                pan=card.pan,
                replacement_amount=keep,
            )
            key = reversal_key(name, record.message)
        else:
            reduced = found.get(reduced_id)
            after_partial = partial_void_id(record.transfer_id) in found
            releases = [_reversal_transfer(hold, None)]
            if reduced is not None and reduced.kind is TransferKind.PENDING:
                releases.append(_void_of(reduced))
            voided, *others = await self.ledger.create_transfers(releases)
            if voided not in _REVERSED_ALREADY or any(r not in _REVERSED_ALREADY for r in others):
                log.error(
                    "ledger refused a reversal of a forwarded transaction",
                    network=name,
                    transfer_id=record.transfer_id,
                    ledger_result=(voided if voided not in _REVERSED_ALREADY else others[0]).value,
                )
                return ForwardOutcome(Result.SYSTEM_MALFUNCTION, route, name)
            if voided is TransferResult.PENDING_ALREADY_VOIDED and reduced is None:
                # Voided since the look: by a partial reversal, whose reduced hold must not outlive this.
                after_partial = True
                if not await release_late_reduced_hold(
                    self.ledger, reduced_id, log=log, reference=f"void of {reduced_id}"
                ):
                    return ForwardOutcome(Result.SYSTEM_MALFUNCTION, route, name)
            message = network_reversal(
                net.profile, record.message, reason=REVERSAL_REASON_CUSTOMER_CANCELLATION, pan=card.pan
            )
            key = reversal_key(name, record.message)
            if after_partial:
                # The partial reversal went into the queue under this key: the rest is released by a
                # reversal that is an entry of its own (each send takes the link's next STAN).
                key = f"{key}:rest"
        await self.saf.enqueue(SafEntry(network=name, kind="reversal", key=key, message=message))
        return ForwardOutcome(
            Result.APPROVED, route, name, network_stan=record.message.get(11), reversal_queued=True
        )

    async def original_by_rrn(self, *, terminal_id: str, rrn: str, completion: bool) -> str | None:
        """The transfer id of the forwarded original a follow-up names only by RRN: this terminal's
        forwarded transaction with that RRN, of the kind the follow-up resolves (a pre-authorization for a
        completion, a plain 0200 for a void). None when there is none, or more than one (RRNs are unique
        per terminal and hour, not overall): "not found" rather than a guess, as on-us."""
        wanted = "0100" if completion else "0200"
        candidates = [
            r for r in await self.forwarded.find_by_rrn(terminal_id, rrn) if r.message.mti == wanted
        ]
        return candidates[0].transfer_id if len(candidates) == 1 else None

    async def void(
        self,
        *,
        original_transfer_id: str,
        card: CardData,
        amount: int,
        currency: int,
        transfer_id: str | None = None,
    ) -> ForwardOutcome | None:
        """A terminal's void of a forwarded purchase (or withdrawal, cashback, refund): to the network it is
        a reversal of the original, in full, or partial when `amount` is less than the original's; the
        ledger posting is given back as much. A pre-authorization is not voided (it is reversed) and an
        original voided or reversed already is not voided again: both are answered 25, as on-us; another
        currency than the original's is answered as unsupported. None when no forwarded transaction of
        that id moved money. The void is kept as a forwarded transaction of its own (`transfer_id`, the
        void's identity), so that a terminal's reversal of it is known for what it is (see `reverse`)."""
        record = await self.forwarded.find(original_transfer_id)
        if record is None:
            return None
        if record.message.mti == "0100" or record.message.mti[:2] == "04":
            return ForwardOutcome(Result.RECORD_NOT_FOUND, record.route, record.network)
        if currency != record.currency:
            return ForwardOutcome(Result.UNSUPPORTED_CURRENCY, record.route, record.network)
        reversal_id = _reversal_transfer_id(record.transfer_id)
        if reversal_id in await self.ledger.lookup_transfers([reversal_id]):
            return ForwardOutcome(Result.RECORD_NOT_FOUND, record.route, record.network)
        outcome = await self.reverse(
            original_transfer_id=original_transfer_id,
            card=card,
            replacement_amount=record.amount - amount if amount < record.amount else None,
        )
        if transfer_id is not None and outcome is not None and outcome.reversal_queued:
            try:
                await self.forwarded.record(
                    dataclasses.replace(
                        record,
                        transfer_id=transfer_id,
                        message=record.message.with_fields({}, mti="0420"),
                        amount=amount,
                        created_at=self.clock.now(),
                    )
                )
            except Exception as exc:
                # The void stands (the network's reversal is queued); only what a later reversal of it
                # would be told about is missing: it would be acknowledged without effect all the same.
                log.warning("forwarded void not recorded", transfer_id=transfer_id, error=type(exc).__name__)
        return outcome

    async def complete(
        self,
        *,
        original_transfer_id: str,
        transfer_id: str,
        card: CardData,
        amount: int,
        currency: int,
        transmitted: datetime,
    ) -> ForwardOutcome | None:
        """A terminal's completion (`transfer_id`) of a forwarded pre-authorization for `amount`: the hold
        on the network's settlement account is posted for `amount` (the rest released) and a 0220 advice
        goes to the network through store-and-forward. None when no forwarded transaction of that id moved
        money. A repeat (same `transfer_id`) queues the same advice again, which the queue ignores."""
        record = await self.forwarded.find(original_transfer_id)
        if record is None:
            return None
        name, route = record.network, record.route
        if card.pan.masked != record.pan_masked or record.message.mti != "0100":
            return ForwardOutcome(Result.RECORD_NOT_FOUND, route, name)  # another card, or not a hold
        if currency != record.currency:
            return ForwardOutcome(Result.UNSUPPORTED_CURRENCY, route, name)
        net = self.networks.get(name)
        if net is None:
            log.error("completion for a network not configured", network=name, transfer_id=transfer_id)
            return ForwardOutcome(Result.SYSTEM_MALFUNCTION, route, name)
        reduced_id = reduced_hold_id(record.transfer_id)
        found = await self.ledger.lookup_transfers([record.transfer_id, reduced_id])
        # A hold partially reversed was replaced by a reduced one: that is the one to complete.
        held = found.get(reduced_id) or found.get(record.transfer_id)
        if held is None or held.kind is not TransferKind.PENDING:
            return ForwardOutcome(Result.RECORD_NOT_FOUND, route, name)
        if amount > held.amount:
            return ForwardOutcome(Result.INVALID_AMOUNT, route, name)
        posting = resolve_pending(
            transfer_id,
            held,
            TransferKind.POST_PENDING,
            amount,
            reference=f"completion of {record.transfer_id}",
        )
        (posted,) = await self.ledger.create_transfers([posting])
        if posted not in _APPLIED:
            # Posted, voided or expired already: nothing is left to complete.
            return ForwardOutcome(_COMPLETION_REFUSAL.get(posted, Result.SYSTEM_MALFUNCTION), route, name)
        advice = completion_advice(
            record.message,
            pan=card.pan,
            amount=amount,
            stan=advice_stan(transfer_id),
            transmitted=transmitted,
            auth_code=record.auth_code,
        )
        key = advice_key(name, advice)
        try:
            await self.saf.enqueue(SafEntry(network=name, kind="advice", key=key, message=advice))
            # Kept as a forwarded transaction of its own, so that a terminal's reversal of the completion
            # finds it: the advice is what the network holds (its 11 and 7 are ours, set above).
            await self.forwarded.record(
                ForwardedRecord(
                    transfer_id=transfer_id,
                    network=name,
                    route=route,
                    message=without_card_data(advice),
                    pan_masked=record.pan_masked,
                    amount=amount,
                    currency=record.currency,
                    auth_code=record.auth_code,
                    created_at=self.clock.now(),
                )
            )
        except Exception:
            # The completion is posted and cannot be taken back by the ledger's own reversal; the terminal
            # gets 96, and its repeat of this completion (same identity) queues and records it again.
            log.error("completion advice could not be queued or recorded", network=name, idempotency_key=key)
            raise
        return ForwardOutcome(
            Result.APPROVED,
            route,
            name,
            auth_code=record.auth_code,
            response_fields={38: record.auth_code},
            network_stan=advice.get(11),
            advice_queued=True,
        )

    # -- late answers ----------------------------------------------------------------------------------

    async def late_response(
        self, *, network: str, response: Message, request: Message | None, reason: str
    ) -> bool:
        """A network's answer that matched nothing pending (the link's late-response handler). A late
        approval of a financial request the switch already answered as timed out makes sure its reversal
        is queued: normally the timeout queued it already, and its key (`reversal_key`) makes this a no-op.
        True if a reversal was queued now. Late declines, duplicates and answers to reversals, advices and
        network management change nothing (the request as sent is needed for a reversal: an answer the
        link cannot pair with one is only logged)."""
        if reason != "late" or request is None or request.mti not in ("0100", "0200"):
            return False
        net = self.networks.get(network)
        if net is None:
            return False
        if not network_answer(net.profile.dialect, response).result.approved:
            return False
        queued = await self._queue_reversal(net, request, REVERSAL_REASON_TIMEOUT)
        log.warning(
            "late network approval reversed",
            network=network,
            stan=request.get(11),
            rrn=request.get(37),
            reversal_queued_now=queued,
        )
        return queued

    # -- helpers -------------------------------------------------------------------------------------

    @staticmethod
    def _moves_money(acquired: AcquiredRequest) -> bool:
        return acquired.transaction is not TransactionType.BALANCE

    def _settlement_transfer(
        self,
        req: ForwardRequest,
        network: str,
        *,
        reference: str,
        limit_key: str | None = None,
        limit_amount_max: int | None = None,
        limit_count_max: int | None = None,
    ) -> Transfer | None:
        acquired = req.acquired
        if not self._moves_money(acquired):
            return None
        account = self.settlement_accounts.get((network, acquired.currency))
        if account is None:
            return None
        merchant = acquired.merchant.settlement_account_id
        debit, credit = account, merchant  # the network owes us what its cardholder spent
        kind, expires = TransferKind.POSTED, None
        if acquired.transaction is TransactionType.REFUND:
            debit, credit = merchant, account
        elif acquired.transaction is TransactionType.PREAUTH:
            # From the request's own time, so a retransmission builds the very same transfer.
            kind, expires = TransferKind.PENDING, req.transmitted + timedelta(seconds=self.preauth_hold_s)
        return Transfer(
            transfer_id=req.transfer_id,
            kind=kind,
            debit_account_id=debit,
            credit_account_id=credit,
            amount=acquired.amount,
            currency=acquired.currency,
            expires_at=expires,
            limit_key=limit_key,
            limit_amount_max=limit_amount_max,
            limit_count_max=limit_count_max,
            reference=reference,
        )

    async def _record(
        self, req: ForwardRequest, network: str, route: str, held: Message, auth_code: str
    ) -> None:
        await self.forwarded.record(self._forwarded_record(req, network, route, held, auth_code))

    def _forwarded_record(
        self, req: ForwardRequest, network: str, route: str, held: Message, auth_code: str
    ) -> ForwardedRecord:
        return ForwardedRecord(
            transfer_id=req.transfer_id,
            network=network,
            route=route,
            message=without_card_data(held),
            pan_masked=req.acquired.card.pan.masked,
            amount=req.acquired.amount,
            currency=req.acquired.currency,
            auth_code=auth_code,
            created_at=self.clock.now(),
        )

    async def _queue_reversal(self, net: ForwardingNetwork, sent: Message, reason: str) -> bool:
        name = net.profile.name
        key = reversal_key(name, sent)
        try:
            return await self.saf.enqueue(
                SafEntry(
                    network=name,
                    kind="reversal",
                    key=key,
                    message=network_reversal(net.profile, sent, reason=reason),
                )
            )
        except Exception:
            # The terminal gets 96 (the caller's answer to a failure); the network may hold an approval.
            log.error("network reversal could not be queued", network=name, idempotency_key=key)
            raise

    async def _undo(self, net: ForwardingNetwork, sent: Message, transfer: Transfer) -> None:
        """After a failure that follows a network approval: reverse it on the network and (if it was
        booked) in the ledger, as far as the failing database allows. The caller re-raises."""
        # A failure to queue is logged already; the ledger undo below may still work.
        with contextlib.suppress(Exception):
            await self._queue_reversal(net, sent, REVERSAL_REASON_ACQUIRER_CANNOT_COMPLETE)
        await self._undo_ledger(transfer)

    async def _undo_ledger(self, transfer: Transfer) -> None:
        try:
            (undone,) = await self.ledger.create_transfers([_reversal_transfer(transfer, None)])
        except Exception as exc:
            log.error("ledger undo failed", transfer_id=transfer.transfer_id, error=type(exc).__name__)
            return
        # Not found: the failure came before the posting was applied, so there is nothing to undo.
        if undone not in (
            *_REVERSED_ALREADY,
            TransferResult.REVERSED_NOT_FOUND,
            TransferResult.PENDING_NOT_FOUND,
        ):
            log.error("ledger undo refused", transfer_id=transfer.transfer_id, ledger_result=undone.value)


def _reversal_transfer(original: Transfer, replacement_amount: int | None) -> Transfer:
    """The reversal of a forwarded transaction's posting: a hold is voided, a posting given back (all of
    it, or what exceeds `replacement_amount`), at most once (its id is "rev:" + the original's)."""
    if original.kind is TransferKind.PENDING:
        return _void_of(original)
    amount = original.amount - replacement_amount if replacement_amount is not None else original.amount
    return give_back(
        _reversal_transfer_id(original.transfer_id), original, amount
    )  # a completion too, as on-us


def _void_of(hold: Transfer) -> Transfer:
    """The release of a forwarded hold (or of the reduced hold that replaced it), `rev:<id>`."""
    return release(hold, reference=f"void of {hold.transfer_id}")


def _reversal_transfer_id(transfer_id: str) -> str:
    return f"rev:{transfer_id}"
