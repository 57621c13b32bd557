"""`switchctl iso decode|encode`: look inside a captured frame, or build one, for any dialect.

Decode prints the frame's header, MTI and every field with its name. Card data is masked by default
(PAN as first 6 + last 4; track data, PIN block and ICC data replaced by their size, every other
value passed through `scrub_text`); clear values need both `--unmasked` and `--test-data`, the second
being the operator's statement that the frame holds test cards only. Encode reads a JSON document
(`{"mti": "0200", "fields": {"3": "000000", ...}, "header": {...}}`) and prints the frame as hex.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping
from typing import Any

from switch.iso.codec import Codec, KeepAlive, Packet
from switch.iso.dialect import DIALECT_NAMES, SENSITIVE_FIELDS
from switch.iso.errors import IsoError
from switch.iso.headers import CupsHeader, Header, Tpdu, VisaHeader
from switch.iso.message import Message
from switch.iso.tlv import describe_emv, parse_tlv
from switch.masking import mask_pan, scrub_text

__all__ = ["decode_command", "encode_command", "register"]

EXIT_OK = 0
EXIT_BAD_DATA = 1
EXIT_USAGE = 2
# A hex dump pasted on the command line is small; a file is bounded so a wrong path cannot eat memory.
INPUT_BYTES_MAX = 1 << 20


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `iso` command with its `decode` and `encode` subcommands."""
    iso = subparsers.add_parser("iso", help="decode or encode ISO 8583 frames of a dialect")
    sub = iso.add_subparsers(dest="iso_command", required=True, metavar="{decode,encode}")

    dec = sub.add_parser("decode", help="print the header, MTI and fields of one frame (card data masked)")
    dec.add_argument("--dialect", required=True, choices=DIALECT_NAMES)
    source = dec.add_mutually_exclusive_group(required=True)
    source.add_argument("hex", nargs="?", help="the frame as hex, or '-' to read hex from stdin")
    source.add_argument(
        "--file", metavar="PATH", help="read the frame (hex text, or bytes with --raw) from PATH"
    )
    dec.add_argument("--raw", action="store_true", help="--file or stdin holds raw bytes, not hex text")
    dec.add_argument(
        "--message-only",
        action="store_true",
        help="input is the message alone (MTI onwards), without length prefix or header",
    )
    dec.add_argument("--unmasked", action="store_true", help="show card data in clear (needs --test-data)")
    dec.add_argument(
        "--test-data", action="store_true", help="confirm the input holds test cards only (allows --unmasked)"
    )
    dec.set_defaults(func=decode_command)

    enc = sub.add_parser("encode", help="build a frame from JSON and print it as hex")
    enc.add_argument("--dialect", required=True, choices=DIALECT_NAMES)
    enc.add_argument(
        "json", help='message as JSON ({"mti": ..., "fields": {...}, "header": {...}}), or - for stdin'
    )
    enc.add_argument(
        "--message-only", action="store_true", help="print the message alone, no prefix or header"
    )
    enc.set_defaults(func=encode_command)


def _error(text: str) -> None:
    print(f"error: {text}", file=sys.stderr)


def _read_input(args: argparse.Namespace) -> bytes:
    """The frame bytes named by the arguments; ValueError with a safe text if unreadable."""
    if args.file is not None:
        with open(args.file, "rb") as fh:
            data = fh.read(INPUT_BYTES_MAX + 1)
        text_source = not args.raw
    elif args.hex == "-":
        data = sys.stdin.buffer.read(INPUT_BYTES_MAX + 1)
        text_source = not args.raw
    else:
        data = str(args.hex).encode("ascii", "replace")
        text_source = True
    if len(data) > INPUT_BYTES_MAX:
        raise ValueError(f"input larger than {INPUT_BYTES_MAX} bytes")
    if not text_source:
        return data
    cleaned = b"".join(data.split()).replace(b":", b"")
    try:
        return bytes.fromhex(cleaned.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("input is not hex (use --raw for binary files)") from None


def _field_display(number: int, value: str, codec: Codec, unmasked: bool) -> str:
    if unmasked:
        return value
    fd = codec.dialect.fields[number]
    if number == 2:
        return mask_pan(value)
    if number in SENSITIVE_FIELDS:
        size = f"{len(value) // 2} bytes" if fd.type == "b" else f"{len(value)} characters"
        if number == 55:
            try:
                tags = " ".join(item.tag for item in parse_tlv(bytes.fromhex(value)))
            except (IsoError, ValueError):
                tags = "not valid BER-TLV"
            return f"[redacted, {size}; tags: {tags}]"
        return f"[redacted, {size}]"
    return scrub_text(value)


def _header_lines(header: Header, title: str) -> list[str]:
    lines = [f"{title}: {type(header).__name__}"]
    for f in dataclasses.fields(header):
        value = getattr(header, f.name)
        shown = f"0x{value:02X}" if isinstance(value, int) else repr(value)
        lines.append(f"  {f.name}: {shown}")
    return lines


def describe(packet: Packet, codec: Codec, *, unmasked: bool = False) -> list[str]:
    """The lines `iso decode` prints for one packet."""
    lines = [f"dialect: {codec.name}"]
    if packet.header is not None:
        lines += _header_lines(packet.header, "header")
    if packet.original_header is not None:
        lines += _header_lines(packet.original_header, "original header")
    message = packet.message
    lines.append(f"mti: {message.mti}")
    for number, value in message.items():
        name = codec.dialect.field_name(number)
        lines.append(f"  {number:>3}  {name:<45}  {_field_display(number, value, codec, unmasked)}")
        if number == 55 and unmasked:
            try:
                rows = describe_emv(parse_tlv(bytes.fromhex(value)), unmasked=True)
            except (IsoError, ValueError):
                lines.append("       (not valid BER-TLV)")
                continue
            for tag, tag_name, shown in rows:
                lines.append(f"       {tag:<6} {tag_name:<45}  {shown}")
    return lines


def decode_command(args: argparse.Namespace) -> int:
    """`switchctl iso decode`: exit 0 decoded, 1 the data is not a valid frame, 2 usage error."""
    if args.unmasked and not args.test_data:
        _error(
            "--unmasked shows card data in clear and is only allowed on test data; "
            "add --test-data to confirm the input holds test cards only"
        )
        return EXIT_USAGE
    codec = Codec(args.dialect)
    try:
        data = _read_input(args)
    except (OSError, ValueError) as exc:
        _error(str(exc) if isinstance(exc, ValueError) else f"cannot read input: {exc.strerror}")
        return EXIT_USAGE
    try:
        if args.message_only:
            result: Packet | KeepAlive = Packet(codec.decode_message(data))
        else:
            result = codec.decode_frame(data)
    except IsoError as exc:
        _error(str(exc))
        return EXIT_BAD_DATA
    if isinstance(result, KeepAlive):
        print(f"dialect: {codec.name}\nkeep-alive frame")
        return EXIT_OK
    print("\n".join(describe(result, codec, unmasked=args.unmasked)))
    return EXIT_OK


_HEADER_TYPES: Mapping[str, type[Tpdu] | type[VisaHeader] | type[CupsHeader]] = {
    "tpdu": Tpdu,
    "visa": VisaHeader,
    "cups": CupsHeader,
}


def _build_header(codec: Codec, spec: object) -> Header | None:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError("header must be a JSON object")
    header_type = _HEADER_TYPES.get(codec.dialect.header.kind)
    if header_type is None:
        raise ValueError("this dialect has no header")
    default = codec.default_header
    known = {f.name for f in dataclasses.fields(header_type)}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"unknown header keys: {', '.join(unknown)}")
    base = default if default is not None else header_type()
    for key, value in spec.items():
        expected = type(getattr(base, key))
        if getattr(base, key) is None:  # the Visa reject code: text when present
            expected = str
        if value is not None and (type(value) is not expected):
            raise ValueError(f"header key {key} must be {'text' if expected is str else 'an integer'}")
    return dataclasses.replace(default, **spec) if default is not None else header_type(**spec)


def _build_message(doc: Mapping[str, Any]) -> Message:
    mti = doc.get("mti")
    fields = doc.get("fields", {})
    if not isinstance(mti, str) or not isinstance(fields, dict):
        raise ValueError('JSON needs "mti" (text) and "fields" (object of field number to text)')
    try:
        numbered = {int(k): v for k, v in fields.items()}
    except ValueError:
        raise ValueError("field keys must be numbers") from None
    return Message(mti, numbered)


def encode_command(args: argparse.Namespace) -> int:
    """`switchctl iso encode`: exit 0 and hex on stdout, 1 not encodable in the dialect, 2 bad JSON."""
    codec = Codec(args.dialect)
    text = sys.stdin.read(INPUT_BYTES_MAX + 1) if args.json == "-" else args.json
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("JSON must be an object")
        message = _build_message(doc)
        header = _build_header(codec, doc.get("header"))
    except ValueError as exc:
        # json's messages quote only positions, never the document.
        _error(str(exc))
        return EXIT_USAGE
    except IsoError as exc:
        _error(str(exc))
        return EXIT_USAGE
    try:
        out = codec.encode_message(message) if args.message_only else codec.encode_frame(message, header)
    except IsoError as exc:
        _error(str(exc))
        return EXIT_BAD_DATA
    print(out.hex().upper())
    return EXIT_OK
