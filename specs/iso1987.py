"""The ISO 8583:1987 data element table that every dialect starts from.

Each row is (type, length digits, maximum length, name). Types are the standard's classes: "n" numeric,
"an" alphanumeric, "ans" alphanumeric and special, "z" track data (digits plus separator), "b" binary.
Length digits is 0 for fixed, 2 for LLVAR, 3 for LLLVAR. Maximum lengths count characters or digits,
or bytes for "b". A dialect says how each type is encoded on its wire and overrides the rows it changes;
the loader in `switch.iso.dialect` turns the pair into a pyiso8583 spec dict and validates it.

The lengths follow the layout pyiso8583 ships as `iso8583.specs.default`, which is also what most
third-party ISO 8583 libraries use, so the `terminal` dialect stays compatible with them.
Fields 28-31 and 97 are "x+n" in the standard (a C/D sign then digits); they are carried as "an".
The standard's response codes and network management codes are here too, for the network dialects to
build their link tables from.
"""

from __future__ import annotations

FIELDS: dict[int, tuple[str, int, int, str]] = {
    2: ("n", 2, 19, "Primary account number (PAN)"),
    3: ("n", 0, 6, "Processing code"),
    4: ("n", 0, 12, "Amount, transaction"),
    5: ("n", 0, 12, "Amount, settlement"),
    6: ("n", 0, 12, "Amount, cardholder billing"),
    7: ("n", 0, 10, "Transmission date and time"),
    8: ("n", 0, 8, "Amount, cardholder billing fee"),
    9: ("n", 0, 8, "Conversion rate, settlement"),
    10: ("n", 0, 8, "Conversion rate, cardholder billing"),
    11: ("n", 0, 6, "System trace audit number (STAN)"),
    12: ("n", 0, 6, "Time, local transaction"),
    13: ("n", 0, 4, "Date, local transaction"),
    14: ("n", 0, 4, "Date, expiration"),
    15: ("n", 0, 4, "Date, settlement"),
    16: ("n", 0, 4, "Date, conversion"),
    17: ("n", 0, 4, "Date, capture"),
    18: ("n", 0, 4, "Merchant type"),
    19: ("n", 0, 3, "Acquiring institution country code"),
    20: ("n", 0, 3, "PAN extended country code"),
    21: ("n", 0, 3, "Forwarding institution country code"),
    22: ("n", 0, 3, "Point of service entry mode"),
    23: ("n", 0, 3, "Card sequence number"),
    24: ("n", 0, 3, "Network international identifier (NII)"),
    25: ("n", 0, 2, "Point of service condition code"),
    26: ("n", 0, 2, "Point of service PIN capture code"),
    27: ("n", 0, 1, "Authorization identification response length"),
    28: ("an", 0, 9, "Amount, transaction fee"),
    29: ("an", 0, 9, "Amount, settlement fee"),
    30: ("an", 0, 9, "Amount, transaction processing fee"),
    31: ("an", 0, 9, "Amount, settlement processing fee"),
    32: ("n", 2, 11, "Acquiring institution identification code"),
    33: ("n", 2, 11, "Forwarding institution identification code"),
    34: ("ans", 2, 28, "Primary account number, extended"),
    35: ("z", 2, 37, "Track 2 data"),
    36: ("z", 3, 104, "Track 3 data"),
    37: ("an", 0, 12, "Retrieval reference number (RRN)"),
    38: ("an", 0, 6, "Authorization identification response"),
    39: ("an", 0, 2, "Response code"),
    40: ("an", 0, 3, "Service restriction code"),
    41: ("ans", 0, 8, "Card acceptor terminal identification"),
    42: ("ans", 0, 15, "Card acceptor identification code"),
    43: ("ans", 0, 40, "Card acceptor name/location"),
    44: ("an", 2, 25, "Additional response data"),
    45: ("ans", 2, 76, "Track 1 data"),
    46: ("ans", 3, 999, "Additional data - ISO"),
    47: ("ans", 3, 999, "Additional data - national"),
    48: ("ans", 3, 999, "Additional data - private"),
    49: ("n", 0, 3, "Currency code, transaction"),
    50: ("n", 0, 3, "Currency code, settlement"),
    51: ("n", 0, 3, "Currency code, cardholder billing"),
    52: ("b", 0, 8, "Personal identification number (PIN) data"),
    53: ("n", 0, 16, "Security related control information"),
    54: ("ans", 3, 240, "Additional amounts"),
    55: ("b", 3, 255, "ICC data (EMV)"),
    56: ("ans", 3, 999, "Reserved ISO"),
    57: ("ans", 3, 999, "Reserved national"),
    58: ("ans", 3, 999, "Reserved national"),
    59: ("ans", 3, 999, "Reserved national"),
    60: ("ans", 3, 999, "Reserved national"),
    61: ("ans", 3, 999, "Reserved private"),
    62: ("ans", 3, 999, "Reserved private"),
    63: ("ans", 3, 999, "Reserved private"),
    64: ("b", 0, 8, "Message authentication code (MAC)"),
    # Bit 65 set in the secondary bitmap announces a tertiary bitmap (pyiso8583 reads it as such);
    # it is never a data element of its own, so the message model refuses it.
    65: ("b", 0, 8, "Bitmap, tertiary"),
    66: ("n", 0, 1, "Settlement code"),
    67: ("n", 0, 2, "Extended payment code"),
    68: ("n", 0, 3, "Receiving institution country code"),
    69: ("n", 0, 3, "Settlement institution country code"),
    70: ("n", 0, 3, "Network management information code"),
    71: ("n", 0, 4, "Message number"),
    72: ("n", 0, 4, "Message number, last"),
    73: ("n", 0, 6, "Date, action"),
    74: ("n", 0, 10, "Credits, number"),
    75: ("n", 0, 10, "Credits, reversal number"),
    76: ("n", 0, 10, "Debits, number"),
    77: ("n", 0, 10, "Debits, reversal number"),
    78: ("n", 0, 10, "Transfer, number"),
    79: ("n", 0, 10, "Transfer, reversal number"),
    80: ("n", 0, 10, "Inquiries, number"),
    81: ("n", 0, 10, "Authorizations, number"),
    82: ("n", 0, 12, "Credits, processing fee amount"),
    83: ("n", 0, 12, "Credits, transaction fee amount"),
    84: ("n", 0, 12, "Debits, processing fee amount"),
    85: ("n", 0, 12, "Debits, transaction fee amount"),
    86: ("n", 0, 16, "Credits, amount"),
    87: ("n", 0, 16, "Credits, reversal amount"),
    88: ("n", 0, 16, "Debits, amount"),
    89: ("n", 0, 16, "Debits, reversal amount"),
    90: ("n", 0, 42, "Original data elements"),
    91: ("an", 0, 1, "File update code"),
    92: ("an", 0, 2, "File security code"),
    93: ("an", 0, 5, "Response indicator"),
    94: ("an", 0, 7, "Service indicator"),
    95: ("an", 0, 42, "Replacement amounts"),
    96: ("b", 0, 8, "Message security code"),
    97: ("an", 0, 17, "Amount, net settlement"),
    98: ("ans", 0, 25, "Payee"),
    99: ("n", 2, 11, "Settlement institution identification code"),
    100: ("n", 2, 11, "Receiving institution identification code"),
    101: ("ans", 2, 17, "File name"),
    102: ("ans", 2, 28, "Account identification 1"),
    103: ("ans", 2, 28, "Account identification 2"),
    104: ("ans", 3, 100, "Transaction description"),
    **{n: ("ans", 3, 999, "Reserved ISO") for n in range(105, 112)},
    **{n: ("ans", 3, 999, "Reserved national") for n in range(112, 120)},
    **{n: ("ans", 3, 999, "Reserved private") for n in range(120, 128)},
    128: ("b", 0, 8, "Message authentication code (MAC)"),
}

# Fields a response copies from its request, by message class (the MTI's second digit).
# Sensitive fields (35, 36, 45, 52, 55) are never echoed whatever a dialect lists.
ECHO: dict[str, list[int]] = {
    "1": [2, 3, 4, 7, 11, 12, 13, 18, 22, 25, 32, 33, 37, 41, 42, 49],
    "2": [2, 3, 4, 7, 11, 12, 13, 18, 22, 25, 32, 33, 37, 41, 42, 49],
    "4": [2, 3, 4, 7, 11, 12, 13, 32, 33, 37, 41, 42, 49, 90, 95],
    "8": [7, 11, 32, 33, 41, 42, 70],
}

# ISO 8583:1987 field 90 (original data elements, n42): where each part starts and how long it is.
ORIGINAL_DATA_ELEMENTS: list[tuple[str, int]] = [
    ("original_mti", 4),
    ("original_stan", 6),
    ("original_transmission_datetime", 10),
    ("original_acquirer_id", 11),
    ("original_forwarder_id", 11),
]

# Field 39 as ISO 8583:1987 defines it -> the switch's result name (switch.domain.results.Result values).
# Each network's spec module builds its RESPONSE_CODES from this table, with its own additions after
# it: order matters, since the simulator (netsim) and the issuer side answer a result with the first
# code listed for it.
ISO_RESPONSE_CODES: dict[str, str] = {
    "00": "approved",
    "01": "do_not_honor",  # refer to card issuer: a terminal cannot call, so a decline
    "03": "invalid_merchant",
    "04": "pick_up",
    "05": "do_not_honor",
    "12": "invalid_transaction",
    "13": "invalid_amount",
    "14": "invalid_card",
    "15": "no_such_issuer",
    "25": "record_not_found",
    "30": "format_error",
    "41": "lost_card",
    "43": "stolen_card",
    "51": "insufficient_funds",
    "54": "expired_card",
    "55": "incorrect_pin",
    "57": "not_permitted_to_cardholder",
    "58": "not_permitted_to_terminal",
    "59": "suspected_fraud",
    "61": "exceeds_amount_limit",
    "62": "restricted_card",
    "63": "security_violation",
    "65": "exceeds_frequency_limit",
    "75": "pin_tries_exceeded",
    "91": "issuer_inoperative",
    "94": "duplicate",
    "96": "system_malfunction",
}

# Network management on a link (field 70 codes and the MTI that carries them), as most networks use it;
# each network's NETWORK_MANAGEMENT starts from this.
ISO_NETWORK_MANAGEMENT: dict[str, str] = {
    "mti": "0800",
    "sign_on": "001",
    "sign_off": "002",
    "echo": "301",
    "key_exchange": "101",
}
