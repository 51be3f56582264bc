"""The coordinator's worklists: what needs a phone call or a decision today.

Each list is a filter on plan events of active plans in the clinics a user may see, except
``failed-reminders``, which lists outbox messages that could not be delivered. An event with a
"call again on" date in the future (from a contact attempt) stays off the lists until then.
The same queries serve the Today screen, the API, the CSV exports and the daily digest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import contains_eager, joinedload

from surveillance.extensions import db
from surveillance.models import (
    ContactAttempt,
    EventStatus,
    OutboxMessage,
    OutboxStatus,
    Patient,
    PlanEvent,
    PlanStatus,
    SurveillancePlan,
    User,
)
from surveillance.planning import LONGEST_WINDOW, EventKind
from surveillance.services.access import visible_clinic_ids
from surveillance.services.counting import CappedCount, capped_subquery


def _not_snoozed(today: date) -> ColumnElement[bool]:
    return or_(PlanEvent.call_again_on.is_(None), PlanEvent.call_again_on <= today)


def _overdue(today: date) -> ColumnElement[bool]:
    return and_(
        PlanEvent.status == EventStatus.PLANNED, PlanEvent.due_on < today, _not_snoozed(today)
    )


def _window_opened(kind: EventKind, today: date) -> ColumnElement[bool]:
    """The event's window has opened. The second condition follows from the first (planning
    never makes a window longer than ``LONGEST_WINDOW``, and the due date lies in it) and is
    said for the planners: it bounds the read of the (kind, status, due_on) index to the
    events due soon, which that index also returns in the lists' order."""
    return and_(
        PlanEvent.window_start <= today,
        PlanEvent.due_on <= today + LONGEST_WINDOW[kind.value],
    )


def _to_book(today: date) -> ColumnElement[bool]:
    return and_(
        PlanEvent.kind == EventKind.VISIT,
        PlanEvent.status == EventStatus.PLANNED,
        _window_opened(EventKind.VISIT, today),
        PlanEvent.due_on >= today,
        _not_snoozed(today),
    )


def _biopsy_due(today: date) -> ColumnElement[bool]:
    return and_(
        PlanEvent.kind == EventKind.BIOPSY,
        PlanEvent.status == EventStatus.PLANNED,
        _window_opened(EventKind.BIOPSY, today),
        _not_snoozed(today),
    )


def _missed(today: date) -> ColumnElement[bool]:
    return and_(PlanEvent.status == EventStatus.MISSED, _not_snoozed(today))


@dataclass(frozen=True)
class Worklist:
    name: str
    title: str
    description: str
    # ``None``: the list is not about events but about undelivered messages.
    condition: Callable[[date], ColumnElement[bool]] | None


FAILED_REMINDERS = "failed-reminders"

WORKLISTS: dict[str, Worklist] = {
    w.name: w
    for w in (
        Worklist("overdue", "Overdue", "Due date passed and nothing booked or recorded.", _overdue),
        Worklist("to-book", "To book", "Booking window open, not booked yet.", _to_book),
        Worklist(
            "biopsy-due", "Biopsy due", "One-year biopsy window open, not booked.", _biopsy_due
        ),
        Worklist("missed", "Missed", "Patient did not come: decide what happens next.", _missed),
        Worklist(
            FAILED_REMINDERS,
            "Failed reminders",
            "Emails that could not be delivered: reach the person another way.",
            None,
        ),
    )
}
EVENT_WORKLISTS = {name: w for name, w in WORKLISTS.items() if w.condition is not None}


@dataclass(frozen=True)
class Page:
    """One page of a list. No total: counting a long list costs more than reading a page
    (``counts`` gives capped counts); ``has_next`` comes from reading one row more."""

    # PlanEvents, or OutboxMessages for ``failed-reminders``.
    items: list[Any]
    page: int
    per_page: int
    has_next: bool


def _page(rows: Any, page: int, per_page: int) -> Page:
    items = list(rows)
    return Page(items[:per_page], page, per_page, has_next=len(items) > per_page)


def _query(
    worklist: Worklist, user: User, today: date, clinic_id: int | None, with_patient: bool = False
) -> Select:  # type: ignore[type-arg]
    """The list's events, read in the order of an index on the events, so that a page and a
    capped count stop after the rows they need; the patient is joined only when the caller
    loads it (a count needs no patient)."""
    assert worklist.condition is not None
    query = (
        select(PlanEvent)
        .join(PlanEvent.plan)
        .where(SurveillancePlan.status == PlanStatus.ACTIVE, worklist.condition(today))
    )
    if with_patient:
        query = query.join(PlanEvent.patient)
    # By the event's own copy of the clinic: the list then reads its clinics' part of an index
    # rather than every clinic's events, each one looked up on its patient.
    clinic_ids = visible_clinic_ids(user)
    if clinic_ids is not None:
        query = query.where(PlanEvent.clinic_id.in_(clinic_ids))
    if clinic_id is not None:
        query = query.where(PlanEvent.clinic_id == clinic_id)
    return query


def fetch(
    name: str,
    user: User,
    today: date,
    page: int = 1,
    per_page: int = 50,
    clinic_id: int | None = None,
) -> Page:
    if name == FAILED_REMINDERS:
        return _fetch_failed(user, page, per_page, clinic_id)
    worklist = WORKLISTS[name]
    query = _query(worklist, user, today, clinic_id, with_patient=True)
    rows = db.session.scalars(
        query.options(contains_eager(PlanEvent.patient).joinedload(Patient.clinic))
        .order_by(PlanEvent.due_on, PlanEvent.id)
        .limit(per_page + 1)
        .offset((page - 1) * per_page)
    ).all()
    return _page(rows, page, per_page)


def _count_query(name: str, user: User, today: date, clinic_id: int | None) -> Select:  # type: ignore[type-arg]
    # Ordered like the page although a count needs no order: the planners then walk the same
    # index as the page and stop after COUNT_LIMIT + 1 rows. Unordered, they may pick a scan
    # that meets the list's rows only at the end of the table (rows are not spread evenly).
    if name == FAILED_REMINDERS:
        query = _failed_query(user, clinic_id)
        return query.with_only_columns(OutboxMessage.id).order_by(OutboxMessage.failed_at.desc())
    query = _query(WORKLISTS[name], user, today, clinic_id)
    return query.with_only_columns(PlanEvent.id).order_by(PlanEvent.due_on)


def count(name: str, user: User, today: date, clinic_id: int | None = None) -> CappedCount:
    """How many items one list holds, up to ``COUNT_LIMIT`` ("100+" beyond)."""
    query = _count_query(name, user, today, clinic_id)
    return CappedCount.of(db.session.scalar(select(capped_subquery(query))) or 0)


def counts(user: User, today: date, clinic_id: int | None = None) -> dict[str, CappedCount]:
    """How many items each list holds, up to ``COUNT_LIMIT`` ("100+" beyond): one statement
    for every list. Each list is counted by its own subquery (not by one pass with an OR of
    every condition), so each uses its own index and stops after ``COUNT_LIMIT + 1`` rows."""
    subqueries = [capped_subquery(_count_query(n, user, today, clinic_id)) for n in WORKLISTS]
    row = db.session.execute(select(*subqueries)).one()
    return {
        name: CappedCount.of(int(value or 0)) for name, value in zip(WORKLISTS, row, strict=True)
    }


# --- Failed reminders -------------------------------------------------------------------------


def _failed_query(user: User, clinic_id: int | None) -> Select:  # type: ignore[type-arg]
    query = select(OutboxMessage).where(
        OutboxMessage.status == OutboxStatus.FAILED, OutboxMessage.dismissed_at.is_(None)
    )
    clinic_ids = visible_clinic_ids(user)
    if clinic_ids is not None:
        query = query.where(OutboxMessage.clinic_id.in_(clinic_ids))
    if clinic_id is not None:
        query = query.where(OutboxMessage.clinic_id == clinic_id)
    return query


def _fetch_failed(user: User, page: int, per_page: int, clinic_id: int | None) -> Page:
    query = _failed_query(user, clinic_id)
    rows = db.session.scalars(
        query.options(
            joinedload(OutboxMessage.clinic),
            joinedload(OutboxMessage.user),
            joinedload(OutboxMessage.event),
            joinedload(OutboxMessage.patient).joinedload(Patient.clinic),
        )
        .order_by(OutboxMessage.failed_at.desc(), OutboxMessage.id.desc())
        .limit(per_page + 1)
        .offset((page - 1) * per_page)
    ).all()
    return _page(rows, page, per_page)


def latest_contact_attempts(event_ids: list[int]) -> dict[int, ContactAttempt]:
    """The most recent contact attempt of each event, in one query (no query per row)."""
    if not event_ids:
        return {}
    newest = (
        select(ContactAttempt.event_id, func.max(ContactAttempt.id).label("id"))
        .where(ContactAttempt.event_id.in_(event_ids))
        .group_by(ContactAttempt.event_id)
        .subquery()
    )
    rows = db.session.scalars(select(ContactAttempt).join(newest, newest.c.id == ContactAttempt.id))
    return {attempt.event_id: attempt for attempt in rows}
