"""`switchctl iso decode|encode`: handlers called with parsed arguments, output captured."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from switch.cli import iso_cmd
from switch.iso import Codec
from switch.iso.samples import SAMPLE_PAN, typical_0200

TRACK2_TAIL = "26122011758928889"
PIN_BLOCK = "0123456789ABCDEF"


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="switchctl")
    iso_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def _frame_hex(name: str) -> str:
    message, header = typical_0200(name)
    return Codec(name).encode_frame(message, header).hex()


@pytest.mark.parametrize("name", ["terminal", "visa", "cups", "shetab"])
def test_decode_masks_card_data_by_default(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """If a frame is decoded without flags, then no clear PAN, track 2 or PIN block is printed."""
    assert _run(["iso", "decode", "--dialect", name, _frame_hex(name)]) == 0
    out = capsys.readouterr().out
    assert "476173******0010" in out
    assert SAMPLE_PAN not in out
    assert TRACK2_TAIL not in out
    assert PIN_BLOCK not in out.upper()
    assert "mti: 0200" in out


def test_decode_names_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    """If a frame is decoded, then each present field is printed with its number and name."""
    message, _ = typical_0200("cups")
    _run(["iso", "decode", "--dialect", "cups", _frame_hex("cups")])
    out = capsys.readouterr().out
    for number in message.numbers:
        assert any(line.split()[:1] == [str(number)] for line in out.splitlines()), number
    assert "Retrieval reference number (RRN)" in out
    assert "destination_id: '00010000'" in out


def test_unmasked_alone_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """If --unmasked is given without --test-data, then the tool refuses with a clear error and prints nothing."""
    assert _run(["iso", "decode", "--dialect", "terminal", "--unmasked", _frame_hex("terminal")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--test-data" in captured.err


def test_unmasked_with_test_data_shows_clear_values(capsys: pytest.CaptureFixture[str]) -> None:
    """If --unmasked and --test-data are both given, then the PAN and the EMV tags are shown in clear."""
    assert (
        _run(["iso", "decode", "--dialect", "terminal", "--unmasked", "--test-data", _frame_hex("terminal")])
        == 0
    )
    out = capsys.readouterr().out
    assert SAMPLE_PAN in out
    assert "Amount, authorised" in out


def test_decode_error_output_has_no_card_data(capsys: pytest.CaptureFixture[str]) -> None:
    """If a frame with a PAN fails to decode, then the error printed names the field and not the PAN."""
    message, header = typical_0200("terminal")
    payload = Codec("terminal").encode_payload(message, header)[:-10]
    frame = len(payload).to_bytes(2, "big") + payload
    assert _run(["iso", "decode", "--dialect", "terminal", frame.hex()]) == 1
    captured = capsys.readouterr()
    assert "field=55" in captured.err
    assert SAMPLE_PAN not in captured.err + captured.out
    assert TRACK2_TAIL not in captured.err + captured.out


def test_decode_from_stdin_and_message_only(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If '-' and --message-only are given, then the message body is read as hex from stdin."""
    body = Codec("shetab").encode_message(typical_0200("shetab")[0]).hex()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(body.encode())))
    assert _run(["iso", "decode", "--dialect", "shetab", "--message-only", "-"]) == 0
    assert "Currency code, transaction" in capsys.readouterr().out


def test_decode_raw_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """If --file and --raw are given, then the file's bytes are decoded as one frame."""
    path = tmp_path / "frame.bin"
    path.write_bytes(bytes.fromhex(_frame_hex("visa")))
    assert _run(["iso", "decode", "--dialect", "visa", "--file", str(path), "--raw"]) == 0
    assert "VisaHeader" in capsys.readouterr().out


def test_decode_rejects_non_hex(capsys: pytest.CaptureFixture[str]) -> None:
    """If the input is not hex, then the tool exits 2 with an error."""
    assert _run(["iso", "decode", "--dialect", "visa", "zz"]) == 2
    assert "not hex" in capsys.readouterr().err


def test_encode_then_decode_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    """If a JSON message is encoded, then decoding the printed hex gives the same fields and header."""
    doc = {
        "mti": "0800",
        "fields": {"7": "1123193500", "11": "000001", "70": "301"},
        "header": {"source_id": "654321"},
    }
    assert _run(["iso", "encode", "--dialect", "visa", json.dumps(doc)]) == 0
    hex_out = capsys.readouterr().out.strip()
    packet = Codec("visa").decode_frame(bytes.fromhex(hex_out))
    assert packet.message.fields == {7: "1123193500", 11: "000001", 70: "301"}
    assert packet.header.source_id == "654321"


def test_encode_message_only(capsys: pytest.CaptureFixture[str]) -> None:
    """If --message-only is given, then only the message body is printed."""
    doc = {"mti": "0800", "fields": {"11": "000001"}}
    assert _run(["iso", "encode", "--dialect", "shetab", "--message-only", json.dumps(doc)]) == 0
    assert bytes.fromhex(capsys.readouterr().out.strip()).startswith(b"0800")


def test_encode_reports_unencodable_field(capsys: pytest.CaptureFixture[str]) -> None:
    """If a field does not fit the dialect, then encode exits 1 naming the field."""
    doc = {"mti": "0200", "fields": {"4": "12"}}
    assert _run(["iso", "encode", "--dialect", "terminal", json.dumps(doc)]) == 1
    assert "field=4" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"fields": {}}',
        '{"mti": "0800", "header": {"bogus": 1}}',
        '{"mti": "0800", "header": {"destination_nii": 1}}',
    ],
)
def test_encode_rejects_bad_documents(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    """If the JSON document is malformed or names unknown header keys, then encode exits 2."""
    assert _run(["iso", "encode", "--dialect", "terminal", text]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_encode_reads_json_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If encode is given '-', then the JSON document is read from stdin."""
    doc = {"mti": "0800", "fields": {"7": "1123193500", "11": "000001", "70": "001"}}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(doc)))
    assert _run(["iso", "encode", "--dialect", "shetab", "-"]) == 0
    packet = Codec("shetab").decode_frame(bytes.fromhex(capsys.readouterr().out.strip()))
    assert packet.message.fields == {7: "1123193500", 11: "000001", 70: "001"}


def test_decode_hex_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """If --file names a file of hex text (spaced, over several lines), then it is decoded as one frame."""
    path = tmp_path / "frame.hex"
    frame_hex = _frame_hex("cups")
    path.write_text("\n".join(frame_hex[i : i + 32] for i in range(0, len(frame_hex), 32)) + "\n")
    assert _run(["iso", "decode", "--dialect", "cups", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "CupsHeader" in out
    assert SAMPLE_PAN not in out
