"""Keeping every active plan the horizon ahead, set-based (the daily ``extend-horizons`` job).

``plans.extend_horizon`` does this for one plan through the ORM: load the plan with all its
events, re-plan, flush. At 100,000 plans that is minutes, and on a typical day almost every
plan that needs anything needs exactly one thing: new visits at the end. So the job works on
batches of plans instead:

1. candidates come from an index on ``horizon_until``: a plan's ``horizon_until``
   is the nominal date of its last visit, always at least ``horizon_end`` of the day it was
   (re)planned, so only plans whose horizon falls before today's can need a visit;
2. the pure planning engine computes each plan's desired visits and reconciles them with the
   plan's current visits (read as plain rows), exactly as ``plans.replan`` does;
3. plans whose reconciliation only *creates* visits (and whose biopsy stays put) are written
   in bulk: one multi-row INSERT of the events, one executemany UPDATE of the horizons
   (guarded, so a plan a coordinator changed meanwhile is noticed), one UPDATE raising the
   patients' ``feed_version`` and the audit entries, in one transaction per batch;
4. anything else (a withdrawn visit to restore, a planned date a closure now blocks, a moved
   biopsy, a planning error) goes through ``plans.extend_horizon`` itself, in the same
   transaction, so those rare plans behave exactly as before, reminders and all.

The audit log normally collects changes from ORM session events, which bulk Core writes
bypass; the bulk path therefore writes the same entries the ORM path would: one ``create`` per
new event with all its values, one ``update`` per plan with its old and new horizon.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from sqlalchemy import Row, and_, bindparam, case, insert, select, update
from sqlalchemy.orm import joinedload, selectinload

from surveillance import audit, clock, planning
from surveillance.clinic_calendar import ClinicCalendar
from surveillance.extensions import db, immediate_transactions
from surveillance.models import (
    Clinic,
    EventStatus,
    Patient,
    PlanEvent,
    PlanStatus,
    SurveillancePlan,
    new_uid,
    utcnow,
)
from surveillance.planning import EventKind, EventSlot, ExistingVisit
from surveillance.services import next_due, plans

PLAN_BATCH = 5000  # plans per transaction (fewer, larger commits write fewer index pages)

_events = PlanEvent.__table__
_plans = SurveillancePlan.__table__
_patients = Patient.__table__


@dataclass
class HorizonResult:
    plans_extended: int = 0
    visits_added: int = 0

    def add(self, other: HorizonResult) -> None:
        self.plans_extended += other.plans_extended
        self.visits_added += other.visits_added

    def __str__(self) -> str:
        return f"added {self.visits_added} visits to {self.plans_extended} plans"


@dataclass(frozen=True)
class _Extension:
    """What the bulk path writes for one plan."""

    plan: Row[Any]
    creates: list[EventSlot]
    horizon_until: date


class _PlanChangedMeanwhile(Exception):
    """A plan's row no longer matches what the batch read: redo the batch the ORM way."""


# --- The job ----------------------------------------------------------------------------------


def extend_all(
    today_for: Callable[[str], date],
    horizon_months: int,
    should_continue: Callable[[], bool] = lambda: True,
) -> HorizonResult:
    """Extend every active plan, clinic by clinic ("today" is the clinic's own), committing
    after each batch. ``should_continue`` is asked between batches."""
    # On SQLite each batch takes the write lock when it begins (as the CLI's transactions do),
    # so a web request writing meanwhile waits instead of invalidating the batch's reads.
    writing = immediate_transactions.set(True)
    try:
        return _extend_clinics(today_for, horizon_months, should_continue)
    finally:
        immediate_transactions.reset(writing)


def _extend_clinics(
    today_for: Callable[[str], date],
    horizon_months: int,
    should_continue: Callable[[], bool],
) -> HorizonResult:
    result = HorizonResult()
    clinics = db.session.scalars(
        select(Clinic).options(selectinload(Clinic.closures)).order_by(Clinic.id)
    ).all()
    for clinic in clinics:
        today = today_for(clinic.timezone)
        planner = _Planner(clinic.calendar(), today, horizon_months)
        for batch in _batches(_candidates(clinic.id, today, horizon_months), PLAN_BATCH):
            result.add(_extend_batch(batch, planner))
            if not should_continue():
                return result
    return result


def _candidates(clinic_id: int, today: date, horizon_months: int) -> Sequence[Row[Any]]:
    """Active plans of the clinic whose horizon falls short of today's (an index range scan),
    with what planning needs. Each batch's writes check that its plans are still as read.

    ``horizon_end`` is later for a plan enrolled in the future, but such a plan was planned to
    its own enrolment + horizon and so never falls short before its enrolment day."""
    until = planning.horizon_end(today, today, horizon_months)
    return db.session.execute(
        select(
            _plans.c.id,
            _plans.c.patient_id,
            _plans.c.enrolled_on,
            _plans.c.anchor_on,
            _plans.c.anchor_ordinal,
            _plans.c.interval_months,
            _plans.c.horizon_until,
        )
        .join(_patients, _patients.c.id == _plans.c.patient_id)
        .where(
            _plans.c.status == PlanStatus.ACTIVE,
            _plans.c.horizon_until < until,
            _patients.c.clinic_id == clinic_id,
        )
        .order_by(_plans.c.id)
    ).all()


def _batches(rows: Sequence[Row[Any]], size: int) -> Iterable[Sequence[Row[Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


# --- Planning (pure, cached) ------------------------------------------------------------------


class _Planner:
    """The planning engine for one clinic on one day. Plans enrolled on the same day with the
    same interval want the same visits, so slots are computed once per distinct plan shape."""

    def __init__(self, calendar: ClinicCalendar, today: date, horizon_months: int) -> None:
        self.calendar, self.today, self.horizon_months = calendar, today, horizon_months
        self._visits: dict[tuple[date, int, int, date], list[EventSlot]] = {}
        self._biopsies: dict[date, date] = {}

    def required_horizon(self, enrolled_on: date) -> date:
        return planning.horizon_end(self.today, enrolled_on, self.horizon_months)

    def desired_visits(self, plan: Row[Any]) -> list[EventSlot]:
        """What ``plans._desired_visits`` computes (raises ``PlanningError``)."""
        until = self.required_horizon(plan.enrolled_on)
        key = (plan.anchor_on, plan.anchor_ordinal, plan.interval_months, until)
        if key not in self._visits:
            self._visits[key] = planning.visit_slots(
                plan.anchor_on, plan.anchor_ordinal, plan.interval_months, until, self.calendar
            )
        return self._visits[key]

    def biopsy_due(self, enrolled_on: date) -> date:
        if enrolled_on not in self._biopsies:
            self._biopsies[enrolled_on] = planning.biopsy_slot(enrolled_on, self.calendar).due_on
        return self._biopsies[enrolled_on]


def _plan_extension(
    plan: Row[Any],
    visits: list[ExistingVisit],
    biopsies_due: list[date],
    planner: _Planner,
) -> _Extension | Literal["orm"] | None:
    """The bulk write for one plan; ``None`` when it needs nothing, ``"orm"`` when it needs
    more than new visits (the ORM path handles it)."""
    if plan.horizon_until >= planner.required_horizon(plan.enrolled_on):
        return None
    try:
        desired = planner.desired_visits(plan)
        biopsy_due = planner.biopsy_due(plan.enrolled_on) if biopsies_due else None
    except planning.PlanningError:
        return "orm"  # the ORM path raises the same error, as the job always has
    reconciliation = planning.reconcile_visits(visits, desired, plan.anchor_ordinal, planner.today)
    if reconciliation.moves or reconciliation.cancels:
        return "orm"
    if any(due != biopsy_due for due in biopsies_due):
        return "orm"  # ``plans._refresh_biopsy`` would move it
    return _Extension(plan, reconciliation.creates, desired[-1].nominal_on)


# --- One batch --------------------------------------------------------------------------------


def _extend_batch(plan_rows: Sequence[Row[Any]], planner: _Planner) -> HorizonResult:
    """Extend one batch of plans in one transaction."""
    visits, biopsies = _plan_events({plan.id: plan for plan in plan_rows}, planner.today)
    bulk: list[_Extension] = []
    by_orm: list[int] = []
    for plan in plan_rows:
        extension = _plan_extension(plan, visits[plan.id], biopsies[plan.id], planner)
        if extension == "orm":
            by_orm.append(plan.id)
        elif isinstance(extension, _Extension):
            bulk.append(extension)
    try:
        result = _write(bulk)
    except _PlanChangedMeanwhile:
        db.session.rollback()
        by_orm, result = [plan.id for plan in plan_rows], HorizonResult()
    result.add(_extend_by_orm(by_orm, planner.today))
    db.session.commit()
    return result


def _plan_events(
    plans_by_id: dict[int, Row[Any]], today: date
) -> tuple[dict[int, list[ExistingVisit]], dict[int, list[date]]]:
    """Each plan's visits numbered after its anchor (the only ones re-planning can touch or
    that can stand where a desired visit goes) and its planned biopsies still to come.

    One query by plan id for all the batch's events, sorted out here: narrower SQL filters
    tempt SQLite into scanning the much larger ``(status, due_on)`` index instead."""
    rows = db.session.execute(
        select(
            _events.c.plan_id,
            _events.c.id,
            _events.c.kind,
            _events.c.ordinal,
            _events.c.status,
            _events.c.cancelled_by_replan,
            _events.c.due_on,
        ).where(_events.c.plan_id.in_(list(plans_by_id)))
    ).all()
    visits: dict[int, list[ExistingVisit]] = defaultdict(list)
    biopsies: dict[int, list[date]] = defaultdict(list)
    for plan_id, event_id, kind, ordinal, status, by_replan, due_on in rows:
        if kind == EventKind.VISIT:
            if ordinal > plans_by_id[plan_id].anchor_ordinal:
                visits[plan_id].append(
                    ExistingVisit(
                        event_id, ordinal, planning.reconciliation_status(status, by_replan), due_on
                    )
                )
        elif kind == EventKind.BIOPSY and status == EventStatus.PLANNED and due_on >= today:
            biopsies[plan_id].append(due_on)
    return visits, biopsies


# --- Bulk writes ------------------------------------------------------------------------------


def _write(extensions: list[_Extension]) -> HorizonResult:
    """Horizons, new events, feed versions and audit entries, set-based. Plans first: the
    guarded UPDATE locks their rows (PostgreSQL), so nobody re-plans them until commit."""
    result = HorizonResult()
    changing = [x for x in extensions if x.creates or x.horizon_until != x.plan.horizon_until]
    if not changing:
        return result
    now, stamp = clock.utcnow(), utcnow()
    _update_horizons(changing, stamp)
    rows = _event_rows(changing, now, stamp)
    ids = _insert_events(rows)
    patient_ids = sorted({x.plan.patient_id for x in changing if x.creates})
    if patient_ids:
        # New visits show in the patient's feed and page: a new version invalidates caches.
        db.session.execute(
            update(_patients)
            .where(_patients.c.id.in_(patient_ids))
            .values(feed_version=_patients.c.feed_version + 1, updated_at=stamp)
        )
    _audit(changing, rows, ids, now)
    result.plans_extended = len(patient_ids)  # one active plan per patient
    result.visits_added = len(rows)
    # Core writes bypass the flush hook that keeps the stored next-due date in step.
    next_due.refresh(patient_ids)
    return result


def _update_horizons(extensions: list[_Extension], stamp: Any) -> None:
    """One executemany UPDATE, each row only if the plan is still as read; otherwise a
    coordinator re-planned it meanwhile and the batch is redone through the ORM. (Every
    written plan is updated, also one whose horizon stays, so that all of them are checked
    and locked; ``updated_at`` moves only with the horizon, as with the ORM.)"""
    new_horizon = bindparam("new_horizon", type_=_plans.c.horizon_until.type)
    stamp_param = bindparam("stamp", type_=_plans.c.updated_at.type)
    statement = (
        update(_plans)
        .where(
            and_(
                _plans.c.id == bindparam("plan_id"),
                _plans.c.status == PlanStatus.ACTIVE,
                _plans.c.horizon_until == bindparam("old_horizon"),
                _plans.c.anchor_on == bindparam("old_anchor_on"),
                _plans.c.anchor_ordinal == bindparam("old_anchor_ordinal"),
                _plans.c.interval_months == bindparam("old_interval"),
            )
        )
        .values(
            horizon_until=new_horizon,
            updated_at=case(
                (_plans.c.horizon_until != new_horizon, stamp_param),
                else_=_plans.c.updated_at,
            ),
        )
    )
    params = [
        {
            "plan_id": x.plan.id,
            "old_horizon": x.plan.horizon_until,
            "old_anchor_on": x.plan.anchor_on,
            "old_anchor_ordinal": x.plan.anchor_ordinal,
            "old_interval": x.plan.interval_months,
            "new_horizon": x.horizon_until,
            "stamp": stamp,
        }
        for x in extensions
    ]
    updated = db.session.execute(statement, params).rowcount
    if updated != len(params):
        raise _PlanChangedMeanwhile


def _event_rows(extensions: list[_Extension], now: Any, stamp: Any) -> list[dict[str, Any]]:
    """The rows ``plans._new_event`` would make (with the model's column defaults)."""
    return [
        {
            "plan_id": x.plan.id,
            "patient_id": x.plan.patient_id,
            "kind": slot.kind.value,
            "ordinal": slot.ordinal,
            "due_on": slot.due_on,
            "window_start": slot.window_start,
            "window_end": slot.window_end,
            "status": EventStatus.PLANNED.value,
            "cancelled_by_replan": False,
            "uid": new_uid(),
            "sequence": 0,
            "created_at": stamp,
            "updated_at": now,
            "row_version": 1,
        }
        for x in extensions
        for slot in x.creates
    ]


def _insert_events(rows: list[dict[str, Any]]) -> list[int]:
    """Insert in multi-row statements; the new ids, in the order of ``rows`` (matched by the
    UIDs the rows carry, which holds whatever order the database returns them in)."""
    if not rows:
        return []
    statement = insert(_events).returning(_events.c.id, _events.c.uid)
    ids_by_uid = dict((uid, id_) for id_, uid in db.session.execute(statement, rows).all())
    return [ids_by_uid[row["uid"]] for row in rows]


def _audit(
    extensions: list[_Extension], rows: list[dict[str, Any]], ids: list[int], now: Any
) -> None:
    """The entries the ORM path writes: each new event, and each plan's new horizon."""
    actor = audit.current_actor()
    entries = [
        audit.bulk_entry(
            actor,
            now,
            "create",
            PlanEvent,
            event_id,
            row["patient_id"],
            {"after": audit.created_values(PlanEvent, row)},
        )
        for row, event_id in zip(rows, ids, strict=True)
    ]
    entries += [
        audit.bulk_entry(
            actor,
            now,
            "update",
            SurveillancePlan,
            x.plan.id,
            x.plan.patient_id,
            {"horizon_until": [x.plan.horizon_until.isoformat(), x.horizon_until.isoformat()]},
        )
        for x in extensions
        if x.horizon_until != x.plan.horizon_until
    ]
    audit.insert_entries(entries)


# --- The ORM path, for the plans that need more than new visits -------------------------------


def _extend_by_orm(plan_ids: list[int], today: date) -> HorizonResult:
    result = HorizonResult()
    if not plan_ids:
        return result
    loaded = (
        db.session.scalars(
            select(SurveillancePlan)
            .where(SurveillancePlan.id.in_(plan_ids))
            .options(
                selectinload(SurveillancePlan.events),
                joinedload(SurveillancePlan.patient)
                .joinedload(Patient.clinic)
                .selectinload(Clinic.closures),
            )
            .order_by(SurveillancePlan.id)
        )
        .unique()
        .all()
    )
    for plan in loaded:
        added = plans.extend_horizon(plan, today)
        result.plans_extended += 1 if added else 0
        result.visits_added += added
    return result
