"""Acquirer-side translation: a terminal's request as an interbank network wants it, and back.

Pure: what the switch sends a network for a terminal's request (docs/networks.md "Messages the switch
sends"), the network reversal and the stand-in advice, the network's answer as the switch's `Result`,
and the key-exchange messages (field 48 in, field 53 out) with the order of zone PIN keys. The pipeline
(`switch.pipeline.forward`, `switch.pipeline.network_keys`) does the I/O through ports; everything here is
tested without a socket, a database or an HSM.

What differs between networks is read from the dialect (`specs/<dialect>.py`), not branched on by name:
- fields 2 and 33 go where the dialect's mandatory table asks for them (CUPS wants the PAN in field 2
  even when track 2 travels, and field 33 always);
- track 2 takes the separator its encoding can carry: BCD (Visa) has no '=', so 'D';
- field 22 is the terminal's n3 (PAN entry mode 2 + PIN entry capability 1) plus a zero digit where the
  dialect's field is n4 (Visa: the fourth position is unused and zero);
- field 43 is cut and padded to 40 bytes in the field's own encoding (EBCDIC, GBK, ASCII), never
  splitting a two-byte GBK character; characters the encoding lacks become '?';
- field 60 is built from the dialect's subfield layout where it has one (CUPS).
Fields 7 and 11 are left out of what is built: the link sets its own STAN and transmission time.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from switch.domain.model import Merchant, Pan, Terminal
from switch.domain.results import Result
from switch.domain.transactions import CardData, TransactionType, parse_additional_amounts, parse_card_data
from switch.iso.dialect import Dialect, load_dialect
from switch.iso.interchange import NetworkTables, network_tables
from switch.iso.message import Message

__all__ = [
    "ADVICE_REASON_ISSUER_TIMED_OUT",
    "ADVICE_REASON_ISSUER_UNAVAILABLE",
    "CARD_DATA_FIELDS",
    "FORWARDABLE",
    "KEY_INDEX_MAX",
    "REVERSAL_REASON_ACQUIRER_CANNOT_COMPLETE",
    "REVERSAL_REASON_CUSTOMER_CANCELLATION",
    "REVERSAL_REASON_TIMEOUT",
    "AcquiredRequest",
    "KeyExchangeAnswer",
    "KeyExchangeError",
    "NetworkAnswer",
    "NetworkKeySet",
    "NetworkProfile",
    "ZoneKey",
    "advice_key",
    "advice_stan",
    "completion_advice",
    "field53",
    "key_exchange_request",
    "network_answer",
    "network_request",
    "network_reversal",
    "newer_key_index",
    "original_data_elements",
    "parse_field53",
    "parse_key_exchange",
    "reversal_key",
    "standin_advice",
    "with_pin_block",
    "without_card_data",
]

# What a terminal may have forwarded (docs/networks.md table). Completions, voids, transfers, PIN changes
# and loads of a foreign card are not forwarded: the contract has no message for them yet.
FORWARDABLE: frozenset[TransactionType] = frozenset(
    {
        TransactionType.PURCHASE,
        TransactionType.CASHBACK,
        TransactionType.REFUND,
        TransactionType.WITHDRAWAL,
        TransactionType.BALANCE,
        TransactionType.PREAUTH,
    }
)
# PAN, tracks, PIN block and its key name, ICC data: never kept beside a forwarded transaction.
CARD_DATA_FIELDS: frozenset[int] = frozenset({2, 35, 36, 45, 52, 53, 55})

# Message reason codes (ISO 8583:1993 values; CUPS carries them in 60.1). Assumptions: the CUPS code list
# is licensed, these are the standard's meanings.
REVERSAL_REASON_CUSTOMER_CANCELLATION = "4000"  # the terminal asked for the reversal
REVERSAL_REASON_ACQUIRER_CANNOT_COMPLETE = "4007"  # approved, but the switch could not complete it
REVERSAL_REASON_TIMEOUT = "4021"  # no answer before the deadline
ADVICE_REASON_ISSUER_TIMED_OUT = "1002"  # stand-in: the network did not answer the request in time
ADVICE_REASON_ISSUER_UNAVAILABLE = "1003"  # stand-in: the request could not be sent at all

_LOCAL_ENTRY_CHIP = "05"
_LOCAL_ENTRY_CONTACTLESS = "07"
_MAGNETIC_ENTRIES = ("02", "80", "90")
_FALLBACK_ENTRY = "80"  # chip read failed, stripe used instead
_INSTITUTION_DIGITS = 11  # field 90's acquirer and forwarder parts (n11 each)
_MERCHANT_TEXT_BYTES = 40


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkProfile:
    """What translation needs of one network's configuration (`[networks.<name>]`)."""

    name: str
    dialect: str
    acquirer_id: str  # field 32: our acquirer ID on this network
    forwarding_id: str = ""  # field 33 where the dialect wants it; empty = acquirer_id
    network_id: str = ""  # field 100; empty = not sent

    def __post_init__(self) -> None:
        for label, value in (
            ("acquirer_id", self.acquirer_id),
            ("forwarding_id", self.forwarding_id),
            ("network_id", self.network_id),
        ):
            if value and not (value.isascii() and value.isdigit() and len(value) <= _INSTITUTION_DIGITS):
                raise ValueError(f"{label} must be up to {_INSTITUTION_DIGITS} digits")
        if not self.acquirer_id:
            raise ValueError("acquirer_id is required (field 32 of every request)")

    @property
    def forwarder(self) -> str:
        return self.forwarding_id or self.acquirer_id


@dataclass(frozen=True, slots=True, kw_only=True)
class AcquiredRequest:
    """A terminal's request for a foreign card, as the pipeline has checked it."""

    request: Message  # as the terminal sent it (terminal dialect)
    transaction: TransactionType
    card: CardData
    terminal: Terminal
    merchant: Merchant
    rrn: str  # the switch's retrieval reference number (field 37 on the link)
    amount: int  # minor units; 0 for a balance inquiry
    currency: int  # ISO 4217 numeric

    def __repr__(self) -> str:
        return (
            f"AcquiredRequest(transaction={self.transaction.value!r}, pan={self.card.pan.masked!r}, "
            f"rrn={self.rrn!r}, amount={self.amount}, currency={self.currency})"
        )


def _mandatory_alone(dialect: Dialect, mti: str, number: int) -> bool:
    """Does the dialect require `number` itself for `mti` (not as one of a choice)?"""
    return number in dialect.mandatory.get(mti, ())


def _track2(value: str, dialect: Dialect) -> str:
    fd = dialect.fields.get(35)
    separator = "D" if fd is not None and fd.data == "bcd" else "="
    return value.replace("=", separator, 1) if separator == "D" else value.replace("D", "=", 1)


def _entry_mode(terminal_value: str | None, dialect: Dialect) -> str:
    value = terminal_value if terminal_value and terminal_value.isdigit() else "000"
    value = value[:3].rjust(3, "0")
    fd = dialect.fields.get(22)
    width = fd.max_len if fd is not None else 3
    # Visa's n4 is the terminal's n3 then a position that is unused and zero (jPOS Base1 samples: 0510).
    return value.ljust(width, "0")[:width]


def _fit_text(text: str, length: int, encoding: str) -> str:
    """`text` cut to at most `length` bytes in `encoding` (whole characters only), space-padded to it."""
    out: list[str] = []
    used = 0
    for ch in text:
        if not ch.isprintable():
            ch = " "
        try:
            size = len(ch.encode(encoding))
        except UnicodeEncodeError:
            ch, size = "?", 1
        if used + size > length:
            break
        out.append(ch)
        used += size
    return "".join(out) + " " * (length - used)


def _merchant_text(merchant: Merchant, dialect: Dialect) -> str:
    fd = dialect.fields.get(43)
    encoding = fd.data if fd is not None and fd.data not in ("bcd", "binary") else "ascii"
    length = fd.max_len if fd is not None else _MERCHANT_TEXT_BYTES
    # The merchant record holds a name only; its location (city, country) is not configured yet.
    return _fit_text(merchant.name, length, encoding)


def _reason_field60(dialect: Dialect, reason: str, base: str | None, terminal_kind: str, entry: str) -> str:
    """Field 60 from the dialect's subfield layout: the reason code first, then the parts of `base` (the
    request's own field 60, when there is one) or the terminal's traits."""
    parts: list[str] = []
    position = 0
    for name, size in dialect.subfields.get(60, ()):
        kept = base[position : position + size] if base is not None else ""
        position += size
        if name == "message_reason_code":
            value = reason
        elif len(kept) == size:
            value = kept
        else:
            value = _field60_default(name, terminal_kind, entry)
        parts.append(value.rjust(size, "0")[:size])
    return "".join(parts)


def _field60_default(name: str, terminal_kind: str, entry: str) -> str:
    # Assumptions (CUPS publishes these positions, not all values): read capability 2 stripe,
    # 5 contact chip, 6 contactless; terminal type 01 ATM, 03 POS; IC condition 2 = chip fallback.
    if name == "terminal_read_capability":
        if entry == _LOCAL_ENTRY_CONTACTLESS:
            return "6"
        if entry == _LOCAL_ENTRY_CHIP:
            return "5"
        return "2" if entry in _MAGNETIC_ENTRIES else "0"
    if name == "ic_card_condition_code":
        return "2" if entry == _FALLBACK_ENTRY else "0"
    if name == "terminal_type":
        return "01" if terminal_kind == "atm" else "03"
    return "0"


def network_request(profile: NetworkProfile, acquired: AcquiredRequest) -> Message:
    """The network's 0100/0200 for a terminal request, without 7, 11 (the link's) and 52/53 (added after
    PIN translation). ValueError for a transaction the contract does not forward."""
    if acquired.transaction not in FORWARDABLE:
        raise ValueError(f"{acquired.transaction.value} is not forwarded to networks")
    dialect = load_dialect(profile.dialect)
    request = acquired.request
    mti = "0100" if request.mti.startswith("01") else "0200"
    card = acquired.card
    fields: dict[int, str] = {
        3: request.get(3) or "000000",
        4: f"{acquired.amount:012d}",
        18: acquired.merchant.category_code,
        22: _entry_mode(request.get(22), dialect),
        25: request.get(25) or "00",
        32: profile.acquirer_id,
        37: acquired.rrn,
        41: acquired.terminal.terminal_id,
        42: acquired.merchant.merchant_id,
        43: _merchant_text(acquired.merchant, dialect),
        49: f"{acquired.currency:03d}",
    }
    # The terminal's local time; a terminal that sent none is taken to be on the switch's time (UTC).
    transmitted = request.get(7) or ""
    local_time, local_date = request.get(12), request.get(13)
    if local_time is None and len(transmitted) == 10:
        local_time = transmitted[4:]
    if local_date is None and len(transmitted) == 10:
        local_date = transmitted[:4]
    if local_time:
        fields[12] = local_time
    if local_date:
        fields[13] = local_date
    track = request.get(35)
    if card.from_track2 and track:
        fields[35] = _track2(track, dialect)
        if _mandatory_alone(dialect, mti, 2):
            fields[2] = card.pan.digits
    else:
        fields[2] = card.pan.digits
        if card.expiry_yymm:
            fields[14] = card.expiry_yymm
    cashback = request.get(54)
    if acquired.transaction is TransactionType.CASHBACK and cashback:
        fields[54] = cashback
    if _mandatory_alone(dialect, mti, 33):
        fields[33] = profile.forwarder
    if profile.network_id:
        fields[100] = profile.network_id
    if 60 in dialect.subfields:
        entry = (request.get(22) or "")[:2]
        fields[60] = _reason_field60(dialect, "0000", None, acquired.terminal.kind, entry)
    return Message(mti, fields)


def with_pin_block(message: Message, *, pin_block: bytes, key_index: int) -> Message:
    """The request with the PIN block under the network's ZPK (52) and the key that encrypts it (53)."""
    return message.with_fields({52: pin_block.hex().upper(), 53: field53(key_index)})


def original_data_elements(sent: Message) -> str:
    """Field 90 naming `sent`: MTI, STAN, field 7, then fields 32 and 33 right-justified, zero-filled to 11
    digits each (absent = zeros), 42 digits in all."""
    stan, transmitted = sent.get(11), sent.get(7)
    if stan is None or transmitted is None:
        raise ValueError("field 90 names a message that was sent: it needs fields 11 and 7")
    acquirer = (sent.get(32) or "").rjust(_INSTITUTION_DIGITS, "0")
    forwarder = (sent.get(33) or "").rjust(_INSTITUTION_DIGITS, "0")
    value = f"{sent.mti}{stan.rjust(6, '0')}{transmitted.rjust(10, '0')}{acquirer}{forwarder}"
    if len(value) != 42 or not value.isdigit():
        raise ValueError("fields 11, 7, 32 and 33 must be digits that fit field 90")
    return value


def _pan_of(message: Message) -> Pan | None:
    card = parse_card_data(message.get(2), message.get(35), None)
    return card.pan if card is not None else None


# Fields a reversal or advice never copies from the request: the link's own 7 and 11, the card data
# (the PAN goes back as field 2 only), and what belongs to an answer.
_NOT_COPIED: frozenset[int] = frozenset({7, 11, 35, 36, 38, 39, 45, 52, 53, 55, 90, 95})


def network_reversal(
    profile: NetworkProfile,
    original: Message,
    *,
    reason: str,
    pan: Pan | None = None,
    replacement_amount: int | None = None,
) -> Message:
    """The 0420 reversing `original` as it was sent (with its 11 and 7): its fields, the PAN in field 2,
    field 90 naming it, the reason in 60 where the dialect has one, 95 for a partial reversal.

    `pan` is needed when `original` no longer holds the card (a stored copy); track 2 is never copied.
    """
    dialect = load_dialect(profile.dialect)
    pan = pan if pan is not None else _pan_of(original)
    if pan is None:
        raise ValueError("a network reversal needs the PAN (field 2)")
    fields = {n: v for n, v in original.items() if n not in _NOT_COPIED}
    fields[2] = pan.digits
    fields[90] = original_data_elements(original)
    if replacement_amount is not None:
        if not 0 <= replacement_amount < int(original.get(4) or "0"):
            raise ValueError("a partial reversal leaves less than the original amount")
        # ISO 8583:1987 field 95: actual transaction amount, then settlement amount and fees (zeros here).
        fields[95] = f"{replacement_amount:012d}".ljust(42, "0")
    if 60 in dialect.subfields:
        # The request's own field 60 says the terminal's traits; only the reason code changes.
        entry = (original.get(22) or "")[:2]
        fields[60] = _reason_field60(dialect, reason, original.get(60), "pos", entry)
    return Message("0420", fields)


def advice_stan(transfer_id: str) -> str:
    """The STAN of the stand-in advice of `transfer_id`, 000001-999999, derived so that a retry builds the
    same advice and its reversal can name it before the link has ever sent it."""
    digest = int.from_bytes(hashlib.sha256(f"advice:{transfer_id}".encode()).digest()[:8], "big")
    return f"{digest % 999_999 + 1:06d}"


def standin_advice(
    profile: NetworkProfile,
    acquired: AcquiredRequest,
    *,
    stan: str,
    transmitted: datetime,
    auth_code: str,
    original: Message | None,
) -> Message:
    """The 0220 telling the network that the switch approved `acquired` on its behalf.

    It has its own identity, set here rather than by the link (11 = `stan`, 7 = `transmitted`), so that a
    later reversal of the stand-in can name it in field 90. When the request was sent (`original`, with
    its 11 and 7) field 90 names it; a request never sent has no field 90. No PIN data, no track.
    """
    dialect = load_dialect(profile.dialect)
    base = network_request(profile, acquired)
    fields = {n: v for n, v in base.items() if n not in _NOT_COPIED}
    fields[2] = acquired.card.pan.digits
    if acquired.card.expiry_yymm:
        fields[14] = acquired.card.expiry_yymm
    fields[7] = transmitted.astimezone(UTC).strftime("%m%d%H%M%S")
    fields[11] = stan
    fields[38] = auth_code
    fields[39] = "00"
    if original is not None:
        fields[90] = original_data_elements(original)
    if 60 in dialect.subfields:
        reason = ADVICE_REASON_ISSUER_TIMED_OUT if original is not None else ADVICE_REASON_ISSUER_UNAVAILABLE
        entry = (acquired.request.get(22) or "")[:2]
        fields[60] = _reason_field60(dialect, reason, base.get(60), acquired.terminal.kind, entry)
    return Message("0220", fields)


def completion_advice(
    held: Message,
    *,
    pan: Pan,
    amount: int,
    stan: str,
    transmitted: datetime,
    auth_code: str,
) -> Message:
    """The 0220 completing the pre-authorization `held` (the 0100 as it was sent) for `amount`.

    The original's fields (its field 60 too: the terminal's traits, no reason code of its own), the PAN
    in field 2, field 90 naming the pre-authorization, its authorization code in 38, and an identity of
    its own (11 = `stan`, 7 = `transmitted`), so that a retry sends the very same advice.
    """
    if held.mti != "0100":
        raise ValueError("only a pre-authorization (0100) is completed")
    if not 0 < amount <= int(held.get(4) or "0"):
        raise ValueError("a completion is for more than zero and at most the held amount")
    fields = {n: v for n, v in held.items() if n not in _NOT_COPIED}
    fields[2] = pan.digits
    fields[4] = f"{amount:012d}"
    fields[7] = transmitted.astimezone(UTC).strftime("%m%d%H%M%S")
    fields[11] = stan
    fields[38] = auth_code
    fields[39] = "00"
    fields[90] = original_data_elements(held)
    return Message("0220", fields)


def _identity(message: Message) -> str:
    return f"{message.mti}:{message.get(11) or ''}:{message.get(7) or ''}:{message.get(32) or ''}"


def reversal_key(network: str, sent: Message) -> str:
    """The store-and-forward key of the reversal of `sent`: the network and what identifies `sent` there
    (MTI, 11, 7, 32). The timeout path, the late-approval handler and a terminal's reversal all compute
    this, so the network gets one reversal whoever asks first."""
    return f"rev:{network}:{_identity(sent)}"


def advice_key(network: str, advice: Message) -> str:
    """The store-and-forward key of an advice: its own identity on the network."""
    return f"adv:{network}:{_identity(advice)}"


def without_card_data(message: Message) -> Message:
    """A copy to keep beside a forwarded transaction: no PAN, track, PIN block, key name or ICC data."""
    return message.with_fields(dict.fromkeys(CARD_DATA_FIELDS))


# -- the network's answer ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetworkAnswer:
    """A network's response as the switch reads it."""

    result: Result
    response_code: str | None  # field 39 as the network sent it (journal, metrics)
    auth_code: str  # field 38 of an approval ("" otherwise)
    balances: str  # field 54 of an approval when well formed ("" otherwise)


def network_answer(dialect: str, response: Message) -> NetworkAnswer:
    """Field 39 through the network's `RESPONSE_CODES` (an unknown code: issuer inoperative), with 38 and
    54 of an approval."""
    code = response.response_code
    name = _tables(dialect).response_codes.get(code) if code is not None else None
    try:
        result = Result(name) if name is not None else Result.ISSUER_INOPERATIVE
    except ValueError:
        result = Result.ISSUER_INOPERATIVE  # a table naming a result the switch does not have
    if not result.approved:
        return NetworkAnswer(result, code, "", "")
    auth_code = response.get(38) or ""
    balances = response.get(54) or ""
    if balances and not parse_additional_amounts(balances):
        balances = ""  # not the layout the terminal expects: better none than a garbled receipt
    return NetworkAnswer(result, code, auth_code, balances)


@functools.cache
def _tables(dialect: str) -> NetworkTables:
    return network_tables(dialect)


# -- key exchange ------------------------------------------------------------------------------------------

KEY_INDEX_MAX = 99
_FIELD48_TAG = "ZPK"
_KEY_HEX_DIGITS = 32
_KCV_DIGITS = 6
_FIELD53_PREFIX = "200101"  # security format 20 (zone PIN key), algorithm 01 (TDES), PIN block format 01
_FIELD53_FILLER = "00000000"


class KeyExchangeError(ValueError):
    """A key exchange answer that is not the contract's layout. Names the problem, never the value."""


@dataclass(frozen=True, slots=True)
class KeyExchangeAnswer:
    """Field 48 of a key exchange answer: the key index, the ZPK under the ZMK and its check value."""

    index: int
    key_under_zmk: str = field(repr=False)  # 32 hex: each half TDES-ECB under the ZMK
    check_value: str


def key_exchange_request(profile: NetworkProfile) -> Message:
    """The network-management request asking for a new ZPK (70 = 101), with the institution fields the
    dialect's mandatory table wants (CUPS: 33); the link adds 7 and 11."""
    dialect = load_dialect(profile.dialect)
    tables = _tables(profile.dialect)
    mti = tables.management_mti
    fields: dict[int, str] = {70: tables.codes["key_exchange"]}
    values = {32: profile.acquirer_id, 33: profile.forwarder, 100: profile.network_id}
    for entry in dialect.mandatory.get(mti, ()):
        for number in (entry,) if isinstance(entry, int) else entry:
            if values.get(number):
                fields[number] = values[number]
                break
    return Message(mti, fields)


def parse_key_exchange(field48: str | None) -> KeyExchangeAnswer:
    """`ZPK` + index (01-99) + 32 hex + 6 hex check value; KeyExchangeError otherwise."""
    if field48 is None:
        raise KeyExchangeError("the key exchange answer has no field 48")
    expected = len(_FIELD48_TAG) + 2 + _KEY_HEX_DIGITS + _KCV_DIGITS
    if len(field48) != expected or not field48.startswith(_FIELD48_TAG):
        raise KeyExchangeError(f"field 48 must be {_FIELD48_TAG} + index + key + check value")
    index_text = field48[3:5]
    if not (index_text.isdigit() and 1 <= int(index_text) <= KEY_INDEX_MAX):
        raise KeyExchangeError("field 48 key index must be 01-99")
    key, kcv = field48[5 : 5 + _KEY_HEX_DIGITS].upper(), field48[5 + _KEY_HEX_DIGITS :].upper()
    if not _is_hex(key) or not _is_hex(kcv):
        raise KeyExchangeError("field 48 key and check value must be hex")
    return KeyExchangeAnswer(int(index_text), key, kcv)


def _is_hex(text: str) -> bool:
    return all(ch in "0123456789ABCDEF" for ch in text)


def field53(index: int) -> str:
    """Field 53 (n16) naming the ZPK of `index`: 20 01 01, the index, 8 zeros."""
    if not 1 <= index <= KEY_INDEX_MAX:
        raise ValueError("key index must be 1-99")
    return f"{_FIELD53_PREFIX}{index:02d}{_FIELD53_FILLER}"


def parse_field53(value: str | None) -> int | None:
    """The key index field 53 names, or None when it is absent or not the contract's layout."""
    if value is None or len(value) != 16 or not value.isdigit():
        return None
    if not value.startswith(_FIELD53_PREFIX) or not value.endswith(_FIELD53_FILLER):
        return None
    index = int(value[6:8])
    return index if 1 <= index <= KEY_INDEX_MAX else None


def newer_key_index(candidate: int, than: int) -> bool:
    """Is key `candidate` newer than key `than`? Networks count indices up from 01 to 99 and wrap, so the
    newer one is up to 49 steps ahead (a key 50 or more exchanges old is long past any grace period)."""
    steps = (candidate - than) % KEY_INDEX_MAX
    return 1 <= steps <= (KEY_INDEX_MAX - 1) // 2


@dataclass(frozen=True, slots=True)
class ZoneKey:
    """A working zone PIN key of a network: its index (field 53), the key under the LMK, when installed."""

    index: int
    under_lmk: str = field(repr=False)
    check_value: str
    installed_at: datetime

    def __post_init__(self) -> None:
        if not 1 <= self.index <= KEY_INDEX_MAX:
            raise ValueError("key index must be 1-99")
        if self.installed_at.tzinfo is None:
            raise ValueError("installed_at must be an aware datetime")


@dataclass(frozen=True, slots=True)
class NetworkKeySet:
    """A network's current ZPK and the one before it (accepted for a grace period after the exchange)."""

    current: ZoneKey | None = None
    previous: ZoneKey | None = None

    def installed(self, key: ZoneKey) -> NetworkKeySet:
        """The set after installing `key`, whatever order exchanges of several processes arrive in.

        The same key again changes nothing. A newer index becomes current and the current one previous.
        An older index (another process's exchange that finished later than a newer one) only replaces
        an older previous key: the network's newest key stays current.
        """
        current, previous = self.current, self.previous
        if current is None:
            return NetworkKeySet(current=key, previous=previous)
        if key.index == current.index:
            if key.check_value == current.check_value:
                return self
            # The index came round again (99 exchanges later) with another key: it is the newer one.
            return NetworkKeySet(current=key, previous=current)
        if newer_key_index(key.index, current.index):
            return NetworkKeySet(current=key, previous=current)
        if previous is None or (previous.index != key.index and newer_key_index(key.index, previous.index)):
            return NetworkKeySet(current=current, previous=key)
        return self

    def for_index(self, index: int, *, now: datetime, grace_s: float) -> ZoneKey | None:
        """The key a PIN block under key `index` is decrypted with: the current one, or the previous one
        until `grace_s` after the current one was installed; None otherwise (a security violation)."""
        current, previous = self.current, self.previous
        if current is not None and current.index == index:
            return current
        in_grace = current is not None and (now - current.installed_at).total_seconds() < grace_s
        if previous is not None and previous.index == index and in_grace:
            return previous
        return None
