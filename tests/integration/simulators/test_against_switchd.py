"""The simulators against the real switchd process (`switchd run --demo` on a fresh database)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators import loadgen, pos
from simulators.cli import run_cli
from tests.integration.test_switchd import ProcessOutput, base_env, stop_process


@pytest.fixture
def switchd_port(database_url: str, tmp_path: Path) -> Iterator[int]:
    env = base_env(SWITCH_DATABASE_URL=database_url, SWITCH_SWITCH_VAR_DIR=str(tmp_path / "var"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "switch.cli.switchd", "run", "--demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    output = ProcessOutput(proc)
    try:
        ready = output.ready(60)
        yield int(ready["terminal"].rsplit(":", 1)[1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        finally:
            stop_process(proc, output)


def pos_json(port: int, *args: str) -> tuple[int, list[dict[str, object]]]:
    out = io.StringIO()
    code = run_cli(pos.PROFILE, ["--port", str(port), "--json", *args], out=out)
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


def test_sign_on_and_echo_are_approved(switchd_port):
    """If pos-sim signs on and sends an echo to switchd, then both are answered 00."""
    code, lines = pos_json(switchd_port, "echo")
    assert code == 0
    by_type = {line["type"]: line["response_code"] for line in lines}
    assert by_type["sign_on"] == "00" and by_type["echo"] == "00"


def test_purchase_with_pin_is_approved(switchd_port):
    """If pos-sim buys for 12.34 with the demo card's PIN, then it prints 00 and exits 0."""
    code, lines = pos_json(switchd_port, "purchase", "--amount", "12.34", "--pin", "1234")
    assert code == 0
    assert lines[-1]["type"] == "purchase" and lines[-1]["response_code"] == "00"


def test_wrong_pin_is_declined(switchd_port):
    """If pos-sim sends a wrong PIN, then it prints 55 and exits 1."""
    code, lines = pos_json(switchd_port, "purchase", "--amount", "1.00", "--pin", "9999")
    assert code == 1
    assert lines[-1]["response_code"] == "55"


def test_loadgen_echo_mix_against_switchd(switchd_port):
    """If loadgen runs 2 s of echoes over 3 terminals, then every request is answered 00."""
    out = io.StringIO()
    code = loadgen.main(
        [
            "--port",
            str(switchd_port),
            "--terminals",
            "3",
            "--rate",
            "150",
            "--duration",
            "2",
            "--mix",
            "echo",
            "--json",
        ],
        out=out,
    )
    summary = json.loads(out.getvalue().splitlines()[-1])
    assert code == 0, summary
    assert summary["answered"] >= 200 and summary["response_codes"] == {"00": summary["answered"]}
