"""Property tests: round trips per dialect, framing under any split, and robustness to bad bytes."""

from __future__ import annotations

import contextlib
import itertools
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.iso import DIALECT_NAMES, Codec, IsoError, Message, Packet, load_dialect
from switch.iso.codec import KeepAlive
from switch.iso.framing import prefix_frame
from switch.iso.headers import CupsHeader, Header, Tpdu, VisaHeader
from switch.iso.samples import SAMPLE_PAN, typical_0200
from switch.iso.tlv import Tlv, build_tlv, parse_tlv
from tests.property.iso.strategies import messages

CODECS = {name: Codec(name) for name in DIALECT_NAMES}
TRACK2_TAIL = "26122011758928889"  # after the PAN in every typical 0200's track 2
SAMPLE_PIN_BLOCK = "0123456789ABCDEF"
FRAME_BYTES_MAX = 8192

digits = string.digits
printable_id = st.text(string.ascii_letters + string.digits + "-_", max_size=11)


def headers(kind: str) -> st.SearchStrategy[Header | None]:
    byte = st.integers(0, 0xFF)
    if kind == "tpdu":
        return st.builds(
            Tpdu,
            destination_nii=st.text(digits, min_size=4, max_size=4),
            source_nii=st.text(digits, min_size=4, max_size=4),
        )
    if kind == "visa":
        return st.builds(
            VisaHeader,
            destination_id=st.text(digits, min_size=6, max_size=6),
            source_id=st.text(digits, min_size=6, max_size=6),
            header_format=byte,
            text_format=byte,
            round_trip_control=byte,
            base1_flags=st.integers(0, 0xFFFF),
            status_flags=st.integers(0, 0xFFFFFF),
            batch_number=byte,
            reserved=st.integers(0, 0xFFFFFF),
            user_info=byte,
        )
    if kind == "cups":
        return st.builds(
            CupsHeader,
            destination_id=printable_id,
            source_id=printable_id,
            flag_version=byte,
            reserved=st.integers(0, 0xFFFFFF),
            batch_number=byte,
            transaction_info=st.text(string.ascii_letters + string.digits, max_size=8),
            user_info=byte,
            reject_code=st.text(digits, min_size=5, max_size=5),
        )
    return st.none()


@pytest.mark.parametrize("name", DIALECT_NAMES)
@given(data=st.data())
def test_message_round_trip(name: str, data: st.DataObject) -> None:
    """If any valid message of a dialect is encoded, then decoding gives the same message back."""
    codec = CODECS[name]
    message = data.draw(messages(codec.dialect))
    assert codec.decode_message(codec.encode_message(message)) == message


@pytest.mark.parametrize("name", DIALECT_NAMES)
@given(data=st.data())
def test_frame_round_trip(name: str, data: st.DataObject) -> None:
    """If a message and header are framed, then decoding the frame gives both back unchanged."""
    codec = CODECS[name]
    message = data.draw(messages(codec.dialect))
    header = data.draw(headers(codec.dialect.header.kind))
    packet = codec.decode_frame(codec.encode_frame(message, header))
    assert isinstance(packet, Packet)
    assert packet.message == message
    assert packet.header == (header if header is not None else codec.default_header)


@given(data=st.data())
def test_visa_reject_round_trip(data: st.DataObject) -> None:
    """If a Visa reject (reject header, original header, message) is framed, then it decodes back."""
    codec = CODECS["visa"]
    message = data.draw(messages(codec.dialect))
    original = data.draw(headers("visa"))
    assert isinstance(original, VisaHeader)
    reject = VisaHeader(reject_code=data.draw(st.text(digits, min_size=4, max_size=4)))
    packet = codec.decode_frame(codec.encode_frame(message, reject, original))
    assert isinstance(packet, Packet)
    assert (packet.header, packet.original_header, packet.message) == (reject, original, message)


@pytest.mark.parametrize("name", DIALECT_NAMES)
@given(
    payloads=st.lists(st.binary(min_size=1, max_size=300), max_size=8), cuts=st.lists(st.integers(0, 4000))
)
def test_framer_split_independent(name: str, payloads: list[bytes], cuts: list[int]) -> None:
    """If a stream of frames is delivered in arbitrary pieces, then the framer yields the same frames."""
    codec = CODECS[name]
    framing = codec.dialect.framing
    if framing.keepalive:
        payloads = [*payloads, b""]
    stream = b"".join(prefix_frame(framing, p) for p in payloads)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    framer = codec.framer(frame_bytes_max=FRAME_BYTES_MAX)
    got: list[bytes] = []
    for start, end in itertools.pairwise(points):
        framer.receive_data(stream[start:end])
        got.extend(framer)
    assert got == payloads
    assert framer.buffered_bytes == 0


def _exercise(codec: Codec, result: Packet | KeepAlive) -> None:
    """Touch everything a caller may touch on a decoded packet; only IsoError may come out."""
    if isinstance(result, Packet):
        msg = result.message
        assert len(msg.mti) == 4 and msg.mti.isdigit()
        repr(msg)
        for accessor in ("pan", "processing_code", "amount", "stan", "rrn", "currency", "terminal_id"):
            with contextlib.suppress(IsoError):
                getattr(msg, accessor)
        with contextlib.suppress(IsoError):
            codec.validate(msg)


@pytest.mark.parametrize("name", DIALECT_NAMES)
@given(data=st.binary(max_size=400))
def test_random_bytes_raise_only_codec_errors(name: str, data: bytes) -> None:
    """If random bytes are decoded as a payload, a message or a frame, then only IsoError is raised."""
    codec = CODECS[name]
    for decode in (codec.decode_payload, lambda d: Packet(codec.decode_message(d)), codec.decode_frame):
        with contextlib.suppress(IsoError):
            _exercise(codec, decode(data))


def _mutated_frame(codec: Codec, data: st.DataObject) -> bytes:
    """The dialect's typical 0200 (PAN, track 2, PIN block) truncated, extended or with bytes changed."""
    message, header = typical_0200(codec.name)
    frame = bytearray(codec.encode_frame(message, header))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = data.draw(st.integers(0, len(frame)))
        if op == "flip" and pos < len(frame):
            frame[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del frame[pos:]
        elif op == "insert":
            frame[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and pos < len(frame):
            del frame[pos]
    return bytes(frame)


@pytest.mark.parametrize("name", DIALECT_NAMES)
@given(data=st.data())
def test_mutated_frames_raise_only_codec_errors(name: str, data: st.DataObject) -> None:
    """If a valid frame is truncated, extended or has bytes changed, then only IsoError is raised."""
    codec = CODECS[name]
    raw = _mutated_frame(codec, data)
    with contextlib.suppress(IsoError):
        _exercise(codec, codec.decode_frame(raw))
    head = codec.dialect.framing.prefix_bytes + codec.dialect.framing.filler_bytes
    with contextlib.suppress(IsoError):
        _exercise(codec, codec.decode_payload(raw[head:]))


@pytest.mark.parametrize("name", DIALECT_NAMES)
@given(data=st.data())
def test_errors_of_mutated_frames_hold_no_card_data(name: str, data: st.DataObject) -> None:
    """If a mutated frame with PAN, track 2 and PIN block fails, then the error text holds none of them."""
    codec = CODECS[name]
    raw = _mutated_frame(codec, data)
    try:
        codec.decode_frame(raw)
    except IsoError as exc:
        text = str(exc) + repr(exc) + repr(vars(exc))
        for secret in (SAMPLE_PAN, SAMPLE_PAN[6:12], TRACK2_TAIL, SAMPLE_PIN_BLOCK):
            assert secret not in text.upper()


tags = st.one_of(
    st.integers(1, 0xFF).filter(lambda b: b & 0x1F != 0x1F).map(lambda b: f"{b:02X}"),
    st.tuples(st.integers(0, 0xFF).map(lambda b: b | 0x1F), st.integers(0, 0x7F)).map(
        lambda t: f"{t[0]:02X}{t[1]:02X}"
    ),
    st.tuples(
        st.integers(0, 0xFF).map(lambda b: b | 0x1F), st.integers(0x80, 0xFF), st.integers(0, 0x7F)
    ).map(lambda t: f"{t[0]:02X}{t[1]:02X}{t[2]:02X}"),
)


@given(items=st.lists(st.builds(Tlv, tag=tags, value=st.binary(max_size=300)), max_size=10))
def test_tlv_round_trip(items: list[Tlv]) -> None:
    """If data objects are built into BER-TLV, then parsing gives the same objects back."""
    assert parse_tlv(build_tlv(items)) == items


@given(data=st.binary(max_size=200))
def test_tlv_random_bytes_raise_only_tlv_errors(data: bytes) -> None:
    """If random bytes are parsed as BER-TLV, then only the codec's error type is raised."""
    with contextlib.suppress(IsoError):
        parse_tlv(data)


@given(message=messages(load_dialect("terminal")))
def test_repr_never_shows_sensitive_values(message: Message) -> None:
    """If any message is printed, then no value of fields 35, 36, 45, 52 or 55 appears in the text."""
    text = repr(message)
    for number in (35, 36, 45, 52, 55):
        value = message.get(number)
        if value is not None:
            assert f"{number}: {value!r}" not in text
