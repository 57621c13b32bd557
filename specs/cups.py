"""Dialect `cups`: a China UnionPay (CUPS) interbank link.

Header: 46 bytes (see `switch.iso.headers.CupsHeader`): header length 0x2E, flag and version, total
message length as 4 ASCII digits, 11-byte destination and source institution IDs, 3 reserved bytes,
batch number, 8 bytes of transaction information, user information and a 5-digit reject code.
Message: ASCII MTI, binary 128-bit bitmap (the secondary bitmap is always sent, so bit 1 is always set),
ASCII fields with ASCII length prefixes, except F43 (card acceptor name and location) which is GBK.
F32/F33/F100 are institution IDs (n..11, LLVAR); F60 is reserved private (ans...100, LLLVAR) whose
leading subfields are laid out below; F90 is the original data elements (n42).

Assumptions (CUPS specifications are licensed to members; the public parts agree on the header):
- TCP framing is a 4-digit ASCII length of header + message, not counting itself (a public capture
  of a CUPS 0200, used only to check this layout and not copied into the tests, has exactly this);
- flag and version defaults to 0x02 (bit 8 clear: production; version 2); 0x82 marks test traffic;
- the 128-bit bitmap is sent on every message; a message arriving with only the primary bitmap is
  still accepted, since nothing is lost by reading it;
- F43 is GBK, which is ASCII for ASCII text and carries Chinese merchant names in two bytes per
  character: a public capture of CUPS traffic decodes only that way. Its 40 counts bytes, not
  characters. Other text fields stay ASCII until a capture shows otherwise;
- F60 subfield positions follow the commonly published interbank layout (message reason code n4,
  account owner type n1, terminal read capability n1, IC card condition code n1, reserved n1,
  terminal type n2); later subfields are kept as one remainder. The capture agrees: contactless
  entry (F22 07x) with terminal read capability 6 and terminal type 03 (POS).
"""

from __future__ import annotations

from specs.iso1987 import ISO_NETWORK_MANAGEMENT, ISO_RESPONSE_CODES

DEFINITION: dict[str, object] = {
    "name": "cups",
    "title": "China UnionPay interbank (ASCII, 46-byte header)",
    "framing": {"prefix": "ascii", "prefix_bytes": 4, "filler_bytes": 0, "keepalive": False},
    "header": {"kind": "cups", "flag_version": 0x02},
    "mti": "ascii",
    "bitmap": "binary",
    "secondary_bitmap": "always",
    "types": {
        "n": {"data": "ascii", "length": "ascii"},
        "an": {"data": "ascii", "length": "ascii"},
        "ans": {"data": "ascii", "length": "ascii"},
        "z": {"data": "ascii", "length": "ascii"},
        "b": {"data": "binary", "length": "ascii"},
    },
    "fields": {
        60: ["ans", 3, 100, "Reserved private (CUPS self-defined data)"],
    },
    "field_encodings": {43: "gbk"},
    "subfields": {
        60: [
            ["message_reason_code", 4],
            ["account_owner_type", 1],
            ["terminal_read_capability", 1],
            ["ic_card_condition_code", 1],
            ["reserved", 1],
            ["terminal_type", 2],
        ],
        90: [
            ["original_mti", 4],
            ["original_stan", 6],
            ["original_transmission_datetime", 10],
            ["original_acquirer_id", 11],
            ["original_forwarder_id", 11],
        ],
    },
    "mandatory": {
        "0100": [2, 3, 4, 7, 11, 12, 13, 18, 22, 25, 32, 33, 37, 41, 42, 49, 60],
        "0110": [2, 3, 4, 7, 11, 32, 33, 37, 39, 41, 42, 49],
        "0200": [2, 3, 4, 7, 11, 12, 13, 18, 22, 25, 32, 33, 37, 41, 42, 49, 60],
        "0210": [2, 3, 4, 7, 11, 32, 33, 37, 39, 41, 42, 49],
        "0420": [2, 3, 4, 7, 11, 32, 33, 37, 41, 42, 49, 60, 90],
        "0430": [2, 3, 4, 7, 11, 32, 33, 37, 39, 41, 42, 49],
        "0820": [7, 11, 33, 70],
        "0830": [7, 11, 33, 39, 70],
    },
    "echo": {
        "1": [2, 3, 4, 7, 11, 12, 13, 18, 22, 25, 32, 33, 37, 41, 42, 49, 60, 100],
        "2": [2, 3, 4, 7, 11, 12, 13, 18, 22, 25, 32, 33, 37, 41, 42, 49, 60, 100],
        "4": [2, 3, 4, 7, 11, 12, 13, 32, 33, 37, 41, 42, 49, 60, 90, 100],
        "8": [7, 11, 33, 70],
    },
    "fixed_values": {},
}

# Field 39 as this network uses it -> the switch's result name (switch.domain.results.Result values).
# Codes not listed are treated as "issuer_inoperative" (the terminal gets 91). The simulator (netsim)
# answers its own declines with the first code listed for a result: the ISO 8583:1987 codes
# (specs.iso1987), then this network's own.
RESPONSE_CODES: dict[str, str] = {
    **ISO_RESPONSE_CODES,
    "33": "expired_card",  # expired card, pick up
    "34": "suspected_fraud",
    "99": "security_violation",  # PIN block format error
    "A0": "security_violation",  # MAC verification failed
}

# Network management (field 70 codes and the MTI that carries them) on this network's link: CUPS carries
# them in 0820/0830.
NETWORK_MANAGEMENT: dict[str, str] = {**ISO_NETWORK_MANAGEMENT, "mti": "0820"}
