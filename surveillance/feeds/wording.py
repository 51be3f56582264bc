"""What the calendars say, in one place so it can be reviewed for tone and privacy.

Patient-facing text is neutral on purpose: a calendar is seen by other people (on a lock
screen, a shared family calendar, a work laptop), so it names the appointment and the clinic
and never the condition, results or the reasons behind a change.
"""

from __future__ import annotations

from datetime import date, datetime

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

TITLES = {"visit": "Follow-up visit", "biopsy": "Biopsy appointment"}

WHAT_TO_EXPECT = {
    "visit": (
        "What to expect: a review with your care team of how you are doing, "
        "usually with imaging (a scan) or blood tests beforehand."
    ),
    "biopsy": (
        "What to expect: your care team will talk the biopsy through with you beforehand: "
        "what happens, how to prepare and when you will hear back."
    ),
}


def long_date(day: date) -> str:
    """ "Monday, July 6, 2026", spelled out so it never depends on the server's locale."""
    return f"{_WEEKDAYS[day.weekday()]}, {_MONTHS[day.month - 1]} {day.day}, {day.year}"


def short_date(day: date) -> str:
    return f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"


def clock_time(moment: datetime) -> str:
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


def title(kind: str) -> str:
    return TITLES.get(kind, "Appointment")


def call_the_clinic(clinic_name: str, phone: str | None) -> str:
    return f"call {clinic_name} on {phone}" if phone else f"call {clinic_name}"


def initials(given_name: str, family_name: str) -> str:
    return "".join(f"{part.strip()[:1].upper()}." for part in (given_name, family_name) if part)


def patient_reference(patient_id: int) -> str:
    """The internal short reference coordinators use instead of a name or MRN."""
    return f"P-{patient_id}"
