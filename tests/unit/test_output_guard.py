"""The suite's own guard (tests/conftest.py): a test whose captured output holds card data fails."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def test_a_test_printing_a_clear_pan_fails(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    """If a test prints a demo PAN or a track 2, then it is reported failed, naming what leaked."""
    pytester.makeconftest(
        CONFTEST.read_text().replace('pytest_plugins = ["tests.fixtures.pg", "tests.fixtures.hsm"]', "")
    )
    pytester.makepyfile(
        """
        def test_leaks_pan():
            print("card 9900010000000019")

        def test_leaks_track2():
            print("9900010000000019=30121011234567")

        def test_masked_is_fine():
            print("card 990001******0019")
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    capsys.readouterr()  # the inner run's report (with the PANs it printed) is not this test's output
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        ["*clear card number in captured stdout*", "*track 2 data in captured stdout*"]
    )
