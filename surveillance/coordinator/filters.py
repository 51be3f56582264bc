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


@bp.app_template_filter("moment")
def format_moment(value: datetime | None, timezone: str) -> str:
    """``Mon 12 Jan 2026, 14:05`` in the given zone (a clinic's)."""
    if value is None:
        return ""
    local = value.astimezone(ZoneInfo(timezone))
    return f"{format_day(local.date())}, {local:%H:%M}"


RULE_LABELS = {
    "book-window": "Time to book",
    "booked-visit": "Before a booked visit",
    "biopsy-heads-up": "Biopsy heads-up",
    "biopsy-unbooked": "Biopsy still unbooked",
    "digest": "Daily digest",
}


@bp.app_template_filter("rule_label")
def rule_label(rule: str) -> str:
    return RULE_LABELS.get(rule, rule)


@bp.app_template_filter("contact_result")
def contact_result(result: str) -> str:
    from surveillance.coordinator.forms import CONTACT_RESULTS

    return dict(CONTACT_RESULTS).get(result, result)


@bp.app_template_filter("stage_label")
def stage_label(stage: str | None) -> str:
    from surveillance import stages

    return stages.label(stage) if stage else "—"
