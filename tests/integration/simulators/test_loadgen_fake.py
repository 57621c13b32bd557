"""loadgen against the fake switch: a short paced run stops by itself and reports what it saw."""

from __future__ import annotations

import io
import json

import pytest

from simulators import loadgen


def test_two_second_run_reports_tps_percentiles_and_codes(fake_switch):
    """If loadgen runs 2 s at 100/s over 3 terminals, then it stops, answers all and reports ~200 approvals."""
    out = io.StringIO()
    code = loadgen.main(
        [
            "--port", str(fake_switch.port), "--terminals", "3", "--rate", "100", "--duration", "2",
            "--mix", "purchase=80,balance=10,echo=10", "--json", "--seed", "7",
        ],
        out=out,
    )  # fmt: skip
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    summary = lines[-1]
    assert code == 0
    assert any(line.get("progress") for line in lines[:-1])
    assert 120 <= summary["answered"] <= 210
    assert summary["timeouts"] == 0 and summary["response_codes"] == {"00": summary["answered"]}
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"] <= summary["latency_ms"]["max"]
    signed_on = {m[41] for m in fake_switch.requests if m.mti == "0800" and m.get(70) == "001"}
    assert signed_on == {"POS00001", "POS00002", "POS00003"}


@pytest.mark.parametrize("corrupt", [False, True])
def test_response_macs_are_verified(fake_switch, corrupt):
    """If loadgen runs with --mac, then the responses' MACs are checked under the TAK: right ones are
    counted by their code (00), wrong ones as bad_mac."""
    fake_switch.corrupt_response_mac = corrupt
    out = io.StringIO()
    code = loadgen.main(
        [
            "--port", str(fake_switch.port), "--terminals", "2", "--rate", "0", "--count", "20",
            "--mix", "purchase=100", "--mac", "--json",
        ],
        out=out,
    )  # fmt: skip
    summary = json.loads(out.getvalue().splitlines()[-1])
    assert code == 0 and summary["answered"] == 20
    assert summary["response_codes"] == {"bad_mac" if corrupt else "00": 20}
    assert all(m.get(64) is not None for m in fake_switch.requests if m.mti == "0200")


def test_count_bounded_max_rate_run_sends_exactly_count(fake_switch):
    """If --count 50 is given with --rate 0, then exactly 50 requests are sent and answered."""
    out = io.StringIO()
    code = loadgen.main(
        [
            "--port",
            str(fake_switch.port),
            "--terminals",
            "2",
            "--rate",
            "0",
            "--count",
            "50",
            "--in-flight",
            "8",
            "--json",
        ],
        out=out,
    )
    summary = json.loads(out.getvalue().splitlines()[-1])
    assert code == 0
    assert (summary["sent"], summary["answered"]) == (50, 50)


def test_no_switch_listening_exits_3(capsys):
    """If nothing listens on the port, then loadgen exits 3 with the connection error, not a traceback."""
    code = loadgen.main(["--port", "1", "--duration", "1", "--terminals", "2"])
    assert code == 3
    assert capsys.readouterr().err.startswith("loadgen: cannot connect")


def test_warmup_is_sent_but_not_counted(fake_switch):
    """If a 1 s run has a 1 s warm-up at 100/s, then the switch sees about 200 requests and the summary counts about 100."""
    out = io.StringIO()
    code = loadgen.main(
        [
            "--port", str(fake_switch.port), "--terminals", "2", "--rate", "100", "--duration", "1",
            "--warmup", "1", "--mix", "purchase=1", "--json",
        ],
        out=out,
    )  # fmt: skip
    summary = json.loads(out.getvalue().splitlines()[-1])
    financial = [m for m in fake_switch.requests if m.mti == "0200"]
    assert code == 0 and summary["warmup_s"] == 1.0
    assert 60 <= summary["answered"] <= 110
    assert len(financial) >= summary["answered"] + 60  # the warm-up's requests reached the switch too


def test_warmup_with_count_is_refused(capsys):
    """If --warmup is given with --count, then loadgen refuses with exit 2 and says why."""
    assert loadgen.main(["--count", "10", "--warmup", "1"]) == 2
    assert "--warmup goes with --duration" in capsys.readouterr().err


def test_mac_run_builds_every_request_with_its_mac(fake_switch):
    """If loadgen runs with --mac, then every request reaches the switch MACed and is approved (the
    fake switch answers 63 to a wrong MAC), STANs all different."""
    out = io.StringIO()
    code = loadgen.main(
        ["--port", str(fake_switch.port), "--terminals", "2", "--rate", "0", "--count", "30", "--mac",
         "--mix", "purchase=1", "--json"],
        out=out,
    )  # fmt: skip
    summary = json.loads(out.getvalue().splitlines()[-1])
    financial = [m for m in fake_switch.requests if m.mti == "0200"]
    assert code == 0 and summary["response_codes"] == {"00": 30}
    assert len(financial) == 30 and all(m.get(64) for m in financial)
    assert len({(m[41], m[11]) for m in financial}) == 30


def test_unanswered_requests_are_timeouts_and_exit_1(fake_switch, capsys):
    """If the switch never answers purchases, then loadgen counts each as a timeout after --timeout,
    names no lost connection, and exits 1."""
    fake_switch.ignore_processing_codes.add("000000")
    out = io.StringIO()
    code = loadgen.main(
        ["--port", str(fake_switch.port), "--terminals", "2", "--rate", "0", "--count", "6",
         "--in-flight", "3", "--timeout", "0.5", "--mix", "purchase=1", "--json"],
        out=out,
    )  # fmt: skip
    summary = json.loads(out.getvalue().splitlines()[-1])
    assert code == 1
    assert (summary["sent"], summary["answered"], summary["timeouts"], summary["errors"]) == (6, 0, 6, 0)
    assert "loadgen: terminal" not in capsys.readouterr().err
