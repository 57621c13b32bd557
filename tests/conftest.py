"""Suite-wide test settings: hypothesis profiles. Database and socket fixtures live in tests/fixtures."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI gets a fixed, moderate budget so the whole suite stays well inside its time limit on 2 cores;
# a developer can ask for more with HYPOTHESIS_PROFILE=thorough.
settings.register_profile("ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

pytest_plugins = ["tests.fixtures.pg"]
