"""Dialect `shetab`: Iran's interbank network.

Little of Shetab's message layout is public. Every choice below is an assumption, written next to the
value it explains, and can be corrected here without touching code:
- ISO 8583:1987 field table unchanged (no Shetab-specific lengths are public);
- TCP framing: 4 ASCII digits giving the length of the message, not counting themselves;
- no network header between the length prefix and the MTI;
- ASCII MTI, and bitmaps as 16 ASCII hex characters each (an all-ASCII message, like jPOS's
  ISO87APackager), since the network is described as "ASCII fields";
- binary fields (52 PIN block, 55 ICC data, 64/128 MAC) stay binary, with an ASCII length for 55;
- field 49 (transaction currency) is always 364, the Iranian rial.
"""

from __future__ import annotations

from specs.iso1987 import ISO_NETWORK_MANAGEMENT, ISO_RESPONSE_CODES

DEFINITION: dict[str, object] = {
    "name": "shetab",
    "title": "Shetab, Iran (ISO 8583:1987 ASCII, assumptions documented)",
    "framing": {"prefix": "ascii", "prefix_bytes": 4, "filler_bytes": 0, "keepalive": False},
    "header": {"kind": "none"},
    "mti": "ascii",
    "bitmap": "ascii",
    "types": {
        "n": {"data": "ascii", "length": "ascii"},
        "an": {"data": "ascii", "length": "ascii"},
        "ans": {"data": "ascii", "length": "ascii"},
        "z": {"data": "ascii", "length": "ascii"},
        "b": {"data": "binary", "length": "ascii"},
    },
    "fields": {},
    "mandatory": {
        "0100": [[2, 35], 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49],
        "0110": [3, 4, 7, 11, 32, 37, 39, 41, 49],
        "0200": [[2, 35], 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49],
        "0210": [3, 4, 7, 11, 32, 37, 39, 41, 49],
        "0400": [2, 3, 4, 7, 11, 32, 37, 41, 49, 90],
        "0410": [3, 4, 7, 11, 32, 37, 39, 49],
        "0420": [2, 3, 4, 7, 11, 32, 37, 41, 49, 90],
        "0430": [3, 4, 7, 11, 32, 37, 39, 49],
        "0800": [7, 11, 70],
        "0810": [7, 11, 39, 70],
    },
    # Assumption: Shetab settles only in rials, so any other currency code is a format error.
    "fixed_values": {49: "364"},
}

# Assumption: Shetab answers with the ISO 8583:1987 codes (its own code list is not public).
# Field 39 as this network uses it -> the switch's result name (switch.domain.results.Result values).
# Codes not listed are treated as "issuer_inoperative" (the terminal gets 91). The simulator (netsim)
# answers its own declines with the first code listed for a result.
RESPONSE_CODES: dict[str, str] = dict(ISO_RESPONSE_CODES)

# Network management (field 70 codes and the MTI that carries them) on this network's link.
NETWORK_MANAGEMENT: dict[str, str] = dict(ISO_NETWORK_MANAGEMENT)
