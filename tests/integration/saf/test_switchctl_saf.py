"""`switchctl saf list|retry|purge` on a real database: masked PANs only, retry and purge change the queue,
and a purge is logged with its reason."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from hsm.client import HsmClient, InProcessTransport
from hsm.host.processor import HostCommandProcessor
from hsm.keys import KeyVault
from hsm.lmk import VariantLmk
from switch.adapters.postgres.db import Database, DatabaseSettings
from switch.adapters.postgres.directory import VaultKeyStore
from switch.adapters.postgres.saf import PgSafQueue
from switch.cli import saf_cmd
from tests.integration.saf.conftest import POLICY
from tests.integration.saf.support import PAN, UtcClock, advice, reversal

MASKED = PAN[:6] + "******" + PAN[-4:]
Run = Callable[..., tuple[int, str, str]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchctl")
    parser.add_argument("--config")
    sub = parser.add_subparsers(dest="command", required=True)
    saf_cmd.register(sub)
    return parser


def _seed(database_url: str) -> None:
    """Two visa entries (the first backed off after one attempt), one cups entry."""

    async def main() -> None:
        db = Database(DatabaseSettings(dsn=database_url, pool_size_min=1, pool_size_max=2))
        await db.open()
        try:
            hsm = HsmClient(InProcessTransport(HostCommandProcessor(KeyVault(VariantLmk.test_lmk()))))
            queue = PgSafQueue(
                db, await VaultKeyStore(db, hsm).load_or_create(), clock=UtcClock(), policy=POLICY
            )
            for entry in (reversal(1, with_secrets=True), advice(2), reversal(3, network="cups")):
                await queue.enqueue(entry)
            head = await queue.claim_next("visa", holder="w1", lease_s=60)
            assert head is not None
            sent = head.message.with_fields({11: "000001", 7: "1123193500"})
            await queue.back_off(
                head.entry_id, holder="w1", sent=sent, response_code=None, retry_after_s=3600
            )
        finally:
            await db.close()

    trio.run(main)


@pytest.fixture
def switchctl(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Run:
    monkeypatch.setenv("SWITCH_DATABASE_URL", database_url)
    monkeypatch.delenv("SWITCH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    _seed(database_url)
    capsys.readouterr()  # the seed's own log lines

    def run(*argv: str) -> tuple[int, str, str]:
        args = _parser().parse_args(list(argv))
        try:
            code = args.func(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        assert PAN not in out and PAN not in err
        return code, out, err

    return run


def _ids(out: str) -> list[int]:
    return [int(line.split()[0]) for line in out.splitlines()[1:-1]]


def test_list_shows_undelivered_entries_in_order_with_masked_pans(switchctl: Run) -> None:
    """If three entries wait, then list shows them in queue order with masked PANs, and --network filters."""
    code, out, _ = switchctl("saf", "list")
    assert code == 0 and out.splitlines()[-1] == "3 entries"
    assert _ids(out) == [1, 2, 3]
    assert MASKED in out and "0420" in out and "0220" in out
    code, out, _ = switchctl("saf", "list", "--network", "cups")
    assert _ids(out) == [3] and "cups:POS00001" in out


def _due_in_s(database_url: str, entry_id: int) -> float:
    async def main() -> float:
        db = Database(DatabaseSettings(dsn=database_url, pool_size_min=1, pool_size_max=1))
        await db.open()
        try:
            return float(
                await db.fetchval(
                    "SELECT extract(epoch FROM next_attempt_at - now()) FROM saf_queue WHERE entry_id = $1",
                    entry_id,
                )
            )
        finally:
            await db.close()

    return trio.run(main)


def test_retry_makes_the_backed_off_entry_due_now(switchctl: Run, database_url: str) -> None:
    """If an operator retries entry 1, backed off for an hour, then it is due now."""
    assert _due_in_s(database_url, 1) > 3000
    code, out, _ = switchctl("saf", "retry", "1")
    assert code == 0 and "retry 1" in out and MASKED in out and out.splitlines()[-1] == "1 entry due now"
    assert _due_in_s(database_url, 1) <= 0


def test_retry_of_nothing_retryable_says_so(switchctl: Run) -> None:
    """If the chosen entries are all delivered or unknown, then retry exits 1 and says nothing was retried."""
    code, _, err = switchctl("saf", "retry", "99")
    assert code == 1 and "nothing to retry" in err


def test_purge_takes_entries_out_and_logs_the_reason(switchctl: Run) -> None:
    """If an operator purges the visa entries with a reason, then list no longer shows them and the log says why."""
    code, out, err = switchctl("saf", "purge", "--network", "visa", "--reason", "settled by phone")
    assert code == 0 and out.splitlines()[-1] == "2 entries purged"
    assert "saf_purged" in err and "settled by phone" in err and MASKED in err
    code, out, _ = switchctl("saf", "list")
    assert _ids(out) == [3]
    code, out, _ = switchctl("saf", "list", "--state", "purged")
    assert _ids(out) == [1, 2]
    code, _, err = switchctl("saf", "purge", "1", "--reason", "again")
    assert code == 1 and "nothing to purge" in err


def test_purge_needs_a_reason_and_one_way_of_choosing(switchctl: Run) -> None:
    """If the reason is missing or ids and --all are both given, then nothing is purged (usage error)."""
    with pytest.raises(SystemExit):
        _parser().parse_args(["saf", "purge", "1"])
    code, _, err = switchctl("saf", "purge", "1", "--all", "--reason", "x")
    assert code == 2 and "exactly one" in err
    code, out, _ = switchctl("saf", "list")
    assert _ids(out) == [1, 2, 3]
