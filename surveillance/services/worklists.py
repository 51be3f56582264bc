"""The coordinator's worklists: what needs a phone call or a decision today.

Each list is a filter on plan events of active plans in the clinics a user may see. The same
queries serve the Today screen, the API and the CSV exports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import contains_eager

from surveillance.extensions import db
from surveillance.models import (
    EventStatus,
    Patient,
    PlanEvent,
    PlanStatus,
    SurveillancePlan,
    User,
)
from surveillance.planning import EventKind
from surveillance.services.access import visible_clinic_ids


def _overdue(today: date) -> ColumnElement[bool]:
    return and_(PlanEvent.status == EventStatus.PLANNED, PlanEvent.due_on < today)


def _to_book(today: date) -> ColumnElement[bool]:
    return and_(
        PlanEvent.kind == EventKind.VISIT,
        PlanEvent.status == EventStatus.PLANNED,
        PlanEvent.window_start <= today,
        PlanEvent.due_on >= today,
    )


def _biopsy_due(today: date) -> ColumnElement[bool]:
    return and_(
        PlanEvent.kind == EventKind.BIOPSY,
        PlanEvent.status == EventStatus.PLANNED,
        PlanEvent.window_start <= today,
    )


def _missed(today: date) -> ColumnElement[bool]:
    return PlanEvent.status == EventStatus.MISSED


@dataclass(frozen=True)
class Worklist:
    name: str
    title: str
    description: str
    condition: Callable[[date], ColumnElement[bool]]


WORKLISTS: dict[str, Worklist] = {
    w.name: w
    for w in (
        Worklist("overdue", "Overdue", "Due date passed and nothing booked or recorded.", _overdue),
        Worklist("to-book", "To book", "Booking window open, not booked yet.", _to_book),
        Worklist(
            "biopsy-due", "Biopsy due", "One-year biopsy window open, not booked.", _biopsy_due
        ),
        Worklist("missed", "Missed", "Patient did not come: decide what happens next.", _missed),
    )
}


@dataclass(frozen=True)
class Page:
    items: list[PlanEvent]
    page: int
    per_page: int
    total: int


def _query(worklist: Worklist, user: User, today: date, clinic_id: int | None) -> Select:  # type: ignore[type-arg]
    query = (
        select(PlanEvent)
        .join(PlanEvent.plan)
        .join(PlanEvent.patient)
        .where(SurveillancePlan.status == PlanStatus.ACTIVE, worklist.condition(today))
    )
    clinic_ids = visible_clinic_ids(user)
    if clinic_ids is not None:
        query = query.where(Patient.clinic_id.in_(clinic_ids))
    if clinic_id is not None:
        query = query.where(Patient.clinic_id == clinic_id)
    return query


def fetch(
    name: str,
    user: User,
    today: date,
    page: int = 1,
    per_page: int = 50,
    clinic_id: int | None = None,
) -> Page:
    worklist = WORKLISTS[name]
    query = _query(worklist, user, today, clinic_id)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = db.session.scalars(
        query.options(contains_eager(PlanEvent.patient).joinedload(Patient.clinic))
        .order_by(PlanEvent.due_on, PlanEvent.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return Page(list(items), page, per_page, total)


def counts(user: User, today: date, clinic_id: int | None = None) -> dict[str, int]:
    """How many items each list holds, in one query."""
    columns = [
        func.count(PlanEvent.id).filter(w.condition(today)).label(w.name.replace("-", "_"))
        for w in WORKLISTS.values()
    ]
    query = (
        select(*columns)
        .select_from(PlanEvent)
        .join(PlanEvent.plan)
        .join(PlanEvent.patient)
        .where(
            SurveillancePlan.status == PlanStatus.ACTIVE,
            or_(*(w.condition(today) for w in WORKLISTS.values())),
        )
    )
    clinic_ids = visible_clinic_ids(user)
    if clinic_ids is not None:
        query = query.where(Patient.clinic_id.in_(clinic_ids))
    if clinic_id is not None:
        query = query.where(Patient.clinic_id == clinic_id)
    row = db.session.execute(query).one()
    return {name: int(value or 0) for name, value in zip(WORKLISTS, row, strict=True)}
