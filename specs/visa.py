"""Dialect `visa`: a VisaNet BASE I style link.

Framing: a 2-byte binary length of what follows the 4-byte prefix, then two zero bytes; a frame of
length zero is a keep-alive. Then the 22-byte BASE I header (see `switch.iso.headers.VisaHeader`),
or, when VisaNet rejects a message, a 26-byte reject header followed by the original header and message.
Message: BCD MTI, binary bitmaps; numeric fields in BCD (odd lengths left-padded with a zero nibble,
variable lengths counted in digits in one binary byte); text fields in EBCDIC (cp500) with a one-byte
binary length; track 2 in BCD with the 'D' separator; binary fields with a one-byte binary length.

Assumptions (the BASE I manuals are not public; checked against the public jPOS Base1Packager):
- variable text and binary fields are capped at 255 bytes so that one length byte always suffices;
- field 22 (POS entry mode) is n4, as VisaNet uses it, not the standard's n3;
- fields 28-31, 97 (x+n amounts) travel as EBCDIC text rather than Visa's sign byte + BCD;
- jPOS packs a few private fields differently (46, 47, 56-58 and 102-125 as ASCII text, 48 and 60-63
  as binary, 61 as BCD); their contents are Visa's and not public, so here they stay EBCDIC text with
  a one-byte length until a link needs them, when an entry in `fields` (or a type rule) changes that.
Checked against jPOS and holding: header layout and defaults (0x16, 0x01, 0x02, total length =
header + message, BCD station IDs, reject when byte 0 is 26 and bit 1 of byte 22 is set, reject code
at bytes 24-25 followed by the original header), left-padded BCD numerics with a binary digit count,
EBCDIC for 37-43, binary 52/64/128, field 90 as 21 bytes of BCD, field 22 as n4.
"""

from __future__ import annotations

from specs.iso1987 import ISO_NETWORK_MANAGEMENT, ISO_RESPONSE_CODES

DEFINITION: dict[str, object] = {
    "name": "visa",
    "title": "Visa BASE I style (BCD/EBCDIC, 22-byte header)",
    "framing": {"prefix": "binary", "prefix_bytes": 2, "filler_bytes": 2, "keepalive": True},
    # Header field 2 (header format) is 0x01 and field 3 (text format) 0x02 in BASE I messages.
    "header": {"kind": "visa", "header_format": 0x01, "text_format": 0x02},
    "mti": "bcd",
    "bitmap": "binary",
    "types": {
        "n": {"data": "bcd", "length": "binary", "pad": "left"},
        "z": {"data": "bcd", "length": "binary", "pad": "left"},
        "an": {"data": "cp500", "length": "binary", "max_len_cap": 255},
        "ans": {"data": "cp500", "length": "binary", "max_len_cap": 255},
        "b": {"data": "binary", "length": "binary", "max_len_cap": 255},
    },
    "fields": {
        22: ["n", 0, 4, "Point of service entry mode"],
    },
    "mandatory": {
        "0100": [[2, 35], 3, 4, 7, 11, 18, 22, 25, 32, 37, 41, 42, 49],
        "0110": [3, 4, 7, 11, 32, 37, 39, 41, 42, 49],
        "0200": [[2, 35], 3, 4, 7, 11, 18, 22, 25, 32, 37, 41, 42, 49],
        "0210": [3, 4, 7, 11, 32, 37, 39, 41, 42, 49],
        "0400": [2, 3, 4, 7, 11, 32, 37, 41, 42, 49, 90],
        "0410": [3, 4, 7, 11, 32, 37, 39, 49],
        "0420": [2, 3, 4, 7, 11, 32, 37, 41, 42, 49, 90],
        "0430": [3, 4, 7, 11, 32, 37, 39, 49],
        "0800": [7, 11, 70],
        "0810": [7, 11, 39, 70],
    },
    "fixed_values": {},
}

# Field 39 as this network uses it -> the switch's result name (switch.domain.results.Result values).
# Codes not listed are treated as "issuer_inoperative" (the terminal gets 91). The simulator (netsim)
# answers its own declines with the first code listed for a result: the ISO 8583:1987 codes
# (specs.iso1987), then this network's own.
RESPONSE_CODES: dict[str, str] = {
    **ISO_RESPONSE_CODES,
    "N7": "suspected_fraud",  # CVV2 mismatch
}

# Network management (field 70 codes and the MTI that carries them) on this network's link.
NETWORK_MANAGEMENT: dict[str, str] = dict(ISO_NETWORK_MANAGEMENT)
