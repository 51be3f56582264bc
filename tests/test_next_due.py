"""The stored next-due date (``patients.next_due_on``) always equals the value computed from the
events, whatever changes them: every event action, plan changes, jobs, imports, and bulk
writers that call ``next_due.refresh`` themselves."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, update

from surveillance import jobs
from surveillance.extensions import db
from surveillance.models import EventStatus, Patient, PlanEvent, PlanStatus, SurveillancePlan
from surveillance.services import clinic_admin, imports, next_due, plans, stages
from tests import factories

NOW = "2026-01-05 17:00:00+00:00"
TODAY = date(2026, 1, 5)
OPEN = (EventStatus.PLANNED, EventStatus.BOOKED)


@pytest.fixture(autouse=True)
def _now():  # type: ignore[no-untyped-def]
    with time_machine.travel(NOW, tick=False):
        yield


def expected_next_due() -> dict[int, date | None]:
    """Computed from the events themselves, in Python."""
    found: dict[int, date | None] = {}
    for patient in db.session.scalars(select(Patient)):
        plan = patient.active_plan
        dates = [e.due_on for e in plan.events if e.status in OPEN] if plan else []
        found[patient.id] = min(dates, default=None)
    return found


def stored_next_due() -> dict[int, date | None]:
    return {pid: due for pid, due in db.session.execute(select(Patient.id, Patient.next_due_on))}


def check() -> None:
    db.session.commit()
    db.session.expire_all()
    assert stored_next_due() == expected_next_due()


def first(patient: Patient, *statuses: str, kind: str = "visit") -> PlanEvent:
    plan = patient.active_plan or patient.latest_plan
    assert plan is not None
    return next(e for e in plan.events if e.status in statuses and e.kind == kind)


def test_every_action_keeps_the_stored_next_due_date(clinic, coordinator) -> None:  # type: ignore[no-untyped-def]
    patient = factories.enrol(clinic, enrolled_on=date(2025, 1, 6), interval_months=3)
    other = factories.enrol(clinic, enrolled_on=date(2025, 6, 2), interval_months=6)
    check()
    assert patient.next_due_on == first(patient, EventStatus.PLANNED).due_on

    earliest = first(patient, EventStatus.PLANNED)
    plans.book(earliest, datetime(2026, 1, 7, 10, 0), 30, None)
    check()
    plans.reschedule(earliest, datetime(2026, 1, 8, 9, 0), 30, None)
    check()
    plans.mark_missed(first(patient, EventStatus.PLANNED))  # an overdue visit
    check()
    missed = first(patient, EventStatus.MISSED)
    plans.complete(missed, date(2026, 1, 2), "stable")  # off its date: the plan moves
    check()
    plans.cancel(first(patient, EventStatus.PLANNED), "Patient asked")
    check()
    plans.complete(first(patient, EventStatus.BOOKED), date(2026, 1, 5), "stable")
    check()
    plans.change_interval(patient.active_plan, 6)
    check()
    plans.book(first(patient, EventStatus.PLANNED, kind="biopsy"), datetime(2026, 1, 9, 9), 60, "")
    check()

    with time_machine.travel("2028-06-01 17:00:00+00:00", tick=False):
        jobs.extend_horizons()  # the plan reaches further
        check()
        jobs.mark_missed()  # windows closed long ago
        check()

    clinic_admin.add_closure(clinic, first(other, EventStatus.PLANNED).due_on, "Closed")
    check()

    stages.change_stage(other, "treatment_planning", "Growing", coordinator)  # ends the plan
    check()
    assert other.next_due_on is None
    stages.change_stage(other, "watchful_waiting", "Back under watch", coordinator)
    check()
    assert other.next_due_on is not None

    biopsy = first(patient, EventStatus.BOOKED, EventStatus.MISSED, kind="biopsy")
    plans.complete(biopsy, TODAY, "progression")
    check()  # progression ends surveillance
    assert patient.next_due_on is None


def test_imported_patients_have_their_next_due_date(clinic) -> None:  # type: ignore[no-untyped-def]
    header = ",".join(factories.enrolment_payload())
    rows = [factories.enrolment_payload(enrolled_on="2025-11-03") for _ in range(3)]
    rows.append(factories.enrolment_payload(grade="G9"))  # rejected: leaves nothing
    body = "\n".join([header, *(",".join(str(v) for v in row.values()) for row in rows)])
    results = imports.import_rows(imports.read_csv(body), imports.clinic_by_slug(clinic))
    assert [r.enrolled for r in results.rows] == [True, True, True, False]
    check()
    assert all(stored_next_due().values())


ACTIONS = ("book", "reschedule", "complete", "complete-late", "missed", "cancel", "interval")


def _act(patient: Patient, action: str, pick: int) -> None:
    plan = patient.active_plan
    if plan is None:
        return
    candidates = {
        "book": (EventStatus.PLANNED, EventStatus.MISSED),
        "reschedule": (EventStatus.BOOKED,),
        "complete": (EventStatus.PLANNED, EventStatus.BOOKED, EventStatus.MISSED),
        "complete-late": (EventStatus.PLANNED, EventStatus.MISSED),
        "missed": (EventStatus.PLANNED, EventStatus.BOOKED),
        "cancel": (EventStatus.PLANNED, EventStatus.BOOKED, EventStatus.MISSED),
        "interval": (),
    }[action]
    if action == "interval":
        plans.change_interval(plan, 3 + pick % 4)
        return
    events = [e for e in plan.events if e.status in candidates]
    if action == "missed":
        events = [e for e in events if e.due_on <= TODAY and e.starts_at is None]
    if action.startswith("complete"):
        events = [e for e in events if e.kind == "biopsy" or e.due_on >= plan.anchor_on]
    if not events:
        return
    event = events[pick % len(events)]
    if action in ("book", "reschedule"):
        plans.book(event, datetime(2026, 1, 6 + pick % 3, 10), 30, None) if action == "book" else (
            plans.reschedule(event, datetime(2026, 1, 9, 11), 30, None)
        )
    elif action == "complete":
        plans.complete(event, TODAY, "stable")
    elif action == "complete-late":
        plans.complete(event, TODAY - timedelta(days=pick % 5), "inconclusive")
    elif action == "missed":
        plans.mark_missed(event)
    else:
        plans.cancel(event, "Changed")


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(ACTIONS), st.integers(min_value=0, max_value=50)),
        min_size=1,
        max_size=8,
    )
)
def test_any_sequence_of_actions_keeps_the_stored_next_due_date(clinic, steps) -> None:  # type: ignore[no-untyped-def]
    patient = factories.enrol(clinic, enrolled_on=date(2025, 1, 6), interval_months=3)
    for action, pick in steps:
        try:
            _act(patient, action, pick)
        except Exception:  # a refused action (the rules said no) changes nothing
            db.session.rollback()
        check()


def test_bulk_writers_refresh_the_patients_they_touch(clinic) -> None:  # type: ignore[no-untyped-def]
    patients = [factories.enrol(clinic, enrolled_on=date(2025, 11, 3)) for _ in range(3)]
    plan_ids = [p.active_plan.id for p in patients[:2]]
    # A set-based write, around the unit of work: the stored dates are now stale ...
    db.session.execute(
        update(PlanEvent)
        .where(PlanEvent.plan_id.in_(plan_ids), PlanEvent.kind == "visit")
        .values(status=EventStatus.CANCELLED)
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        update(SurveillancePlan)
        .where(SurveillancePlan.id == patients[2].active_plan.id)
        .values(status=PlanStatus.ENDED)
        .execution_options(synchronize_session=False)
    )
    db.session.expire_all()
    assert stored_next_due() != expected_next_due()
    # ... until the writer refreshes them: ids as a Select, as a list, or everyone.
    next_due.refresh(select(SurveillancePlan.patient_id).where(SurveillancePlan.id.in_(plan_ids)))
    next_due.refresh([patients[2].id])
    check()
    next_due.refresh(None)
    check()


def test_after_added_events_only_dates_they_can_change_are_recomputed(clinic) -> None:  # type: ignore[no-untyped-def]
    """``refresh_after_added`` (the horizon job's bulk path): new open events can only make a
    patient's date earlier, so patients whose stored date already comes first keep it."""
    emptied, later, earlier = (factories.enrol(clinic, enrolled_on=TODAY) for _ in range(3))
    for event in emptied.active_plan.events:
        plans.cancel(event, "Test: nothing left open.")
    db.session.commit()
    day = TODAY + timedelta(days=10)  # before every planned visit of ``later``
    # Stale on purpose, and earlier than ``day``: trusted, so it must stay.
    db.session.execute(update(Patient).where(Patient.id == earlier.id).values(next_due_on=TODAY))
    db.session.execute(
        insert(PlanEvent),
        [
            {
                "plan_id": patient.active_plan.id,
                "patient_id": patient.id,
                "clinic_id": patient.clinic_id,
                "kind": "visit",
                "ordinal": 99,
                "due_on": day,
                "window_start": day,
                "window_end": day,
            }
            for patient in (emptied, later, earlier)
        ],
    )
    next_due.refresh_after_added([emptied.id, later.id, earlier.id], day)
    db.session.commit()
    db.session.expire_all()
    stored = stored_next_due()
    assert (stored[emptied.id], stored[later.id], stored[earlier.id]) == (day, day, TODAY)


def test_a_loaded_patient_shows_the_refreshed_date_without_a_reload(clinic) -> None:  # type: ignore[no-untyped-def]
    """The refresh expires the stored date on the patient objects the session holds (found by
    identity key), so code that already loaded a patient never reads the old date."""
    patient = factories.enrol(clinic, enrolled_on=date(2025, 1, 6), interval_months=3)
    bystander = factories.enrol(clinic, enrolled_on=date(2025, 6, 2), interval_months=6)
    db.session.commit()
    before, unaffected = patient.next_due_on, bystander.next_due_on
    plans.mark_missed(first(patient, EventStatus.PLANNED))  # the earliest open visit goes
    db.session.flush()
    assert patient.next_due_on != before
    assert patient.next_due_on == first(patient, *OPEN).due_on
    # Only the touched patient was expired: the other keeps its loaded value unread.
    assert "next_due_on" in bystander.__dict__ and bystander.next_due_on == unaffected
