"""What the patient's own page says, as plain data: no Flask, no database.

The page speaks to the patient in plain words and says nothing about their diagnosis beyond
the article for their care stage: appointments have neutral titles (the same as in their
calendar feed), and nothing here reads the tumour profile, the MRN, the birth date or the
family name.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

import segno

from surveillance.privacy import place_for_patients

TITLES = {"visit": "Follow-up visit", "biopsy": "Biopsy appointment"}
WHAT_TO_EXPECT = {
    "visit": (
        "A check-up with your care team. You will usually have a scan and blood tests, and "
        "talk about how you feel. Bring a list of your medicines and any questions."
    ),
    "biopsy": (
        "A doctor takes a very small piece of tissue so it can be looked at under a "
        "microscope. The clinic will tell you how to get ready, for example whether to stop "
        "eating beforehand, and whether someone should drive you home."
    ),
}


class EventLike(Protocol):
    """The parts of a plan event the page reads."""

    uid: str
    kind: str
    status: str
    due_on: date
    window_start: date
    window_end: date
    starts_at: datetime | None
    ends_at: datetime | None
    location: str | None


@dataclass(frozen=True)
class Appointment:
    uid: str
    kind: str
    title: str
    booked: bool
    overdue: bool
    day: date
    date_text: str
    time_text: str | None
    place: str | None
    book_from_text: str | None
    book_until_text: str | None
    what_to_expect: str


def long_date(day: date) -> str:
    """``Tuesday, January 27, 2026`` (US style, spelled out so no one misreads it)."""
    return f"{day:%A}, {day:%B} {day.day}, {day.year}"


def clock_time(moment: datetime) -> str:
    """``9:30 AM``."""
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


def appointments(
    events: Iterable[EventLike],
    timezone: str,
    today: date,
    until: date | None = None,
    clinic_place: str = "",
) -> list[Appointment]:
    """The visits and biopsy to come up to ``until``, soonest first: booked ones from today,
    and ones still to book while their window is open (overdue ones too, so the patient
    calls). Events whose window has closed are the clinic's to record, not the patient's to
    worry about; later ones are in the calendar feed. A booked place that names the
    condition shows as ``clinic_place`` (the clinic's patient-facing address or name)."""
    zone = ZoneInfo(timezone)
    upcoming: list[Appointment] = []
    for event in events:
        if event.status == "booked" and event.starts_at is not None:
            start = event.starts_at.astimezone(zone)
            if start.date() < today:
                continue  # past; the clinic still has to record it
            end = event.ends_at.astimezone(zone) if event.ends_at else None
            time_text = clock_time(start) + (f" to {clock_time(end)}" if end else "")
            upcoming.append(
                Appointment(
                    uid=event.uid,
                    kind=event.kind,
                    title=TITLES.get(event.kind, "Appointment"),
                    booked=True,
                    overdue=False,
                    day=start.date(),
                    date_text=long_date(start.date()),
                    time_text=f"{time_text} ({start.tzname()})",
                    place=place_for_patients(event.location, clinic_place) or None,
                    book_from_text=None,
                    book_until_text=None,
                    what_to_expect=WHAT_TO_EXPECT.get(event.kind, ""),
                )
            )
        elif event.status == "planned" and event.window_end >= today:
            upcoming.append(
                Appointment(
                    uid=event.uid,
                    kind=event.kind,
                    title=TITLES.get(event.kind, "Appointment"),
                    booked=False,
                    overdue=event.due_on < today,
                    day=event.due_on,
                    date_text=long_date(event.due_on),
                    time_text=None,
                    place=None,
                    book_from_text=long_date(max(event.window_start, today)),
                    book_until_text=long_date(event.window_end),
                    what_to_expect=WHAT_TO_EXPECT.get(event.kind, ""),
                )
            )
    if until is not None:
        upcoming = [a for a in upcoming if a.day <= until]
    return sorted(upcoming, key=lambda a: (a.day, a.kind != "visit"))


def qr_svg(text: str) -> bytes:
    """A QR code of ``text`` as a standalone SVG that scales to any size (viewBox, no fixed
    width), black on an opaque white background so it scans in dark mode too."""
    code = segno.make(text, error="m", micro=False)
    out = io.BytesIO()
    code.save(
        out,
        kind="svg",
        border=4,
        dark="#000",
        light="#fff",
        omitsize=True,
        xmldecl=True,
        title="QR code of your calendar link",
    )
    return out.getvalue()
