"""Plan services against the database: horizon, re-planning and identity of events."""

from __future__ import annotations

from datetime import date, timedelta

import time_machine
from sqlalchemy import func, select

from surveillance.extensions import db
from surveillance.models import EventStatus, PlanEvent
from surveillance.planning import add_months
from surveillance.services import plans
from tests import factories


def visits(patient) -> list[PlanEvent]:  # type: ignore[no-untyped-def]
    return [e for e in patient.active_plan.events if e.kind == "visit"]


def test_extend_horizon_adds_visits_and_is_idempotent(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        patient = factories.enrol(clinic, interval_months=6)
    plan = patient.active_plan
    before = {e.ordinal: e.uid for e in visits(patient)}
    later = date(2027, 3, 1)
    added = plans.extend_horizon(plan, later)
    db.session.commit()
    assert added >= 2
    assert plans.extend_horizon(plan, later) == 0
    after = visits(patient)
    assert {e.ordinal: e.uid for e in after if e.ordinal in before} == before
    assert max(e.due_on for e in after) >= add_months(later, 24) - timedelta(days=21)
    assert [e.ordinal for e in sorted(after, key=lambda e: e.ordinal)] == list(
        range(1, len(after) + 1)
    )


def test_extend_horizon_skips_ended_plans(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        patient = factories.enrol(clinic)
        plan = patient.active_plan
        plans.end_surveillance(plan, "Moved to another clinic")
        db.session.commit()
    count = db.session.scalar(select(func.count(PlanEvent.id)))
    assert plans.extend_horizon(plan, date(2029, 1, 1)) == 0
    assert db.session.scalar(select(func.count(PlanEvent.id))) == count


def test_longer_interval_cancels_surplus_visits_with_a_reason(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        patient = factories.enrol(clinic, interval_months=3)
        plans.change_interval(patient.active_plan, 6)
        db.session.commit()
    cancelled = [e for e in visits(patient) if e.status == EventStatus.CANCELLED]
    planned = [e for e in visits(patient) if e.status == EventStatus.PLANNED]
    assert cancelled and all(e.cancel_reason and e.sequence == 1 for e in cancelled)
    assert [e.due_on for e in sorted(planned, key=lambda e: e.ordinal)][:2] == [
        date(2026, 7, 6),
        date(2027, 1, 5),
    ]


def test_booked_visits_survive_an_interval_change(clinic) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime

    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        patient = factories.enrol(clinic, interval_months=6)
        first = visits(patient)[0]
        plans.book(first, datetime(2026, 7, 6, 9, 0), 30, None)
        plans.change_interval(patient.active_plan, 3)
        db.session.commit()
    assert first.status == EventStatus.BOOKED
    assert first.due_on == date(2026, 7, 6)
    second = next(e for e in visits(patient) if e.ordinal == 2)
    # Visit 1 stays booked; visit 2 of the 3-month series is 5 July, a Sunday → Monday 6.
    assert second.due_on == date(2026, 7, 6)


def test_every_visible_change_bumps_the_feed_version(clinic) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime

    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        patient = factories.enrol(clinic)
        version = patient.feed_version
        plans.book(visits(patient)[0], datetime(2026, 7, 6, 9, 0), 30, None)
        assert patient.feed_version == version + 1
        plans.cancel(visits(patient)[0], None)
        assert patient.feed_version == version + 2


def test_a_new_closure_moves_planned_dates_off_it(clinic, runner) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        patient = factories.enrol(clinic, interval_months=6)
        first = visits(patient)[0]
        biopsy = next(e for e in patient.active_plan.events if e.kind == "biopsy")
        assert (first.due_on, biopsy.due_on) == (date(2026, 7, 6), date(2027, 1, 5))
        for day in ("2026-07-06", "2027-01-05"):
            result = runner.invoke(args=["clinics", "close", clinic.slug, day, "--reason", "Move"])
            assert result.exit_code == 0, result.output
        duplicate = runner.invoke(args=["clinics", "close", clinic.slug, "2026-07-06"])
        assert duplicate.exit_code != 0
    db.session.expire_all()
    first = db.session.get(PlanEvent, first.id)
    biopsy = db.session.get(PlanEvent, biopsy.id)
    assert first.due_on == date(2026, 7, 7) and first.sequence == 1
    assert biopsy.due_on == date(2027, 1, 4) and biopsy.sequence == 1
    assert first.uid and biopsy.uid
