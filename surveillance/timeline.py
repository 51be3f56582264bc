"""Geometry of a plan's timeline, drawn by the patient screen as server-side SVG.

Plain Python (no Flask, no database): events in, positions and labels out. Visits sit on one
lane and the biopsy on another; each event is placed on the day it happened (completed), is
booked for, or is due. Shape and fill tell the status apart without colour, so the timeline
stays readable on a black-and-white printout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

WIDTH = 900
LEFT, RIGHT = 80, 20  # room for the lane names, and for the last marker
LANE_Y = {"visit": 44, "biopsy": 94}
AXIS_Y = 124
HEIGHT = 156
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class TimelineEvent:
    """What the timeline needs to know about one plan event."""

    kind: str
    ordinal: int
    status: str
    due_on: date
    booked_on: date | None = None
    completed_on: date | None = None
    outcome: str | None = None

    @property
    def shown_on(self) -> date:
        if self.status == "completed" and self.completed_on:
            return self.completed_on
        if self.status == "booked" and self.booked_on:
            return self.booked_on
        return self.due_on


@dataclass(frozen=True)
class Marker:
    x: float
    y: float
    kind: str
    status: str
    overdue: bool
    label: str
    number: str


@dataclass(frozen=True)
class Tick:
    x: float
    label: str
    major: bool


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    start: date
    end: date
    markers: list[Marker]
    ticks: list[Tick]
    today_x: float | None
    lanes: dict[str, float]
    axis_y: float
    left: int
    right: int


def _label(event: TimelineEvent, overdue: bool) -> str:
    name = "Biopsy" if event.kind == "biopsy" else f"Visit {event.ordinal}"
    day = event.shown_on.isoformat()
    if event.status == "completed":
        outcome = f", {event.outcome}" if event.outcome else ""
        return f"{name}: completed {day}{outcome}"
    if event.status == "booked":
        return f"{name}: booked for {day}"
    if overdue:
        return f"{name}: overdue since {day}"
    return f"{name}: {event.status}, due {day}"


def _month_starts(start: date, end: date) -> list[date]:
    day = date(start.year, start.month, 1)
    out = []
    while day <= end:
        if day >= start:
            out.append(day)
        day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return out


def build(events: Sequence[TimelineEvent], today: date, enrolled_on: date) -> Timeline:
    days = [e.shown_on for e in events] + [today, enrolled_on]
    start = min(days) - timedelta(days=14)
    end = max(days) + timedelta(days=14)
    span = max((end - start).days, 1)
    usable = WIDTH - LEFT - RIGHT

    def x_of(day: date) -> float:
        return round(LEFT + usable * (day - start).days / span, 1)

    markers = []
    for event in events:
        overdue = event.status == "planned" and event.due_on < today
        markers.append(
            Marker(
                x=x_of(event.shown_on),
                y=LANE_Y.get(event.kind, LANE_Y["visit"]),
                kind=event.kind,
                status=event.status,
                overdue=overdue,
                label=_label(event, overdue),
                number="B" if event.kind == "biopsy" else str(event.ordinal),
            )
        )
    months = _month_starts(start, end)
    # Label every quarter (or every month on short plans) so labels never overlap.
    step = 1 if len(months) <= 12 else 3
    ticks = [
        Tick(
            x_of(m),
            f"{MONTHS[m.month - 1]} {m.year}" if m.month == 1 or i == 0 else MONTHS[m.month - 1],
            m.month == 1,
        )
        for i, m in enumerate(m for m in months if (m.month - 1) % step == 0)
    ]
    today_x = x_of(today) if start <= today <= end else None
    return Timeline(
        WIDTH,
        HEIGHT,
        start,
        end,
        markers,
        ticks,
        today_x,
        {k: float(v) for k, v in LANE_Y.items()},
        AXIS_Y,
        LEFT,
        RIGHT,
    )
