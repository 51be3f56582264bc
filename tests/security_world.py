"""Two clinics' worth of synthetic records for the access, log and schemathesis tests.

Clinic A holds a patient with every kind of related record (events, a booking, a closure, a
contact attempt, a failed reminder, calendar links, an API token); clinic B has a coordinator
who must never reach any of it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from surveillance.extensions import db
from surveillance.models import (
    ApiToken,
    Clinic,
    ClinicClosure,
    ContactAttempt,
    OutboxMessage,
    OutboxStatus,
    Patient,
    PlanEvent,
    User,
)
from surveillance.services import accounts, contacts, feed_tokens, plans
from tests import factories

TODAY = "2026-01-05 17:00:00+00:00"  # tests using the world travel here (tick=False)
# Distinctive synthetic identifiers that must never show up where they should not.
A_GIVEN = "Quentessa"
A_FAMILY = "Zabriskiewicz"
A_MRN = "SECRETMRN-4242"
A_BIRTH = "1958-09-17"
A_EMAIL = "quentessa.zabriskiewicz@example.org"


@dataclass
class World:
    clinic_a: Clinic
    clinic_b: Clinic
    coordinator_a: User
    coordinator_b: User
    patient_a: Patient
    event_a: PlanEvent
    closure_a: ClinicClosure
    token_a: ApiToken
    token_a_secret: str
    token_b_secret: str
    reminder_a: OutboxMessage
    attempt_a: ContactAttempt
    patient_feed_secret: str
    clinic_feed_secret_a: str
    clinic_feed_secret_b: str
    patient_b: Patient

    def url_values(self) -> dict[str, object]:
        """A real value of clinic A's for every URL variable name the app uses."""
        return {
            "patient_id": self.patient_a.id,
            "event_id": self.event_a.id,
            "closure_id": self.closure_a.id,
            "clinic_id": self.clinic_a.id,
            "user_id": self.coordinator_a.id,
            "token_id": self.token_a.id,
            "message_id": self.reminder_a.id,
            "attempt_id": self.attempt_a.id,
            "uid": self.event_a.uid,
            "name": "to-book",
            "slug": "watchful-waiting",
        }


def build() -> World:
    clinic_a = factories.clinic(name="Alpha Clinic")
    clinic_b = factories.clinic(name="Beta Clinic")
    coordinator_a = factories.user(clinics=[clinic_a])
    coordinator_b = factories.user(clinics=[clinic_b])
    patient_a = factories.enrol(
        clinic_a,
        mrn=A_MRN,
        given_name=A_GIVEN,
        family_name=A_FAMILY,
        birth_date=A_BIRTH,
        email=A_EMAIL,
    )
    patient_b = factories.enrol(clinic_b, given_name="Bettina", family_name="Otherclinic")
    event_a = patient_a.latest_plan.events[0]
    local_ten = datetime.combine(event_a.due_on, datetime.min.time()) + timedelta(hours=10)
    plans.book(event_a, local_ten, 30, "Room 4")
    closure_a = ClinicClosure(
        clinic=clinic_a, closed_on=datetime(2026, 12, 24).date(), reason="Holiday"
    )
    db.session.add(closure_a)
    attempt_a = contacts.log_attempt(
        patient_a.latest_plan.events[1], coordinator_a, "no_answer", "Left no message", None
    )
    patient_feed_secret = feed_tokens.rotate_patient_token(patient_a)
    clinic_feed_secret_a = feed_tokens.rotate_user_token(coordinator_a)
    clinic_feed_secret_b = feed_tokens.rotate_user_token(coordinator_b)
    token_a_secret = accounts.issue_api_token(coordinator_a, "alpha script")
    token_b_secret = accounts.issue_api_token(coordinator_b, "beta script")
    now = datetime(2026, 1, 5, 17, tzinfo=UTC)
    reminder_a = OutboxMessage(
        dedupe_key=f"test:{uuid.uuid4().hex}",
        rule="book-window",
        audience="patient",
        clinic_id=clinic_a.id,
        event_id=event_a.id,
        patient_id=patient_a.id,
        recipient=A_EMAIL,
        due_at=now - timedelta(hours=3),
        expires_at=now + timedelta(days=10),
        status=OutboxStatus.FAILED,
        attempts=10,
        next_attempt_at=now,
        message_id=f"<test-{uuid.uuid4().hex}@watchful.test>",
        last_error="The mail server refused the recipient (550).",
        failed_at=now - timedelta(hours=1),
    )
    db.session.add(reminder_a)
    db.session.commit()
    token_a = next(t for t in coordinator_a.api_tokens if t.name == "alpha script")
    return World(
        clinic_a=clinic_a,
        clinic_b=clinic_b,
        coordinator_a=coordinator_a,
        coordinator_b=coordinator_b,
        patient_a=patient_a,
        event_a=event_a,
        closure_a=closure_a,
        token_a=token_a,
        token_a_secret=token_a_secret,
        token_b_secret=token_b_secret,
        reminder_a=reminder_a,
        attempt_a=attempt_a,
        patient_feed_secret=patient_feed_secret,
        clinic_feed_secret_a=clinic_feed_secret_a,
        clinic_feed_secret_b=clinic_feed_secret_b,
        patient_b=patient_b,
    )
