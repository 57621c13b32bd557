"""The issuing world as the authorization pipeline sees it: cards, products, accounts, terminals, lists.

Frozen values, built by the card directory adapter from the database (and cached in memory). Nothing
here holds a clear PAN except `Pan`, whose repr is masked; PIN verification data (PVV, IBM offset) is
not secret on its own but is still never logged.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date

from switch.masking import luhn_valid, mask_pan

__all__ = [
    "Account",
    "AccountKind",
    "Card",
    "CardStatus",
    "DukptPinPad",
    "ListEntry",
    "ListKind",
    "Merchant",
    "Pan",
    "PinMethod",
    "Product",
    "ProductKind",
    "Terminal",
]


@dataclass(frozen=True, slots=True)
class Pan:
    """A primary account number. Its repr and str are masked; `.digits` is the clear value."""

    digits: str

    def __post_init__(self) -> None:
        if not (self.digits.isascii() and self.digits.isdigit() and 12 <= len(self.digits) <= 19):
            raise ValueError("PAN must be 12-19 digits")

    @property
    def luhn_ok(self) -> bool:
        return luhn_valid(self.digits)

    @property
    def masked(self) -> str:
        return mask_pan(self.digits)

    @property
    def bin6(self) -> str:
        return self.digits[:6]

    @property
    def last4(self) -> str:
        return self.digits[-4:]

    def __repr__(self) -> str:
        return f"Pan({self.masked})"

    def __str__(self) -> str:
        return self.masked


class ProductKind(enum.StrEnum):
    DEBIT = "debit"
    PREPAID = "prepaid"


class PinMethod(enum.StrEnum):
    VISA_PVV = "pvv"
    IBM_3624 = "ibm3624"


class CardStatus(enum.StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"  # issued, not yet activated
    BLOCKED = "blocked"
    LOST = "lost"
    STOLEN = "stolen"
    CLOSED = "closed"


class AccountKind(enum.StrEnum):
    """What an account is for; field 3 positions 3-4 and 5-6 name the cardholder's account types."""

    DEFAULT = "00"
    SAVINGS = "10"
    CHECKING = "20"
    CREDIT = "30"
    PREPAID = "60"  # our own code for a prepaid wallet, answered for "00"


@dataclass(frozen=True, slots=True)
class Product:
    product_id: int
    name: str
    kind: ProductKind
    pin_method: PinMethod
    # Transaction types (domain.transactions.TransactionType values) this product allows.
    allowed_transactions: frozenset[str]
    # Per-transaction and daily limits by transaction type value, in minor units of `currency`.
    per_transaction_amount_max: dict[str, int] = field(default_factory=dict)
    daily_amount_max: dict[str, int] = field(default_factory=dict)
    daily_count_max: dict[str, int] = field(default_factory=dict)
    currency: int = 840
    pin_tries_max: int = 3
    # Keys under the LMK (never clear): PIN verification key (PVK pair or IBM PVK) and card
    # verification key pair (CVV/iCVV in track 2).
    pvk_under_lmk: str = ""
    cvk_under_lmk: str = ""
    # How long an authorization hold lives before the ledger releases it.
    hold_expiry_s: int = 7 * 24 * 3600
    # IBM 3624 (pin_method ibm3624): the decimalisation table (16 digits), the PIN validation data as the
    # HSM takes it (12 characters; an "N" stands for the last 5 digits of the account number, payShield's
    # convention) and how many PIN digits the offset checks. Unused for Visa PVV products.
    decimalization_table: str = ""
    pin_validation_data: str = ""
    pin_check_length: int = 4


@dataclass(frozen=True, slots=True)
class Account:
    account_id: int
    kind: AccountKind
    currency: int
    overdraft_limit: int = 0


@dataclass(frozen=True, slots=True)
class Card:
    card_id: int
    pan_masked: str
    expiry_yymm: str
    status: CardStatus
    product: Product
    accounts: tuple[Account, ...]
    # PIN verification data under the product's method: PVV (4 digits, with PVKI) or IBM offset.
    pvki: int = 1
    pin_verification_value: str = ""
    pin_tries: int = 0
    activation_date: date | None = None

    def account_for(self, kind: AccountKind) -> Account | None:
        if kind is AccountKind.DEFAULT:
            return self.accounts[0] if self.accounts else None
        return next((a for a in self.accounts if a.kind is kind), None)


@dataclass(frozen=True, slots=True)
class Merchant:
    merchant_id: str  # field 42, 15 characters
    name: str
    settlement_account_id: int
    category_code: str = "5999"
    active: bool = True


@dataclass(frozen=True, slots=True)
class Terminal:
    terminal_id: str  # field 41, 8 characters
    merchant_id: str
    kind: str  # "pos" or "atm"
    active: bool = True
    # Transaction types this terminal may originate (empty: any type, whatever its kind).
    allowed_transactions: frozenset[str] = frozenset()
    # Keys under the LMK (never clear): terminal master key, PIN key, MAC key.
    tmk_under_lmk: str = ""
    tpk_under_lmk: str = ""
    tak_under_lmk: str = ""
    mac_required: bool = False
    # A DUKPT PIN pad: its PIN blocks are under the DUKPT key of the KSN in field 53, not under the TPK.
    dukpt: DukptPinPad | None = None


@dataclass(frozen=True, slots=True)
class DukptPinPad:
    """What the switch knows of a terminal's DUKPT PIN pad (TDES, ANSI X9.24-1:2009).

    The KSN (20 hex digits) is the key set identifier (10 hex digits: which BDK), the PIN pad's device
    id (19 bits) and the transaction counter (21 bits). The first two are the terminal's configuration;
    the counter comes with each request (field 53).
    """

    key_set_id: str  # 10 hex digits
    bdk_under_lmk: str  # the key set's base derivation key, under the LMK (never clear)
    device_id: int  # 0 .. 2**19 - 1


class ListKind(enum.StrEnum):
    HOT = "hot"  # card reported: decline and, per setting, pick up
    BLACK = "black"  # PAN, BIN range, terminal or merchant barred


@dataclass(frozen=True, slots=True)
class ListEntry:
    kind: ListKind
    reason: str
    # Response for a hot-listed card: "04" (pick up) or "62" (restricted card).
    response_code: str = "62"
