"""Template filters for dates and times as a coordinator reads them."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from surveillance.coordinator import bp
from surveillance.models import PlanEvent


@bp.app_template_filter("day")
def format_day(value: date | None) -> str:
    """``Mon 12 Jan 2026``: unambiguous in every locale, unlike 01/12/2026."""
    if value is None:
        return ""
    return value.strftime("%a %-d %b %Y")


@bp.app_template_filter("local_time")
def local_time(event: PlanEvent) -> str:
    """The booked start and end in the clinic's time zone."""
    if event.starts_at is None:
        return ""
    zone = ZoneInfo(event.patient.clinic.timezone)
    start: datetime = event.starts_at.astimezone(zone)
    end = event.ends_at.astimezone(zone) if event.ends_at else None
    text = f"{format_day(start.date())}, {start:%H:%M}"
    return f"{text} to {end:%H:%M}" if end else text


@bp.app_template_filter("event_name")
def event_name(event: PlanEvent) -> str:
    return "Biopsy" if event.kind == "biopsy" else f"Visit {event.ordinal}"
