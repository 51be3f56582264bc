"""The stored next-due date of each patient (``patients.next_due_on``), kept right in one place.

The Patients list sorts by the earliest open (planned or booked) event of the patient's active
plan. Computing that per patient on every page read aggregates every open event of the
clinic; stored on the patient it is one index read. The value is derived, so it must follow
every change of an event's status or due date and every plan that starts or ends:

* Through the ORM (every service: book, reschedule, complete, miss, cancel, re-plan, change
  the interval, extend the horizon, end or restart surveillance, enrol, import) nothing needs
  doing: the session listeners below note the patients whose events or plans were flushed
  and recompute their value with one UPDATE right after the flush, in the same transaction.
* Writers that bypass the unit of work (``session.execute(insert(PlanEvent), rows)``, Core
  ``update(PlanEvent)``, raw SQL) **must** call ``refresh(patient_ids)`` before they commit,
  with the ids of every patient whose events or plans they changed, or a ``Select`` of those
  ids (e.g. ``select(SurveillancePlan.patient_id).where(SurveillancePlan.id.in_(plan_ids))``),
  which recomputes them all set-based. ``refresh(None)`` recomputes every patient.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, event, func, inspect, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.functions import min as sql_min

from surveillance.models import EventStatus, Patient, PlanEvent, PlanStatus, SurveillancePlan

OPEN_STATUSES = (EventStatus.PLANNED.value, EventStatus.BOOKED.value)
# Ids per UPDATE: well under every database's limit on bound parameters.
CHUNK = 500
_PENDING_KEY = "next_due_pending"
# The attributes whose change can move a patient's next due date.
_EVENT_FIELDS = ("status", "due_on", "plan_id", "patient_id")
_PLAN_FIELDS = ("status", "patient_id")

patients = Patient.__table__
events = PlanEvent.__table__
plans = SurveillancePlan.__table__


def computed_next_due() -> Any:
    """The value ``patients.next_due_on`` must hold, as a subquery correlated to ``patients``."""
    return (
        select(sql_min(events.c.due_on))
        .select_from(events.join(plans, plans.c.id == events.c.plan_id))
        .where(
            events.c.patient_id == patients.c.id,
            # Wrapped so that no planner walks the (status, due_on) index for MIN(due_on),
            # checking every open event of every patient: the patient's own events (by the
            # patient_id index) are few. Status is never NULL, so the result is the same.
            func.coalesce(events.c.status, "").in_(OPEN_STATUSES),
            plans.c.status == PlanStatus.ACTIVE.value,
        )
        .correlate(patients)
        .scalar_subquery()
    )


def _update(where: ColumnElement[bool]) -> Any:
    # ``updated_at`` keeps its value: a derived column changing is no edit of the patient (and
    # feeds use ``updated_at`` as LAST-MODIFIED).
    return (
        update(patients)
        .where(where)
        .values(next_due_on=computed_next_due(), updated_at=patients.c.updated_at)
    )


def refresh_after_added(patient_ids: Sequence[int], earliest: date) -> None:
    """``refresh`` for patients to whose active plans only new open events were added, none
    due before ``earliest``: the earliest open date can then only change where it was empty
    or later than ``earliest``, so only those patients are recomputed (a bulk writer adding
    visits at the end of plans would otherwise rewrite every patient's unchanged value)."""
    refresh(
        patient_ids,
        where=or_(patients.c.next_due_on.is_(None), patients.c.next_due_on > earliest),
    )


def refresh(
    patient_ids: Iterable[int] | Select[Any] | None,
    session: Session | None = None,
    where: ColumnElement[bool] | None = None,
) -> None:
    """Recompute ``next_due_on`` for these patients (a collection of ids, a ``Select`` of ids,
    or ``None`` for everyone; only those matching ``where`` if given), set-based, on the
    session's connection (its transaction)."""
    if session is None:
        from surveillance.extensions import db

        session = db.session
    connection = session.connection()
    ids: set[int] | None = None

    def run(condition: ColumnElement[bool]) -> None:
        connection.execute(_update(condition if where is None else and_(condition, where)))

    if patient_ids is None:
        run(patients.c.id.isnot(None))
    elif isinstance(patient_ids, Select):
        run(patients.c.id.in_(patient_ids.scalar_subquery()))
    else:
        ids = set(patient_ids)
        ordered = sorted(ids)
        for start in range(0, len(ordered), CHUNK):
            run(patients.c.id.in_(ordered[start : start + CHUNK]))
    # Loaded patients would otherwise keep showing the value they were loaded with.
    if ids is not None:
        # Looked up by identity key, not by walking the identity map: a long import flushes
        # once a row while the map grows, and walking it every time made the import
        # quadratic (2,000 CSV rows: 40 patients/s against 110 for 500).
        for patient_id in ids:
            loaded = session.identity_map.get(identity_key(Patient, patient_id))
            if loaded is not None:
                session.expire(loaded, ["next_due_on"])
        return
    for obj in list(session.identity_map.values()):  # everyone, or a query's patients
        if isinstance(obj, Patient):
            session.expire(obj, ["next_due_on"])


# --- Keeping it right after every ORM flush ----------------------------------------------------


def _changed(obj: Any, fields: tuple[str, ...]) -> bool:
    state = inspect(obj)
    return any(state.attrs[name].history.has_changes() for name in fields)


def _affected_patients(session: Session) -> set[int]:
    found: set[int | None] = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        fields = _EVENT_FIELDS if isinstance(obj, PlanEvent) else _PLAN_FIELDS
        if not isinstance(obj, PlanEvent | SurveillancePlan):
            continue
        if obj in session.new or obj in session.deleted or _changed(obj, fields):
            found.add(obj.patient_id)
            # A row moved to another patient (never done today) changes both.
            found.update(inspect(obj).attrs.patient_id.history.deleted or ())
    found.discard(None)
    return found  # type: ignore[return-value]


@event.listens_for(Session, "after_flush")
def _note_affected_patients(session: Session, _context: Any) -> None:
    # After the flush (new rows have their ids) but before its history is reset.
    if affected := _affected_patients(session):
        session.info.setdefault(_PENDING_KEY, set()).update(affected)


@event.listens_for(Session, "after_flush_postexec")
def _refresh_affected_patients(session: Session, _context: Any) -> None:
    if affected := session.info.pop(_PENDING_KEY, None):
        refresh(affected, session)


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, _transaction: Any) -> None:
    session.info.pop(_PENDING_KEY, None)
