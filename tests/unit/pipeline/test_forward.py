"""The forwarding participant against in-memory fakes of the link, the store-and-forward queue and the
forwarded-transaction store, the ledger's reference model and the real HSM in-process (test LMK)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest
import structlog
import trio

from hsm.client import HsmClient, InProcessTransport
from hsm.crypto import dukpt
from hsm.crypto.des import kcv_tdes, with_odd_parity
from hsm.crypto.pinblock import decrypt_pin_block, encrypt_pin_block
from hsm.host.processor import HostCommandProcessor
from hsm.keys import BDK, TPK, ZPK, KeyVault
from hsm.lmk import VariantLmk
from specs.demo import demo_pan
from switch.adapters.hsm import ClientHsm
from switch.domain.ledger_types import LedgerAccount, Transfer, TransferResult
from switch.domain.model import Merchant, Terminal
from switch.domain.results import Result
from switch.domain.routing import DecisionKind, PrefixRange, RouteDecision, StandinRule
from switch.domain.saf import storable_message
from switch.domain.transactions import TransactionType, parse_card_data
from switch.domain.translation import (
    CARD_DATA_FIELDS,
    AcquiredRequest,
    NetworkKeySet,
    NetworkProfile,
    ZoneKey,
    original_data_elements,
    parse_field53,
    reversal_key,
)
from switch.iso.codec import Codec
from switch.iso.message import Message
from switch.pipeline.forward import (
    Forwarder,
    ForwardingNetwork,
    ForwardOutcome,
    ForwardRequest,
    network_settlement_account_id,
    settlement_accounts_for,
)
from switch.pipeline.network_keys import NetworkKeys
from switch.ports import (
    DukptPinKey,
    ForwardedRecord,
    HsmFailure,
    Ledger,
    NetworkExchange,
    NetworkUnavailable,
    PinKey,
    SafEntry,
    TpkPinKey,
)
from tests.unit.pipeline.world import FixedClock, ModelLedger

NOW = datetime(2026, 11, 23, 19, 35, 5, tzinfo=UTC)
TRANSMITTED = datetime(2026, 11, 23, 19, 35, 0, tzinfo=UTC)
PAN = demo_pan("476173", 3)
TRACK2 = f"{PAN}=30122011234567890"
PIN = "1234"
TPK_CLEAR = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
BDK_CLEAR = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
KSN = "FFFF9876540000A00001"
ZPK_CLEAR = {
    "visa": with_odd_parity(bytes.fromhex("11223344556677888877665544332211")),
    "cups": with_odd_parity(bytes.fromhex("A1B2C3D4E5F60718293A4B5C6D7E8F90")),
}
KEY_INDEX = {"visa": 5, "cups": 12}
MERCHANT_ACCOUNT = 2001
TRANSFER_ID = "POS00001:1123193500:000042"
PROFILES = {
    "visa": NetworkProfile(name="visa", dialect="visa", acquirer_id="990001", network_id="400001"),
    "cups": NetworkProfile(name="cups", dialect="cups", acquirer_id="99000100001", network_id="00010000"),
}
TERMINAL = Terminal(terminal_id="POS00001", merchant_id="DEMOMERCHANT001", kind="pos")
MERCHANT = Merchant("DEMOMERCHANT001", "Demo shop", MERCHANT_ACCOUNT)
PROCESSING = {
    TransactionType.PURCHASE: ("0200", "000000"),
    TransactionType.REFUND: ("0200", "200000"),
    TransactionType.BALANCE: ("0200", "310000"),
    TransactionType.PREAUTH: ("0100", "000000"),
    TransactionType.COMPLETION: ("0220", "000000"),
}
RULE = StandinRule(
    standin_id=1,
    network="visa",
    scope=PrefixRange("476173", "476173"),
    currency=840,
    per_transaction_amount_max=5_000,
    daily_amount_max=8_000,
    daily_count_max=3,
)

Answer = Callable[[Message], Message | None]


def answering(
    network: str, code: str = "00", *, auth: str = "A1B2C3", extra: dict[int, str] | None = None
) -> Answer:
    codec = Codec(network)

    def answer(sent: Message) -> Message:
        updates = {38: auth} if code == "00" else {}
        return codec.response(sent, response_code=code, updates={**updates, **(extra or {})})

    return answer


def no_answer(sent: Message) -> None:
    return None


class FakeNetwork:
    """The Network port: fills 11 and 7 as the link does, answers from a script, or is unavailable."""

    def __init__(self, name: str, answer: Answer | None = None, *, up: bool = True) -> None:
        self.name = name
        self.answer = answer or answering(name)
        self.up = up
        self.sent: list[Message] = []
        self._stan = 0

    async def request(self, message: Message, *, timeout_s: float) -> NetworkExchange:
        await trio.lowlevel.checkpoint()
        if not self.up:
            raise NetworkUnavailable(f"network {self.name}: down")
        self._stan += 1
        updates = {n: v for n, v in ((11, f"{self._stan:06d}"), (7, "1123193501")) if n not in message}
        sent = message.with_fields(updates)
        self.sent.append(sent)
        return NetworkExchange(sent, self.answer(sent))


class FakeSaf:
    def __init__(self) -> None:
        self.entries: list[SafEntry] = []
        self.fail = False

    async def enqueue(self, entry: SafEntry) -> bool:
        await trio.lowlevel.checkpoint()
        if self.fail:
            raise OSError("database down")
        storable_message(network=entry.network, kind=entry.kind, key=entry.key, message=entry.message)
        if any(e.key == entry.key for e in self.entries):
            return False
        self.entries.append(entry)
        return True


class MemoryForwarded:
    """The forwarded store in memory; `post_and_record` books on the given ledger (the rig's model) and
    keeps the record only for a transfer applied now, as the PostgreSQL store does in one commit."""

    def __init__(self, ledger: Ledger) -> None:
        self.records: dict[str, ForwardedRecord] = {}
        self.ledger = ledger

    async def post_and_record(self, transfer: Transfer, entry: ForwardedRecord) -> TransferResult:
        assert entry.transfer_id == transfer.transfer_id
        assert CARD_DATA_FIELDS.isdisjoint(entry.message.numbers)
        (result,) = await self.ledger.create_transfers([transfer])
        if result is TransferResult.OK:
            self.records.setdefault(entry.transfer_id, entry)
        return result

    async def record(self, entry: ForwardedRecord) -> bool:
        await trio.lowlevel.checkpoint()
        assert CARD_DATA_FIELDS.isdisjoint(entry.message.numbers)
        if entry.transfer_id in self.records:
            return False
        self.records[entry.transfer_id] = entry
        return True

    async def find(self, transfer_id: str) -> ForwardedRecord | None:
        await trio.lowlevel.checkpoint()
        return self.records.get(transfer_id)

    async def find_by_rrn(self, terminal_id: str, rrn: str) -> list[ForwardedRecord]:
        await trio.lowlevel.checkpoint()
        found = [
            r
            for r in self.records.values()
            if r.message.get(37) == rrn and r.transfer_id.startswith(f"{terminal_id}:")
        ]
        return sorted(found, key=lambda r: (r.created_at, r.transfer_id))[:10]


class MemoryKeyStore:
    def __init__(self) -> None:
        self.keys: dict[str, NetworkKeySet] = {}

    async def zone_master_key(self, network: str) -> str | None:
        return None

    async def set_zone_master_key(self, network: str, *, zmk_under_lmk: str, check_value: str) -> None:
        raise NotImplementedError

    async def load(self, network: str) -> NetworkKeySet:
        await trio.lowlevel.checkpoint()
        return self.keys.get(network, NetworkKeySet())

    async def install(self, network: str, key: ZoneKey) -> NetworkKeySet:
        self.keys[network] = self.keys.get(network, NetworkKeySet()).installed(key)
        return self.keys[network]


class FailingLedger(ModelLedger):
    """The model ledger whose transfer calls fail after applying (a lost database reply) `fail` times."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = 0

    async def create_transfers(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        results = await super().create_transfers(transfers)
        if self.fail:
            self.fail -= 1
            raise OSError("connection lost")
        return results


class Rig:
    def __init__(self) -> None:
        self.vault = KeyVault(VariantLmk.test_lmk())
        self.hsm = ClientHsm(HsmClient(InProcessTransport(HostCommandProcessor(self.vault))))
        self.ledger = FailingLedger()
        self.clock = FixedClock(NOW)
        self.saf = FakeSaf()
        self.forwarded = MemoryForwarded(self.ledger)
        self.store = MemoryKeyStore()
        self.links = {name: FakeNetwork(name) for name in PROFILES}
        for name, clear in ZPK_CLEAR.items():
            self.store.keys[name] = NetworkKeySet(
                current=ZoneKey(
                    index=KEY_INDEX[name],
                    under_lmk=self.vault.wrap(clear, ZPK, "U"),
                    check_value=kcv_tdes(clear),
                    installed_at=NOW,
                )
            )
        self.networks = {
            name: ForwardingNetwork(
                profile=PROFILES[name],
                link=self.links[name],
                keys=NetworkKeys(
                    profile=PROFILES[name],
                    hsm=self.hsm,
                    store=self.store,
                    clock=self.clock,
                    key_grace_s=300,
                    deadline_s=2,
                ),
                deadline_s=2,
            )
            for name in PROFILES
        }
        self.forwarder = Forwarder(
            networks=self.networks,
            hsm=self.hsm,
            ledger=self.ledger,
            saf=self.saf,
            forwarded=self.forwarded,
            settlement_accounts=settlement_accounts_for([("visa", 840), ("cups", 840), ("visa", 978)]),
            card_token=lambda pan: f"t{len(pan.digits)}{pan.digits[-2:]}",  # stable per card in these tests
            clock=self.clock,
        )
        self.tpk = self.vault.wrap(TPK_CLEAR, TPK, "U")
        self.bdk = self.vault.wrap(BDK_CLEAR, BDK, "U")

    async def open(self) -> None:
        await self.ledger.create_accounts([LedgerAccount(account_id=MERCHANT_ACCOUNT, currency=840)])
        await self.forwarder.ensure_settlement_accounts()

    def forward_request(
        self,
        transaction: TransactionType = TransactionType.PURCHASE,
        *,
        amount: int = 1234,
        pin: str | None = None,
        pin_block: str | None = None,
        dukpt_pin: bool = False,
        stan: str = "000042",
        fallbacks: tuple[str, ...] = ("cups",),
        network: str | None = "visa",
        standin: StandinRule | None = RULE,
        currency: int = 840,
    ) -> ForwardRequest:
        mti, code = PROCESSING[transaction]
        fields = {
            3: code,
            7: "1123193500",
            11: stan,
            12: "193500",
            13: "1123",
            22: "021",
            25: "00",
            35: TRACK2,
            41: "POS00001",
            42: "DEMOMERCHANT001",
            49: f"{currency:03d}",
        }
        if transaction is not TransactionType.BALANCE:
            fields[4] = f"{amount:012d}"
        key: PinKey | None = None
        if pin is not None:
            if dukpt_pin:
                ksn = bytes.fromhex(KSN)
                clear = dukpt.tdes_pin_key(dukpt.tdes_ipek(BDK_CLEAR, ksn), ksn)
                key = DukptPinKey(bdk=self.bdk, ksn=KSN)
            else:
                clear = TPK_CLEAR
                key = TpkPinKey(tpk=self.tpk)
            fields[52] = encrypt_pin_block(pin, PAN, 0, clear).hex().upper()
        if pin_block is not None:
            fields[52] = pin_block
            key = TpkPinKey(tpk=self.tpk)
        request = Message(mti, fields)
        card = parse_card_data(None, TRACK2, None)
        assert card is not None
        decision = RouteDecision(
            kind=DecisionKind.NETWORK if network else DecisionKind.ALL_LINKS_DOWN,
            network=network,
            fallbacks=fallbacks,
            unavailable=() if network else ("visa",),
            standin=standin,
        )
        return ForwardRequest(
            acquired=AcquiredRequest(
                request=request,
                transaction=transaction,
                card=card,
                terminal=TERMINAL,
                merchant=MERCHANT,
                rrn="632719000042",
                amount=0 if transaction is TransactionType.BALANCE else amount,
                currency=currency,
            ),
            route=decision,
            transfer_id=f"POS00001:1123193500:{stan}",
            transmitted=TRANSMITTED,
            pin_key=key,
        )

    async def balance(self, account_id: int) -> int:
        b = (await self.ledger.balances([account_id]))[account_id]
        return b.credits_posted - b.debits_posted

    async def pending(self, account_id: int) -> int:
        return (await self.ledger.balances([account_id]))[account_id].credits_pending


VISA_840 = network_settlement_account_id("visa", 840)
CUPS_840 = network_settlement_account_id("cups", 840)


@pytest.fixture
async def rig() -> Rig:
    r = Rig()
    await r.open()
    return r


def reversals(rig: Rig) -> list[SafEntry]:
    return [e for e in rig.saf.entries if e.kind == "reversal"]


def advices(rig: Rig) -> list[SafEntry]:
    return [e for e in rig.saf.entries if e.kind == "advice"]


# -- approvals and declines ------------------------------------------------------------------------------


async def test_approval_posts_network_to_merchant(rig):
    """If Visa approves a purchase, then the network's account is debited and the merchant's credited."""
    outcome = await rig.forwarder.forward(rig.forward_request(amount=1234))
    assert (outcome.result, outcome.route, outcome.auth_code) == (Result.APPROVED, "visa", "A1B2C3")
    assert outcome.response_fields == {38: "A1B2C3"}
    assert (await rig.balance(VISA_840), await rig.balance(MERCHANT_ACCOUNT)) == (-1234, 1234)


async def test_approval_takes_one_ledger_call(rig):
    """If a forwarded purchase is approved, then the ledger is called once."""
    calls = rig.ledger.calls
    await rig.forwarder.forward(rig.forward_request())
    assert rig.ledger.calls - calls == 1


async def test_approval_is_recorded_without_card_data(rig):
    """If a forwarded purchase is approved, then what was sent is kept, with no card data, under its id."""
    await rig.forwarder.forward(rig.forward_request())
    record = rig.forwarded.records[TRANSFER_ID]
    (sent,) = rig.links["visa"].sent
    assert record.message == sent.with_fields(dict.fromkeys(CARD_DATA_FIELDS))
    assert (record.network, record.pan_masked, record.amount) == ("visa", PAN[:6] + "******" + PAN[-4:], 1234)


async def test_an_approval_posted_before_without_its_record_is_recorded_now(rig):
    """If the posting exists already but no record (booked by a switchd from before postings and records
    went in one commit), then a repeat approval is answered approved, records, and posts nothing more."""
    await rig.forwarder.forward(rig.forward_request())
    del rig.forwarded.records[TRANSFER_ID]
    outcome = await rig.forwarder.forward(rig.forward_request())
    assert outcome.result is Result.APPROVED
    assert TRANSFER_ID in rig.forwarded.records
    assert await rig.balance(MERCHANT_ACCOUNT) == 1234


async def test_request_goes_out_in_the_network_dialect(rig):
    """If a swiped purchase is forwarded to Visa, then the link gets track 2 with 'D' and entry mode n4."""
    await rig.forwarder.forward(rig.forward_request())
    (sent,) = rig.links["visa"].sent
    assert (sent[35], sent[22], sent[32]) == (TRACK2.replace("=", "D"), "0210", "990001")


async def test_refund_approval_posts_merchant_to_network(rig):
    """If a refund is approved, then the merchant's account is debited and the network's credited."""
    outcome = await rig.forwarder.forward(rig.forward_request(TransactionType.REFUND, amount=500))
    assert outcome.result is Result.APPROVED
    assert (await rig.balance(VISA_840), await rig.balance(MERCHANT_ACCOUNT)) == (500, -500)


async def test_preauth_approval_is_a_hold(rig):
    """If a pre-authorization is approved, then the merchant's credit is pending, not posted."""
    outcome = await rig.forwarder.forward(rig.forward_request(TransactionType.PREAUTH, amount=700))
    assert outcome.result is Result.APPROVED
    assert (await rig.pending(MERCHANT_ACCOUNT), await rig.balance(MERCHANT_ACCOUNT)) == (700, 0)


async def test_balance_inquiry_returns_the_network_balances_without_posting(rig):
    """If a balance inquiry is approved with 54, then 54 goes to the terminal and the ledger is not called."""
    balances = "0001840C000000012345" + "0002840C000000010000"
    rig.links["visa"].answer = answering("visa", extra={54: balances})
    calls = rig.ledger.calls
    outcome = await rig.forwarder.forward(rig.forward_request(TransactionType.BALANCE))
    assert (outcome.result, outcome.response_fields[54]) == (Result.APPROVED, balances)
    assert rig.ledger.calls == calls


def _declines(network: str) -> list[tuple[str, str]]:
    import importlib

    codes: dict[str, str] = importlib.import_module(f"specs.{network}").RESPONSE_CODES
    return [(network, code) for code in codes if code != "00"]


@pytest.mark.parametrize(("network", "code"), _declines("visa") + _declines("cups"))
async def test_each_network_decline_is_mapped_and_moves_nothing(rig, network, code):
    """If the network declines with any code of its table, then the result is its mapped one and nothing
    is posted or queued."""
    rig.links[network].answer = answering(network, code)
    import importlib

    expected = Result(importlib.import_module(f"specs.{network}").RESPONSE_CODES[code])
    outcome = await rig.forwarder.forward(rig.forward_request(network=network, fallbacks=()))
    assert (outcome.result, outcome.network_response_code) == (expected, code)
    assert (await rig.balance(MERCHANT_ACCOUNT), rig.saf.entries, rig.forwarded.records) == (0, [], {})


async def test_unknown_network_code_is_issuer_inoperative(rig):
    """If the network answers a code its table lacks, then the terminal gets issuer inoperative."""
    rig.links["visa"].answer = answering("visa", "Q7")
    assert (await rig.forwarder.forward(rig.forward_request())).result is Result.ISSUER_INOPERATIVE


async def test_non_forwardable_transaction_is_not_sent(rig):
    """If a completion of a foreign card reaches the participant, then it is invalid and nothing is sent."""
    outcome = await rig.forwarder.forward(rig.forward_request(TransactionType.COMPLETION))
    assert outcome.result is Result.INVALID_TRANSACTION
    assert rig.links["visa"].sent == []


async def test_currency_without_settlement_account_is_not_sent(rig):
    """If no network settlement account exists for the currency, then it is unsupported and nothing is sent."""
    outcome = await rig.forwarder.forward(rig.forward_request(currency=156))
    assert outcome.result is Result.UNSUPPORTED_CURRENCY
    assert rig.links["visa"].sent == rig.links["cups"].sent == []


async def test_approval_the_ledger_refuses_is_reversed(rig):
    """If the network approves what the ledger refuses (merchant account in another currency), then the
    approval is reversed on the network and the terminal is declined."""
    outcome = await rig.forwarder.forward(rig.forward_request(currency=978))
    assert (outcome.result, outcome.reversal_queued) == (Result.UNSUPPORTED_CURRENCY, True)
    (entry,) = reversals(rig)
    assert entry.message[90] == original_data_elements(rig.links["visa"].sent[0])


async def test_ledger_failure_after_approval_reverses_both_and_raises(rig):
    """If the ledger call fails after the network approved, then the network reversal is queued, the
    posting is undone, and the failure reaches the caller (who answers 96)."""
    rig.ledger.fail = 1
    with pytest.raises(OSError):
        await rig.forwarder.forward(rig.forward_request(amount=900))
    assert len(reversals(rig)) == 1
    assert (await rig.balance(VISA_840), await rig.balance(MERCHANT_ACCOUNT)) == (0, 0)


async def test_retransmission_that_reached_the_network_again_is_reversed(rig):
    """If a terminal's retransmission is forwarded again (no memory of the first answer), then the
    network's second approval is reversed, the terminal gets the first auth code and the ledger posts once."""
    await rig.forwarder.forward(rig.forward_request(amount=800))
    rig.links["visa"].answer = answering("visa", auth="ZZZZZZ")
    outcome = await rig.forwarder.forward(rig.forward_request(amount=800))
    assert (outcome.result, outcome.auth_code, outcome.reversal_queued) == (Result.APPROVED, "A1B2C3", True)
    _, second = rig.links["visa"].sent
    (entry,) = reversals(rig)
    assert entry.message[90] == original_data_elements(second)
    assert await rig.balance(MERCHANT_ACCOUNT) == 800


async def test_retransmission_after_an_undone_approval_fails_and_is_reversed(rig):
    """If the first approval's posting was undone after a failure, then its retransmission's approval is
    reversed too and the terminal gets a system malfunction, not an approval that is not booked."""
    rig.ledger.fail = 1
    with pytest.raises(OSError):
        await rig.forwarder.forward(rig.forward_request(amount=800))
    outcome = await rig.forwarder.forward(rig.forward_request(amount=800))
    assert (outcome.result, len(reversals(rig))) == (Result.SYSTEM_MALFUNCTION, 2)
    assert await rig.balance(MERCHANT_ACCOUNT) == 0


# -- fallback and timeouts -------------------------------------------------------------------------------


async def test_unavailable_network_falls_back(rig):
    """If Visa cannot send, then the request goes to the fallback CUPS, in its dialect, route visa->cups."""
    rig.links["visa"].up = False
    outcome = await rig.forwarder.forward(rig.forward_request())
    assert (outcome.result, outcome.route, outcome.network) == (Result.APPROVED, "visa->cups", "cups")
    (sent,) = rig.links["cups"].sent
    assert (sent[2], sent[33]) == (PAN, "99000100001")
    assert await rig.balance(CUPS_840) == -1234


async def test_timeout_is_91_with_exactly_one_reversal(rig):
    """If the network does not answer in time (no stand-in rule), then the terminal gets 91 and exactly
    one 0420 of the request as sent is queued."""
    rig.links["visa"].answer = no_answer
    outcome = await rig.forwarder.forward(rig.forward_request(standin=None))
    assert (outcome.result, outcome.reversal_queued) == (Result.ISSUER_INOPERATIVE, True)
    (entry,) = rig.saf.entries
    (sent,) = rig.links["visa"].sent
    assert (entry.kind, entry.message.mti, entry.key) == ("reversal", "0420", reversal_key("visa", sent))
    assert entry.message[90] == original_data_elements(sent)


async def test_timeout_is_not_sent_to_a_fallback(rig):
    """If Visa times out, then the request is not tried on CUPS (Visa may have it)."""
    rig.links["visa"].answer = no_answer
    await rig.forwarder.forward(rig.forward_request(standin=None))
    assert rig.links["cups"].sent == []


async def test_timeout_that_cannot_be_queued_fails(rig):
    """If the timeout's reversal cannot be queued, then the failure reaches the caller (96, not 91)."""
    rig.links["visa"].answer = no_answer
    rig.saf.fail = True
    with pytest.raises(OSError):
        await rig.forwarder.forward(rig.forward_request(standin=None))


async def test_all_networks_down_without_standin_is_91_and_queues_nothing(rig):
    """If no network can send and no stand-in rule applies, then 91 and nothing is queued."""
    for link in rig.links.values():
        link.up = False
    outcome = await rig.forwarder.forward(rig.forward_request(standin=None))
    assert (outcome.result, outcome.route, rig.saf.entries) == (Result.ISSUER_INOPERATIVE, "visa->cups", [])


# -- stand-in --------------------------------------------------------------------------------------------


async def test_standin_when_links_are_down(rig):
    """If every link is down and the rule allows it, then the switch approves, posts it and queues an advice."""
    outcome = await rig.forwarder.forward(rig.forward_request(network=None, fallbacks=(), amount=2000))
    assert (outcome.result, outcome.route, outcome.standin) == (Result.APPROVED, "visa:standin", True)
    assert outcome.response_fields == {38: outcome.auth_code} and len(outcome.auth_code) == 6
    assert (await rig.balance(VISA_840), await rig.balance(MERCHANT_ACCOUNT)) == (-2000, 2000)
    (advice,) = rig.saf.entries
    assert (advice.kind, advice.message.mti, advice.message[38], 90 in advice.message) == (
        "advice",
        "0220",
        outcome.auth_code,
        False,
    )


async def test_standin_is_marked_in_the_ledger(rig):
    """If the switch stands in, then the posting's reference says stand-in."""
    await rig.forwarder.forward(rig.forward_request(network=None, fallbacks=()))
    transfer = (await rig.ledger.lookup_transfers([TRANSFER_ID]))[TRANSFER_ID]
    assert transfer.reference.startswith("standin:visa:")


async def test_standin_after_timeout_queues_reversal_then_advice(rig):
    """If the network times out and the rule allows stand-in, then its 0420 is queued first, then the 0220
    naming the original."""
    rig.links["visa"].answer = no_answer
    outcome = await rig.forwarder.forward(rig.forward_request(amount=1500))
    assert (outcome.result, outcome.route, outcome.reversal_queued) == (Result.APPROVED, "visa:standin", True)
    (sent,) = rig.links["visa"].sent
    assert [e.kind for e in rig.saf.entries] == ["reversal", "advice"]
    assert rig.saf.entries[1].message[90] == original_data_elements(sent)


async def test_standin_above_the_per_transaction_maximum_is_91(rig):
    """If the amount is above the rule's per-transaction maximum, then no stand-in: 91."""
    outcome = await rig.forwarder.forward(rig.forward_request(network=None, fallbacks=(), amount=5001))
    assert (outcome.result, rig.saf.entries) == (Result.ISSUER_INOPERATIVE, [])


async def test_standin_beyond_the_daily_amount_is_91(rig):
    """If the card's stand-ins today would pass the daily amount, then the next is 91 and not posted."""
    first = await rig.forwarder.forward(
        rig.forward_request(network=None, fallbacks=(), amount=5000, stan="000001")
    )
    second = await rig.forwarder.forward(
        rig.forward_request(network=None, fallbacks=(), amount=3001, stan="000002")
    )
    assert (first.result, second.result) == (Result.APPROVED, Result.ISSUER_INOPERATIVE)
    assert await rig.balance(MERCHANT_ACCOUNT) == 5000
    assert len(advices(rig)) == 1


async def test_standin_beyond_the_daily_count_is_91(rig):
    """If the card had its daily count of stand-ins, then the next one is 91."""
    results = [
        (
            await rig.forwarder.forward(
                rig.forward_request(network=None, fallbacks=(), amount=100, stan=f"00010{i}")
            )
        ).result
        for i in range(4)
    ]
    assert results == [Result.APPROVED] * 3 + [Result.ISSUER_INOPERATIVE]


async def test_standin_is_refused_with_a_pin(rig):
    """If the request carries a PIN block, then no stand-in (a foreign PIN cannot be checked): 91."""
    rig.links["visa"].answer = no_answer
    outcome = await rig.forwarder.forward(rig.forward_request(pin=PIN))
    assert (outcome.result, outcome.standin) == (Result.ISSUER_INOPERATIVE, False)
    assert [e.kind for e in rig.saf.entries] == ["reversal"]


async def test_standin_rule_of_another_network_does_not_apply(rig):
    """If CUPS times out after Visa was down, then Visa's stand-in rule does not approve for CUPS."""
    rig.links["visa"].up = False
    rig.links["cups"].answer = no_answer
    outcome = await rig.forwarder.forward(rig.forward_request())
    assert (outcome.result, [e.kind for e in rig.saf.entries]) == (Result.ISSUER_INOPERATIVE, ["reversal"])


async def test_standin_retry_queues_one_advice(rig):
    """If the same stand-in is asked twice, then it is posted once and one advice is queued."""
    for _ in range(2):
        outcome = await rig.forwarder.forward(rig.forward_request(network=None, fallbacks=()))
        assert outcome.result is Result.APPROVED
    assert (len(advices(rig)), await rig.balance(MERCHANT_ACCOUNT)) == (1, 1234)


# -- PINs ------------------------------------------------------------------------------------------------


async def test_pin_block_is_translated_to_the_network_zpk(rig):
    """If a PIN purchase is forwarded, then the network's PIN block decrypts under its ZPK to the PIN and
    field 53 names the key."""
    await rig.forwarder.forward(rig.forward_request(pin=PIN))
    (sent,) = rig.links["visa"].sent
    assert decrypt_pin_block(bytes.fromhex(sent[52]), PAN, 0, ZPK_CLEAR["visa"]) == PIN
    assert parse_field53(sent[53]) == KEY_INDEX["visa"]


async def test_dukpt_pin_block_is_translated_to_the_network_zpk(rig):
    """If a DUKPT PIN pad's block is forwarded, then the network gets it under its ZPK."""
    await rig.forwarder.forward(rig.forward_request(pin=PIN, dukpt_pin=True))
    (sent,) = rig.links["visa"].sent
    assert decrypt_pin_block(bytes.fromhex(sent[52]), PAN, 0, ZPK_CLEAR["visa"]) == PIN


async def test_fallback_gets_the_pin_under_its_own_zpk(rig):
    """If a PIN purchase falls back to CUPS, then its PIN block is under CUPS's ZPK and key index."""
    rig.links["visa"].up = False
    await rig.forwarder.forward(rig.forward_request(pin=PIN))
    (sent,) = rig.links["cups"].sent
    assert decrypt_pin_block(bytes.fromhex(sent[52]), PAN, 0, ZPK_CLEAR["cups"]) == PIN
    assert parse_field53(sent[53]) == KEY_INDEX["cups"]


async def test_pin_block_that_holds_no_pin_is_55_and_not_sent(rig):
    """If the terminal's PIN block holds no valid PIN, then 55 and nothing goes to the network."""
    garbage = encrypt_pin_block(PIN, PAN, 0, bytes.fromhex("00112233445566778899AABBCCDDEEFF")).hex().upper()
    outcome = await rig.forwarder.forward(rig.forward_request(pin_block=garbage))
    assert (outcome.result, rig.links["visa"].sent) == (Result.INCORRECT_PIN, [])


async def test_broken_zpk_is_an_hsm_failure_and_nothing_is_sent(rig):
    """If the HSM cannot use the network's ZPK, then HsmFailure reaches the caller and nothing is sent."""
    rig.store.keys["visa"] = NetworkKeySet(
        current=ZoneKey(index=5, under_lmk="U" + "0" * 32, check_value="000000", installed_at=NOW)
    )
    with pytest.raises(HsmFailure):
        await rig.forwarder.forward(rig.forward_request(pin=PIN))
    assert rig.links["visa"].sent == []


async def test_network_without_a_zpk_is_skipped_for_a_pin(rig):
    """If Visa has no ZPK yet, then a PIN purchase goes to the fallback."""
    rig.store.keys.pop("visa")
    outcome = await rig.forwarder.forward(rig.forward_request(pin=PIN))
    assert (outcome.route, rig.links["visa"].sent) == ("visa->cups", [])


async def test_pin_block_without_its_key_is_a_security_violation(rig):
    """If a PIN block comes without the terminal's key, then 63 and nothing is sent."""
    request = dataclasses.replace(rig.forward_request(pin=PIN), pin_key=None)
    outcome = await rig.forwarder.forward(request)
    assert (outcome.result, rig.links["visa"].sent) == (Result.SECURITY_VIOLATION, [])


# -- terminal reversals ----------------------------------------------------------------------------------


async def test_reversal_of_a_forwarded_approval_happens_once(rig):
    """If a terminal reverses a forwarded approval twice, then the ledger is given back once and one 0420
    naming the original is queued."""
    await rig.forwarder.forward(rig.forward_request(amount=1234))
    card = rig.forward_request().acquired.card
    for _ in range(2):
        outcome = await rig.forwarder.reverse(original_transfer_id=TRANSFER_ID, card=card)
        assert outcome is not None and (outcome.result, outcome.reversal_queued) == (Result.APPROVED, True)
    assert (await rig.balance(VISA_840), await rig.balance(MERCHANT_ACCOUNT)) == (0, 0)
    (entry,) = rig.saf.entries
    (sent,) = rig.links["visa"].sent
    assert (entry.message.mti, entry.message[90], entry.message[2]) == (
        "0420",
        original_data_elements(sent),
        PAN,
    )


async def test_partial_reversal_gives_back_the_rest(rig):
    """If the terminal reverses with an actual amount, then only the rest is given back and 95 says it."""
    await rig.forwarder.forward(rig.forward_request(amount=1000))
    card = rig.forward_request().acquired.card
    await rig.forwarder.reverse(original_transfer_id=TRANSFER_ID, card=card, replacement_amount=400)
    assert await rig.balance(MERCHANT_ACCOUNT) == 400
    assert rig.saf.entries[0].message[95].startswith("000000000400")


async def test_reversal_of_a_preauth_voids_the_hold(rig):
    """If a forwarded pre-authorization is reversed, then its hold is released."""
    await rig.forwarder.forward(rig.forward_request(TransactionType.PREAUTH, amount=700))
    card = rig.forward_request().acquired.card
    await rig.forwarder.reverse(original_transfer_id=TRANSFER_ID, card=card)
    assert await rig.pending(MERCHANT_ACCOUNT) == 0


async def _complete(rig: Rig, amount: int, stan: str) -> ForwardOutcome | None:
    return await rig.forwarder.complete(
        original_transfer_id=TRANSFER_ID,
        transfer_id=f"POS00001:1123193600:{stan}",
        card=rig.forward_request().acquired.card,
        amount=amount,
        currency=840,
        transmitted=TRANSMITTED,
    )


async def test_partial_reversal_of_a_preauth_reduces_the_hold_here_and_at_the_network(rig):
    """If a forwarded pre-authorization of 7.00 is reversed with 95 of 4.00, then 4.00 stays held, the
    network gets one 0420 with 95 (a repeat queues nothing more), a completion above 4.00 is refused (13)
    and one of 4.00 posts 4.00 with its advice."""
    await rig.forwarder.forward(rig.forward_request(TransactionType.PREAUTH, amount=700))
    card = rig.forward_request().acquired.card
    for _ in range(2):
        outcome = await rig.forwarder.reverse(
            original_transfer_id=TRANSFER_ID, card=card, replacement_amount=400
        )
        assert outcome is not None and outcome.result is Result.APPROVED
    assert await rig.pending(MERCHANT_ACCOUNT) == 400
    (reversal,) = reversals(rig)
    assert reversal.message[95].startswith("000000000400")
    too_much = await _complete(rig, 500, "000043")
    assert too_much is not None and too_much.result is Result.INVALID_AMOUNT
    done = await _complete(rig, 400, "000044")
    assert done is not None and done.result is Result.APPROVED
    assert (await rig.pending(MERCHANT_ACCOUNT), await rig.balance(MERCHANT_ACCOUNT)) == (0, 400)
    (advice,) = advices(rig)
    assert advice.message[4] == "000000000400"


async def test_full_reversal_after_a_partial_one_releases_the_rest_here_and_at_the_network(rig):
    """If a forwarded pre-authorization reduced by a partial reversal is then reversed whole, then nothing
    stays held, and the network gets a second 0420 without 95, under a queue key of its own (so the queue
    does not take it for the first one); a repeat of it queues nothing more."""
    await rig.forwarder.forward(rig.forward_request(TransactionType.PREAUTH, amount=700))
    card = rig.forward_request().acquired.card
    await rig.forwarder.reverse(original_transfer_id=TRANSFER_ID, card=card, replacement_amount=400)
    for _ in range(2):
        outcome = await rig.forwarder.reverse(original_transfer_id=TRANSFER_ID, card=card)
        assert outcome is not None and outcome.result is Result.APPROVED
    assert await rig.pending(MERCHANT_ACCOUNT) == 0
    partial, rest = reversals(rig)
    assert 95 not in rest.message.numbers
    assert rest.message[90] == partial.message[90]
    assert rest.key != partial.key
    late = await _complete(rig, 400, "000045")
    assert late is not None and late.result is Result.RECORD_NOT_FOUND


async def test_partial_reversal_of_a_preauth_crossing_a_full_one_leaves_nothing_held(rig):
    """If a partial reversal of a forwarded pre-authorization reduces the hold after a full reversal has
    looked and before it posts, then the full one still releases the reduced hold and tells the network
    to release the rest."""
    await rig.forwarder.forward(rig.forward_request(TransactionType.PREAUTH, amount=700))
    card = rig.forward_request().acquired.card
    inner = rig.ledger.create_transfers
    crossed: list[ForwardOutcome | None] = []

    async def crossing(transfers: Sequence[Transfer]) -> list[TransferResult]:
        if not crossed and any(t.transfer_id == f"rev:{TRANSFER_ID}" for t in transfers):
            crossed.append(
                await rig.forwarder.reverse(
                    original_transfer_id=TRANSFER_ID, card=card, replacement_amount=400
                )
            )
        return await inner(transfers)

    rig.ledger.create_transfers = crossing
    outcome = await rig.forwarder.reverse(original_transfer_id=TRANSFER_ID, card=card)
    assert outcome is not None and outcome.result is Result.APPROVED
    assert crossed[0] is not None and crossed[0].result is Result.APPROVED
    assert await rig.pending(MERCHANT_ACCOUNT) == 0
    partial, rest = reversals(rig)
    assert (95 in partial.message.numbers, 95 in rest.message.numbers) == (True, False)


async def test_reversal_of_a_standin_names_the_advice(rig):
    """If a stand-in approval is reversed, then the ledger is given back and the 0420 names the advice."""
    await rig.forwarder.forward(rig.forward_request(network=None, fallbacks=()))
    card = rig.forward_request().acquired.card
    await rig.forwarder.reverse(original_transfer_id=TRANSFER_ID, card=card)
    advice, reversal = rig.saf.entries
    assert reversal.message[90] == original_data_elements(advice.message)
    assert await rig.balance(MERCHANT_ACCOUNT) == 0


async def test_reversal_of_an_unknown_original_is_left_to_the_caller(rig):
    """If nothing forwarded under that id moved money, then reverse returns None and changes nothing."""
    card = rig.forward_request().acquired.card
    assert await rig.forwarder.reverse(original_transfer_id=TRANSFER_ID, card=card) is None
    assert rig.saf.entries == []


async def test_reversal_with_another_card_is_refused(rig):
    """If the reversal's card is not the original's, then record not found and nothing changes."""
    await rig.forwarder.forward(rig.forward_request())
    other = parse_card_data(demo_pan("476173", 9), None, None)
    outcome = await rig.forwarder.reverse(original_transfer_id=TRANSFER_ID, card=other)
    assert outcome is not None and outcome.result is Result.RECORD_NOT_FOUND
    assert (await rig.balance(MERCHANT_ACCOUNT), rig.saf.entries) == (1234, [])


# -- card data -------------------------------------------------------------------------------------------


async def test_no_card_data_in_logs(rig):
    """If approvals, timeouts, stand-ins, PIN purchases and failures are forwarded, then no log line holds
    the PAN, the track or a PIN block."""
    pin_request = rig.forward_request(pin=PIN, stan="000001")
    with structlog.testing.capture_logs() as logs:
        await rig.forwarder.forward(pin_request)
        rig.links["visa"].answer = no_answer
        await rig.forwarder.forward(rig.forward_request(stan="000002"))
        rig.store.keys.pop("cups")
        rig.links["visa"].up = False
        await rig.forwarder.forward(rig.forward_request(pin=PIN, stan="000003"))
        await rig.forwarder.forward(rig.forward_request(currency=978, stan="000004"))
    dump = repr(logs)
    assert logs  # the paths above do log
    for secret in (
        PAN,
        PAN[6:12],
        pin_request.acquired.request[52],
        *(s[52] for s in rig.links["visa"].sent if 52 in s),
    ):
        assert secret not in dump


async def test_queued_entries_hold_no_card_data_beyond_the_pan(rig):
    """If reversals and advices are queued, then the store keeps every field but the PAN (which it
    encrypts): no track, PIN block or key name to drop, and no PAN elsewhere."""
    rig.links["visa"].answer = no_answer
    await rig.forwarder.forward(rig.forward_request(pin=PIN, stan="000001"))
    await rig.forwarder.forward(rig.forward_request(stan="000002"))
    assert [e.kind for e in rig.saf.entries] == ["reversal", "reversal", "advice"]
    for entry in rig.saf.entries:
        stored = storable_message(
            network=entry.network, kind=entry.kind, key=entry.key, message=entry.message
        )
        assert stored.dropped == ()
        assert stored.pan is not None and stored.pan.digits == PAN
        assert PAN not in repr(stored.fields) and PAN[6:12] not in entry.key


async def test_records_hold_no_card_data(rig):
    """If approvals and stand-ins are recorded, then no record holds the PAN or a card field."""
    await rig.forwarder.forward(rig.forward_request(pin=PIN, stan="000001"))
    await rig.forwarder.forward(rig.forward_request(network=None, fallbacks=(), stan="000002"))
    assert len(rig.forwarded.records) == 2
    for record in rig.forwarded.records.values():
        assert CARD_DATA_FIELDS.isdisjoint(record.message.numbers)
        assert PAN not in repr(record.message.fields)


async def test_network_refusing_our_pin_key_asks_for_a_new_key_exchange(rig):
    """If the network answers a PIN purchase 63 (it does not take our zone PIN key), then the terminal gets
    63 and the network's keys are marked for an exchange now; a 63 to a purchase without PIN, or a 55 to
    one with a PIN, does not mark them."""
    keys = rig.networks["visa"].keys
    for code, pin in (("63", None), ("55", PIN)):
        rig.links["visa"].answer = answering("visa", code)
        outcome = await rig.forwarder.forward(rig.forward_request(pin=pin, stan=f"0001{code}"))
        assert outcome.result is not Result.APPROVED and not keys.resync_pending
    rig.links["visa"].answer = answering("visa", "63")
    with structlog.testing.capture_logs() as logs:
        outcome = await rig.forwarder.forward(rig.forward_request(pin=PIN, stan="000163"))
    assert outcome.result is Result.SECURITY_VIOLATION and keys.resync_pending
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["network refused our zone PIN key"]
    assert await keys.resync_requested(0) is True
    assert not keys.resync_pending and await keys.resync_requested(0) is False
