"""Keeping every active plan the horizon ahead, set-based (the daily ``extend-horizons`` job).

``plans.extend_horizon`` does this for one plan through the ORM: load the plan with all its
events, re-plan, flush. At 100,000 plans that is minutes, and on a typical day almost every
plan that needs anything needs exactly one thing: new visits at the end. So the job works on
batches of plans instead:

1. candidates come from an index on ``horizon_until``: a plan's ``horizon_until``
   is the nominal date of its last visit, always at least ``horizon_end`` of the day it was
   (re)planned, so only plans whose horizon falls before today's (its clinic's) can need a
   visit. Batches of ``PLAN_BATCH`` follow plan ids across all clinics;
2. the pure planning engine computes each plan's desired visits and reconciles them with the
   plan's current visits (read as plain rows), exactly as ``plans.replan`` does;
3. plans whose reconciliation only *creates* visits (and whose biopsy stays put) are written
   in bulk, one statement per table whatever the batch's size (its rows travel as one JSON
   document, see ``_rows``): the UPDATE of the horizons (guarded, so a plan a coordinator
   changed meanwhile is noticed), the INSERT of the events, the audit entries; then the
   patients' ``feed_version`` and, where the new visits can change it, their stored next-due
   date; all in one transaction per batch;
4. anything else (a withdrawn visit to restore, a planned date a closure now blocks, a moved
   biopsy, a planning error) goes through ``plans.extend_horizon`` itself, in the same
   transaction, so those rare plans behave exactly as before, reminders and all.

The audit log normally collects changes from ORM session events, which bulk Core writes
bypass; the bulk path therefore writes the same entries the ORM path would: one ``create`` per
new event with all its values, one ``update`` per plan with its old and new horizon.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    Date,
    Integer,
    Row,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal_column,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.types import TypeEngine

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

# Plans per transaction. Each batch is one transaction, so a crash or a stop loses at most the
# batch in progress, and the next run finds its plans again (their horizon still falls short).
# On SQLite the batch holds the write lock from its first read to its commit: 5,000 plans hold
# it about a second, well inside the 5 s busy timeout web requests wait. Larger batches
# measured no faster (commits: 2,500 plans 1.9 s, 5,000 1.3 s, 10,000 1.2 s, 25,000 1.9 s in
# all), smaller ones write the same index pages more often.
PLAN_BATCH = 5000

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
    """Extend every active plan ("today" is each clinic's own), committing after each batch.
    ``should_continue`` is asked between batches."""
    # On SQLite each batch takes the write lock when it begins (as the CLI's transactions do),
    # so a web request writing meanwhile waits instead of invalidating the batch's reads.
    writing = immediate_transactions.set(True)
    try:
        return _extend(_planners(today_for, horizon_months), should_continue)
    finally:
        immediate_transactions.reset(writing)


def _extend(planners: dict[int, _Planner], should_continue: Callable[[], bool]) -> HorizonResult:
    result = HorizonResult()
    # Batches follow plan ids across clinics, not clinic by clinic: patients of all clinics
    # are interleaved in every index, so a clinic's batch would write to nearly every index
    # page, and the next clinic's batch to the same pages again.
    for batch in _batches(_candidates(planners), PLAN_BATCH):
        result.add(_extend_batch(batch, planners))
        if not should_continue():
            break
    return result


def _planners(today_for: Callable[[str], date], horizon_months: int) -> dict[int, _Planner]:
    """Each clinic's planning engine on the clinic's own today, by clinic id."""
    clinics = db.session.scalars(
        select(Clinic).options(selectinload(Clinic.closures)).order_by(Clinic.id)
    ).all()
    return {
        clinic.id: _Planner(clinic.calendar(), today_for(clinic.timezone), horizon_months)
        for clinic in clinics
    }


def _candidates(planners: dict[int, _Planner]) -> list[Row[Any]]:
    """Active plans whose horizon falls short of their clinic's today's (an index range scan),
    by plan id, with what planning needs. Each batch's writes check that its plans are still
    as read.

    ``horizon_end`` is later for a plan enrolled in the future, but such a plan was planned to
    its own enrolment + horizon and so never falls short before its enrolment day."""
    if not planners:
        return []
    until = {clinic_id: p.required_horizon(p.today) for clinic_id, p in planners.items()}
    rows = db.session.execute(
        select(
            _plans.c.id,
            _plans.c.patient_id,
            _plans.c.enrolled_on,
            _plans.c.anchor_on,
            _plans.c.anchor_ordinal,
            _plans.c.interval_months,
            _plans.c.horizon_until,
            _patients.c.clinic_id,
        )
        .join(_patients, _patients.c.id == _plans.c.patient_id)
        .where(
            _plans.c.status == PlanStatus.ACTIVE,
            # The clinics' todays differ by a day at most: the latest bounds the range read.
            _plans.c.horizon_until < max(until.values()),
        )
        .order_by(_plans.c.id)
    ).all()
    return [row for row in rows if row.horizon_until < until[row.clinic_id]]


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


def _extend_batch(plan_rows: Sequence[Row[Any]], planners: dict[int, _Planner]) -> HorizonResult:
    """Extend one batch of plans in one transaction."""
    visits, biopsies = _plan_events(plan_rows, planners)
    bulk: list[_Extension] = []
    by_orm: list[int] = []
    for plan in plan_rows:
        extension = _plan_extension(
            plan, visits[plan.id], biopsies[plan.id], planners[plan.clinic_id]
        )
        if extension == "orm":
            by_orm.append(plan.id)
        elif isinstance(extension, _Extension):
            bulk.append(extension)
    try:
        result = _write(bulk)
    except _PlanChangedMeanwhile:
        db.session.rollback()
        by_orm, result = [plan.id for plan in plan_rows], HorizonResult()
    result.add(_extend_by_orm(by_orm, planners))
    db.session.commit()
    return result


def _plan_events(
    plan_rows: Sequence[Row[Any]], planners: dict[int, _Planner]
) -> tuple[dict[int, list[ExistingVisit]], dict[int, list[date]]]:
    """Each plan's visits numbered after its anchor (the only ones re-planning can touch or
    that can stand where a desired visit goes) and its planned biopsies still to come.

    One query by plan id for all the batch's events, sorted out here: narrower SQL filters
    tempt SQLite into scanning the much larger ``(status, due_on)`` index instead."""
    anchors = {plan.id: plan.anchor_ordinal for plan in plan_rows}
    todays = {plan.id: planners[plan.clinic_id].today for plan in plan_rows}
    visits: dict[int, list[ExistingVisit]] = defaultdict(list)
    biopsies: dict[int, list[date]] = defaultdict(list)
    visit, biopsy, planned = EventKind.VISIT.value, EventKind.BIOPSY.value, EventStatus.PLANNED
    status_of, as_date = planning.reconciliation_status, _date_reader()
    for plan_id, event_id, kind, ordinal, status, by_replan, due_on in _event_rows(anchors):
        if kind == visit:
            if ordinal > anchors[plan_id]:
                visits[plan_id].append(
                    ExistingVisit(event_id, ordinal, status_of(status, by_replan), as_date(due_on))
                )
        elif kind == biopsy and status == planned and as_date(due_on) >= todays[plan_id]:
            biopsies[plan_id].append(as_date(due_on))
    return visits, biopsies


def _event_rows(plan_ids: Iterable[int]) -> list[tuple[Any, ...]]:
    """(plan, id, kind, ordinal, status, cancelled by re-planning, due date) of the plans'
    events, as the driver returns them: a batch reads about 56,000 rows, and SQLAlchemy's
    rows and result processing took twice as long as the driver's own fetch (measured: 190
    against 70 ms a batch). On SQLite the due date is ISO text (``_date_reader``)."""
    result = db.session.connection().execute(
        select(
            _events.c.plan_id,
            _events.c.id,
            _events.c.kind,
            _events.c.ordinal,
            _events.c.status,
            _events.c.cancelled_by_replan,
            _events.c.due_on,
        ).where(_events.c.plan_id.in_(list(plan_ids)))
    )
    try:
        return list(result.cursor.fetchall())
    finally:
        result.close()


def _date_reader() -> Callable[[Any], date]:
    """Dates as the driver gives them to ``date``: psycopg returns dates; SQLite's text is
    parsed once per distinct day (a batch's 56,000 rows hold a few thousand days)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return lambda value: value
    parsed: dict[str, date] = {}

    def as_date(text: str) -> date:
        day = parsed.get(text)
        if day is None:
            day = parsed[text] = date.fromisoformat(text)
        return day

    return as_date


# --- Bulk writes ------------------------------------------------------------------------------


def _rows(columns: Sequence[tuple[str, TypeEngine[Any]]], rows: list[tuple[Any, ...]]) -> Any:
    """``rows`` as a derived table with these columns, bound as one parameter: a JSON array of
    the rows (dates as ISO text, as SQLAlchemy stores them in SQLite), taken apart by the
    database (``jsonb_array_elements``, ``json_each``).

    A batch is then one statement of constant size, whatever its rows. With a VALUES tuple
    per row (SQLAlchemy's "insertmanyvalues") psycopg spent longer parsing the statements'
    placeholders than PostgreSQL spent running them; executemany is a round of the protocol
    per row; arrays of text are escaped element by element in Python; and on SQLite per-row
    parameters cost more in bind processing than the rows cost SQLite."""
    document = bindparam(None, json.dumps(rows, default=date.isoformat), type_=String)
    if db.session.get_bind().dialect.name == "postgresql":
        # jsonb: parsed once; with json every ``->>`` would parse its row's text again.
        each = func.jsonb_array_elements(cast(document, JSONB)).table_valued("value")
        values = [
            cast(each.c.value.op("->>")(literal_column(str(i))), type_).label(name)
            for i, (name, type_) in enumerate(columns)
        ]
    else:
        each = func.json_each(document).table_valued("value")
        values = [
            type_coerce(func.json_extract(each.c.value, f"$[{i}]"), type_).label(name)
            for i, (name, type_) in enumerate(columns)
        ]
    return select(*values).select_from(each).subquery()


def _write(extensions: list[_Extension]) -> HorizonResult:
    """Horizons, new events, feed versions and audit entries, set-based. Plans first: the
    guarded UPDATE locks their rows (PostgreSQL), so nobody re-plans them until commit."""
    result = HorizonResult()
    changing = [x for x in extensions if x.creates or x.horizon_until != x.plan.horizon_until]
    if not changing:
        return result
    now, stamp = clock.utcnow(), utcnow()
    _update_horizons(changing, stamp)
    new_events = [(x, slot, new_uid()) for x in changing for slot in x.creates]
    ids = _insert_events(new_events, now, stamp)
    patient_ids = sorted({x.plan.patient_id for x in changing if x.creates})
    for start in range(0, len(patient_ids), next_due.CHUNK):
        # New visits show in the patient's feed and page: a new version invalidates caches.
        db.session.execute(
            update(_patients)
            .where(_patients.c.id.in_(patient_ids[start : start + next_due.CHUNK]))
            .values(feed_version=_patients.c.feed_version + 1, updated_at=stamp)
        )
    _audit(changing, new_events, ids, now)
    result.plans_extended = len(patient_ids)  # one active plan per patient
    result.visits_added = len(new_events)
    if new_events:
        # Core writes bypass the flush hook that keeps the stored next-due date in step. Only
        # open events were added, so only a date later than the earliest of them can change.
        earliest = min(slot.due_on for _x, slot, _uid in new_events)
        next_due.refresh_after_added(patient_ids, earliest)
    return result


_PLAN_CHECK = (
    ("plan_id", Integer()),
    ("old_horizon", Date()),
    ("old_anchor_on", Date()),
    ("old_anchor_ordinal", Integer()),
    ("old_interval", Integer()),
    ("new_horizon", Date()),
)


def _update_horizons(extensions: list[_Extension], stamp: Any) -> None:
    """One UPDATE, each row only if the plan is still as read; otherwise a coordinator
    re-planned it meanwhile and the batch is redone through the ORM. (Every written plan is
    updated, also one whose horizon stays, so that all of them are checked and locked;
    ``updated_at`` moves only with the horizon, as with the ORM.)"""
    given = _rows(
        _PLAN_CHECK,
        [
            (
                x.plan.id,
                x.plan.horizon_until,
                x.plan.anchor_on,
                x.plan.anchor_ordinal,
                x.plan.interval_months,
                x.horizon_until,
            )
            for x in extensions
        ],
    )
    statement = (
        update(_plans)
        .where(
            and_(
                _plans.c.id == given.c.plan_id,
                _plans.c.status == PlanStatus.ACTIVE,
                _plans.c.horizon_until == given.c.old_horizon,
                _plans.c.anchor_on == given.c.old_anchor_on,
                _plans.c.anchor_ordinal == given.c.old_anchor_ordinal,
                _plans.c.interval_months == given.c.old_interval,
            )
        )
        .values(
            horizon_until=given.c.new_horizon,
            updated_at=case(
                (
                    _plans.c.horizon_until != given.c.new_horizon,
                    bindparam("stamp", stamp, type_=_plans.c.updated_at.type),
                ),
                else_=_plans.c.updated_at,
            ),
        )
    )
    if db.session.execute(statement).rowcount != len(extensions):
        raise _PlanChangedMeanwhile


_EVENT_COLUMNS = (
    ("plan_id", Integer()),
    ("patient_id", Integer()),
    ("clinic_id", Integer()),
    ("kind", String()),
    ("ordinal", Integer()),
    ("due_on", Date()),
    ("window_start", Date()),
    ("window_end", Date()),
    ("uid", String()),
)


def _insert_events(
    new_events: list[tuple[_Extension, EventSlot, str]], now: Any, stamp: Any
) -> list[int]:
    """The rows ``plans._new_event`` would make (with the model's column defaults), in one
    statement; the new ids in the order of ``new_events`` (matched by the UIDs the rows
    carry, which holds whatever order the database returns them in)."""
    if not new_events:
        return []
    given = _rows(
        _EVENT_COLUMNS,
        [
            (
                x.plan.id,
                x.plan.patient_id,
                x.plan.clinic_id,
                slot.kind.value,
                slot.ordinal,
                slot.due_on,
                slot.window_start,
                slot.window_end,
                uid,
            )
            for x, slot, uid in new_events
        ],
    )
    fixed = {
        "status": EventStatus.PLANNED.value,
        "cancelled_by_replan": False,
        "sequence": 0,
        "created_at": stamp,
        "updated_at": now,
        "row_version": 1,
    }
    source = select(
        *given.c,
        *(
            bindparam(f"fixed_{key}", value, type_=_events.c[key].type)
            for key, value in fixed.items()
        ),
    )
    statement = (
        insert(_events)
        .from_select([name for name, _type in _EVENT_COLUMNS] + list(fixed), source)
        .returning(_events.c.id, _events.c.uid)
    )
    ids_by_uid = {uid: id_ for id_, uid in db.session.execute(statement).all()}
    return [ids_by_uid[uid] for _x, _slot, uid in new_events]


_AUDIT_COLUMNS = (
    ("action", String()),
    ("entity", String()),
    ("entity_id", Integer()),
    ("patient_id", Integer()),
    ("changes", String()),
)


def _audit(
    extensions: list[_Extension],
    new_events: list[tuple[_Extension, EventSlot, str]],
    ids: list[int],
    now: Any,
) -> None:
    """The entries the ORM path writes: each new event, and each plan's new horizon, in one
    statement. The ``create`` entries' values are the same for every new visit but a few,
    so they are made from one template (in the model's column order, as ``created_values``
    and the ORM path make them) and serialised as the JSON column would serialise them."""
    template = audit.created_values(
        PlanEvent,
        {
            "status": EventStatus.PLANNED.value,
            "cancelled_by_replan": False,
            "sequence": 0,
            "row_version": 1,
        },
    )
    dumps = json.dumps
    rows: list[tuple[Any, ...]] = []
    for (x, slot, uid), event_id in zip(new_events, ids, strict=True):
        values = template.copy()
        values.update(
            plan_id=x.plan.id,
            patient_id=x.plan.patient_id,
            clinic_id=x.plan.clinic_id,
            kind=slot.kind.value,
            ordinal=slot.ordinal,
            due_on=slot.due_on.isoformat(),
            window_start=slot.window_start.isoformat(),
            window_end=slot.window_end.isoformat(),
            uid=uid,
        )
        rows.append(("create", _events.name, event_id, x.plan.patient_id, dumps({"after": values})))
    rows += [
        (
            "update",
            _plans.name,
            x.plan.id,
            x.plan.patient_id,
            dumps(
                {"horizon_until": [x.plan.horizon_until.isoformat(), x.horizon_until.isoformat()]}
            ),
        )
        for x in extensions
        if x.horizon_until != x.plan.horizon_until
    ]
    if not rows:
        return
    given = _rows(_AUDIT_COLUMNS, rows)
    entries = audit.AuditEntry.__table__
    actor = audit.current_actor()
    changes: Any = given.c.changes
    if db.session.get_bind().dialect.name == "postgresql":
        changes = cast(changes, JSON)  # text into a json column needs saying so
    source = select(
        bindparam("occurred_at", now, type_=entries.c.occurred_at.type),
        bindparam("actor", actor.label, type_=entries.c.actor.type),
        bindparam("actor_user_id", actor.user_id, type_=entries.c.actor_user_id.type),
        given.c.action,
        given.c.entity,
        given.c.entity_id,
        given.c.patient_id,
        changes,
    )
    db.session.execute(
        insert(entries).from_select(
            [
                "occurred_at",
                "actor",
                "actor_user_id",
                "action",
                "entity",
                "entity_id",
                "patient_id",
                "changes",
            ],
            source,
        )
    )


# --- The ORM path, for the plans that need more than new visits -------------------------------


def _extend_by_orm(plan_ids: list[int], planners: dict[int, _Planner]) -> HorizonResult:
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
        added = plans.extend_horizon(plan, planners[plan.patient.clinic_id].today)
        result.plans_extended += 1 if added else 0
        result.visits_added += added
    return result
