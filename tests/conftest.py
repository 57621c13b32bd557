"""Suite-wide test settings: hypothesis profiles. Database and socket fixtures live in tests/fixtures."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

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
