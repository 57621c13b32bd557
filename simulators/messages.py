"""What a terminal puts on the wire, as pure functions: amounts, cards, PIN blocks, MACs, requests.

This module owns the terminal side of docs/transactions.md: which MTI, processing code and fields each
transaction carries, how a PIN pad builds a format 0 PIN block under the TPK, how field 48 of a key
exchange is unwrapped under the TMK (and its check values verified), how field 64 is computed. No
sockets and no clock: the caller passes the time and the STAN, so every message is testable as a value.

Clear PANs, PINs and keys live only inside `Card`, `Keys` and the encoded message; their reprs are
masked and every error here says what was wrong without quoting the value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from hsm.crypto import dukpt
from hsm.crypto.cvv import card_verification_value
from hsm.crypto.des import kcv_tdes, tdes_ecb_decrypt
from hsm.crypto.errors import CryptoError
from hsm.crypto.mac import iso9797_mac
from hsm.crypto.pinblock import encrypt_pin_block
from hsm.crypto.pinverify import ibm3624_offset, visa_pvv
from specs import demo
from switch.iso.codec import Codec
from switch.iso.message import Message
from switch.masking import mask_pan

__all__ = [
    "ENTRY_MODES",
    "Card",
    "ConnectionFailed",
    "DukptPinPad",
    "DukptUse",
    "KeyExchangeError",
    "Keys",
    "Original",
    "SimulatorError",
    "TerminalIdentity",
    "TransactionRequest",
    "TxnType",
    "add_mac",
    "build_request",
    "carries_pin",
    "demo_card",
    "dukpt_field53",
    "format_amount",
    "mask_pan",
    "original_from",
    "parse_additional_amounts",
    "parse_amount",
    "parse_key",
    "parse_key_exchange",
    "parse_ksn",
    "pin_block_hex",
    "processing_code",
    "verify_mac",
]

MAC_BYTES = 8
KEY_HEX_DIGITS = 32  # double-length TDES
KCV_HEX_DIGITS = 6
AMOUNT_DIGITS_MAX = 12
_TERMINAL_INSTITUTION = "0" * 11  # fields 90's acquirer and forwarding institution ids from a terminal

# POS entry mode (field 22): the card read plus "1" = the terminal can take a PIN.
ENTRY_MODES: dict[str, str] = {
    "magstripe": "021",
    "track2": "021",
    "chip": "051",
    "contactless": "071",
    "manual": "012",
}
_CHIP_ENTRY_MODES = frozenset({"051", "071"})
_ICVV_SERVICE_CODE = "999"  # the chip's track 2 image carries an iCVV computed with this service code


class SimulatorError(Exception):
    """A request the simulator cannot build or a reply it cannot accept. The message is safe to print."""


class ConnectionFailed(SimulatorError):
    """The switch cannot be reached, or the connection broke mid-session."""


class KeyExchangeError(SimulatorError):
    """Field 48 of a key exchange is malformed or a key does not match its check value."""


class TxnType(enum.StrEnum):
    PURCHASE = "purchase"
    CASHBACK = "cashback"
    REFUND = "refund"
    VOID = "void"
    PREAUTH = "preauth"
    COMPLETION = "completion"
    CANCEL = "cancel"
    BALANCE = "balance"
    REVERSAL = "reversal"
    WITHDRAWAL = "withdrawal"
    TRANSFER = "transfer"
    PIN_CHANGE = "pin_change"
    LOAD = "load"
    ECHO = "echo"
    SIGN_ON = "sign_on"
    SIGN_OFF = "sign_off"
    KEY_EXCHANGE = "key_exchange"


# Network management codes (field 70) of the 0800 types.
NETWORK_CODES: dict[TxnType, str] = {
    TxnType.SIGN_ON: "001",
    TxnType.SIGN_OFF: "002",
    TxnType.ECHO: "301",
    TxnType.KEY_EXCHANGE: "101",
}
# Transactions that refer to an earlier one.
NEEDS_ORIGINAL = frozenset({TxnType.VOID, TxnType.COMPLETION, TxnType.CANCEL, TxnType.REVERSAL})
# Transactions where the contract (or every real issuer) wants a PIN: the CLI prompts when none is given.
PIN_REQUIRED = frozenset({TxnType.WITHDRAWAL, TxnType.TRANSFER, TxnType.PIN_CHANGE, TxnType.BALANCE})
_PROCESSING_PREFIX: dict[TxnType, str] = {
    TxnType.PURCHASE: "00",
    TxnType.CASHBACK: "09",
    TxnType.REFUND: "20",
    TxnType.VOID: "02",
    TxnType.PREAUTH: "00",
    TxnType.COMPLETION: "00",
    TxnType.BALANCE: "31",
    TxnType.WITHDRAWAL: "01",
    TxnType.TRANSFER: "40",
}


# -- amounts -------------------------------------------------------------------------------------------


def parse_amount(text: str, *, exponent: int = 2) -> int:
    """A decimal string ("12.34", "12", "0.5") as integer minor units, without floats.

    Raises SimulatorError for signs, exponents, too many decimals or more than 12 digits.
    """
    raw = text.strip().replace("_", "")
    whole, dot, fraction = raw.partition(".")
    if not whole and not fraction:
        raise SimulatorError(f"amount {text!r} is not a decimal number")
    if not (whole or "0").isascii() or not (whole or "0").isdigit():
        raise SimulatorError(f"amount {text!r} is not a decimal number (digits and one '.' only)")
    if dot and not (fraction.isascii() and fraction.isdigit()):
        raise SimulatorError(f"amount {text!r} is not a decimal number (digits and one '.' only)")
    if len(fraction) > exponent:
        raise SimulatorError(f"amount {text!r} has more than {exponent} decimals")
    minor: int = int(whole or "0") * 10**exponent + int(fraction.ljust(exponent, "0") or "0")
    if minor >= 10**AMOUNT_DIGITS_MAX:
        raise SimulatorError(f"amount {text!r} does not fit in {AMOUNT_DIGITS_MAX} digits")
    return minor


def format_amount(minor: int, *, exponent: int = 2) -> str:
    """Integer minor units as a decimal string: 1234 -> "12.34", -5 -> "-0.05"."""
    sign = "-" if minor < 0 else ""
    value = abs(minor)
    if exponent == 0:
        return f"{sign}{value}"
    return f"{sign}{value // 10**exponent}.{value % 10**exponent:0{exponent}d}"


@dataclass(frozen=True, slots=True)
class AdditionalAmount:
    """One 20-character group of field 54."""

    account_type: str
    amount_type: str  # 01 ledger balance, 02 available balance, 40 cashback
    currency: int
    amount_minor: int  # signed: a debit (D) balance is negative


def parse_additional_amounts(field54: str | None) -> list[AdditionalAmount]:
    """Field 54 groups; raises SimulatorError if the field is not whole well-formed groups."""
    if not field54:
        return []
    if len(field54) % 20:
        raise SimulatorError("field 54 is not a multiple of 20 characters")
    out: list[AdditionalAmount] = []
    for i in range(0, len(field54), 20):
        group = field54[i : i + 20]
        if not (group[:7].isdigit() and group[7] in "CD" and group[8:].isdigit()):
            raise SimulatorError(f"field 54 group {i // 20 + 1} is malformed")
        amount = int(group[8:])
        out.append(
            AdditionalAmount(group[:2], group[2:4], int(group[4:7]), amount if group[7] == "C" else -amount)
        )
    return out


# -- cards and keys --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Card:
    """A card as the terminal reads it. `repr` shows the masked PAN only."""

    pan: str = field(repr=False)
    expiry_yymm: str
    service_code: str = demo.DEMO_SERVICE_CODE
    pvv: str = field(default="0000", repr=False)
    pvki: int = demo.DEMO_PVKI
    cvk: bytes | None = field(default=None, repr=False)  # to write a realistic CVV/iCVV into track 2

    def __post_init__(self) -> None:
        if not (self.pan.isascii() and self.pan.isdigit() and 12 <= len(self.pan) <= 19):
            raise SimulatorError("card number must be 12 to 19 digits")
        if not (self.expiry_yymm.isascii() and self.expiry_yymm.isdigit() and len(self.expiry_yymm) == 4):
            raise SimulatorError("expiry must be YYMM, 4 digits")
        if not 1 <= int(self.expiry_yymm[2:]) <= 12:
            raise SimulatorError("expiry month must be 01 to 12")

    @property
    def masked_pan(self) -> str:
        return mask_pan(self.pan)

    def __repr__(self) -> str:
        return f"Card(pan={self.masked_pan!r}, expiry_yymm={self.expiry_yymm!r})"

    def track2(self, *, chip: bool) -> str:
        """Track 2 equivalent data: PAN '=' expiry, service code, PVKI, PVV, CVV (iCVV when read from chip)."""
        cvv = "000"
        if self.cvk is not None:
            code = _ICVV_SERVICE_CODE if chip else self.service_code
            cvv = card_verification_value(self.cvk, self.pan, self.expiry_yymm, code)
        return f"{self.pan}={self.expiry_yymm}{self.service_code}{self.pvki}{self.pvv}{cvv}"


def demo_card(pan: str | None = None, *, expiry_yymm: str | None = None, pin: str | None = None) -> Card:
    """A card of the demo world (specs/demo.py): its track 2 carries the PVV (or, for the IBM BIN, the
    IBM 3624 offset) and CVV the seed would write.

    `pan` may be a PAN or the name of a special demo card ("lost", "low_balance", ...); None is the first
    debit card. `pin` is the card's true PIN (for the PVV on the stripe), by default the demo PIN.
    """
    if pan is None:
        pan = demo.demo_pan(demo.DEBIT_BIN, 1)
    elif pan in demo.SPECIAL_CARDS:
        bin6, index = demo.SPECIAL_CARDS[pan]
        if pin is None and pan == "pin_5678":
            pin = "5678"
        pan = demo.demo_pan(bin6, index)
    true_pin = pin or demo.DEMO_PIN
    expiry = expiry_yymm or demo.DEMO_EXPIRY_YYMM
    if not (pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19):
        raise SimulatorError("card number must be 12 to 19 digits (or a special demo card name)")
    try:
        if pan.startswith(demo.IBM_BIN):
            # IBM cards carry their offset where a Visa card has its PVV (and no PVK index).
            validation = demo.DEMO_PIN_VALIDATION_DATA.replace("N", pan[:-1][-5:])
            offset = ibm3624_offset(
                bytes.fromhex(demo.DEMO_IBM_PVK_HEX),
                validation,
                true_pin,
                demo.DEMO_DECIMALIZATION_TABLE,
                demo.DEMO_IBM_CHECK_LENGTH,
            )
            return Card(pan=pan, expiry_yymm=expiry, pvv=offset, pvki=0, cvk=bytes.fromhex(demo.DEMO_CVK_HEX))
        pvv = visa_pvv(bytes.fromhex(demo.DEMO_PVK_HEX), pan, demo.DEMO_PVKI, true_pin)
    except CryptoError as exc:
        raise SimulatorError(f"cannot compute the card's PIN verification data: {exc.message}") from None
    return Card(pan=pan, expiry_yymm=expiry, pvv=pvv, cvk=bytes.fromhex(demo.DEMO_CVK_HEX))


def parse_key(hex_text: str, what: str) -> bytes:
    """A double-length TDES key from 32 hex digits (for --tmk); the error never repeats the value."""
    text = hex_text.strip()
    if len(text) != KEY_HEX_DIGITS:
        raise SimulatorError(f"{what} must be {KEY_HEX_DIGITS} hex digits (double-length TDES)")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise SimulatorError(f"{what} must be hex digits") from None


@dataclass(frozen=True, slots=True)
class Keys:
    """The terminal's working keys after a key exchange, clear (as inside a PIN pad). Never printed."""

    tpk: bytes = field(repr=False)
    tak: bytes = field(repr=False)
    tpk_kcv: str
    tak_kcv: str


def parse_key_exchange(field48: str | None, tmk: bytes) -> Keys:
    """Unwrap TPK and TAK from field 48 (`TPK` + 32 hex + KCV 6 + `TAK` + 32 hex + KCV 6) under the TMK.

    Raises KeyExchangeError when the layout is wrong or a decrypted key does not match its check value
    (a wrong TMK on either side, or a corrupted message).
    """
    if field48 is None:
        raise KeyExchangeError("key exchange response has no field 48")
    expected = 2 * (3 + KEY_HEX_DIGITS + KCV_HEX_DIGITS)
    if len(field48) != expected:
        raise KeyExchangeError(f"key exchange field 48 is {len(field48)} characters, expected {expected}")
    keys: dict[str, tuple[bytes, str]] = {}
    for offset, tag in ((0, "TPK"), (expected // 2, "TAK")):
        part = field48[offset : offset + expected // 2]
        if part[:3] != tag:
            raise KeyExchangeError(f"key exchange field 48 does not have {tag} at offset {offset}")
        wrapped_hex, kcv = part[3 : 3 + KEY_HEX_DIGITS], part[3 + KEY_HEX_DIGITS :].upper()
        try:
            wrapped = bytes.fromhex(wrapped_hex)
        except ValueError:
            raise KeyExchangeError(f"key exchange {tag} is not hex") from None
        key = tdes_ecb_decrypt(tmk, wrapped)
        if kcv_tdes(key, KCV_HEX_DIGITS) != kcv:
            raise KeyExchangeError(
                f"key exchange {tag} does not match its check value {kcv} (wrong TMK, or corrupted)"
            )
        keys[tag] = (key, kcv)
    return Keys(tpk=keys["TPK"][0], tak=keys["TAK"][0], tpk_kcv=keys["TPK"][1], tak_kcv=keys["TAK"][1])


# -- DUKPT ---------------------------------------------------------------------------------------------------

KSN_HEX_DIGITS = 20
_COUNTER_BITS = 21
_COUNTER_MASK = (1 << _COUNTER_BITS) - 1
_DEVICE_MASK = (1 << 19) - 1
_COUNTER_ONE_BITS_MAX = 10  # X9.24-1: an originator skips counters with more one-bits


def parse_ksn(hex_text: str, what: str) -> bytes:
    """A TDES DUKPT KSN from 20 hex digits; the error never repeats the value."""
    text = hex_text.strip()
    if len(text) != KSN_HEX_DIGITS:
        raise SimulatorError(f"{what} must be {KSN_HEX_DIGITS} hex digits")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise SimulatorError(f"{what} must be hex digits") from None


def dukpt_field53(ksn: bytes) -> str:
    """Field 53 of the terminal dialect for this KSN (docs/transactions.md): "02", "0", the device id
    (the 19 bits after the 10-hex-digit key set identifier) in 6 digits and the counter in 7 digits."""
    low = int.from_bytes(ksn[5:], "big")
    return f"020{(low >> _COUNTER_BITS) & _DEVICE_MASK:06d}{low & _COUNTER_MASK:07d}"


@dataclass(frozen=True, slots=True)
class DukptUse:
    """The DUKPT key of one transaction: the PIN key of its KSN (clear, as inside the PIN pad) and field 53."""

    pin_key: bytes = field(repr=False)
    field53: str


class DukptPinPad:
    """A TDES DUKPT PIN pad (ANSI X9.24-1:2009), as the simulator plays it.

    A real PIN pad receives its initial key (IPEK) at key injection and never sees the BDK; the simulator
    derives the IPEK from the (public, test) BDK and the initial KSN, then keeps only the IPEK. Each PIN
    entry moves the transaction counter on (skipping counters with more than 10 one-bits, as X9.24
    originators do), so no two transactions share a key. `counter` is the last one used.
    """

    def __init__(self, *, bdk: bytes, initial_ksn: bytes, counter: int = 0) -> None:
        if len(initial_ksn) != KSN_HEX_DIGITS // 2:
            raise SimulatorError("the initial KSN must be 10 bytes")
        if int.from_bytes(initial_ksn, "big") & _COUNTER_MASK:
            raise SimulatorError("the initial KSN must have a zero transaction counter")
        try:
            self._ipek = dukpt.tdes_ipek(bdk, initial_ksn)
        except CryptoError as exc:
            raise SimulatorError(f"cannot derive the PIN pad's initial key: {exc.message}") from None
        self.initial_ksn = initial_ksn
        self.counter = counter

    def __repr__(self) -> str:
        return f"DukptPinPad(initial_ksn={self.initial_ksn.hex().upper()!r}, counter={self.counter})"

    def next(self) -> DukptUse:
        """The key and field 53 for the next PIN entry (the counter moves on; it is never used twice)."""
        counter = self.counter + 1
        while counter.bit_count() > _COUNTER_ONE_BITS_MAX:
            counter += 1
        if counter > _COUNTER_MASK:
            raise SimulatorError("the PIN pad's transaction counter is exhausted: it needs a new initial key")
        self.counter = counter
        ksn = (int.from_bytes(self.initial_ksn, "big") | counter).to_bytes(10, "big")
        return DukptUse(pin_key=dukpt.tdes_pin_key(self._ipek, ksn), field53=dukpt_field53(ksn))


# -- MAC -----------------------------------------------------------------------------------------------------


def mac_of(codec: Codec, message: Message, tak: bytes) -> str:
    """Field 64 for `message`: retail MAC over the encoded message (field 64 set) minus its last 8 bytes."""
    body = codec.encode_message(message.with_fields({64: "00" * MAC_BYTES}))
    return iso9797_mac(tak, body[:-MAC_BYTES], 3, 1).hex().upper()


def add_mac(codec: Codec, message: Message, tak: bytes) -> Message:
    return message.with_fields({64: mac_of(codec, message, tak)})


def verify_mac(codec: Codec, message: Message, tak: bytes) -> bool:
    """True when field 64 is present and right. Fields above 64 would follow the MAC; the terminal
    dialect's responses carry none, so recomputing over the re-encoded message is exact."""
    received = message.get(64)
    return received is not None and received.upper() == mac_of(codec, message, tak)


# -- requests ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TerminalIdentity:
    terminal_id: str  # field 41, 8 characters
    merchant_id: str  # field 42, 15 characters
    currency: int = demo.CURRENCY

    def __post_init__(self) -> None:
        if len(self.terminal_id) != 8 or not self.terminal_id.isascii():
            raise SimulatorError("terminal id must be 8 characters")
        if len(self.merchant_id) != 15 or not self.merchant_id.isascii():
            raise SimulatorError("merchant id must be 15 characters")
        if not 0 < self.currency < 1000:
            raise SimulatorError("currency must be an ISO 4217 numeric code")


@dataclass(frozen=True, slots=True)
class Original:
    """What a void, completion, cancel or reversal needs of the transaction it refers to.

    From a result of the same run everything is known; from the command line a void or completion may
    give only the RRN (field 37), a reversal or cancel the MTI, STAN and time (field 90).
    """

    processing_code: str
    amount_minor: int
    mti: str | None = None
    stan: str | None = None
    transmission: str | None = None  # field 7 of the original, MMDDhhmmss
    rrn: str | None = None

    def __post_init__(self) -> None:
        if self.field90 is None and self.rrn is None:
            raise SimulatorError("the original needs its RRN or its MTI, STAN and transmission time")
        for name, value, digits in (
            ("original MTI", self.mti, 4),
            ("original STAN", self.stan, 6),
            ("original transmission time", self.transmission, 10),
            ("original RRN", self.rrn, 12),
        ):
            if value is not None and (len(value) != digits or not (value.isascii() and value.isalnum())):
                raise SimulatorError(f"{name} must be {digits} characters")

    @property
    def field90(self) -> str | None:
        if self.mti is None or self.stan is None or self.transmission is None:
            return None
        return f"{self.mti}{self.stan}{self.transmission}{_TERMINAL_INSTITUTION}{_TERMINAL_INSTITUTION}"


@dataclass(frozen=True, slots=True)
class TransactionRequest:
    """One transaction to send, before STAN and time are known. `pin`/`new_pin` are never printed."""

    type: TxnType
    amount_minor: int = 0
    cashback_minor: int = 0
    from_account: str = "00"
    to_account: str = "00"
    pin: str | None = field(default=None, repr=False)
    new_pin: str | None = field(default=None, repr=False)
    original: Original | None = None
    actual_amount_minor: int | None = None  # reversal: what was really dispensed/kept (field 95)
    funded: bool = False  # prepaid load from the merchant's funding account (28) instead of cash (21)
    use_0200_completion: bool = False  # completion as 0200 + 25=06 instead of 0220
    use_0100_balance: bool = False
    repeat: bool = False  # reversal repeat (0401)
    advice: bool = False  # reversal as advice (0420)

    def __post_init__(self) -> None:
        for name, value in (("from account", self.from_account), ("to account", self.to_account)):
            if len(value) != 2 or not value.isdigit():
                raise SimulatorError(f"{name} must be 2 digits (00 default, 10 savings, 20 checking)")
        if self.amount_minor < 0 or self.cashback_minor < 0:
            raise SimulatorError("amounts must not be negative")
        if self.type in NEEDS_ORIGINAL and self.original is None:
            raise SimulatorError(f"{self.type.value} needs the original transaction")
        if self.type is TxnType.PIN_CHANGE and (self.pin is None or self.new_pin is None):
            raise SimulatorError("pin_change needs the current PIN and the new PIN")
        actual = self.actual_amount_minor
        if actual is not None and self.original is not None and not 0 <= actual <= self.original.amount_minor:
            raise SimulatorError(
                "a partial reversal's actual amount must be between 0 and the original amount"
            )


def _mti(request: TransactionRequest) -> str:
    t = request.type
    if t in NETWORK_CODES:
        return "0800"
    if t is TxnType.PREAUTH or (t is TxnType.BALANCE and request.use_0100_balance):
        return "0100"
    if t is TxnType.COMPLETION and not request.use_0200_completion:
        return "0220"
    if t is TxnType.CANCEL:
        return "0400"
    if t is TxnType.REVERSAL:
        return (
            ("0420" if request.advice else "0400")
            if not request.repeat
            else ("0421" if request.advice else "0401")
        )
    return "0200"


def processing_code(request: TransactionRequest) -> str:
    """Field 3 of this request."""
    t = request.type
    if t is TxnType.PIN_CHANGE:
        return "920000"
    if t is TxnType.LOAD:
        return "280000" if request.funded else "210000"
    if t in (TxnType.REVERSAL, TxnType.CANCEL):
        assert request.original is not None
        return request.original.processing_code
    return f"{_PROCESSING_PREFIX[t]}{request.from_account}{request.to_account if t is TxnType.TRANSFER else '00'}"


def _amount(request: TransactionRequest) -> int:
    t = request.type
    if t in (TxnType.REVERSAL, TxnType.CANCEL):
        assert request.original is not None
        return request.original.amount_minor
    if t is TxnType.VOID and request.amount_minor == 0:
        assert request.original is not None
        return request.original.amount_minor
    if t is TxnType.CASHBACK:
        return request.amount_minor + request.cashback_minor
    return request.amount_minor


def carries_pin(request: TransactionRequest) -> bool:
    """Whether `request` goes with a PIN block (a refund never does)."""
    return (
        request.pin is not None and request.type not in NETWORK_CODES and request.type is not TxnType.REFUND
    )


def pin_block_hex(pin: str, pan: str, pin_key: bytes) -> str:
    """ISO 9564 format 0 PIN block under the PIN key (TPK or DUKPT), as field 52 text (16 hex digits)."""
    try:
        return encrypt_pin_block(pin, pan, 0, pin_key).hex().upper()
    except CryptoError as exc:
        raise SimulatorError(f"cannot build the PIN block: {exc.message}") from None


def build_request(
    request: TransactionRequest,
    *,
    identity: TerminalIdentity,
    card: Card | None,
    stan: str,
    now_utc: datetime,
    local_now: datetime,
    entry_mode: str = "021",
    keys: Keys | None = None,
    dukpt_use: DukptUse | None = None,
) -> Message:
    """The ISO 8583 message for `request` (no MAC; see `add_mac`).

    `now_utc` gives field 7; `local_now` fields 12/13. PIN blocks are under the TPK, or with `dukpt_use`
    under that transaction's DUKPT PIN key with field 53 naming its KSN. Raises SimulatorError when a PIN
    is asked for but the terminal has no PIN key, or the card is missing for a financial request.
    """
    if len(stan) != 6 or not stan.isdigit():
        raise SimulatorError("STAN must be 6 digits")
    fields: dict[int, str] = {
        7: now_utc.strftime("%m%d%H%M%S"),
        11: stan,
        41: identity.terminal_id,
        42: identity.merchant_id,
    }
    if request.type in NETWORK_CODES:
        fields[70] = NETWORK_CODES[request.type]
        return Message("0800", fields)
    if card is None:
        raise SimulatorError(f"{request.type.value} needs a card")
    if entry_mode not in ENTRY_MODES.values():
        raise SimulatorError(f"POS entry mode must be one of {sorted(set(ENTRY_MODES.values()))}")
    amount = _amount(request)
    if amount >= 10**AMOUNT_DIGITS_MAX:
        raise SimulatorError(f"amount does not fit in {AMOUNT_DIGITS_MAX} digits")
    fields.update(
        {
            3: processing_code(request),
            4: f"{amount:012d}",
            12: local_now.strftime("%H%M%S"),
            13: local_now.strftime("%m%d"),
            22: entry_mode,
            25: "06" if request.type is TxnType.COMPLETION and request.use_0200_completion else "00",
            49: f"{identity.currency:03d}",
        }
    )
    if entry_mode == ENTRY_MODES["manual"]:
        fields[2] = card.pan
        fields[14] = card.expiry_yymm
    else:
        fields[35] = card.track2(chip=entry_mode in _CHIP_ENTRY_MODES)
    if request.type is TxnType.CASHBACK:
        fields[54] = f"0040{identity.currency:03d}C{request.cashback_minor:012d}"
    if request.original is not None:
        # 90 or 37, not both: the switch reads a request's 37 as that request's own RRN, so a void
        # carrying the sale's RRN in 37 would share it. 37 names the original only when 90 is unknown.
        field90 = request.original.field90
        if field90 is not None:
            fields[90] = field90
        elif request.type in (TxnType.VOID, TxnType.COMPLETION) and request.original.rrn:
            fields[37] = request.original.rrn
        else:
            raise SimulatorError(f"{request.type.value} needs the original's MTI, STAN and transmission time")
    if request.type is TxnType.REVERSAL and request.actual_amount_minor is not None:
        actual = f"{request.actual_amount_minor:012d}"
        fields[95] = actual + actual + "0" * 18
    if carries_pin(request):
        assert request.pin is not None
        if dukpt_use is not None:
            pin_key = dukpt_use.pin_key
            fields[53] = dukpt_use.field53
        elif keys is not None:
            pin_key = keys.tpk
        else:
            raise SimulatorError("a PIN needs a TPK: the key exchange did not succeed")
        fields[52] = pin_block_hex(request.pin, card.pan, pin_key)
        if request.type is TxnType.PIN_CHANGE:
            # Both PIN blocks under the one key of this transaction (for DUKPT: the one KSN of field 53).
            assert request.new_pin is not None
            fields[120] = pin_block_hex(request.new_pin, card.pan, pin_key)
    return Message(_mti(request), fields)


def original_from(message: Message, response: Message | None) -> Original:
    """The `Original` of a sent request (and its response, for the RRN the switch assigned)."""
    rrn = (response.get(37) if response is not None else None) or message.get(37)
    return Original(
        mti=message.mti,
        stan=message[11],
        transmission=message[7],
        processing_code=message.get(3) or "000000",
        amount_minor=int(message.get(4) or "0"),
        rrn=rrn,
    )
