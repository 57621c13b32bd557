"""`switchctl` as an operator runs it, in the test's process, against the test's database."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from switch.cli.switchctl import build_parser

Run = Callable[..., tuple[int, str, str]]


def switchctl_on(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    *,
    never_printed: Iterable[str],
) -> Run:
    """`run(*argv)` -> (exit code, stdout, stderr) of `switchctl ARGV` on `database_url` (defaults otherwise:
    no switch.toml, the demo's HSM); each run asserts that none of `never_printed` (keys, PANs) shows."""
    monkeypatch.setenv("SWITCH_DATABASE_URL", database_url)
    monkeypatch.delenv("SWITCH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    secrets = [s for s in never_printed if s]

    def run(*argv: str) -> tuple[int, str, str]:
        args = build_parser().parse_args(list(argv))
        try:
            code = args.func(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        for secret in secrets:
            assert secret not in out + err
        return code, out, err

    return run
