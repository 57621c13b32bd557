"""What a terminal request asks for: its transaction type, identity and card data, from the ISO fields.

Pure functions over field values (strings as the codec gives them). The contract is docs/transactions.md.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from switch.domain.model import Pan

__all__ = [
    "AdditionalAmount",
    "CardData",
    "Classified",
    "OriginalData",
    "TransactionType",
    "auth_code_for",
    "classify",
    "format_additional_amounts",
    "parse_additional_amounts",
    "parse_amount",
    "parse_card_data",
    "parse_original_data",
    "parse_replacement_amount",
    "retrieval_reference",
    "transmission_datetime",
]


class TransactionType(enum.StrEnum):
    PURCHASE = "purchase"
    CASHBACK = "cashback"
    REFUND = "refund"
    VOID = "void"
    PREAUTH = "preauth"
    COMPLETION = "completion"
    BALANCE = "balance"
    WITHDRAWAL = "withdrawal"
    TRANSFER = "transfer"
    PIN_CHANGE = "pin_change"
    LOAD = "load"
    LOAD_FUNDED = "load_funded"


# 0200 processing code (first two digits) -> type.
_FINANCIAL = {
    "00": TransactionType.PURCHASE,
    "09": TransactionType.CASHBACK,
    "20": TransactionType.REFUND,
    "02": TransactionType.VOID,
    "31": TransactionType.BALANCE,
    "01": TransactionType.WITHDRAWAL,
    "40": TransactionType.TRANSFER,
    "92": TransactionType.PIN_CHANGE,
    "21": TransactionType.LOAD,
    "28": TransactionType.LOAD_FUNDED,
}
_AUTHORIZATION = {"00": TransactionType.PREAUTH, "31": TransactionType.BALANCE}

# Types that move money out of the cardholder's account (PIN, limits and funds checks apply).
DEBITS = frozenset(
    {TransactionType.PURCHASE, TransactionType.CASHBACK, TransactionType.WITHDRAWAL, TransactionType.PREAUTH}
)


@dataclass(frozen=True, slots=True)
class Classified:
    type: TransactionType
    reversal: bool  # 0400/0401/0420/0421
    from_account: str  # field 3 positions 3-4
    to_account: str  # field 3 positions 5-6


def classify(mti: str, processing_code: str, pos_condition: str | None) -> Classified | None:
    """The transaction a request asks for, or None when the MTI/processing code pair is not one we know."""
    if len(processing_code) != 6 or not processing_code.isdigit():
        return None
    kind, from_account, to_account = processing_code[:2], processing_code[2:4], processing_code[4:6]
    base = mti[:3]
    t: TransactionType | None
    if base == "010":
        t = _AUTHORIZATION.get(kind)
    elif base == "020":
        t = _FINANCIAL.get(kind)
        if t is TransactionType.PURCHASE and pos_condition == "06":
            t = TransactionType.COMPLETION
    elif base == "022":
        t = TransactionType.COMPLETION if kind == "00" else None
    elif base in ("040", "042"):
        t = _FINANCIAL.get(kind)
    else:
        t = None
    if t is None:
        return None
    return Classified(
        type=t, reversal=base in ("040", "042"), from_account=from_account, to_account=to_account
    )


@dataclass(frozen=True, slots=True)
class CardData:
    pan: Pan
    expiry_yymm: str | None
    service_code: str | None
    discretionary: str | None  # track 2 discretionary data (PVKI, PVV, CVV in our layout)
    from_track2: bool


def parse_card_data(field2: str | None, field35: str | None, field14: str | None) -> CardData | None:
    """The card from track 2 equivalent data (35) or manual entry (2 + 14). None if neither is usable."""
    if field35:
        sep = next((i for i, ch in enumerate(field35) if ch in "=D"), -1)
        if sep < 12:
            return None
        pan_text, rest = field35[:sep], field35[sep + 1 :]
        if not (pan_text.isdigit() and len(rest) >= 7 and rest[:7].isdigit()):
            return None
        try:
            pan = Pan(pan_text)
        except ValueError:
            return None
        return CardData(pan, rest[:4], rest[4:7], rest[7:].rstrip("F?"), True)
    if field2:
        try:
            pan = Pan(field2)
        except ValueError:
            return None
        expiry = field14 if field14 and len(field14) == 4 and field14.isdigit() else None
        return CardData(pan, expiry, None, None, False)
    return None


def parse_amount(field4: str | None) -> int | None:
    """Field 4 as integer minor units; None when absent or not 1-12 digits."""
    if field4 is None or not (1 <= len(field4) <= 12) or not field4.isdigit():
        return None
    return int(field4)


@dataclass(frozen=True, slots=True)
class OriginalData:
    mti: str
    stan: str
    transmission: str  # MMDDhhmmss


def parse_original_data(field90: str | None) -> OriginalData | None:
    """Field 90 (42 digits): original MTI, STAN and transmission time; None if absent or malformed."""
    if field90 is None or len(field90) != 42 or not field90.isdigit():
        return None
    return OriginalData(mti=field90[:4], stan=field90[4:10], transmission=field90[10:20])


def parse_replacement_amount(field95: str | None) -> int | None:
    """Field 95's actual transaction amount (first 12 digits), or None when absent or malformed."""
    if field95 is None or len(field95) < 12 or not field95[:12].isdigit():
        return None
    return int(field95[:12])


@dataclass(frozen=True, slots=True)
class AdditionalAmount:
    account_type: str
    amount_type: str  # 01 ledger balance, 02 available balance, 40 cashback
    currency: int
    amount: int  # signed: negative is a debit balance


def format_additional_amounts(amounts: list[AdditionalAmount]) -> str:
    out = []
    for a in amounts:
        sign = "C" if a.amount >= 0 else "D"
        out.append(f"{a.account_type:0>2}{a.amount_type}{a.currency:03d}{sign}{abs(a.amount):012d}")
    return "".join(out)


def parse_additional_amounts(field54: str | None) -> list[AdditionalAmount] | None:
    """Field 54 groups of 20 characters; None when malformed."""
    if not field54:
        return []
    if len(field54) % 20:
        return None
    out = []
    for i in range(0, len(field54), 20):
        g = field54[i : i + 20]
        if not (g[:7].isdigit() and g[7] in "CD" and g[8:].isdigit()):
            return None
        amount = int(g[8:])
        out.append(AdditionalAmount(g[:2], g[2:4], int(g[4:7]), amount if g[7] == "C" else -amount))
    return out


def auth_code_for(transfer_id: str) -> str:
    """A 6-digit authorization code derived from the transfer id, so a retransmission gets the same one."""
    digest = hashlib.sha256(transfer_id.encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}"


_HALF_YEAR = timedelta(days=182)


def transmission_datetime(field7: str, now: datetime) -> datetime | None:
    """Field 7 (MMDDhhmmss, UTC, no year) as an aware datetime: the year that puts it nearest to `now`."""
    if len(field7) != 10 or not field7.isdigit():
        return None
    month, day, hour, minute, second = (int(field7[i : i + 2]) for i in range(0, 10, 2))
    try:
        this_year = datetime(now.year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        pass  # 29 February outside a leap year, or not a date at all: the years around decide
    else:
        # Within 182 days of `now` this year's is the nearest: the other years' are at least 183 away.
        if abs(this_year - now) < _HALF_YEAR:
            return this_year
    candidates = []
    for year in (now.year - 1, now.year, now.year + 1):
        try:
            candidates.append(datetime(year, month, day, hour, minute, second, tzinfo=UTC))
        except ValueError:
            continue
    if not candidates:
        return None
    return min(candidates, key=lambda c: abs((c - now).total_seconds()))


def retrieval_reference(transmitted: datetime, identity: str) -> str:
    """An RRN for a request that brought none: YDDDhh of its transmission time + 6 digits of its identity.

    Derived, not counted, so a retransmission (even after a restart) gets the same RRN.
    """
    digest = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big") % 1_000_000
    day_of_year = transmitted.toordinal() - date(transmitted.year, 1, 1).toordinal() + 1
    return f"{transmitted.year % 10}{day_of_year:03d}{transmitted.hour:02d}{digest:06d}"
