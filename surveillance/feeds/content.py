"""Models → the renderer's dataclasses: what each audience's calendar shows, and when.

Patient feed (one patient's events):

* planned → ``TENTATIVE`` all-day on the due date, telling the patient to call the clinic to
  book within the window; shown as long as it is open, up to a year after the due date;
* booked → ``CONFIRMED``, timed in the clinic's zone, at the booked place, with a display
  alarm a day before;
* completed → ``CONFIRMED`` history (at the booked time, or all-day on the day it happened)
  for a year, then it drops;
* cancelled, and missed → ``CANCELLED`` (with the SEQUENCE the change raised) for 90 days
  after the change so every client removes it, then it drops. A missed visit that is booked
  again comes back ``CONFIRMED`` under the same UID.

The patient feed names the clinic only by its patient-facing name and address
(:meth:`Clinic.for_patients`): the internal name may name the condition.

Clinic feed (a coordinator's clinics): the same events, seen from the clinic, from 30 days
back to 180 days ahead, under the clinics' internal names; patients appear by initials and an
internal reference only.

Nothing here reads the clock: "today" is passed in, so the same data and day always give the
same bytes. A change here (or in ``wording`` or ``ical``) that changes the bytes for the same
data must raise ``validators.RENDERER_VERSION``: patient feeds' ETags come from their inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select

from surveillance import ical
from surveillance.extensions import db
from surveillance.feeds import urls, wording
from surveillance.models import Clinic, EventStatus, Patient, PlanEvent
from surveillance.privacy import PatientFacingClinic, place_for_patients

REFRESH = timedelta(hours=6)
REMINDER_BEFORE = timedelta(days=1)
KEEP_HISTORY = timedelta(days=365)
KEEP_CANCELLED = timedelta(days=90)
CLINIC_FEED_PAST = timedelta(days=30)
CLINIC_FEED_AHEAD = timedelta(days=180)

_STATUS = {
    EventStatus.PLANNED: ical.Status.TENTATIVE,
    EventStatus.BOOKED: ical.Status.CONFIRMED,
    EventStatus.COMPLETED: ical.Status.CONFIRMED,
    EventStatus.CANCELLED: ical.Status.CANCELLED,
    EventStatus.MISSED: ical.Status.CANCELLED,
}
_GONE = (EventStatus.CANCELLED, EventStatus.MISSED)


@dataclass(frozen=True)
class Rendered:
    """A calendar's bytes with what HTTP needs to validate them."""

    body: bytes
    last_modified: datetime


def calendar_uid(event: PlanEvent) -> str:
    return f"{event.uid}@{current_app.config['CALENDAR_UID_DOMAIN']}"


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), zone).astimezone(UTC)


# --- When an event happens and how long it is shown -------------------------------------------


def event_when(event: PlanEvent, zone_name: str) -> ical.AllDay | ical.Timed:
    """Booked times where there are any (also after a cancellation, so clients match the event
    they had), the day it really happened for a visit completed without a booking, else the
    due date."""
    timed = (
        ical.Timed(event.starts_at, event.ends_at, zone_name)
        if event.starts_at is not None and event.ends_at is not None
        else None
    )
    if event.status == EventStatus.COMPLETED and event.completed_on is not None:
        if timed is not None and timed.first_day == event.completed_on:
            return timed
        return ical.AllDay(event.completed_on)
    if timed is not None and event.status != EventStatus.PLANNED:
        return timed
    return ical.AllDay(event.due_on)


def last_day_shown(event: PlanEvent, zone: ZoneInfo, day: date) -> date:
    """The last day the patient feed shows an event that falls on ``day``."""
    if event.status in _GONE:
        return event.updated_at.astimezone(zone).date() + KEEP_CANCELLED
    return day + KEEP_HISTORY


# --- Patient feed -----------------------------------------------------------------------------


def _patient_description(
    event: PlanEvent,
    clinic: PatientFacingClinic,
    when: ical.AllDay | ical.Timed,
    page_url: str | None,
) -> str:
    call = wording.call_the_clinic(clinic.name, clinic.phone or None)
    kind = wording.title(event.kind).lower()
    if event.status == EventStatus.PLANNED:
        lines = [
            f"Your {kind} is due around {wording.long_date(event.due_on)}.",
            f"Please {call} to book a time between {wording.short_date(event.window_start)} "
            f"and {wording.short_date(event.window_end)}.",
            wording.WHAT_TO_EXPECT.get(event.kind, ""),
        ]
    elif event.status == EventStatus.BOOKED:
        lines = [
            wording.WHAT_TO_EXPECT.get(event.kind, ""),
            f"If you need to change it, please {call}.",
        ]
    elif event.status == EventStatus.COMPLETED:
        lines = [f"This {kind} took place on {wording.long_date(when.first_day)}."]
    elif event.status == EventStatus.MISSED:
        lines = [f"This {kind} was missed. Please {call} to book a new time."]
    else:
        lines = [f"This {kind} is cancelled. If you have questions, please {call}."]
    if page_url:
        lines.append(f"Your visits and how to prepare: {page_url}")
    return "\n".join(line for line in lines if line)


def _patient_summary(event: PlanEvent, clinic: PatientFacingClinic) -> str:
    title = wording.title(event.kind)
    if event.status == EventStatus.PLANNED:
        return f"{title} due: please call {clinic.name} to book"
    if event.status == EventStatus.CANCELLED:
        return f"Cancelled: {title} at {clinic.name}"
    if event.status == EventStatus.MISSED:
        return f"Missed: {title} at {clinic.name}"
    return f"{title} at {clinic.name}"


def booked_location(event: PlanEvent, clinic: Clinic) -> str:
    """Where a timed event takes place, for staff: as booked, else the clinic's address or
    name."""
    if event.starts_at is None:
        return ""
    return event.location or clinic.address or clinic.name


def patient_location(event: PlanEvent, clinic: PatientFacingClinic) -> str:
    """Where a timed event takes place, for the patient: as booked when that names no
    condition, else the clinic's patient-facing address or name."""
    if event.starts_at is None:
        return ""
    return place_for_patients(event.location, clinic.place)


def patient_event(event: PlanEvent, clinic: Clinic, page_url: str | None) -> ical.CalendarEvent:
    """One event as the patient sees it (neutral words, no condition, no results, and the
    clinic under its patient-facing name)."""
    when = event_when(event, clinic.timezone)
    shown = clinic.for_patients()
    booked = event.status == EventStatus.BOOKED
    shows_place = event.status in (EventStatus.BOOKED, EventStatus.COMPLETED)
    title = wording.title(event.kind)
    return ical.CalendarEvent(
        uid=calendar_uid(event),
        sequence=event.sequence,
        status=_STATUS[EventStatus(event.status)],
        when=when,
        summary=_patient_summary(event, shown),
        dtstamp=event.updated_at,
        last_modified=event.updated_at,
        created=event.created_at,
        description=_patient_description(event, shown, when, page_url),
        location=patient_location(event, shown) if shows_place else "",
        url=page_url or "",
        reminder=ical.Reminder(REMINDER_BEFORE, f"Tomorrow: {title} at {shown.name}")
        if booked
        else None,
        # Only a timed visit that is on makes the patient busy; all-day reminders never do.
        transparent=isinstance(when, ical.AllDay) or event.status in _GONE,
    )


def _sort_key(item: ical.CalendarEvent) -> tuple[date, str, str]:
    start = item.when.local_start.isoformat() if isinstance(item.when, ical.Timed) else ""
    return item.when.first_day, start, item.uid


def patient_calendar(
    patient: Patient, events: Iterable[PlanEvent], today: date
) -> tuple[ical.CalendarFeed, datetime]:
    """The patient's feed on ``today`` (the clinic's local date), and its last change: the
    latest database change it shows or the moment a time rule last dropped an event."""
    clinic = patient.clinic
    zone = ZoneInfo(clinic.timezone)
    page_url = urls.patient_page_url(patient)
    changes = [patient.updated_at, clinic.updated_at]
    shown: list[ical.CalendarEvent] = []
    for event in events:
        when = event_when(event, clinic.timezone)
        last_day = last_day_shown(event, zone, when.first_day)
        if today <= last_day:
            shown.append(patient_event(event, clinic, page_url))
            changes.append(event.updated_at)
        else:
            changes.append(_local_midnight(last_day + timedelta(days=1), zone))
    clinic_name = clinic.for_patients().name
    feed = ical.CalendarFeed(
        events=tuple(sorted(shown, key=_sort_key)),
        name=f"{clinic_name}: my visits",
        description=f"Your follow-up visits with {clinic_name}.",
        refresh=REFRESH,
        timezone=clinic.timezone,
    )
    return feed, max(changes)


def patient_events(patient_id: int) -> Sequence[PlanEvent]:
    return db.session.scalars(
        select(PlanEvent).where(PlanEvent.patient_id == patient_id).order_by(PlanEvent.id)
    ).all()


def render_patient_feed(patient: Patient, today: date) -> Rendered:
    feed, last_modified = patient_calendar(patient, patient_events(patient.id), today)
    return Rendered(ical.render(feed), last_modified)


def single_event_ics(event: PlanEvent) -> bytes:
    """One event as a calendar file of its own, for "add to calendar" and email attachments.

    The event is the same one the patient's feed carries (same UID and SEQUENCE), without the
    feed's name and refresh settings. Needs an app context (the UID domain and the patient's
    page address come from the configuration)."""
    clinic = event.patient.clinic
    item = patient_event(event, clinic, urls.patient_page_url(event.patient))
    return ical.render(ical.CalendarFeed(events=(item,), timezone=clinic.timezone))


# --- Clinic feed ------------------------------------------------------------------------------


def _clinic_summary(event: PlanEvent, who: str) -> str:
    title = wording.title(event.kind)
    if event.status == EventStatus.PLANNED:
        return f"To book: {title.lower()}, {who}"
    if event.status == EventStatus.CANCELLED:
        return f"Cancelled: {title.lower()}, {who}"
    if event.status == EventStatus.MISSED:
        return f"Missed: {title.lower()}, {who}"
    if event.status == EventStatus.COMPLETED:
        return f"Done: {title.lower()}, {who}"
    return f"{title}, {who}"


def clinic_event(event: PlanEvent) -> ical.CalendarEvent:
    patient = event.patient
    clinic = patient.clinic
    reference = wording.patient_reference(patient.id)
    who = f"{wording.initials(patient.given_name, patient.family_name)} ({reference})"
    when = event_when(event, clinic.timezone)
    lines = [
        f"Patient {reference} at {clinic.name}.",
        f"Due {wording.long_date(event.due_on)}; window {wording.short_date(event.window_start)}"
        f" to {wording.short_date(event.window_end)}.",
        f"Status: {event.status}.",
    ]
    return ical.CalendarEvent(
        uid=calendar_uid(event),
        sequence=event.sequence,
        status=_STATUS[EventStatus(event.status)],
        when=when,
        summary=_clinic_summary(event, who),
        dtstamp=event.updated_at,
        last_modified=event.updated_at,
        created=event.created_at,
        description="\n".join(lines),
        location=booked_location(event, clinic) if isinstance(when, ical.Timed) else "",
        transparent=not isinstance(when, ical.Timed) or event.status in _GONE,
    )


def clinic_window(today: date) -> tuple[date, date]:
    return today - CLINIC_FEED_PAST, today + CLINIC_FEED_AHEAD


def in_clinic_feed(event: PlanEvent, today: date) -> bool:
    clinic = event.patient.clinic
    first, last = clinic_window(today)
    day = event_when(event, clinic.timezone).first_day
    if not first <= day <= last:
        return False
    if event.status in _GONE:
        changed = event.updated_at.astimezone(ZoneInfo(clinic.timezone)).date()
        return today <= changed + KEEP_CANCELLED
    return True


def clinic_feed_name(clinics: Sequence[Clinic], everything: bool) -> str:
    if everything:
        return "Watchful: all clinics"
    return "Watchful: " + (", ".join(c.name for c in clinics) or "no clinics")


def clinic_calendar(
    clinics: Sequence[Clinic],
    everything: bool,
    events: Iterable[PlanEvent],
    today_by_clinic: dict[int, date],
) -> ical.CalendarFeed:
    """The coordinator's feed on the given local days of their clinics."""
    shown = [
        clinic_event(e) for e in events if in_clinic_feed(e, today_by_clinic[e.patient.clinic_id])
    ]
    zones = sorted({c.timezone for c in clinics})
    return ical.CalendarFeed(
        events=tuple(sorted(shown, key=_sort_key)),
        name=clinic_feed_name(clinics, everything),
        description="Planned and booked surveillance events (patients by initials and "
        "reference only).",
        refresh=REFRESH,
        timezone=zones[0] if len(zones) == 1 else None,
    )
