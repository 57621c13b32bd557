"""pos-sim and atm-sim against the fake switch over real TCP: sessions, scripts, keys, MACs, PINs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulators import atm, pos
from simulators.cli import Profile, run_cli
from specs import demo
from tests.integration.simulators.fake_switch import FakeSwitch

REPO = Path(__file__).resolve().parents[3]
FIRST_PAN = demo.demo_pan(demo.DEBIT_BIN, 1)


def run(
    profile: Profile, fake: FakeSwitch, *args: str, pins: list[str] | None = None
) -> tuple[int, list[dict[str, Any]]]:
    out = io.StringIO()
    prompts = list(pins or [])

    def read_pin(prompt: str) -> str:
        return prompts.pop(0)

    code = run_cli(profile, ["--port", str(fake.port), "--json", *args], read_pin=read_pin, out=out)
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


def test_purchase_signs_on_exchanges_keys_and_is_approved(fake_switch):
    """If pos-sim sends a purchase, then it signs on, exchanges keys, and prints an approval with RRN and auth code."""
    code, lines = run(pos.PROFILE, fake_switch, "purchase", "--amount", "12.34")
    assert code == 0
    assert [line["type"] for line in lines] == ["sign_on", "key_exchange", "purchase"]
    purchase = lines[-1]
    assert purchase["response_code"] == "00" and purchase["auth_code"] and purchase["rrn"]
    assert purchase["amount_minor"] == 1234
    sent = fake_switch.requests[-1]
    assert (sent.mti, sent[3], sent[4], sent[41], sent[42]) == (
        "0200",
        "000000",
        "000000001234",
        demo.POS_TERMINALS[0],
        demo.MERCHANT_ID,
    )


def test_output_never_shows_the_clear_pan_or_pin(fake_switch):
    """If a PIN purchase is printed as JSON, then only the masked PAN appears and never the PIN."""
    out = io.StringIO()
    code = run_cli(
        pos.PROFILE,
        ["--port", str(fake_switch.port), "--json", "--amount", "5", "--pin", "1234", "--stan", "1"],
        out=out,
    )
    text = out.getvalue()
    assert code == 0
    assert FIRST_PAN not in text
    assert f"{FIRST_PAN[:6]}******{FIRST_PAN[-4:]}" in text
    # The clock's fields (transmission time MMDDhhmmss, latency) may hold the digits 1234 by chance, as at
    # 23:41:23 or 12:34: look for the PIN in everything else.
    clock = {"transmission", "latency_ms"}
    rest = [
        json.dumps({k: v for k, v in json.loads(line).items() if k not in clock})
        for line in text.splitlines()
    ]
    assert len(rest) == 3 and all("1234" not in line for line in rest)
    pin_block = fake_switch.requests[-1][52]
    assert pin_block not in text and pin_block.lower() not in text


def test_wrong_prompted_pin_is_declined_55(fake_switch):
    """If the prompted PIN is wrong, then the switch's 55 is shown and the exit status is 1."""
    code, lines = run(atm.PROFILE, fake_switch, "withdrawal", "--amount", "20", pins=["9999"])
    assert code == 1
    assert lines[-1]["response_code"] == "55" and lines[-1]["meaning"] == "incorrect PIN"


def test_scripted_session_refers_to_earlier_results(fake_switch, tmp_path):
    """If a script voids, completes and reverses earlier steps, then each refers to the right original."""
    script = tmp_path / "session.txt"
    script.write_text(
        "# a day at the shop\n"
        "purchase amount=10.00 as=sale\n"
        "void of=sale\n"
        "preauth amount=50.00 pin=1234 as=hold\n"
        "completion of=hold amount=45.00\n"
        "balance pin=1234\n"
        "cashback amount=10.00 cashback=5.00\n"
        "refund amount=1.00\n"
        "withdrawal amount=100.00 pin=1234 as=cash\n"
        "reversal of=cash actual=40.00\n"
        "cancel of=hold\n"
        "transfer amount=3.00 from=10 to=20 pin=1234\n"
        "load amount=20.00 card=" + demo.demo_pan(demo.PREPAID_BIN, 1) + "\n"
        "pin_change pin=1234 new_pin=4321\n"
        "echo\n"
    )
    code, lines = run(pos.PROFILE, fake_switch, "--script", str(script))
    assert code == 0, lines
    assert [line["response_code"] for line in lines] == ["00"] * 16
    by_step = {line.get("step"): line for line in lines}
    requests = fake_switch.requests[2:]  # after sign-on and key exchange
    sale, void, hold, completion = requests[0], requests[1], requests[2], requests[3]
    assert void[3] == "020000" and void.get(37) is None and by_step["sale"]["rrn"]
    assert void[90][:20] == sale.mti + sale[11] + sale[7]
    assert completion.mti == "0220" and completion[4] == "000000004500"
    assert completion[90][:20] == hold.mti + hold[11] + hold[7]
    reversal = requests[8]
    assert reversal.mti == "0400" and reversal[3] == "010000"
    assert reversal[95] == "000000004000" * 2 + "0" * 18
    assert "balances" in lines[6]
    assert requests[5][4] == "000000001500" and requests[5][54] == "0040840C000000000500"
    assert requests[10][3] == "401020"
    assert requests[11][3] == "210000"
    assert requests[12][3] == "920000" and len(requests[12][120]) == 16


def test_bad_key_check_value_is_a_clear_error(fake_switch, capsys):
    """If the key exchange returns a key that fails its KCV, then pos-sim stops with a message naming it."""
    fake_switch.corrupt_kcv = True
    code, _ = run(pos.PROFILE, fake_switch, "echo")
    assert code == 2
    assert "does not match its check value" in capsys.readouterr().err


def test_mac_is_sent_and_the_response_mac_verified(fake_switch):
    """If --mac is given, then requests carry a MAC the switch accepts and the response MAC verifies."""
    code, lines = run(pos.PROFILE, fake_switch, "--mac", "--amount", "2.00")
    assert code == 0
    assert fake_switch.requests[-1].get(64) is not None
    assert lines[-1]["mac_ok"] is True


def test_declined_key_exchange_still_allows_non_pin_transactions(fake_switch, capsys):
    """If the switch declines the key exchange, then a purchase without PIN still goes through and a warning is shown."""
    fake_switch.key_exchange_code = "40"
    code, lines = run(pos.PROFILE, fake_switch, "--amount", "1.00")
    assert code == 0 and lines[-1]["response_code"] == "00"
    assert "key exchange not approved" in capsys.readouterr().err


def test_void_by_rrn_from_the_command_line(fake_switch):
    """If a void names an unknown RRN, then the switch's 25 is printed."""
    code, lines = run(pos.PROFILE, fake_switch, "void", "--rrn", "999999999999")
    assert code == 1 and lines[-1]["response_code"] == "25"


def test_no_switch_listening_exits_3(capsys):
    """If nothing listens on the port, then pos-sim exits 3 with a connection message."""
    code = pos.main(["--port", "1", "echo"])
    assert code == 3
    assert "cannot connect" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["simulators.pos", "simulators.atm"])
def test_runs_as_a_module(fake_switch, module):
    """If the simulator runs as `python -m`, then it prints a human result line and exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", module, "balance", "--pin", "1234", "--port", str(fake_switch.port)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "balance" in proc.stdout and "00 approved" in proc.stdout and "available" in proc.stdout


def test_script_goes_on_after_a_timeout_and_reverses_it(fake_switch, tmp_path):
    """If a withdrawal gets no answer, then the script goes on to reverse it (field 90) and exits 3."""
    fake_switch.ignore_processing_codes = {"011000"}
    script = tmp_path / "atm.json"
    script.write_text('[{"type": "withdrawal", "amount": 100, "pin": "1234"}, {"type": "reversal"}]')
    code, lines = run(atm.PROFILE, fake_switch, "--timeout", "0.5", "--script", str(script))
    assert code == 3
    assert [line["response_code"] for line in lines[2:]] == [None, "00"]
    withdrawal, reversal = fake_switch.requests[-2:]
    assert reversal.mti == "0400" and reversal[90][:20] == withdrawal.mti + withdrawal[11] + withdrawal[7]
