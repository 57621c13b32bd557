"""`switchctl terminal ...` on a real database (demo seed, in-process HSM with the public test LMK): a
terminal is added only with a TMK the HSM confirms and at a merchant that exists; no key is ever printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hsm.crypto.des import kcv_tdes
from hsm.keys import BDK, TMK, ZMK, KeyVault
from hsm.lmk import VariantLmk
from specs import demo
from tests.integration.cli_support import Run, switchctl_on

CLEAR_TMK = bytes.fromhex(demo.DEMO_TMK_HEX)
TMK_UNDER_LMK = KeyVault(VariantLmk.test_lmk()).wrap(CLEAR_TMK, TMK, "U")
KCV = kcv_tdes(CLEAR_TMK, 6)


@pytest.fixture
def switchctl(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Run:
    run = switchctl_on(
        database_url, monkeypatch, capsys, tmp_path, never_printed=(TMK_UNDER_LMK, demo.DEMO_TMK_HEX)
    )
    assert run("demo", "seed")[0] == 0
    return run


def add(run: Run, terminal_id: str = "OPS00001", *extra: str, tmk: str = TMK_UNDER_LMK, kcv: str = KCV):
    return run(
        "terminal", "add", terminal_id, "--merchant", demo.MERCHANT_ID, "--tmk", tmk, "--tmk-kcv", kcv, *extra
    )


def test_add_show_list_disable_enable(switchctl: Run) -> None:
    """If an operator adds an ATM terminal with MACs required and two allowed types, then show and list
    tell it as such (TMK set, no working keys yet), a second add of the id is refused, and disable/enable
    change its state."""
    code, out, err = add(
        switchctl, "OPS00001", "--kind", "atm", "--mac-required", "--allow", "withdrawal,balance"
    )
    assert code == 0, err
    assert f"terminal OPS00001 added at {demo.MERCHANT_ID} (atm, TMK {KCV})" in out
    code, out, _ = switchctl("terminal", "show", "OPS00001")
    assert code == 0
    assert "kind        atm" in out and "state       active" in out and "MAC         required" in out
    assert "allowed     balance, withdrawal" in out and "TMK set, TPK not set, TAK not set" in out
    code, out, _ = switchctl("terminal", "list", "--merchant", demo.MERCHANT_ID)
    assert code == 0 and any(line.startswith("OPS00001") and " M" in line for line in out.splitlines())
    assert any(line.startswith(demo.POS_TERMINALS[0]) for line in out.splitlines())  # the demo's own
    code, _, err = add(switchctl, "OPS00001")
    assert code == 1 and "exists already" in err
    assert switchctl("terminal", "disable", "OPS00001")[0] == 0
    assert "state       disabled" in switchctl("terminal", "show", "OPS00001")[1]
    assert switchctl("terminal", "enable", "OPS00001")[0] == 0
    assert "state       active" in switchctl("terminal", "show", "OPS00001")[1]


@pytest.mark.parametrize(
    ("argv", "tmk", "kcv", "message"),
    [
        ((), TMK_UNDER_LMK, "000000", "check value is"),
        (
            (),
            KeyVault(VariantLmk.test_lmk()).wrap(CLEAR_TMK, ZMK, "U"),
            KCV,
            "does not take that key as a TMK",
        ),  # a ZMK
        ((), "U" + "0" * 32, KCV, "does not take that key as a TMK"),  # not a key of this LMK (parity)
        (("--allow", "purchase,teleport"), TMK_UNDER_LMK, KCV, "unknown transaction type(s): teleport"),
        (("--dukpt-key-set", "FFFF9876543210"), TMK_UNDER_LMK, KCV, "needs both"),
        (
            ("--dukpt-key-set", "ABCDEF0123", "--dukpt-device", "7"),
            TMK_UNDER_LMK,
            KCV,
            "no such DUKPT key set",
        ),
    ],
)
def test_refused_adds_store_nothing(
    switchctl: Run, argv: tuple[str, ...], tmk: str, kcv: str, message: str
) -> None:
    """If the TMK's check value is not the HSM's (a typo), the key is not a TMK of this LMK (a ZMK, or no
    key of it), a transaction type is unknown, or the DUKPT PIN pad is half given or names no key set,
    then exit 1 and no terminal."""
    code, _, err = add(switchctl, "OPS00002", *argv, tmk=tmk, kcv=kcv)
    assert code == 1 and message in err
    assert switchctl("terminal", "show", "OPS00002")[0] == 1


def test_unknown_merchant_and_terminal_are_refused(switchctl: Run) -> None:
    """If the merchant does not exist, the id is not 8 characters, or the terminal to change is unknown,
    then exit 1 and nothing changes."""
    code, _, err = switchctl(
        "terminal",
        "add",
        "OPS00003",
        "--merchant",
        "NOSUCHMERCHANT",
        "--tmk",
        TMK_UNDER_LMK,
        "--tmk-kcv",
        KCV,
    )
    assert code == 1 and "no merchant 'NOSUCHMERCHANT'" in err
    assert add(switchctl, "OPS0003")[0] == 1
    code, _, err = switchctl("terminal", "disable", "NOSUCH01")
    assert code == 1 and "does not exist" in err


def test_a_dukpt_pin_pad_names_a_key_set_the_operator_added(switchctl: Run) -> None:
    """If an operator adds a DUKPT key set and then a terminal naming it with a device id, then the
    terminal shows it; a second terminal with the same key set and device id is refused."""
    bdk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    under_lmk = KeyVault(VariantLmk.test_lmk()).wrap(bdk, BDK, "U")
    assert switchctl("keys", "bdk", "ABCDEF0123", "--key", under_lmk, "--kcv", kcv_tdes(bdk, 6))[0] == 0
    assert add(switchctl, "OPS00004", "--dukpt-key-set", "abcdef0123", "--dukpt-device", "7")[0] == 0
    assert "DUKPT key set ABCDEF0123, device 7" in switchctl("terminal", "show", "OPS00004")[1]
    code, _, err = add(switchctl, "OPS00005", "--dukpt-key-set", "ABCDEF0123", "--dukpt-device", "7")
    assert code == 1 and "another terminal has that DUKPT key set and device id" in err
    assert "1" in [
        line.split()[1] for line in switchctl("keys", "list")[1].splitlines() if line.startswith("ABCDEF0123")
    ]


def merchant_lines(run: Run) -> dict[str, str]:
    """`merchant list`'s lines by merchant id."""
    code, out, _ = run("merchant", "list")
    assert code == 0
    return {line.split()[0]: line for line in out.splitlines()[1:-1]}


def test_merchants_are_added_with_their_settlement_account_and_listed(switchctl: Run) -> None:
    """If an operator adds a merchant on a new ledger account, a second shop of the chain on the same
    account, then both are listed (the demo's too); an account that is no merchant's (the bank's funding
    account) or in another currency is refused, as is a taken id; disable and enable work."""
    code, out, err = switchctl(
        "merchant", "add", "SHOP1", "--name", "Chain shop 1", "--settlement-account", "9000001"
    )
    assert code == 0, err
    assert "merchant SHOP1 added, settling into a new ledger account 9000001 (840)" in out
    code, out, _ = switchctl(
        "merchant", "add", "SHOP2", "--name", "Chain shop 2", "--settlement-account", "9000001"
    )
    assert code == 0 and "the shared ledger account 9000001" in out
    for argv, message in (
        (("SHOP3", "--name", "x", "--settlement-account", "1"), "is not a merchant's settlement account"),
        (("SHOP3", "--name", "x", "--settlement-account", "9000001", "--currency", "978"), "in 978"),
        (("SHOP1", "--name", "again", "--settlement-account", "9000002"), "exists already"),
        (("SHOP3", "--name", "x", "--settlement-account", "9000003", "--mcc", "12"), "4 digits"),
    ):
        code, _, err = switchctl("merchant", "add", *argv)
        assert code == 1 and message in err, err
    lines = merchant_lines(switchctl)
    assert set(lines) >= {"SHOP1", "SHOP2", demo.MERCHANT_ID} and "SHOP3" not in lines
    assert "9000001 840" in lines["SHOP2"] and "Chain shop 2" in lines["SHOP2"]
    assert switchctl("merchant", "disable", "SHOP1")[0] == 0
    assert merchant_lines(switchctl)["SHOP1"].split()[1] == "disabled"
    assert switchctl("merchant", "enable", "SHOP1")[0] == 0
    assert switchctl("merchant", "disable", "NOSHOP")[0] == 1
