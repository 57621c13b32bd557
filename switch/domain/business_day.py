"""The business day: which date a transaction belongs to, for daily limits, the journal and card dates.

Field 7 and the switch's clock are UTC; a bank's day is not. `BusinessDay` turns an instant into the
bank's calendar date in its time zone (`switch.business_timezone`, an IANA name such as "Asia/Tehran";
default UTC): a daily limit starts again at local midnight, and the journal's business date is the local
one. A cutover at another hour than midnight is not supported yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["UTC_DAY", "BusinessDay", "business_day"]


@dataclass(frozen=True, slots=True)
class BusinessDay:
    timezone: tzinfo = UTC

    def date_of(self, instant: datetime) -> date:
        """The business date of `instant` (an aware datetime)."""
        return instant.astimezone(self.timezone).date()

    def local(self, instant: datetime) -> datetime:
        """`instant` on the bank's wall clock."""
        return instant.astimezone(self.timezone)


UTC_DAY = BusinessDay()


def business_day(zone: str) -> BusinessDay:
    """The business day of time zone `zone` (IANA name, or "UTC"); ValueError for an unknown zone."""
    if zone in ("UTC", "Etc/UTC", "Z"):
        return UTC_DAY
    try:
        return BusinessDay(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone!r} (an IANA name such as Asia/Tehran, or UTC)") from None
