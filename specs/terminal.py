"""Dialect `terminal`: POS and ATM terminals talking to the switch.

This is the layout of pyiso8583's `iso8583.specs.default` (and of most third-party ISO 8583
libraries), so a terminal written against any of them can talk to the switch unchanged:
ISO 8583:1987, ASCII MTI, binary primary/secondary bitmaps, ASCII numeric and text fields with ASCII
length prefixes, fields 52, 64, 96 and 128 binary 8 bytes, field 55 binary with an ASCII LLL prefix.
Framing: a 2-byte big-endian binary length (not counting itself), then a 5-byte TPDU.
"""

from __future__ import annotations

DEFINITION: dict[str, object] = {
    "name": "terminal",
    "title": "POS/ATM terminals (ISO 8583:1987 ASCII, TPDU)",
    "framing": {"prefix": "binary", "prefix_bytes": 2, "filler_bytes": 0, "keepalive": False},
    # TPDU: 0x60, destination NII (2 bytes), source NII (2 bytes); a reply swaps the two NIIs.
    "header": {"kind": "tpdu", "tpdu_id": 0x60},
    "mti": "ascii",
    "bitmap": "binary",
    "types": {
        "n": {"data": "ascii", "length": "ascii"},
        "an": {"data": "ascii", "length": "ascii"},
        "ans": {"data": "ascii", "length": "ascii"},
        "z": {"data": "ascii", "length": "ascii"},
        "b": {"data": "binary", "length": "ascii"},
    },
    "fields": {},
    # A card is identified by field 2 or by track 2 (a list inside the list means "one of these").
    "mandatory": {
        "0100": [[2, 35], 3, 4, 11, 22, 25, 41, 42],
        "0110": [3, 4, 11, 39, 41],
        "0200": [[2, 35], 3, 4, 11, 22, 25, 41, 42],
        "0210": [3, 4, 11, 39, 41],
        "0220": [[2, 35], 3, 4, 11, 22, 25, 41, 42],
        "0230": [3, 4, 11, 39, 41],
        "0400": [[2, 35], 3, 4, 11, 22, 25, 41, 42],
        "0410": [3, 4, 11, 39, 41],
        "0420": [[2, 35], 3, 4, 11, 22, 25, 41, 42],
        "0430": [3, 4, 11, 39, 41],
        "0800": [11, 41],
        "0810": [11, 39, 41],
    },
    "fixed_values": {},
}
