"""Sans-IO ISO 8583 wire layer: framing, network headers, codec over pyiso8583 + specs/, message, TLV.

Bytes in, messages out; the caller does the I/O (see switch/adapters). Start with `Codec(name)`.
"""

from __future__ import annotations

from switch.iso.codec import KEEPALIVE, Codec, KeepAlive, Packet
from switch.iso.dialect import DIALECT_NAMES, Dialect, load_dialect
from switch.iso.errors import (
    DecodeError,
    EncodeError,
    FramingError,
    HeaderError,
    IsoError,
    MandatoryFieldError,
    MessageError,
    SpecError,
    TlvError,
)
from switch.iso.framing import Framer, prefix_frame
from switch.iso.headers import CupsHeader, Header, Tpdu, VisaHeader
from switch.iso.message import Message, response_mti
from switch.iso.tlv import Tlv, build_tlv, describe_emv, parse_tlv

__all__ = [
    "DIALECT_NAMES",
    "KEEPALIVE",
    "Codec",
    "CupsHeader",
    "DecodeError",
    "Dialect",
    "EncodeError",
    "Framer",
    "FramingError",
    "Header",
    "HeaderError",
    "IsoError",
    "KeepAlive",
    "MandatoryFieldError",
    "Message",
    "MessageError",
    "Packet",
    "SpecError",
    "Tlv",
    "TlvError",
    "Tpdu",
    "VisaHeader",
    "build_tlv",
    "describe_emv",
    "load_dialect",
    "parse_tlv",
    "prefix_frame",
    "response_mti",
]
