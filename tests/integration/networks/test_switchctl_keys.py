"""`switchctl keys` on a real database with the demo's in-process HSM (public test LMK): a ZMK is installed
only when the HSM's check value of it is the operator's; the listing shows check values, never keys."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import asyncpg
import pytest

from hsm.crypto.des import kcv_tdes
from hsm.keys import BDK, TPK, ZMK, KeyVault
from hsm.lmk import PASSPHRASE_ENV, VariantLmk, write_lmk_file
from specs.demo_networks import network
from tests.integration.cli_support import Run, switchctl_on

VISA_ZMK = bytes.fromhex(network("visa").zmk_hex)
VAULT = KeyVault(VariantLmk.test_lmk())
ZMK_UNDER_LMK = VAULT.wrap(VISA_ZMK, ZMK, "U")
KCV = kcv_tdes(VISA_ZMK, 6)


@pytest.fixture
def switchctl(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Run:
    secrets = (ZMK_UNDER_LMK, VISA_ZMK.hex().upper())
    return switchctl_on(database_url, monkeypatch, capsys, tmp_path, never_printed=secrets)


def _stored(database_url: str) -> list[tuple[str, str, str]]:
    """What the table holds (read with asyncpg on its own loop: the commands run trio themselves)."""

    async def read() -> list[tuple[str, str, str]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT network, zmk_under_lmk, zmk_check_value FROM network_keys ORDER BY network"
            )
        finally:
            await conn.close()
        return [(r["network"], r["zmk_under_lmk"], r["zmk_check_value"]) for r in rows]

    return asyncio.run(read())


def test_a_zmk_with_its_check_value_is_installed_and_listed(switchctl: Run, database_url: str) -> None:
    """If an operator installs a network's ZMK under the LMK with its right check value, then it is stored
    (exit 0) and `keys list` shows the check value, in text and JSON, and no key."""
    code, out, err = switchctl("keys", "zmk", "visa", "--key", ZMK_UNDER_LMK, "--kcv", KCV.lower())
    assert code == 0, err
    assert f"ZMK of visa installed, check value {KCV}" in out and "PUBLIC TEST LMK" in err
    assert _stored(database_url) == [("visa", ZMK_UNDER_LMK, KCV)]
    code, out, _ = switchctl("keys", "list")
    assert code == 0 and out.splitlines()[1].split()[:2] == ["visa", KCV]
    code, out, _ = switchctl("keys", "list", "--json")
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert (row["network"], row["zmk_check_value"], row["current_index"]) == ("visa", KCV, None)


@pytest.mark.parametrize(
    ("key", "kcv"),
    [
        (ZMK_UNDER_LMK, "000000"),  # a typo in the check value
        (VAULT.wrap(VISA_ZMK, TPK, "U"), KCV),  # the same clear key, but under the LMK as a TPK
        ("U" + "0" * 32, KCV),  # not a key this LMK made (parity)
    ],
)
def test_a_zmk_whose_check_value_the_hsm_does_not_confirm_is_refused(
    switchctl: Run, database_url: str, key: str, kcv: str
) -> None:
    """If the HSM's check value of the key as a ZMK is not the operator's (a typo, another key type, not a
    key of this LMK), then nothing is stored and the command exits 1."""
    code, _, err = switchctl("keys", "zmk", "cups", "--key", key, "--kcv", kcv)
    assert code == 1 and err.splitlines()[-1].startswith("refused:")
    assert _stored(database_url) == []


@pytest.mark.parametrize(
    "argv",
    [
        ("Visa!", "--key", ZMK_UNDER_LMK, "--kcv", KCV),
        ("visa", "--key", "U1234", "--kcv", KCV),
        ("visa", "--key", ZMK_UNDER_LMK, "--kcv", "12345"),
    ],
)
def test_malformed_arguments_are_a_usage_error(
    switchctl: Run, database_url: str, argv: tuple[str, ...]
) -> None:
    """If the network name, the key or the check value is malformed, then exit 2 and nothing is stored."""
    code, _, err = switchctl("keys", "zmk", *argv)
    assert code == 2 and err.startswith("error:")
    assert _stored(database_url) == []


def test_the_configured_lmk_is_the_one_used(
    switchctl: Run, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """If hsm.lmk_file names an LMK of the operator's, then the command's HSM holds that LMK (no test-LMK
    warning): a ZMK under it is installed, the same key under the public test LMK is refused."""
    lmk = VariantLmk.generate()
    write_lmk_file(tmp_path / "lmk.json", lmk, "a passphrase", scrypt_n=2**10)
    monkeypatch.setenv("SWITCH_HSM_LMK_FILE", str(tmp_path / "lmk.json"))
    monkeypatch.setenv(PASSPHRASE_ENV, "a passphrase")
    code, _, err = switchctl("keys", "zmk", "shetab", "--key", ZMK_UNDER_LMK, "--kcv", KCV)
    assert code == 1 and "PUBLIC TEST LMK" not in err
    own = KeyVault(lmk).wrap(VISA_ZMK, ZMK, "U")
    code, _, err = switchctl("keys", "zmk", "shetab", "--key", own, "--kcv", KCV)
    assert code == 0, err
    assert _stored(database_url) == [("shetab", own, KCV)]


BDK_CLEAR = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # the public ANSI X9.24-1 test BDK
BDK_UNDER_LMK = VAULT.wrap(BDK_CLEAR, BDK, "U")


def test_a_dukpt_key_set_is_added_once_and_listed(switchctl: Run, database_url: str) -> None:
    """If an operator adds a DUKPT key set with its BDK's right check value, then it is stored and listed
    (no key printed); adding the same id again, even with another BDK, is refused and changes nothing."""
    kcv = kcv_tdes(BDK_CLEAR, 6)
    code, out, err = switchctl(
        "keys", "bdk", "ffff987654", "--key", BDK_UNDER_LMK, "--kcv", kcv, "--description", "lab PIN pads"
    )
    assert code == 0, err
    assert f"DUKPT key set FFFF987654 added, BDK check value {kcv}" in out
    other = VAULT.wrap(VISA_ZMK, BDK, "U")
    code, _, err = switchctl("keys", "bdk", "FFFF987654", "--key", other, "--kcv", KCV)
    assert code == 1 and "exists already" in err
    code, out, _ = switchctl("keys", "list")
    assert any(
        line.split()[:2] == ["FFFF987654", "0"] and "lab PIN pads" in line for line in out.splitlines()
    )
    assert BDK_UNDER_LMK not in out and other not in out
    code, out, _ = switchctl("keys", "list", "--json")
    (row,) = [json.loads(line) for line in out.splitlines() if '"dukpt_key_set"' in line]
    assert (row["key_set_id"], row["terminals"], row["description"]) == ("FFFF987654", 0, "lab PIN pads")


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (("FFFF987655", "--key", BDK_UNDER_LMK, "--kcv", "000000"), 1),  # a typo in the check value
        (("FFFF987655", "--key", ZMK_UNDER_LMK, "--kcv", KCV), 1),  # a ZMK, not a BDK
        (("FFFF98765", "--key", BDK_UNDER_LMK, "--kcv", KCV), 2),  # 9 hex digits
        (("FFFF987655", "--key", "U" + "1" * 16, "--kcv", KCV), 2),  # not double length
    ],
)
def test_a_dukpt_key_set_the_hsm_does_not_confirm_is_refused(
    switchctl: Run, argv: tuple[str, ...], code: int
) -> None:
    """If the check value is not the HSM's, the key is not a BDK of this LMK, the id is malformed or the
    BDK not double length, then the command fails (1 refused, 2 usage) and lists no key set."""
    assert switchctl("keys", "bdk", *argv)[0] == code
    assert "no DUKPT key sets yet" in switchctl("keys", "list")[1]


def test_an_hsm_that_does_not_answer_is_an_environment_error(
    switchctl: Run, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the configured HSM is hsmd over TCP and nothing listens there, then the command says so (exit 2)
    and stores nothing."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SWITCH_HSM_MODE", "tcp")
    monkeypatch.setenv("SWITCH_HSM_PORT", str(port))
    code, _, err = switchctl("keys", "zmk", "visa", "--key", ZMK_UNDER_LMK, "--kcv", KCV)
    assert code == 2 and "the HSM did not answer" in err
    assert _stored(database_url) == []
