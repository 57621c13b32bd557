"""Authorization outcomes: one named result per reason, mapped to field 39 only at the edge.

The pipeline returns a `Result`; a dialect's table turns it into a response code. Names say why, so logs
and metrics read well ("expired_card", not "54").
"""

from __future__ import annotations

import enum

__all__ = ["TERMINAL_RESPONSE_CODES", "Result"]


class Result(enum.StrEnum):
    APPROVED = "approved"
    INVALID_MERCHANT = "invalid_merchant"
    PICK_UP = "pick_up"
    DO_NOT_HONOR = "do_not_honor"  # an issuer's decline without a more specific reason (interbank)
    INVALID_TRANSACTION = "invalid_transaction"
    INVALID_AMOUNT = "invalid_amount"
    INVALID_CARD = "invalid_card"
    NO_SUCH_ISSUER = "no_such_issuer"  # a card of no issuer the switch knows or may route to
    RECORD_NOT_FOUND = "record_not_found"
    FORMAT_ERROR = "format_error"
    FUNCTION_NOT_SUPPORTED = "function_not_supported"
    LOST_CARD = "lost_card"
    STOLEN_CARD = "stolen_card"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    INCORRECT_PIN = "incorrect_pin"
    NOT_PERMITTED_TO_CARDHOLDER = "not_permitted_to_cardholder"
    NOT_PERMITTED_TO_TERMINAL = "not_permitted_to_terminal"
    SUSPECTED_FRAUD = "suspected_fraud"
    EXCEEDS_AMOUNT_LIMIT = "exceeds_amount_limit"
    RESTRICTED_CARD = "restricted_card"
    SECURITY_VIOLATION = "security_violation"
    EXCEEDS_FREQUENCY_LIMIT = "exceeds_frequency_limit"
    PIN_TRIES_EXCEEDED = "pin_tries_exceeded"
    UNSUPPORTED_CURRENCY = "unsupported_currency"
    ISSUER_INOPERATIVE = "issuer_inoperative"
    DUPLICATE = "duplicate"
    SYSTEM_MALFUNCTION = "system_malfunction"

    @property
    def approved(self) -> bool:
        return self is Result.APPROVED


# The terminal dialect's field 39 (docs/transactions.md).
TERMINAL_RESPONSE_CODES: dict[Result, str] = {
    Result.APPROVED: "00",
    Result.INVALID_MERCHANT: "03",
    Result.PICK_UP: "04",
    Result.DO_NOT_HONOR: "05",
    Result.INVALID_TRANSACTION: "12",
    Result.INVALID_AMOUNT: "13",
    Result.INVALID_CARD: "14",
    Result.NO_SUCH_ISSUER: "15",
    Result.RECORD_NOT_FOUND: "25",
    Result.FORMAT_ERROR: "30",
    Result.FUNCTION_NOT_SUPPORTED: "40",
    Result.LOST_CARD: "41",
    Result.STOLEN_CARD: "43",
    Result.INSUFFICIENT_FUNDS: "51",
    Result.EXPIRED_CARD: "54",
    Result.INCORRECT_PIN: "55",
    Result.NOT_PERMITTED_TO_CARDHOLDER: "57",
    Result.NOT_PERMITTED_TO_TERMINAL: "58",
    Result.SUSPECTED_FRAUD: "59",
    Result.EXCEEDS_AMOUNT_LIMIT: "61",
    Result.RESTRICTED_CARD: "62",
    Result.SECURITY_VIOLATION: "63",
    Result.EXCEEDS_FREQUENCY_LIMIT: "65",
    Result.PIN_TRIES_EXCEEDED: "75",
    Result.UNSUPPORTED_CURRENCY: "12",
    Result.ISSUER_INOPERATIVE: "91",
    Result.DUPLICATE: "94",
    Result.SYSTEM_MALFUNCTION: "96",
}
