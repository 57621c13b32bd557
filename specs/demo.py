"""The demo world as data: what `switchctl demo seed` creates and what the simulators assume.

Shared by the seed (switch side) and the terminal simulators (outside actors), so both agree on BINs,
card numbers, test PINs, terminals and the terminals' master key without either importing the other.
Every key and PIN here is TEST DATA, published in docs/demo.md: never use them for real cards.
"""

from __future__ import annotations

__all__ = [
    "ATM_TERMINALS",
    "CURRENCY",
    "DEBIT_BIN",
    "DEBIT_CARD_COUNT",
    "DEMO_BDK_HEX",
    "DEMO_CVK_HEX",
    "DEMO_DECIMALIZATION_TABLE",
    "DEMO_IBM_CHECK_LENGTH",
    "DEMO_IBM_PVK_HEX",
    "DEMO_PIN",
    "DEMO_PIN_VALIDATION_DATA",
    "DEMO_PVKI",
    "DEMO_PVK_HEX",
    "DEMO_SERVICE_CODE",
    "DEMO_TMK_HEX",
    "DUKPT_KEY_SET_ID",
    "DUKPT_TERMINALS",
    "IBM_BIN",
    "IBM_CARD_COUNT",
    "MERCHANT_ID",
    "POS_TERMINALS",
    "PREPAID_BIN",
    "PREPAID_CARD_COUNT",
    "RIAL_BIN",
    "RIAL_CARD_COUNT",
    "RIAL_CURRENCY",
    "RIAL_MERCHANT_ID",
    "RIAL_OPENING_BALANCE",
    "RIAL_POS_TERMINALS",
    "SPECIAL_CARDS",
    "demo_pan",
    "dukpt_initial_ksn",
]

CURRENCY = 840  # USD, minor units = cents

DEBIT_BIN = "990001"
PREPAID_BIN = "990002"
DEBIT_CARD_COUNT = 1000
PREPAID_CARD_COUNT = 200
DEMO_PIN = "1234"  # every demo card's PIN unless SPECIAL_CARDS says otherwise
DEBIT_OPENING_BALANCE = 1_000_000  # 10,000.00
PREPAID_OPENING_BALANCE = 50_000  # 500.00
DEMO_EXPIRY_YYMM = "3012"

MERCHANT_ID = "DEMOMERCHANT001"  # field 42, 15 characters
ATM_MERCHANT_ID = "DEMOATMOPERATOR"
POS_TERMINALS = tuple(f"POS{n:05d}" for n in range(1, 51))  # field 41, 8 characters
ATM_TERMINALS = tuple(f"ATM{n:05d}" for n in range(1, 11))

# The terminals' master key (clear, double-length TDES, odd parity): the key a technician would load
# into a real terminal. The switch holds it only under the LMK; the simulators hold it clear.
DEMO_TMK_HEX = "0123456789ABCDEFFEDCBA9876543210"

# The demo products' PIN verification key pair (Visa PVV) and card verification key pair (CVV/iCVV in
# track 2), clear. The switch holds them under the LMK; a simulator needs the CVK only to write a
# realistic track 2 (what a card personalisation bureau would have put on the stripe or chip).
DEMO_PVK_HEX = "1032547698BADCFE0123456789ABCDEF"
DEMO_CVK_HEX = "FEDCBA98765432101032547698BADCFE"
DEMO_PVKI = 1
# Track 2 discretionary data layout (Visa style): PVKI (1) + PVV (4) + CVV (3), after the service code.
DEMO_SERVICE_CODE = "201"  # international, chip card, normal authorization, no restrictions

# The IBM 3624 offset product (BIN 990003): its PIN verification key (clear, double-length TDES), the
# classic IBM decimalisation table, the PIN validation data as the HSM takes it ("N" = the last 5 digits
# of the account number, so each card gets its own natural PIN) and the number of PIN digits checked. The
# cards' PIN is DEMO_PIN; each card's offset is computed by the HSM at seed time.
IBM_BIN = "990003"
IBM_CARD_COUNT = 100
DEMO_IBM_PVK_HEX = "1C2C3E4F5B6B7C8C9EAEB0C1D3E3F404"
DEMO_DECIMALIZATION_TABLE = "0123456789012345"
DEMO_PIN_VALIDATION_DATA = "99000300000N"
DEMO_IBM_CHECK_LENGTH = 4

# The rial corner: Shetab settles only in Iranian rials (364), so a Shetab card is used at a merchant that
# prices in rials, and Shetab's acquirers bring requests in rials for cards of ours that hold rials. The
# terminals are POS terminals like the others (TMK above); the cards share the debit product's keys and
# PIN. Rial amounts are in minor units like every other (ISO 4217 gives the rial 2 decimals).
RIAL_CURRENCY = 364
RIAL_BIN = "990004"
RIAL_CARD_COUNT = 50
RIAL_OPENING_BALANCE = 100_000_000  # 1,000,000.00 rials
RIAL_MERCHANT_ID = "DEMORIALSHOP001"
RIAL_POS_TERMINALS = ("RLPOS001", "RLPOS002")

# DUKPT PIN pads (TDES, ANSI X9.24-1:2009). The BDK is the PUBLIC test BDK of X9.24-1 Annex A and the key
# set identifier that of its test KSN FFFF9876543210E00000: test only, anyone can derive every key. The
# terminals are separate from POS_TERMINALS/ATM_TERMINALS (loadgen uses those with TPK PIN blocks).
DEMO_BDK_HEX = "0123456789ABCDEFFEDCBA9876543210"
DUKPT_KEY_SET_ID = "FFFF987654"
# Terminal id -> (kind, PIN pad device id). 102535 is the device of the X9.24 test KSN, so the first
# transaction of DKPOS001 uses the published KSN FFFF9876543210E00001.
DUKPT_TERMINALS: dict[str, tuple[str, int]] = {
    "DKPOS001": ("pos", 102535),
    "DKATM001": ("atm", 102536),
}

# Cards with a fixed purpose, by (BIN, index): what the seed makes them and what a test expects.
SPECIAL_CARDS: dict[str, tuple[str, int]] = {
    "lost": (DEBIT_BIN, 991),  # status lost -> 41
    "stolen": (DEBIT_BIN, 992),  # status stolen -> 43
    "blocked": (DEBIT_BIN, 993),  # status blocked -> 62
    "expired": (DEBIT_BIN, 994),  # expiry in the past -> 54
    "hotlisted": (DEBIT_BIN, 995),  # active, on the hot list (pick up) -> 04
    "inactive": (DEBIT_BIN, 996),  # not yet activated -> 57
    "low_balance": (DEBIT_BIN, 997),  # balance 10.00 -> 51 above that
    "pin_5678": (DEBIT_BIN, 998),  # PIN 5678 instead of DEMO_PIN
}


def _luhn_check_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def demo_pan(bin6: str, index: int) -> str:
    """The 16-digit demo PAN number `index` (1-based) of a BIN: BIN + 9-digit index + Luhn digit."""
    body = f"{bin6}{index:09d}"
    return body + _luhn_check_digit(body)


def dukpt_initial_ksn(device_id: int, key_set_id: str = DUKPT_KEY_SET_ID) -> str:
    """The initial KSN (20 hex digits, counter 0) of a PIN pad: key set identifier + device id (19 bits)."""
    return f"{key_set_id}{device_id << 21:010X}"
