"""`switchctl routes|standin` end to end on a real database, over the demo routing data: list, add,
remove, explain, stand-in rules; bad input is refused with exit 2, refusals with exit 1; no output ever
holds a clear PAN."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from specs.demo import demo_pan
from switch.adapters.postgres.db import Database, DatabaseSettings
from switch.cli import routes_cmd
from switch.cli.demo_routes import seed_demo_routes
from switch.cli.switchctl import build_parser
from switch.domain.model import Pan

VISA_PAN = demo_pan("476173", 7)
SHETAB_PAN = demo_pan("621986", 7)
OTHER_VISA_PAN = demo_pan("455555", 7)  # only the broad 4 range holds it
UNKNOWN_PAN = demo_pan("300000", 7)
PANS = (VISA_PAN, SHETAB_PAN, OTHER_VISA_PAN, UNKNOWN_PAN)
Run = Callable[..., tuple[int, str, str]]


def _standin_set(network: str, *, per: str, daily: str) -> tuple[str, ...]:
    return ("standin", "set", network, "--currency", "840", "--per-transaction", per, "--daily-amount", daily,
            "--daily-count", "1")  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchctl")
    parser.add_argument("--config")
    sub = parser.add_subparsers(dest="command", required=True)
    routes_cmd.register(sub)
    return parser


@pytest.fixture
def switchctl(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Run:
    """Runs switchctl commands on this test's database, seeded with the demo routing data."""
    monkeypatch.setenv("SWITCH_DATABASE_URL", database_url)
    monkeypatch.delenv("SWITCH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no switch.toml here: defaults plus the override

    async def seed() -> None:
        db = Database(DatabaseSettings(dsn=database_url, pool_size_min=1, pool_size_max=1))
        await db.open()
        try:
            await seed_demo_routes(db)
        finally:
            await db.close()

    trio.run(seed)

    def run(*argv: str) -> tuple[int, str, str]:
        args = _parser().parse_args(list(argv))
        code = args.func(args)
        out, err = capsys.readouterr()
        for text in (out, err):
            for pan in PANS:
                assert pan not in text and pan[6:] not in text
        return code, out, err

    return run


def test_switchctl_has_the_routes_and_standin_commands():
    """If switchctl's parser is built, then `routes explain` and `standin list` are among its commands."""
    parser = build_parser()
    assert parser.parse_args(["routes", "explain", VISA_PAN, "1"]).func is not None
    assert parser.parse_args(["standin", "list"]).func is not None


def test_list_shows_the_demo_routing_data(switchctl: Run) -> None:
    """If the demo data is seeded, then list shows its networks, ranges, exclude rules and stand-in rules."""
    code, out, _ = switchctl("routes", "list")
    assert code == 0
    assert "networks (3)" in out and "shetab" in out
    assert "476173" in out and "400000-499999" in out
    assert "exclude cups (cards 621986)" in out
    assert "stand-in rules (5)" in out and "visa cards *, currency 840: up to 50.00 per transaction" in out


def test_explain_a_specific_bin_takes_its_network(switchctl: Run) -> None:
    """If a Visa demo card is explained, then the route is visa by its BIN range, with a masked PAN."""
    code, out, _ = switchctl("routes", "explain", VISA_PAN, "25.00")
    assert code == 0
    assert f"card {Pan(VISA_PAN).masked}, amount 25.00, currency 840" in out
    assert "visa       chosen    BIN range" in out and "476173 priority 10" in out
    assert out.rstrip().endswith("route: visa (fallbacks: none)")


def test_explain_with_the_link_down_says_there_is_no_route(switchctl: Run) -> None:
    """If Shetab's link is taken as down, then a Shetab card has no route (CUPS is excluded) but stand-in."""
    code, out, _ = switchctl(
        "routes", "explain", SHETAB_PAN, "25.00", "--currency", "364", "--down", "shetab"
    )
    assert code == 0
    assert "shetab     link down" in out and "excluded by rule" in out
    assert "stand-in   note      rule #" in out and "within its per-transaction maximum" in out
    assert "route: none - the link of every eligible network is down" in out


def test_explain_unknown_bin(switchctl: Run) -> None:
    """If no range holds the card, then explain says there is no such issuer."""
    code, out, _ = switchctl("routes", "explain", UNKNOWN_PAN, "1")
    assert code == 0 and "route: none - no BIN range holds the card" in out


def test_added_rules_change_the_explained_route_and_removal_restores_it(switchctl: Run) -> None:
    """If an operator forces cups for a BIN, then explain routes there; once removed, back to visa."""
    code, out, _ = switchctl("routes", "add", "force", "cups", "--bins", "476173", "--note", "test")
    assert code == 0 and out.startswith("rule #") and "force cups (cards 476173) - test" in out
    rule_id = out.split()[1].lstrip("#").rstrip(":")
    _, out, _ = switchctl("routes", "explain", VISA_PAN, "25.00")
    assert "route: cups" in out and f"rule #{rule_id} forces cups" in out
    code, _, _ = switchctl("routes", "remove", "rule", rule_id)
    assert code == 0
    _, out, _ = switchctl("routes", "explain", VISA_PAN, "25.00")
    assert "route: visa" in out


def test_limit_rule_skips_to_the_fallback_range(switchctl: Run) -> None:
    """If a limit caps visa for a BIN and a cups range also holds it, then a larger amount goes to cups."""
    assert switchctl("routes", "add", "range", "cups", "455555", "--priority", "-1")[0] == 0
    code, _, _ = switchctl(
        "routes", "add", "limit", "visa", "--bins", "455555", "--currency", "840", "--max", "100"
    )
    assert code == 0
    _, out, _ = switchctl("routes", "explain", OTHER_VISA_PAN, "99.99")
    assert "route: visa (fallbacks: cups)" in out
    _, out, _ = switchctl("routes", "explain", OTHER_VISA_PAN, "100.01")
    assert "above the maximum 100.00" in out and "route: cups" in out


def test_fee_rule_prefers_the_cheaper_route(switchctl: Run) -> None:
    """If visa has a fee and cups also holds the BIN, then explain takes cups and shows the fee."""
    switchctl("routes", "add", "range", "cups", "455555", "--priority", "-1")
    code, out, _ = switchctl(
        "routes", "add", "fee", "visa", "--currency", "840", "--fixed", "0.10", "--bps", "20"
    )
    assert code == 0 and "fee on visa 0.10 + 20 bps" in out
    _, out, _ = switchctl("routes", "explain", OTHER_VISA_PAN, "50.00")
    assert "fee 0.20 (rule #" in out and "route: cups (fallbacks: visa)" in out


def test_network_and_range_can_be_added_and_removed(switchctl: Run) -> None:
    """If an operator adds a network and its range, then explain routes there; removing both is allowed."""
    assert switchctl("routes", "add", "network", "jcb", "--description", "JCB test")[0] == 0
    code, out, _ = switchctl("routes", "add", "range", "jcb", "300000-309999")
    assert code == 0 and "300000-309999 -> jcb" in out
    range_id = out.split()[1].lstrip("#").rstrip(":")
    assert "route: jcb" in switchctl("routes", "explain", UNKNOWN_PAN, "1")[1]
    assert switchctl("routes", "remove", "network", "jcb")[0] == 1  # still has its range
    assert switchctl("routes", "remove", "range", range_id)[0] == 0
    assert switchctl("routes", "remove", "network", "jcb")[0] == 0


def test_standin_set_list_remove(switchctl: Run) -> None:
    """If an operator sets, lists and removes a stand-in rule, then each step shows in the list."""
    code, out, _ = switchctl(
        "standin", "set", "visa", "--bins", "476173", "--currency", "840",
        "--per-transaction", "20", "--daily-amount", "40", "--daily-count", "2",
    )  # fmt: skip
    assert code == 0 and "visa cards 476173, currency 840: up to 20.00 per transaction, 40.00 and 2" in out
    standin_id = out.split()[1].lstrip("#").rstrip(":")
    _, out, _ = switchctl("routes", "explain", VISA_PAN, "25.00")
    assert f"rule #{standin_id}:" in out and "not within its per-transaction maximum" in out
    assert "stand-in rules (6)" in switchctl("standin", "list")[1]
    assert switchctl("standin", "remove", standin_id)[0] == 0
    assert switchctl("standin", "remove", standin_id)[0] == 1
    assert "stand-in rules (5)" in switchctl("standin", "list")[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("routes", "add", "range", "visa", "4761"), "6 to 12 digits"),
        (("routes", "add", "range", "visa", "499999-400000"), "lower end"),
        (("routes", "add", "exclude", "visa", "--bins", "4x"), "digits only"),
        (("routes", "add", "limit", "visa", "--currency", "840", "--max", "-5"), "0 or more"),
        (("routes", "add", "limit", "visa", "--currency", "840"), "--min, --max or both"),
        (("routes", "add", "limit", "visa", "--currency", "840", "--min", "5", "--max", "1"), "minimum"),
        (("routes", "add", "fee", "visa", "--currency", "840", "--fixed", "0.001"), "2 decimals"),
        (("routes", "add", "network", "Bad-Name"), "lower-case"),
        (("routes", "explain", "12ab", "1"), "12 to 19 digits"),
        (("routes", "explain", VISA_PAN[:-1] + str((int(VISA_PAN[-1]) + 1) % 10), "1"), "Luhn"),
        (("routes", "explain", VISA_PAN, "-1"), "0 or more"),
        (("routes", "explain", VISA_PAN, "1", "--currency", "0"), "ISO 4217"),
        (_standin_set("visa", per="0", daily="1"), "greater than 0"),
        (_standin_set("visa", per="5", daily="1"), "not above the daily"),
    ],
)
def test_malformed_input_exits_2_with_a_clear_message(
    switchctl: Run, argv: tuple[str, ...], message: str
) -> None:
    """If a BIN, amount, currency, name or PAN is malformed, then exit 2 with a message naming the problem."""
    code, out, err = switchctl(*argv)
    assert code == 2 and message in err and out == ""


@pytest.mark.parametrize(
    "argv",
    [
        ("routes", "add", "range", "jcb", "352800"),
        ("routes", "add", "exclude", "jcb"),
        _standin_set("jcb", per="1", daily="1"),
        ("routes", "explain", VISA_PAN, "1", "--down", "jcb"),
        ("routes", "remove", "rule", "999"),
        ("routes", "remove", "range", "999"),
        ("routes", "remove", "network", "jcb"),
        ("routes", "add", "network", "visa"),
        ("routes", "add", "range", "visa", "476173"),
    ],
)
def test_refusals_exit_1(switchctl: Run, argv: tuple[str, ...]) -> None:
    """If a command names an unknown network or id, or adds what exists, then exit 1 and nothing changes."""
    _, before, _ = switchctl("routes", "list")
    code, _, err = switchctl(*argv)
    assert code == 1 and err.startswith("error: ")
    assert switchctl("routes", "list")[1] == before


def test_unmigrated_database_is_reported(
    empty_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """If the database has no routing tables, then the command exits 2 and says to migrate."""
    monkeypatch.setenv("SWITCH_DATABASE_URL", empty_database_url)
    monkeypatch.delenv("SWITCH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    args = _parser().parse_args(["routes", "list"])
    with pytest.raises(SystemExit) as exited:
        args.func(args)
    assert exited.value.code == 2 and "switchctl db migrate" in capsys.readouterr().err
