"""The app's only source of "now", so tests can control time (with time-machine)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(UTC)


def today_in(timezone: str) -> date:
    """Today's date where the clinic is: the day that counts for due dates and overdue."""
    return datetime.now(ZoneInfo(timezone)).date()
