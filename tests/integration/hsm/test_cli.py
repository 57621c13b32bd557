"""The hsmd command line: LMK creation, key utilities, and the daemon itself (a real subprocess), whose
log output must never contain a clear key, PIN, PIN block or PAN."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import trio

from hsm import cli
from hsm.client import HsmClient, TcpTransport
from hsm.crypto.des import with_odd_parity
from hsm.keys import ZMK, ZPK
from hsm.lmk import PASSPHRASE_ENV
from tests.unit.hsm import cases, support

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _printed(out: str, label: str) -> str:
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith(label + ": "))


def test_init_creates_an_encrypted_lmk_and_refuses_to_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """If hsmd init runs twice on the same file, then the first creates it and the second refuses without --force."""
    monkeypatch.setenv(PASSPHRASE_ENV, "operator passphrase")
    path = tmp_path / "lmk.json"
    code, out, _ = _run(["init", "--lmk-file", str(path)], capsys)
    assert code == 0
    assert path.exists()
    assert "check value" in out
    code, _, err = _run(["init", "--lmk-file", str(path)], capsys)
    assert code == 2
    assert "--force" in err


def test_key_utilities_work_with_a_created_lmk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """If a key is generated under a fresh LMK, then kcv on the printed key gives the printed check value."""
    monkeypatch.setenv(PASSPHRASE_ENV, "operator passphrase")
    path = tmp_path / "lmk.json"
    assert _run(["init", "--lmk-file", str(path)], capsys)[0] == 0
    code, out, _ = _run(["key", "generate", "--type", "001", "--lmk-file", str(path)], capsys)
    assert code == 0
    key, check_value = _printed(out, "key (LMK)"), _printed(out, "check value")
    code, out, _ = _run(["key", "kcv", "--type", "001", key, "--lmk-file", str(path)], capsys)
    assert (code, _printed(out, "check value")) == (0, check_value)


def test_wrong_passphrase_is_an_operator_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """If the passphrase is wrong, then hsmd exits 2 with a message and no traceback."""
    path = tmp_path / "lmk.json"
    monkeypatch.setenv(PASSPHRASE_ENV, "right")
    _run(["init", "--lmk-file", str(path)], capsys)
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    code, _, err = _run(["key", "generate", "--type", "001", "--lmk-file", str(path)], capsys)
    assert code == 2
    assert "passphrase" in err


def test_test_lmk_is_announced_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    """If --test-lmk is used, then a warning log line says the LMK is public and for testing only."""
    code, out, _ = _run(["key", "generate", "--type", "002", "--test-lmk"], capsys)
    assert code == 0
    warnings = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(w["event"] == "hsmd_test_lmk_loaded" and w["level"] == "warning" for w in warnings)
    assert "testing only" in out


def test_import_components_prints_only_encrypted_key_and_check_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """If a ZMK is formed from two prompted components, then output holds its LMK form and KCV, never a component."""
    components = ["0123456789ABCDEFFEDCBA9876543210", "1C1C1C1C1C1C1C1C2323232323232323"]
    answers = iter(components)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    code, out, _ = _run(["key", "import-components", "--type", "000", "--test-lmk"], capsys)
    assert code == 0
    combined = with_odd_parity(
        bytes(a ^ b for a, b in zip(*(bytes.fromhex(c) for c in components), strict=True))
    )
    key = _printed(out, "key (LMK)")
    assert support.vault().unwrap(key, ZMK).clear == combined
    for component in [*components, combined.hex().upper()]:
        assert component not in out.upper()


def test_tr31_wrap_and_unwrap_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    """If a ZPK is exported as a TR-31 block under the ZMK and imported back, then the check value is unchanged."""
    code, out, _ = _run(
        ["key", "tr31-wrap", "--kbpk", cases.W_ZMK, "--key", cases.W_ZPK, "--key-type", "001", "--test-lmk"],
        capsys,
    )
    assert code == 0
    block, check_value = _printed(out, "key block"), _printed(out, "check value")
    assert block.startswith("B")
    code, out, _ = _run(
        ["key", "tr31-unwrap", "--kbpk", cases.W_ZMK, "--block", block, "--key-type", "001", "--test-lmk"],
        capsys,
    )
    assert code == 0
    assert _printed(out, "check value") == check_value
    assert support.vault().unwrap(_printed(out, "key (LMK)"), ZPK).clear == support.CLEAR_ZPK


class _Lines:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""
        self.seen: list[str] = []

    async def next_line(self) -> str | None:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        self.seen.append(line.decode())
        return self.seen[-1]


_SECRETS = [
    *(
        value.hex().upper()
        for name, value in vars(support).items()
        if name.startswith("CLEAR_") and isinstance(value, bytes)
    ),
    support.PAN,
    support.ACCOUNT,
    cases.CVV_PAN,
    cases.TPK_BLOCK,
    cases.ZPK_BLOCK,
    cases.DUKPT_BLOCK,
    cases.PIN_UNDER_LMK,
    cases.W_TPK,
    cases.W_ZPK,
    cases.MAC_ALG3,
]
_COMMAND_LINE_KEYS = {"event", "level", "timestamp", "command", "error_code", "duration_us"}


async def test_daemon_serves_all_commands_and_logs_no_secrets() -> None:
    """If hsmd runs every command case and is stopped by SIGTERM, then it exits 0 and its log has no secrets."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "hsm.cli", "run", "--test-lmk", "--port", "0", "--host", "127.0.0.1"]
    process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE, env=env, cwd=REPO_ROOT)
    assert process.stdout is not None
    lines = _Lines(process.stdout)
    try:
        with trio.fail_after(20):
            port = None
            while port is None:
                line = await lines.next_line()
                assert line is not None, "hsmd exited before listening"
                record = json.loads(line)
                if record["event"] == "hsmd_listening":
                    port = record["ports"][0]
            client = HsmClient(TcpTransport("127.0.0.1", port))
            for case in cases.CASES:
                error, _ = await client.call(case.command, case.fields)
                assert error == case.error, case.id
            await client.aclose()
            process.send_signal(signal.SIGTERM)
            while await lines.next_line() is not None:
                pass
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log_text = "\n".join(lines.seen)
    records = [json.loads(line) for line in lines.seen]
    command_records = [r for r in records if r["event"] == "hsm_command"]
    assert len(command_records) == len(cases.CASES)
    assert all(set(r) == _COMMAND_LINE_KEYS for r in command_records)
    assert records[-1]["event"] == "hsmd_stopped"
    assert any(r["event"] == "hsmd_test_lmk_loaded" for r in records)
    for secret in _SECRETS:
        assert secret.upper() not in log_text.upper()
    assert all(cases.PIN not in (str(v) for v in r.values()) for r in records)
