"""The switchctl issuing commands end to end on a real database: seed, show, block, lists, top-up; no
output ever holds a clear PAN, and the test LMK is announced."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from specs import demo
from switch.cli import cards_cmd
from switch.domain.model import Pan

DEBIT_PAN = demo.demo_pan(demo.DEBIT_BIN, 5)
PREPAID_PAN = demo.demo_pan(demo.PREPAID_BIN, 5)
DEBIT_MASKED = Pan(DEBIT_PAN).masked
Run = Callable[..., tuple[int, str, str]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchctl")
    parser.add_argument("--config")
    sub = parser.add_subparsers(dest="command", required=True)
    cards_cmd.register(sub)
    return parser


@pytest.fixture
def switchctl(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Run:
    monkeypatch.setenv("SWITCH_DATABASE_URL", database_url)
    monkeypatch.delenv("SWITCH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no switch.toml here: defaults plus the override

    def run(*argv: str) -> tuple[int, str, str]:
        args = _parser().parse_args(list(argv))
        code = args.func(args)
        out, err = capsys.readouterr()
        for text in (out, err):
            assert DEBIT_PAN not in text and PREPAID_PAN not in text
        assert "PUBLIC TEST LMK" in err
        return code, out, err

    return run


def test_issuing_commands_end_to_end(switchctl: Run) -> None:
    """If an operator seeds, shows, blocks, lists and tops up, then each command works and masks PANs."""
    run = switchctl
    code, out, _ = run("demo", "seed")
    assert code == 0 and "1000 debit cards, 200 prepaid cards" in out
    code, out, _ = run("demo", "seed")
    assert code == 0 and "already present" in out

    code, out, _ = run("card", "show", DEBIT_PAN)
    assert code == 0
    assert DEBIT_MASKED in out and "active" in out and "Demo debit" in out
    assert "available 10000.00" in out

    code, out, _ = run("card", "block", DEBIT_PAN)
    assert code == 0 and "blocked" in out
    code, out, _ = run("card", "show", DEBIT_PAN)
    assert "status      blocked" in out
    code, out, _ = run("card", "unblock", DEBIT_PAN)
    assert code == 0 and "active" in out

    code, out, _ = run("hotlist", "add", DEBIT_PAN, "--reason", "lost in test", "--response", "62")
    assert code == 0
    code, out, _ = run("hotlist", "list")
    assert f"{DEBIT_MASKED}  62" in out and "2 hot-listed card(s)" in out
    code, _, _ = run("hotlist", "remove", DEBIT_PAN)
    assert code == 0
    code, _, err = run("hotlist", "remove", DEBIT_PAN)
    assert code == 1 and "not on the hot list" in err

    code, out, _ = run("blacklist", "add", "pan", DEBIT_PAN)
    assert code == 0 and DEBIT_MASKED in out
    code, _, _ = run("blacklist", "add", "bin", "990003")
    code, out, _ = run("blacklist", "list")
    assert DEBIT_MASKED in out and "990003" in out and "2 black list entries" in out
    code, _, _ = run("blacklist", "remove", "pan", DEBIT_PAN)
    assert code == 0

    code, out, _ = run("prepaid", "topup", PREPAID_PAN, "25.50")
    assert code == 0 and "available 525.50" in out
    code, _, err = run("prepaid", "topup", DEBIT_PAN, "1")
    assert code == 1 and "no prepaid account" in err

    # A top-up run again with its id loads once; the same id for another amount is refused.
    code, out, _ = run("prepaid", "topup", PREPAID_PAN, "10", "--id", "order-77")
    assert code == 0 and "topped up" in out and "available 535.50" in out and "top-up id order-77" in out
    code, out, _ = run("prepaid", "topup", PREPAID_PAN, "10", "--id", "order-77")
    assert code == 0 and "already topped up" in out and "available 535.50" in out
    code, _, err = run("prepaid", "topup", PREPAID_PAN, "11", "--id", "order-77")
    assert code == 1 and "used for a different top-up" in err
    code, _, err = run("prepaid", "topup", PREPAID_PAN, "1", "--id", "no spaces")
    assert code == 1 and "--id must be" in err
    code, out, _ = run("card", "show", PREPAID_PAN)
    assert "535.50" in out


def test_bad_input_is_refused_without_echoing_the_pan(switchctl: Run) -> None:
    """If the PAN fails Luhn, is unknown, or the amount is malformed, then exit 1 with a safe message."""
    run = switchctl
    bad_luhn = DEBIT_PAN[:-1] + str((int(DEBIT_PAN[-1]) + 1) % 10)
    code, _, err = run("card", "show", bad_luhn)
    assert code == 1 and "Luhn" in err and bad_luhn not in err
    code, _, err = run("card", "show", demo.demo_pan("990009", 1))
    assert code == 1 and "no card 990009******" in err
    code, _, err = run("prepaid", "topup", PREPAID_PAN, "1.234")
    assert code == 1 and "2 decimals" in err
    code, _, err = run("card", "show", "12ab")
    assert code == 1 and "12 to 19 digits" in err
