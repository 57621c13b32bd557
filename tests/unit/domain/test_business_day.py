"""The business day: an instant's date on the bank's calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from switch.config import ConfigError, load_config
from switch.domain.business_day import UTC_DAY, business_day


def test_the_date_is_the_banks_local_date():
    """If an instant is late on 1 December UTC, then it is 2 December in Tehran (UTC+3:30), still 1 December
    in UTC and in New York, and New York's date turns at its own midnight (05:00 UTC in winter)."""
    late = datetime(2026, 12, 1, 20, 45, tzinfo=UTC)
    assert business_day("Asia/Tehran").date_of(late) == date(2026, 12, 2)
    assert UTC_DAY.date_of(late) == business_day("UTC").date_of(late) == date(2026, 12, 1)
    new_york = business_day("America/New_York")
    assert new_york.date_of(datetime(2026, 12, 2, 4, 59, tzinfo=UTC)) == date(2026, 12, 1)
    assert new_york.date_of(datetime(2026, 12, 2, 5, 0, tzinfo=UTC)) == date(2026, 12, 2)


def test_an_unknown_zone_is_refused_with_a_clear_error(monkeypatch, tmp_path):
    """If the configured time zone does not exist, then the configuration is refused and says what is
    expected."""
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        business_day("Mars/Olympus")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWITCH_CONFIG", raising=False)
    monkeypatch.setenv("SWITCH_SWITCH_BUSINESS_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match="business_timezone"):
        load_config(None)
    monkeypatch.setenv("SWITCH_SWITCH_BUSINESS_TIMEZONE", "Asia/Tehran")
    assert load_config(None).switch.business_timezone == "Asia/Tehran"
