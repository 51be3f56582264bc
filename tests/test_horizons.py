"""The set-based horizon job does exactly what the per-plan service does.

Twin clinics get the same patients, plans and history; one twin is extended plan by plan
through ``plans.extend_horizon`` (the ORM path the job used to take), the other by the job
(``services.horizons``: bulk writes, the ORM only for plans that need more than new visits).
Events, plans, feed versions and audit entries must then agree field by field, apart from
ids, UIDs and timestamps.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import func, select

from surveillance import audit, clock, jobs, planning
from surveillance.audit import AuditEntry
from surveillance.extensions import db
from surveillance.models import (
    Clinic,
    ClinicClosure,
    EventStatus,
    Patient,
    PlanEvent,
    SurveillancePlan,
)
from surveillance.services import horizons, plans
from tests import factories

SET_UP = "2026-01-05 17:00:00+00:00"
LATER = "2026-07-20 17:00:00+00:00"  # every plan made in January now falls short
# Already 20 July in New York, still 19 July in Denver: the clinics' todays differ.
LATER_BY_ZONE = "2026-07-20 05:30:00+00:00"
# (enrolled on, interval, what happened since)
SPECS: list[tuple[str, int, str | None]] = [
    ("2024-03-15", 3, None),
    ("2025-01-31", 6, None),
    ("2025-08-31", 4, None),
    ("2026-01-05", 5, None),
    ("2026-06-01", 3, None),  # enrolled ahead: its horizon is its own
    # Visit 5 falls on 2028-07-19: at LATER_BY_ZONE, Denver's horizon ends there and New
    # York's a day later, so only New York's plan gets visit 6 (each clinic's own today).
    ("2026-01-19", 6, None),
    ("2025-02-10", 3, "completed late"),  # anchor moves to visit 1
    ("2026-01-05", 3, "interval 6"),  # withdrawn visits come back: the ORM path
    ("2025-06-01", 6, "ended"),
    ("2025-04-01", 3, "booked"),
]
EVENT_FIELDS = [
    c.key
    for c in PlanEvent.__table__.columns
    if c.key not in {"id", "uid", "plan_id", "patient_id", "clinic_id", "created_at", "updated_at"}
]


def _clinics(twin: str) -> list[Clinic]:
    denver = factories.clinic(f"{twin}-denver", timezone="America/Denver")
    # Tuesday to Saturday, no federal holidays, on the other side of the continent.
    coast = factories.clinic(
        f"{twin}-coast",
        timezone="America/New_York",
        working_weekdays="12345",
        observe_us_holidays=False,
    )
    return [denver, coast]


def _enrol(clinic: Clinic, n: int, enrolled_on: str, interval: int, history: str | None) -> None:
    patient = factories.enrol(
        clinic, mrn=f"{clinic.slug}-{n}", enrolled_on=enrolled_on, interval_months=interval
    )
    plan = patient.active_plan
    visits = sorted((e for e in plan.events if e.kind == "visit"), key=lambda e: e.ordinal)
    if history == "completed late":
        plans.complete(visits[0], visits[0].due_on + timedelta(days=10), "stable")
    elif history == "interval 6":
        plans.change_interval(plan, 6)
    elif history == "ended":
        plans.end_surveillance(plan, "Moved away")
    elif history == "booked":
        upcoming = next(e for e in visits if e.due_on >= date(2026, 1, 5))
        plans.book(
            upcoming,
            datetime.combine(upcoming.due_on, datetime.min.time()).replace(hour=10),
            30,
            None,
        )
    db.session.commit()


def _close(clinic: Clinic, days: list[date]) -> None:
    """Closures added behind the services' back (no re-planning): the next extension must
    move what they block."""
    for day in days:
        db.session.add(ClinicClosure(clinic=clinic, closed_on=day, reason="test"))
    db.session.commit()


@pytest.fixture
def twins(app) -> dict[str, list[Clinic]]:  # type: ignore[no-untyped-def]
    with time_machine.travel(SET_UP, tick=False):
        made = {twin: _clinics(twin) for twin in ("orm", "bulk")}
        for twin_clinics in made.values():
            for clinic in twin_clinics:
                for n, spec in enumerate(SPECS):
                    _enrol(clinic, n, *spec)
        first = db.session.scalars(select(Patient).where(Patient.mrn == "orm-denver-0")).one()
        blocked = next(
            e.due_on
            for e in first.active_plan.events
            if e.kind == "visit" and e.due_on > date(2026, 8, 1)
        )
        # A planned visit now falls on a closed day, and the new visits' dates have closures.
        days = [blocked] + [date(2028, 6, 1) + timedelta(days=d) for d in range(0, 92, 2)]
        for twin_clinics in made.values():
            for clinic in twin_clinics:
                _close(clinic, days)
    return made


def _patients(clinic: Clinic) -> list[Patient]:
    return list(
        db.session.scalars(
            select(Patient).where(Patient.clinic_id == clinic.id).order_by(Patient.id)
        )
    )


def _extend_plan_by_plan(clinics: list[Clinic]) -> tuple[int, int]:
    """What the job did before: ``plans.extend_horizon`` on every active plan."""
    extended = added = 0
    for clinic in clinics:
        today = clock.today_in(clinic.timezone)
        for patient in _patients(clinic):
            plan = patient.active_plan
            if plan is None:
                continue
            count = plans.extend_horizon(plan, today)
            extended += 1 if count else 0
            added += count
        db.session.commit()
    return extended, added


def _events(patient: Patient) -> list[dict[str, Any]]:
    rows = db.session.scalars(
        select(PlanEvent)
        .where(PlanEvent.patient_id == patient.id)
        .order_by(PlanEvent.kind, PlanEvent.ordinal)
    )
    # The twins' clinics differ: each event must carry its own patient's.
    return [
        {key: getattr(e, key) for key in EVENT_FIELDS}
        | {"own_clinic": e.clinic_id == patient.clinic_id}
        for e in rows
    ]


def _plan(patient: Patient) -> tuple[Any, ...]:
    plan = patient.plans[-1]
    return (plan.status, plan.horizon_until, plan.anchor_on, plan.anchor_ordinal)


def _audit_entries(patient: Patient, after_id: int) -> list[tuple[Any, ...]]:
    """The patient's new entries without ids, UIDs or times, in a stable order."""
    entries = db.session.scalars(
        select(AuditEntry).where(AuditEntry.patient_id == patient.id, AuditEntry.id > after_id)
    )
    found = []
    for entry in entries:
        changes = json.loads(json.dumps(entry.changes))
        for key in ("uid", "plan_id", "patient_id"):
            changes.get("after", {}).pop(key, None)
        if "after" in changes:  # the twins' clinics differ: each its own patient's
            changes["after"]["clinic_id"] = changes["after"]["clinic_id"] == patient.clinic_id
        found.append((entry.actor, entry.action, entry.entity, json.dumps(changes, sort_keys=True)))
    return sorted(found)


@pytest.mark.parametrize("later", [LATER, LATER_BY_ZONE])
def test_the_job_writes_what_the_per_plan_service_writes(twins, monkeypatch, later) -> None:  # type: ignore[no-untyped-def]
    # Several batches, mixing both paths and (batches follow plan ids) both clinics.
    monkeypatch.setattr(horizons, "PLAN_BATCH", 4)
    db.session.expire_all()
    versions = {p.id: p.feed_version for c in twins["orm"] + twins["bulk"] for p in _patients(c)}
    mark = db.session.scalar(select(func.max(AuditEntry.id)))
    with time_machine.travel(later, tick=False):
        extended, added = _extend_plan_by_plan(twins["orm"])
        assert jobs.run_job("extend-horizons") == f"added {added} visits to {extended} plans"
        assert jobs.run_job("extend-horizons") == "added 0 visits to 0 plans"
    assert extended >= 12 and added >= extended
    db.session.expire_all()
    restored = 0
    for orm_clinic, bulk_clinic in zip(twins["orm"], twins["bulk"], strict=True):
        for orm, bulk in zip(_patients(orm_clinic), _patients(bulk_clinic), strict=True):
            assert _events(bulk) == _events(orm), orm.mrn
            assert _plan(bulk) == _plan(orm), orm.mrn
            assert bulk.next_due_on == orm.next_due_on, orm.mrn
            assert bulk.feed_version - versions[bulk.id] == orm.feed_version - versions[orm.id], (
                orm.mrn
            )
            assert _audit_entries(bulk, mark) == _audit_entries(orm, mark), orm.mrn
            restored += sum(
                1 for entry in _audit_entries(orm, mark) if entry[1:3] == ("update", "plan_events")
            )
    # The comparison covered plans only the ORM path handles (a restored visit, a moved one).
    assert restored >= 2


def test_new_visits_land_on_open_days_and_raise_the_feed_version(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(SET_UP, tick=False):
        patient = factories.enrol(clinic, interval_months=6)
    version = patient.feed_version
    closed = planning.add_months(date(2026, 1, 5), 30)  # visit 5's nominal date, a Wednesday
    _close(clinic, [closed])
    with time_machine.travel(LATER, tick=False):
        # The horizon is now 2028-07-20: visits 5 (2028-07-05) and 6 (2029-01-05) are added.
        assert jobs.run_job("extend-horizons") == "added 2 visits to 1 plans"
    db.session.expire_all()
    visits = {e.ordinal: e for e in patient.active_plan.events if e.kind == "visit"}
    assert sorted(visits) == [1, 2, 3, 4, 5, 6]
    assert [(visits[n].status, visits[n].sequence) for n in (5, 6)] == [
        (EventStatus.PLANNED, 0),
        (EventStatus.PLANNED, 0),
    ]
    # The nearest open day: the day before is Independence Day, so the day after.
    assert visits[5].due_on == date(2028, 7, 6)
    assert clinic.calendar().is_working_day(visits[6].due_on)
    assert patient.active_plan.horizon_until == planning.add_months(date(2026, 1, 5), 36)
    assert patient.feed_version == version + 1


def test_a_plan_changed_between_reading_and_writing_is_redone_through_the_orm(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(SET_UP, tick=False):
        ended, untouched = factories.enrol(clinic), factories.enrol(clinic)
    events_before = len(ended.active_plan.events)
    with time_machine.travel(LATER, tick=False):
        planners = horizons._planners(clock.today_in, planning.DEFAULT_HORIZON_MONTHS)
        rows = horizons._candidates(planners)
        assert {row.id for row in rows} == {ended.active_plan.id, untouched.active_plan.id}
        # A coordinator ends one plan after the job read it. Its events are all cancelled by
        # hand now, which re-planning leaves alone: only the plan row shows the change.
        plans.end_surveillance(ended.active_plan, "Moved away")
        db.session.commit()
        result = horizons._extend_batch(rows, planners)
        assert str(result) == "added 2 visits to 1 plans"
        assert jobs.run_job("extend-horizons") == "added 0 visits to 0 plans"
    db.session.expire_all()
    assert len(ended.plans[0].events) == events_before  # nothing added to the ended plan
    visits = [e for e in untouched.active_plan.events if e.kind == "visit"]
    assert sorted(e.ordinal for e in visits) == [1, 2, 3, 4, 5, 6]


def test_only_plans_that_fall_short_are_read(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(SET_UP, tick=False):
        short = factories.enrol(clinic, enrolled_on="2025-01-10", interval_months=6)
        factories.enrol(clinic, enrolled_on="2026-01-05", interval_months=3)
        ended = factories.enrol(clinic, enrolled_on="2025-01-10", interval_months=6)
        plans.end_surveillance(ended.active_plan, "Moved away")
        db.session.commit()
        # Made in 2025 with a 2025 horizon (as if the job had not run since).
        db.session.get(SurveillancePlan, short.active_plan.id).horizon_until = date(2027, 1, 10)
        db.session.get(SurveillancePlan, ended.plans[0].id).horizon_until = date(2027, 1, 10)
        db.session.commit()
        planners = horizons._planners(
            lambda _zone: date(2026, 1, 5), planning.DEFAULT_HORIZON_MONTHS
        )
        rows = horizons._candidates(planners)
    assert [row.id for row in rows] == [short.active_plan.id]
    assert audit.current_actor().label == "system"


def test_new_visits_become_the_stored_next_due_date(clinic) -> None:  # type: ignore[no-untyped-def]
    """The bulk path writes events past the ORM's flush hook, so it refreshes the patients'
    stored next-due date itself (the Patients list sorts by it)."""
    with time_machine.travel(SET_UP, tick=False):
        patient = factories.enrol(clinic, interval_months=6)
        for event in list(patient.active_plan.events):
            plans.cancel(event, "Test: nothing left open.")
        db.session.commit()
    db.session.expire_all()
    assert patient.next_due_on is None
    with time_machine.travel(LATER, tick=False):
        assert jobs.run_job("extend-horizons").startswith("added 2 visits")
    db.session.expire_all()
    open_days = [e.due_on for e in patient.active_plan.events if e.status == EventStatus.PLANNED]
    assert open_days and patient.next_due_on == min(open_days)
