"""Synthetic demo data: one clinic, two users and patients at different points of their plans.

Everyone here is invented. Running ``load`` again changes nothing: each record is looked up
first and only created when missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import select

from surveillance import clock
from surveillance.extensions import db
from surveillance.models import (
    ApiToken,
    Clinic,
    EventStatus,
    OutboxMessage,
    OutboxStatus,
    Patient,
    PlanEvent,
    Role,
    User,
)
from surveillance.planning import add_months
from surveillance.reminders import outbox, rules
from surveillance.reminders import settings as reminder_settings
from surveillance.secrets_store import token_hash
from surveillance.services import accounts, contacts, plans, stages

CLINIC_SLUG = "demo"
COORDINATOR_EMAIL = "coordinator@demo.watchful.example"
ADMIN_EMAIL = "admin@demo.watchful.example"
# Demo credentials are public on purpose: they only ever open synthetic data.
DEMO_PASSWORD = "watchful-demo"
DEMO_API_TOKEN = "demo-api-token-synthetic-data-only"


@dataclass(frozen=True)
class DemoPatient:
    mrn: str
    given_name: str
    family_name: str
    birth_date: date
    months_ago: int
    primary_site: str
    differentiation: str
    grade: str
    ki67: float | None
    interval_months: int | None
    justification: str | None = None
    story: Callable[[Patient, date], None] | None = None
    # Enrolled this many days before ``months_ago`` months back.
    days_earlier: int = 3


def _next_working_day(clinic: Clinic, day: date) -> date:
    calendar = clinic.calendar()
    while not calendar.is_working_day(day):
        day += timedelta(days=1)
    return day


def _events(patient: Patient) -> list[PlanEvent]:
    return list(patient.active_plan.events) if patient.active_plan else []


def _complete_past(patient: Patient, today: date, outcome: str = "stable") -> None:
    """Record every event due before today as done on its due date."""
    for event in _events(patient):
        if event.status == EventStatus.PLANNED and event.due_on < today - timedelta(days=7):
            plans.complete(event, event.due_on, outcome)


def _book_next(patient: Patient, today: date, in_days: int) -> None:
    event = next(e for e in _events(patient) if e.status == EventStatus.PLANNED)
    day = _next_working_day(
        patient.clinic, max(today + timedelta(days=in_days), event.window_start)
    )
    plans.book(event, datetime.combine(day, time(9, 30)), 45, None)


def _long_term_stable(patient: Patient, today: date) -> None:
    _complete_past(patient, today)
    _book_next(patient, today, 12)


def _overdue(patient: Patient, today: date) -> None:
    """Leave the first visit overdue: nothing recorded."""


def _progressed(patient: Patient, today: date) -> None:
    events = [e for e in _events(patient) if e.due_on < today and e.kind == "visit"]
    for event in events[:-1]:
        plans.complete(event, event.due_on, "stable")
    plans.complete(events[-1], events[-1].due_on, "progression")


def _missed(patient: Patient, today: date) -> None:
    """Missed the first visit; the coordinator rang and got no answer (a contact attempt)."""
    first = _events(patient)[0]
    plans.mark_missed(first)
    coordinator = db.session.scalar(select(User).where(User.email == COORDINATOR_EMAIL))
    contacts.log_attempt(first, coordinator, "no_answer", "Rang twice; no voicemail set up.")


def _booked_soon(patient: Patient, today: date) -> None:
    """Booked in a few days; the 7-day reminder bounced, so it is on the failed-reminders
    worklist (retrying it writes the message to the demo's mail folder)."""
    _complete_past(patient, today)
    _book_next(patient, today, 3)
    booked = next(e for e in _events(patient) if e.status == EventStatus.BOOKED)
    starts = booked.starts_at
    assert starts is not None
    now = clock.utcnow()
    policy = reminder_settings.policy_for(patient.clinic_id)
    # The very row the reminder queue would make (same key), so it is never queued twice;
    # when the booking is more than a week away (it depends on today's date), a row of its own.
    due = [
        r
        for r in rules.due_reminders(outbox.snapshot(booked), policy, now)
        if r.rule == rules.Rule.BOOKED and r.audience == rules.Audience.PATIENT
    ]
    if due:
        key = outbox.dedupe_key(due[0].rule, due[0].audience, f"e{booked.id}", "p", due[0].due_at)
        due_at, expires_at = due[0].due_at, due[0].expires_at
    else:
        key, due_at, expires_at = f"demo:failed:{patient.mrn}", now - timedelta(hours=1), starts
    db.session.add(
        OutboxMessage(
            dedupe_key=key,
            rule=rules.Rule.BOOKED.value,
            audience=rules.Audience.PATIENT.value,
            clinic_id=patient.clinic_id,
            event_id=booked.id,
            patient_id=patient.id,
            recipient=patient.email or "",
            due_at=due_at,
            expires_at=expires_at,
            status=OutboxStatus.FAILED,
            attempts=10,
            next_attempt_at=now,
            message_id=outbox.new_message_id(),
            last_error="The mail server refused the recipient (550).",
            failed_at=now - timedelta(minutes=30),
        )
    )


def _biopsy_window_open(patient: Patient, today: date) -> None:
    """Visits done; the one-year biopsy's window has opened (the stage sweep moves them to
    biopsy review)."""
    _complete_past(patient, today)


PATIENTS = (
    DemoPatient(
        "DEMO-0001",
        "Avery",
        "Example",
        date(1958, 3, 14),
        14,
        "small_bowel",
        "well",
        "G1",
        1.0,
        6,
        story=_long_term_stable,
    ),
    DemoPatient(
        "DEMO-0002",
        "Blake",
        "Sample",
        date(1966, 7, 2),
        11,
        "pancreas",
        "well",
        "G2",
        4.5,
        3,
        story=_complete_past,
    ),
    DemoPatient(
        "DEMO-0003",
        "Casey",
        "Placeholder",
        date(1972, 11, 30),
        0,
        "rectum",
        "well",
        "G1",
        None,
        None,
    ),
    DemoPatient(
        "DEMO-0004",
        "Devon",
        "Testcase",
        date(1949, 1, 8),
        4,
        "appendix",
        "well",
        "G1",
        2.0,
        3,
        story=_overdue,
    ),
    DemoPatient(
        "DEMO-0005",
        "Emery",
        "Fixture",
        date(1961, 5, 21),
        20,
        "stomach",
        "well",
        "G2",
        5.0,
        6,
        story=_progressed,
    ),
    DemoPatient(
        "DEMO-0006",
        "Finley",
        "Mock",
        date(1944, 9, 17),
        2,
        "lung",
        "poorly",
        "G3",
        25.0,
        3,
        justification="Frail; patient prefers surveillance after discussion.",
        story=_booked_soon,
    ),
    DemoPatient(
        "DEMO-0007",
        "Harper",
        "Synthetic",
        date(1980, 2, 29),
        4,
        "other",
        "well",
        "G1",
        None,
        3,
        story=_missed,
    ),
    DemoPatient(
        "DEMO-0008",
        "Jordan",
        "Prototype",
        date(1969, 10, 12),
        11,
        "small_bowel",
        "well",
        "G1",
        1.5,
        6,
        story=_biopsy_window_open,
        days_earlier=17,
    ),
)


def _ensure_clinic() -> Clinic:
    clinic = db.session.scalar(select(Clinic).where(Clinic.slug == CLINIC_SLUG))
    if clinic is None:
        clinic = accounts.create_clinic(
            CLINIC_SLUG,
            "Front Range Demo Clinic",
            "America/Denver",
            "100 Example Way, Suite 200, Denver, CO 80202",
            # What patients see: set explicitly, as staff should (see the clinic settings).
            calendar_name="Front Range Outpatient Clinic",
            calendar_address="100 Example Way, Suite 200, Denver, CO 80202",
        )
        clinic.phone = "+1 303 555 0100"
    return clinic


def _ensure_user(email: str, role: Role, clinic: Clinic, name: str) -> User:
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        user = accounts.create_user(email, role, DEMO_PASSWORD, [clinic], name)
    return user


def _ensure_token(user: User) -> None:
    digest = token_hash(DEMO_API_TOKEN)
    if db.session.scalar(select(ApiToken.id).where(ApiToken.token_hash == digest)) is None:
        db.session.add(ApiToken(user=user, name="demo", token_hash=digest))


def _ensure_patient(spec: DemoPatient, clinic: Clinic, today: date) -> bool:
    if db.session.scalar(select(Patient.id).where(Patient.mrn == spec.mrn)) is not None:
        return False
    enrolment = plans.Enrolment(
        mrn=spec.mrn,
        given_name=spec.given_name,
        family_name=spec.family_name,
        birth_date=spec.birth_date,
        enrolled_on=add_months(today, -spec.months_ago) - timedelta(days=spec.days_earlier),
        primary_site=spec.primary_site,
        differentiation=spec.differentiation,
        grade=spec.grade,
        ki67=spec.ki67,
        interval_months=spec.interval_months,
        email=f"{spec.given_name.lower()}.{spec.family_name.lower()}@example.org",
        phone="+1 303 555 01" + spec.mrn[-2:],
        justification=spec.justification,
    )
    patient = plans.enrol(enrolment, clinic)
    if spec.story is not None:
        spec.story(patient, today)
    return True


class NotADemoDatabase(Exception):
    pass


def load(force: bool = False) -> str:
    """Load the demo. It refuses a database that holds other clinics (real data, perhaps):
    the demo's public password and API token must never open a real clinic's records."""
    others = db.session.scalar(select(Clinic.id).where(Clinic.slug != CLINIC_SLUG).limit(1))
    if others is not None and not force:
        raise NotADemoDatabase(
            "This database holds clinics besides the demo; refusing to add demo accounts "
            "with a public password. Use an empty database (or --force on a test copy)."
        )
    clinic = _ensure_clinic()
    coordinator = _ensure_user(COORDINATOR_EMAIL, Role.COORDINATOR, clinic, "Demo Coordinator")
    _ensure_user(ADMIN_EMAIL, Role.ADMIN, clinic, "Demo Admin")
    _ensure_token(coordinator)
    today = clock.today_in(clinic.timezone)
    created = sum(_ensure_patient(spec, clinic, today) for spec in PATIENTS)
    # What the daily stage sweep would do (safe to repeat: each plan moves once).
    in_review = len(stages.advance_biopsy_reviews())
    db.session.flush()
    return "\n".join(
        [
            f"Demo data ready: clinic '{clinic.slug}', {created} new patient(s) "
            f"({len(PATIENTS)} in the demo); {in_review} moved to biopsy review.",
            f"Coordinator login: {COORDINATOR_EMAIL} / {DEMO_PASSWORD}",
            f"Admin login:       {ADMIN_EMAIL} / {DEMO_PASSWORD}",
            f"Demo API token:    {DEMO_API_TOKEN}",
        ]
    )
