"""The Patients screen's query: search by name or MRN, sort by the next due event, paginate."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, or_, select
from sqlalchemy.orm import joinedload, selectinload

from surveillance.extensions import db
from surveillance.models import EventStatus, Patient, PlanEvent, SurveillancePlan, User
from surveillance.services import access

OPEN_STATUSES = (EventStatus.PLANNED, EventStatus.BOOKED)


class SortOrder(StrEnum):
    NEXT_DUE = "next-due"
    NAME = "name"


@dataclass(frozen=True)
class PatientRow:
    patient: Patient
    next_event: PlanEvent | None


@dataclass(frozen=True)
class SearchPage:
    rows: list[PatientRow]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _next_due():  # type: ignore[no-untyped-def]
    """The earliest open (planned or booked) event of the patient's active plan."""
    return (
        select(func.min(PlanEvent.due_on))
        .join(PlanEvent.plan)
        .where(
            PlanEvent.patient_id == Patient.id,
            # Wrapped so that no planner walks the (status, due_on) index for MIN(due_on) and
            # checks every open event of every patient: the patient's own events (by the
            # patient_id index) are few. Status is never NULL, so the result is the same.
            func.coalesce(PlanEvent.status, "").in_(OPEN_STATUSES),
            SurveillancePlan.status == "active",
        )
        .correlate(Patient)
        .scalar_subquery()
    )


def search(
    user: User,
    term: str = "",
    clinic_id: int | None = None,
    sort: SortOrder = SortOrder.NEXT_DUE,
    page: int = 1,
    per_page: int = 25,
) -> SearchPage:
    query = access.scope_patients(select(Patient), user)
    if clinic_id is not None:
        query = query.where(Patient.clinic_id == clinic_id)
    if term := term.strip().lower():
        # autoescape: a typed % or _ is a character to find, not a wildcard.
        query = query.where(
            or_(
                func.lower(Patient.given_name + " " + Patient.family_name).contains(
                    term, autoescape=True
                ),
                func.lower(Patient.family_name + ", " + Patient.given_name).contains(
                    term, autoescape=True
                ),
                func.lower(Patient.mrn).contains(term, autoescape=True),
            )
        )
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    names = (Patient.family_name, Patient.given_name, Patient.id)
    order = (_next_due().asc().nulls_last(), *names) if sort == SortOrder.NEXT_DUE else names
    patients = db.session.scalars(
        query.options(
            joinedload(Patient.clinic),
            selectinload(Patient.plans).selectinload(SurveillancePlan.events),
        )
        .order_by(*order)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return SearchPage([PatientRow(p, next_open_event(p)) for p in patients], page, per_page, total)


def next_open_event(patient: Patient) -> PlanEvent | None:
    plan = patient.active_plan
    if plan is None:
        return None
    return next((e for e in plan.events if e.status in OPEN_STATUSES), None)
