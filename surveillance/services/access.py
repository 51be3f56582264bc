"""Who may see what: coordinators see their clinics' patients, admins see all."""

from __future__ import annotations

from sqlalchemy import Select, select

from surveillance.errors import NotFound, ValidationFailed
from surveillance.extensions import db
from surveillance.models import Clinic, Patient, PlanEvent, User


def visible_clinic_ids(user: User) -> list[int] | None:
    """The clinics a user may see, or ``None`` for all (admins)."""
    return None if user.is_admin else [c.id for c in user.clinics]


def scope_patients(query: Select, user: User) -> Select:  # type: ignore[type-arg]
    clinic_ids = visible_clinic_ids(user)
    return query if clinic_ids is None else query.where(Patient.clinic_id.in_(clinic_ids))


def get_patient(user: User, patient_id: int) -> Patient:
    """The patient, or ``NotFound`` when it is missing *or* belongs to another clinic: the two
    answers are the same so that nobody can probe which patient ids exist."""
    patient = db.session.get(Patient, patient_id)
    if patient is None or not can_see_clinic(user, patient.clinic_id):
        raise NotFound("Patient not found.")
    return patient


def get_event(user: User, event_id: int) -> PlanEvent:
    event = db.session.get(PlanEvent, event_id)
    if event is None or not can_see_clinic(user, event.patient.clinic_id):
        raise NotFound("Event not found.")
    return event


def can_see_clinic(user: User, clinic_id: int) -> bool:
    return user.is_admin or any(c.id == clinic_id for c in user.clinics)


def clinic_for_enrolment(user: User, slug: str | None) -> Clinic:
    """Resolve the clinic an enrolment goes to; the slug may be left out with one clinic."""
    if slug is None:
        if len(user.clinics) == 1:
            return user.clinics[0]
        raise ValidationFailed({"clinic": "Say which clinic (slug): you belong to several."})
    clinic = db.session.scalar(select(Clinic).where(Clinic.slug == slug))
    if clinic is None or not can_see_clinic(user, clinic.id):
        raise ValidationFailed({"clinic": "Unknown clinic."})
    return clinic
