"""A small, real world for pipeline tests: the ledger's reference model, an in-memory card directory and
the software HSM in-process with the test LMK. No database, no sockets."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

import trio

from hsm.client import HsmClient, InProcessTransport
from hsm.crypto.cvv import card_verification_value
from hsm.crypto.pinblock import encrypt_pin_block
from hsm.crypto.pinverify import visa_pvv
from hsm.host.processor import HostCommandProcessor
from hsm.keys import CVK, PVK, TAK, TMK, TPK, KeyVault
from hsm.lmk import VariantLmk
from switch.adapters.hsm import ClientHsm
from switch.domain.ledger_model import LedgerModel
from switch.domain.ledger_types import AccountBalance, LedgerAccount, Transfer, TransferKind, TransferResult
from switch.domain.model import (
    Account,
    AccountKind,
    Card,
    CardStatus,
    ListEntry,
    Merchant,
    Pan,
    PinMethod,
    Product,
    ProductKind,
    Terminal,
)
from switch.iso.codec import Codec
from switch.iso.message import Message
from switch.pipeline.authorize import Authorizer

CODEC = Codec("terminal")
TPK_CLEAR = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
TAK_CLEAR = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")
TMK_CLEAR = bytes.fromhex("1032547698BADCFEFEDCBA9876543210")
PVK_CLEAR = bytes.fromhex("1032547698BADCFE0123456789ABCDEF")
CVK_CLEAR = bytes.fromhex("FEDCBA98765432101032547698BADCFE")
PAN = "9900010000000019"
PIN = "1234"
NOW = datetime(2026, 11, 23, 19, 35, tzinfo=UTC)
CARDHOLDER = 1001
SAVINGS = 1002
MERCHANT_ACCOUNT = 2001
FUNDING = 3001


class FixedClock:
    def __init__(self, now: datetime = NOW) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


class ModelLedger:
    """The Ledger port over the pure reference model (same semantics as PostgreSQL's)."""

    def __init__(self) -> None:
        self.model = LedgerModel()
        self.calls = 0

    async def create_accounts(self, accounts: Sequence[LedgerAccount]) -> None:
        self.model.create_accounts(accounts)

    async def create_transfers(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        self.calls += 1
        return self.model.create_transfers(transfers)

    async def lookup_transfers(self, transfer_ids: Sequence[str]) -> dict[str, Transfer]:
        return self.model.lookup_transfers(transfer_ids)

    async def lookup_by_reference(self, reference: str, limit: int = 10) -> list[Transfer]:
        return self.model.lookup_by_reference(reference, limit)

    async def bar(self, transfer_id: str) -> bool:
        return self.model.bar(transfer_id)

    async def balances(self, account_ids: Sequence[int]) -> dict[int, AccountBalance]:
        return self.model.balances(account_ids)

    async def expire_pending(self, now: datetime, limit: int = 1000) -> int:
        return self.model.expire_pending(now, limit)


class GatedPostings:
    """The World's ledger, installed in its authorizer, whose `create_transfers` waits until `gate` is set
    (`waiting` is set once a call waits): a posting held up, as by a slow database."""

    def __init__(self, world: World) -> None:
        self.inner = world.ledger
        world.authorizer.ledger = self  # type: ignore[assignment]
        self.gate = trio.Event()
        self.waiting = trio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def create_transfers(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        self.waiting.set()
        await self.gate.wait()
        return await self.inner.create_transfers(transfers)


class MemoryDirectory:
    def __init__(self) -> None:
        self.cards: dict[str, Card] = {}
        self.terminals: dict[str, Terminal] = {}
        self.merchants: dict[str, Merchant] = {}
        self.hot: dict[str, ListEntry] = {}

    async def card_by_pan(self, pan: Pan) -> Card | None:
        return self.cards.get(pan.digits)

    async def terminal(self, terminal_id: str) -> Terminal | None:
        return self.terminals.get(terminal_id)

    async def merchant(self, merchant_id: str) -> Merchant | None:
        return self.merchants.get(merchant_id)

    async def list_entry(self, pan: Pan, terminal_id: str, merchant_id: str) -> ListEntry | None:
        return self.hot.get(pan.digits)

    async def record_pin_result(self, card_id: int, *, ok: bool) -> int:
        for pan, card in self.cards.items():
            if card.card_id == card_id:
                tries = 0 if ok else card.pin_tries + 1
                self.cards[pan] = dataclasses.replace(card, pin_tries=tries)
                return tries
        raise KeyError(card_id)

    async def set_terminal_keys(self, terminal_id: str, *, tpk_under_lmk: str, tak_under_lmk: str) -> None:
        t = self.terminals[terminal_id]
        self.terminals[terminal_id] = dataclasses.replace(
            t, tpk_under_lmk=tpk_under_lmk, tak_under_lmk=tak_under_lmk
        )

    async def set_pin_verification_value(self, card_id: int, value: str) -> None:
        for pan, card in self.cards.items():
            if card.card_id == card_id:
                self.cards[pan] = dataclasses.replace(card, pin_verification_value=value, pin_tries=0)
                return
        raise KeyError(card_id)


class World:
    def __init__(self) -> None:
        self.vault = KeyVault(VariantLmk.test_lmk())
        self.hsm = ClientHsm(HsmClient(InProcessTransport(HostCommandProcessor(self.vault))))
        self.ledger = ModelLedger()
        self.directory = MemoryDirectory()
        self.clock = FixedClock()
        self.product = Product(
            product_id=1,
            name="Demo debit",
            kind=ProductKind.DEBIT,
            pin_method=PinMethod.VISA_PVV,
            allowed_transactions=frozenset(
                {
                    "purchase",
                    "cashback",
                    "refund",
                    "void",
                    "preauth",
                    "completion",
                    "balance",
                    "withdrawal",
                    "transfer",
                    "load",
                    "pin_change",
                }
            ),
            per_transaction_amount_max={"withdrawal": 50_000},
            daily_amount_max={"purchase": 200_000},
            daily_count_max={"withdrawal": 3},
            currency=840,
            pvk_under_lmk=self.vault.wrap(PVK_CLEAR, PVK, "U"),
            cvk_under_lmk=self.vault.wrap(CVK_CLEAR, CVK, "U"),
        )
        pvv = visa_pvv(PVK_CLEAR, PAN, 1, PIN)
        self.card = Card(
            card_id=1,
            pan_masked="990001******0019",
            expiry_yymm="3012",
            status=CardStatus.ACTIVE,
            product=self.product,
            accounts=(
                Account(CARDHOLDER, AccountKind.SAVINGS, 840),
                Account(SAVINGS, AccountKind.CHECKING, 840),
            ),
            pvki=1,
            pin_verification_value=pvv,
        )
        self.directory.cards[PAN] = self.card
        self.directory.merchants["DEMOMERCHANT001"] = Merchant(
            "DEMOMERCHANT001", "Demo shop", MERCHANT_ACCOUNT
        )
        self.directory.terminals["POS00001"] = Terminal(
            terminal_id="POS00001",
            merchant_id="DEMOMERCHANT001",
            kind="pos",
            tmk_under_lmk=self.vault.wrap(TMK_CLEAR, TMK, "U"),
            tpk_under_lmk=self.vault.wrap(TPK_CLEAR, TPK, "U"),
            tak_under_lmk=self.vault.wrap(TAK_CLEAR, TAK, "U"),
        )
        self.directory.terminals["ATM00001"] = dataclasses.replace(
            self.directory.terminals["POS00001"], terminal_id="ATM00001", kind="atm"
        )
        self.authorizer = Authorizer(
            directory=self.directory,
            ledger=self.ledger,
            hsm=self.hsm,
            clock=self.clock,
            respond=lambda request, code: CODEC.response(request, response_code=code),
            encode=CODEC.encode_message,
        )
        self.stan = 0

    async def fund(self, amount: int = 100_000) -> None:
        await self.ledger.create_accounts(
            [
                LedgerAccount(account_id=CARDHOLDER, currency=840, debits_must_not_exceed_credits=True),
                LedgerAccount(account_id=SAVINGS, currency=840, debits_must_not_exceed_credits=True),
                LedgerAccount(account_id=MERCHANT_ACCOUNT, currency=840),
                LedgerAccount(account_id=FUNDING, currency=840),
            ]
        )
        (result,) = await self.ledger.create_transfers(
            [
                Transfer(
                    transfer_id=f"fund:{CARDHOLDER}:{amount}",
                    kind=TransferKind.POSTED,
                    debit_account_id=FUNDING,
                    credit_account_id=CARDHOLDER,
                    amount=amount,
                    currency=840,
                )
            ]
        )
        assert result is TransferResult.OK

    def track2(self, pan: str = PAN, expiry: str = "3012", service_code: str = "201") -> str:
        cvv = card_verification_value(CVK_CLEAR, pan, expiry, service_code)
        return f"{pan}={expiry}{service_code}1{self.card.pin_verification_value}{cvv}"

    def pin_block(self, pin: str = PIN, pan: str = PAN) -> str:
        return encrypt_pin_block(pin, pan, 0, TPK_CLEAR).hex().upper()

    def request(
        self,
        mti: str = "0200",
        processing_code: str = "000000",
        amount: int | None = 1000,
        *,
        terminal: str = "POS00001",
        pin: str | None = PIN,
        stan: str | None = None,
        extra: dict[int, str] | None = None,
        track2: str | None = None,
    ) -> Message:
        if stan is None:
            self.stan += 1
            stan = f"{self.stan:06d}"
        fields: dict[int, str] = {
            3: processing_code,
            7: "1123193500",
            11: stan,
            12: "193500",
            13: "1123",
            22: "021",
            25: "00",
            35: track2 or self.track2(),
            41: terminal,
            42: "DEMOMERCHANT001",
            49: "840",
        }
        if amount is not None:
            fields[4] = f"{amount:012d}"
        if pin is not None:
            fields[52] = self.pin_block(pin)
        fields.update(extra or {})
        return Message(mti, fields)

    async def send(self, request: Message) -> Message:
        outcome = await self.authorizer.handle(request)
        assert outcome.response is not None
        return outcome.response

    async def available(self, account_id: int = CARDHOLDER) -> int:
        return (await self.ledger.balances([account_id]))[account_id].available
