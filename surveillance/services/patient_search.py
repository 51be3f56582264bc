"""The Patients screen's query: search by name or MRN, sort by the next due event, paginate.

A term matches a patient when it is part of "given family", "family, given" or the MRN,
ignoring case. Substring search cannot use an ordinary index, so each database gets its own
(created by migration ``0007_worklist_performance``, see ``models.SEARCH_INDEX_*``):

* PostgreSQL: a pg_trgm GIN index on the lower-cased search text, which serves ``LIKE
  '%term%'`` itself.
* SQLite: an FTS5 table with the trigram tokenizer (``patients_search``), kept in step with
  ``patients`` by triggers.

Both serve terms of three characters or more; shorter ones (which match many patients, found
quickly in index order) scan the names on both databases.

Pages never count the whole result: ``count_matches`` stops at ``COUNT_LIMIT`` (shown as
"100+"), and a page fetches one row more than it shows to know whether another follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    case,
    column,
    func,
    literal_column,
    or_,
    select,
    table,
)
from sqlalchemy.orm import joinedload, selectinload

from surveillance.extensions import db
from surveillance.models import EventStatus, Patient, PlanEvent, SurveillancePlan, User
from surveillance.services import access
from surveillance.services.counting import CappedCount, capped_count

OPEN_STATUSES = (EventStatus.PLANNED, EventStatus.BOOKED)
# FTS5's trigram tokenizer finds substrings of at least three characters.
TRIGRAM = 3
# Separates the searched fields in PostgreSQL's search text (see ``postgres_search_text``).
FIELD_SEPARATOR = "\n"
# SQLite's FTS5 table (no model: it exists only on SQLite, made by the migration).
SQLITE_SEARCH = table("patients_search", column("rowid"))


class SortOrder(StrEnum):
    NEXT_DUE = "next-due"
    NAME = "name"


class RowPlan(StrEnum):
    """The plan whose next open event a row shows."""

    # The Patients screen: the plan being followed (none once surveillance has ended).
    ACTIVE = "active"
    # The API's patient summaries, which also give this plan's status: the latest plan.
    LATEST = "latest"


@dataclass(frozen=True)
class PatientRow:
    patient: Patient
    next_event: PlanEvent | None


@dataclass(frozen=True)
class SearchPage:
    rows: list[PatientRow]
    page: int
    per_page: int
    total: CappedCount
    has_next: bool


def postgres_search_text() -> ColumnElement[str]:
    """``lower(given || ' ' || family || E'\\n' || family || ', ' || given || E'\\n' || mrn)``,
    written with literal separators (not bound parameters) so that PostgreSQL matches it to
    the expression of the trigram index ``ix_patients_search_trgm``."""
    space, comma, newline = (literal_column(v) for v in ("' '", "', '", "E'\\n'"))
    given, family = Patient.given_name, Patient.family_name
    return func.lower(
        given + space + family + newline + family + comma + given + newline + Patient.mrn
    )


def _scan_condition(term: str) -> ColumnElement[bool]:
    """The term in any of the three fields, without an index (short terms)."""
    given, family = func.lower(Patient.given_name), func.lower(Patient.family_name)
    if " " in term or "," in term:
        # Only such a term can span the separator of "given family" or "family, given".
        given = func.lower(Patient.given_name + " " + Patient.family_name)
        family = func.lower(Patient.family_name + ", " + Patient.given_name)
    # Otherwise it lies within one name: the names alone are cheaper to search, row by row,
    # than the two joined strings (a short term reads a few thousand rows).
    # autoescape: a typed % or _ is a character to find, not a wildcard.
    return or_(
        given.contains(term, autoescape=True),
        family.contains(term, autoescape=True),
        func.lower(Patient.mrn).contains(term, autoescape=True),
    )


def _fts_condition(term: str) -> ColumnElement[bool]:
    # One FTS5 phrase: the term's trigrams in a row, within one column, i.e. a substring.
    phrase = '"' + term.replace('"', '""') + '"'
    matches = select(SQLITE_SEARCH.c.rowid).where(
        literal_column(SQLITE_SEARCH.name).op("MATCH")(phrase)
    )
    return Patient.id.in_(matches)


def term_condition(term: str) -> ColumnElement[bool]:
    """Patients whose names or MRN contain ``term`` (already stripped and lower-cased)."""
    if len(term) < TRIGRAM:
        # No index serves so short a term (a trigram index needs three characters); it is
        # common, so the first page is found after reading a few thousand rows in name order.
        return _scan_condition(term)
    if db.session.get_bind().dialect.name == "postgresql":
        if FIELD_SEPARATOR in term:
            # Only a term with the separator could match across two fields; no name has one.
            return literal_column("1") == 0
        return postgres_search_text().contains(term, autoescape=True)
    return _fts_condition(term)


def _filtered(user: User, term: str, clinic_id: int | None) -> Select[Any]:
    query = access.scope_patients(select(Patient), user)
    if clinic_id is not None:
        query = query.where(Patient.clinic_id == clinic_id)
    if term := term.strip().lower():
        query = query.where(term_condition(term))
    return query


def count_matches(user: User, term: str = "", clinic_id: int | None = None) -> CappedCount:
    return capped_count(_filtered(user, term, clinic_id).with_only_columns(Patient.id))


def search(
    user: User,
    term: str = "",
    clinic_id: int | None = None,
    sort: SortOrder = SortOrder.NEXT_DUE,
    page: int = 1,
    per_page: int = 25,
    row_plan: RowPlan = RowPlan.ACTIVE,
) -> SearchPage:
    query = _filtered(user, term, clinic_id)
    names = (Patient.family_name, Patient.given_name, Patient.id)
    # ``next_due_on`` is kept by services.next_due; patients without an open event come last.
    next_due = Patient.next_due_on.asc().nulls_last()
    order = (next_due, *names) if sort == SortOrder.NEXT_DUE else names
    # The plans without their events: a row shows one event, and loading every event of the
    # page (about a dozen a patient) cost more than the rest of the page together.
    patients = db.session.scalars(
        query.options(joinedload(Patient.clinic), selectinload(Patient.plans))
        .order_by(*order)
        .limit(per_page + 1)  # one more: is there a next page?
        .offset((page - 1) * per_page)
    ).all()
    shown = patients[:per_page]
    plans = [p.active_plan if row_plan == RowPlan.ACTIVE else p.latest_plan for p in shown]
    upcoming = next_open_events([plan for plan in plans if plan is not None])
    return SearchPage(
        [
            PatientRow(patient, upcoming.get(plan.id) if plan is not None else None)
            for patient, plan in zip(shown, plans, strict=True)
        ],
        page,
        per_page,
        count_matches(user, term, clinic_id),
        has_next=len(patients) > per_page,
    )


def _next_open_events_statement() -> Select[tuple[PlanEvent]]:
    """The events of ``next_open_events``, for the plan ids bound as ``plan_ids``.

    A window function ranks each plan's events, open ones first, in the plan's order. The
    status is a sort key rather than a filter so that the only condition is on ``plan_id``:
    given ``status IN (...)``, SQLite (without statistics) reads every open event of every
    patient through a status index instead of a dozen rows a plan. The ranking reads only the
    columns it needs; the chosen events are then loaded by primary key.
    """
    is_open = PlanEvent.status.in_(OPEN_STATUSES)
    order = (case((is_open, 0), else_=1), PlanEvent.due_on, PlanEvent.kind, PlanEvent.ordinal)
    ranked = (
        select(
            PlanEvent.id,
            is_open.label("is_open"),
            func.row_number().over(partition_by=PlanEvent.plan_id, order_by=order).label("rank"),
        )
        .where(PlanEvent.plan_id.in_(bindparam("plan_ids", expanding=True)))
        .subquery()
    )
    firsts = select(ranked.c.id).where(ranked.c.rank == 1, ranked.c.is_open)
    return select(PlanEvent).where(PlanEvent.id.in_(firsts))


# Built once: a page's statement is then only bound and run (constructing it cost more than
# running it).
_NEXT_OPEN_EVENTS = _next_open_events_statement()


def next_open_events(plans: list[SurveillancePlan]) -> dict[int, PlanEvent]:
    """Each plan's first open (planned or booked) event in the plan's own order
    (``SurveillancePlan.events``), by plan id; plans without one are left out. One statement
    for any number of plans."""
    if not plans:
        return {}
    events = db.session.scalars(_NEXT_OPEN_EVENTS, {"plan_ids": [plan.id for plan in plans]})
    return {event.plan_id: event for event in events}


def next_open_event(plan: SurveillancePlan | None) -> PlanEvent | None:
    """The plan's first open event, from its loaded events (``next_open_events`` for many)."""
    if plan is None:
        return None
    return next((e for e in plan.events if e.status in OPEN_STATUSES), None)
