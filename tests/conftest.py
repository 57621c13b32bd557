"""Suite-wide test settings: hypothesis profiles. Database and socket fixtures live in tests/fixtures."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Generator, Iterator
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, settings

# CI gets a fixed, moderate budget so the whole suite stays well inside its time limit on 2 cores;
# a developer can ask for more with HYPOTHESIS_PROFILE=thorough.
settings.register_profile("ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

pytest_plugins = ["tests.fixtures.pg", "tests.fixtures.hsm"]


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Each test starts and ends with the default logging setup.

    Commands under test call configure_logging with the stream pytest captured for that test; once the
    test ends that stream is closed, and a later test's log line must not be written to it.
    """
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    logging.getLogger().handlers.clear()


# -- card data never in the suite's output -----------------------------------------------------------
#
# Whatever a test lets pytest capture on stdout/stderr (its prints, in-process log lines) is scanned
# when it ends: a clear card number of the demo worlds or a track 2 fails the test. Output a test reads
# itself (capsys.readouterr(), a subprocess's pipe) is checked by that test, which knows what to expect.
_CARD_RUN = re.compile(
    r"(?<!\d)(?:99000[1-9]|476173|400555|622126|621700|603799|589210|627353|610433|621986)\d{10}(?!\d)"
)
_TRACK2_RUN = re.compile(r"(?<![0-9A-Za-z])\d{13,19}[=D]\d{7,}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when != "teardown" or report.failed:
        return
    leaks = []
    for when, key, content in item._report_sections:
        if key not in ("stdout", "stderr"):
            continue  # pytest's own log capture keeps records as logged, before our masking renders them
        for pattern, what in ((_CARD_RUN, "clear card number"), (_TRACK2_RUN, "track 2 data")):
            if pattern.search(content):
                leaks.append(f"{what} in captured {key} ({when})")
    if leaks:
        report.outcome = "failed"
        report.longrepr = "card data in the test's captured output: " + "; ".join(sorted(set(leaks)))
