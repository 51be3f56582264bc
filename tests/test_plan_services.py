"""Plan services against the database: horizon, re-planning and identity of events."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pytest
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
    # Visit 1 stays booked; the new 3-month series counts from that booking.
    assert second.due_on == date(2026, 10, 6)


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


def test_back_and_forth_interval_changes_leave_no_gap(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        patient = factories.enrol(clinic, interval_months=3)
        uids = {e.ordinal: e.uid for e in visits(patient)}
        plans.change_interval(patient.active_plan, 6)
        plans.change_interval(patient.active_plan, 3)
        db.session.commit()
    planned = sorted(
        (e for e in visits(patient) if e.status == EventStatus.PLANNED), key=lambda e: e.ordinal
    )
    assert [e.ordinal for e in planned] == list(range(1, len(uids) + 1))
    assert {e.ordinal: e.uid for e in planned} == uids  # the same calendar events came back
    gaps = [(b.due_on - a.due_on).days for a, b in itertools.pairwise(planned)]
    assert max(gaps) <= 3 * 31 + 3


def test_new_interval_counts_from_the_last_visit(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2025-01-06 17:00:00+00:00", tick=False) as traveller:
        patient = factories.enrol(clinic, enrolled_on="2025-01-06", interval_months=3)
        for ordinal in (1, 2, 3):
            event = next(e for e in visits(patient) if e.ordinal == ordinal)
            traveller.move_to(f"{event.due_on.isoformat()} 20:00:00+00:00")
            plans.complete(event, event.due_on, "stable")
        db.session.commit()
        traveller.move_to("2025-11-01 17:00:00+00:00")
        plans.change_interval(patient.active_plan, 6)
        db.session.commit()
    fourth = next(e for e in visits(patient) if e.ordinal == 4)
    third = next(e for e in visits(patient) if e.ordinal == 3)
    assert third.completed_on == date(2025, 10, 6)
    assert fourth.due_on == date(2026, 4, 6)  # six months after the last visit, not 15


def test_a_shorter_interval_never_moves_a_visit_into_the_past(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2025-01-06 17:00:00+00:00", tick=False) as traveller:
        patient = factories.enrol(clinic, enrolled_on="2025-01-06", interval_months=6)
        traveller.move_to("2025-08-01 17:00:00+00:00")
        first = visits(patient)[0]
        plans.complete(first, date(2025, 7, 7), "stable")
        traveller.move_to("2025-11-20 17:00:00+00:00")
        plans.change_interval(patient.active_plan, 3)
        db.session.commit()
    upcoming = sorted(
        (e for e in visits(patient) if e.status == EventStatus.PLANNED), key=lambda e: e.due_on
    )
    assert upcoming[0].due_on >= date(2025, 11, 20)
    assert upcoming[0].due_on <= date(2025, 11, 24)  # due now, on a working day


def test_completion_before_the_last_recorded_visit_is_refused(clinic) -> None:  # type: ignore[no-untyped-def]
    from surveillance.errors import ValidationFailed

    with time_machine.travel("2026-08-01 17:00:00+00:00", tick=False):
        patient = factories.enrol(clinic, interval_months=6)
        first, second = visits(patient)[:2]
        plans.complete(first, date(2026, 7, 20), "stable")
        db.session.commit()
        with pytest.raises(ValidationFailed) as error:
            plans.complete(second, date(2026, 7, 1), "stable")
    assert "completed_on" in error.value.fields


def test_enrolment_ahead_is_measured_in_months(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2027-03-01 17:00:00+00:00", tick=False):
        patient = factories.enrol(clinic, enrolled_on="2028-03-01")
    assert patient.active_plan.enrolled_on == date(2028, 3, 1)


def test_a_duplicate_mrn_slipping_past_the_check_is_a_conflict(clinic) -> None:  # type: ignore[no-untyped-def]
    from surveillance.errors import Conflict
    from surveillance.models import Patient

    existing = factories.enrol(clinic)
    twin = Patient(
        clinic=clinic,
        mrn=existing.mrn,
        given_name="Twin",
        family_name="Case",
        birth_date=date(1970, 1, 1),
        primary_site="other",
        differentiation="well",
        grade="G1",
    )
    with pytest.raises(Conflict):
        plans._insert_unique_mrn(twin)
    db.session.rollback()


def test_two_people_changing_one_event_at_once_cannot_both_win(api, clinic) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    body = api.post("/patients", json=factories.enrolment_payload()).json
    event_id = body["events"][0]["id"]

    def someone_else_got_there_first(_mapper, connection, target) -> None:  # type: ignore[no-untyped-def]
        # The row changes under our feet just before our UPDATE (on SQLite another connection
        # could not write while this transaction holds the lock, so it is done in-line).
        connection.execute(
            sa.text("UPDATE plan_events SET row_version = row_version + 1 WHERE id = :id"),
            {"id": target.id},
        )

    sa.event.listen(PlanEvent, "before_update", someone_else_got_there_first)
    try:
        response = api.post(f"/events/{event_id}/cancel", json={})
    finally:
        sa.event.remove(PlanEvent, "before_update", someone_else_got_there_first)
    assert response.status_code == 409
    db.session.expire_all()
    assert db.session.get(PlanEvent, event_id).status == "planned"
