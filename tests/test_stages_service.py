"""Care stages on a real database: the plan's own rules, manual moves, the daily sweep."""

from __future__ import annotations

from datetime import date, datetime
from itertools import pairwise

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from surveillance.errors import DomainError, ValidationFailed
from surveillance.extensions import db
from surveillance.models import EventStatus, Patient, PlanEvent, PlanStatus, StageChange
from surveillance.services import plans
from surveillance.services import stages as care_stages
from surveillance.stages import SURVEILLANCE_STAGES, Stage
from tests import factories
from tests.test_stages import ALLOWED

# Enrolled 2025-01-06 (6-monthly): the biopsy is due 2026-01-06, window 2025-12-09 to
# 2026-02-17; visits are due 2025-07-07 and 2026-01-06.
ENROLLED = "2025-01-06"
WINDOW_OPENS = date(2025, 12, 9)
IN_THE_WINDOW = "2026-01-20 17:00:00+00:00"


@pytest.fixture
def today():  # type: ignore[no-untyped-def]
    with time_machine.travel(IN_THE_WINDOW, tick=False):
        yield date(2026, 1, 20)


def enrol(clinic, **overrides):  # type: ignore[no-untyped-def]
    return factories.enrol(clinic, enrolled_on=ENROLLED, interval_months=6, **overrides)


def biopsy(patient: Patient) -> PlanEvent:
    return next(e for e in patient.latest_plan.events if e.kind == "biopsy")


def history(patient: Patient) -> list[tuple[str | None, str]]:
    db.session.expire_all()
    return [(c.from_stage, c.to_stage) for c in patient.stage_history]


WW, BR, TP, ENDED = "watchful_waiting", "biopsy_review", "treatment_planning", "surveillance_ended"


def test_enrolment_starts_watchful_waiting(app, clinic, today) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(clinic)
    assert patient.stage == WW
    (first,) = patient.stage_history
    assert (first.from_stage, first.to_stage, first.changed_by) == (None, WW, None)
    assert first.reason == "Enrolled in watchful waiting."


def test_sweep_moves_a_patient_once_when_the_biopsy_window_opens(app, clinic, today) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(clinic)
    assert care_stages.advance_biopsy_reviews(date(2025, 12, 8)) == []
    assert care_stages.advance_biopsy_reviews(WINDOW_OPENS) == [patient]
    db.session.commit()
    assert history(patient) == [(None, WW), (WW, BR)]
    assert patient.stage_history[-1].reason == "The one-year biopsy window opened."
    assert care_stages.advance_biopsy_reviews(WINDOW_OPENS) == []
    # The coordinator sends them back while the biopsy is still pending: the sweep does not
    # overrule them the next morning.
    care_stages.change_stage(patient, WW, "Biopsy deferred; keep watching.", None)
    db.session.commit()
    assert care_stages.advance_biopsy_reviews(date(2025, 12, 10)) == []
    assert patient.stage == WW


def test_sweep_skips_patients_not_in_watchful_waiting_or_with_the_biopsy_done(  # type: ignore[no-untyped-def]
    app, clinic, today
) -> None:
    ended = enrol(clinic)
    plans.end_surveillance(ended.active_plan, "Moved out of state.")
    done = enrol(clinic)
    plans.cancel(biopsy(done), "Not needed.")
    db.session.commit()
    assert care_stages.advance_biopsy_reviews(WINDOW_OPENS) == []


def test_sweep_uses_each_clinics_own_today(app) -> None:  # type: ignore[no-untyped-def]
    tokyo = factories.clinic(timezone="Asia/Tokyo")
    honolulu = factories.clinic(timezone="Pacific/Honolulu")
    with time_machine.travel("2025-12-01 12:00:00+00:00", tick=False):
        in_tokyo, in_honolulu = enrol(tokyo), enrol(honolulu)
        east = biopsy(in_tokyo).window_start
        west = biopsy(in_honolulu).window_start
    assert east == west == WINDOW_OPENS
    # 2025-12-08 20:00 UTC is already 9 December in Tokyo, still 8 December in Honolulu.
    with time_machine.travel("2025-12-08 20:00:00+00:00", tick=False):
        assert care_stages.advance_biopsy_reviews() == [in_tokyo]
    with time_machine.travel("2025-12-09 12:00:00+00:00", tick=False):
        assert care_stages.advance_biopsy_reviews() == [in_honolulu]


def test_sweep_cli_commits_and_reports(app, runner, clinic, today) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(clinic)
    result = runner.invoke(args=["stages", "sweep", "--date", "2025-12-08"])
    assert result.exit_code == 0, result.output
    assert "Moved 0 patient(s)" in result.output
    result = runner.invoke(args=["stages", "sweep"])  # today, 20 January 2026
    assert result.exit_code == 0, result.output
    assert "Moved 1 patient(s) to biopsy review." in result.output
    db.session.rollback()  # nothing left uncommitted: the command committed its work
    assert history(patient) == [(None, WW), (WW, BR)]


def test_booking_the_biopsy_starts_the_review_early(app, clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2025-10-01 17:00:00+00:00", tick=False):
        patient = enrol(clinic)
        plans.book(biopsy(patient), datetime(2025, 12, 16, 9, 0), 60, None)
        db.session.commit()
    assert history(patient) == [(None, WW), (WW, BR)]
    assert patient.stage_history[-1].reason == "The one-year biopsy was booked."


def test_booking_a_visit_changes_no_stage(app, clinic, today) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(clinic)
    visit = next(e for e in patient.latest_plan.events if e.due_on > date(2026, 1, 20))
    plans.book(visit, datetime(2026, 7, 7, 9, 0), 30, None)
    assert history(patient) == [(None, WW)]


@pytest.mark.parametrize(
    ("outcome", "expected", "plan_status"),
    [
        ("stable", [(None, WW), (WW, BR), (BR, WW)], PlanStatus.ACTIVE),
        ("inconclusive", [(None, WW), (WW, BR)], PlanStatus.ACTIVE),
        ("progression", [(None, WW), (WW, BR), (BR, TP)], PlanStatus.ENDED),
    ],
)
def test_biopsy_outcome_decides_the_next_stage(  # type: ignore[no-untyped-def]
    app, clinic, today, outcome, expected, plan_status
) -> None:
    patient = enrol(clinic)
    plans.complete(biopsy(patient), date(2026, 1, 15), outcome)
    db.session.commit()
    assert history(patient) == expected
    assert patient.stage == expected[-1][1]
    assert patient.latest_plan.status == plan_status


def test_progression_at_a_visit_ends_the_plan_in_treatment_planning(app, clinic, today) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(clinic)
    first_visit = patient.latest_plan.events[0]
    plans.complete(first_visit, first_visit.due_on, "progression")
    db.session.commit()
    assert history(patient) == [(None, WW), (WW, TP)]
    assert patient.stage_history[-1].reason == "Progression found at a surveillance event."
    plan = patient.latest_plan
    assert plan.status == PlanStatus.ENDED
    future = [e for e in plan.events if e.due_on > date(2026, 1, 20)]
    assert future and all(e.status == EventStatus.CANCELLED for e in future)


def test_ending_surveillance_for_another_reason(app, clinic, coordinator, today) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(clinic)
    plans.end_surveillance(patient.active_plan, "Moved out of state.", user=coordinator)
    db.session.commit()
    assert history(patient) == [(None, WW), (WW, ENDED)]
    last = patient.stage_history[-1]
    assert (last.changed_by, last.reason) == (coordinator, "Moved out of state.")


def test_manual_move_out_of_surveillance_ends_the_plan(app, clinic, coordinator, today) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(clinic)
    version = patient.feed_version
    change = care_stages.change_stage(patient, TP, "Symptoms worse; team review.", coordinator)
    db.session.commit()
    assert (change.from_stage, change.to_stage, change.changed_by) == (WW, TP, coordinator)
    assert patient.latest_plan.status == PlanStatus.ENDED
    assert patient.latest_plan.end_reason == "Symptoms worse; team review."
    assert all(e.status == EventStatus.CANCELLED for e in patient.latest_plan.events), (
        "every event of this plan was still ahead or overdue"
    )
    assert patient.feed_version > version
    # Planning may decide to keep watching: the stage moves back (no plan is started here).
    care_stages.change_stage(patient, WW, "Decided to keep watching.", coordinator)
    care_stages.change_stage(patient, BR, "Review the old biopsy.", coordinator)
    db.session.commit()
    assert history(patient) == [(None, WW), (WW, TP), (TP, WW), (WW, BR)]


@pytest.mark.parametrize(
    ("stage", "reason", "fields"),
    [
        ("clinical_trial", "Trial found.", {"stage"}),
        (WW, "Still watching.", {"stage"}),
        ("cured", "Nice.", {"stage"}),
        (TP, "   ", {"reason"}),
        (TP, "x" * 2001, {"reason"}),
        ("cured", "", {"stage", "reason"}),
    ],
)
def test_refused_manual_moves_say_why_and_change_nothing(  # type: ignore[no-untyped-def]
    app, clinic, today, stage, reason, fields
) -> None:
    patient = enrol(clinic)
    with pytest.raises(ValidationFailed) as refused:
        care_stages.change_stage(patient, stage, reason, None)
    assert set(refused.value.fields) == fields
    if "stage" in fields and stage != "cured":
        assert "Allowed next stages: Biopsy review (biopsy_review)" in refused.value.fields["stage"]
    db.session.rollback()
    assert history(patient) == [(None, WW)]
    assert patient.latest_plan.status == PlanStatus.ACTIVE


# --- A random walk through everything that moves a stage --------------------------------------

ACTIONS = st.one_of(
    st.tuples(st.just("move"), st.sampled_from(list(Stage))),
    st.tuples(st.just("book_biopsy"), st.none()),
    st.tuples(
        st.just("complete_biopsy"), st.sampled_from(["stable", "progression", "inconclusive"])
    ),
    st.tuples(
        st.just("complete_visit"), st.sampled_from(["stable", "progression", "inconclusive"])
    ),
    st.tuples(st.just("sweep"), st.none()),
    st.tuples(st.just("end"), st.none()),
)


def _act(patient: Patient, action: str, value: object) -> None:
    plan = patient.latest_plan
    if action == "move":
        care_stages.change_stage(patient, str(value), "Walk.", None)
    elif action == "book_biopsy":
        plans.book(biopsy(patient), datetime(2026, 1, 27, 9, 0), 60, None)
    elif action == "complete_biopsy":
        plans.complete(biopsy(patient), date(2026, 1, 15), str(value))
    elif action == "complete_visit":
        open_visits = [
            e
            for e in plan.events
            if e.kind == "visit" and e.status == "planned" and e.due_on <= date(2026, 1, 20)
        ]
        if open_visits:
            plans.complete(open_visits[0], open_visits[0].due_on, str(value))
    elif action == "sweep":
        care_stages.advance_biopsy_reviews()
    elif plan.status == PlanStatus.ACTIVE:
        plans.end_surveillance(plan, "Walk ended.")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(walk=st.lists(ACTIONS, max_size=12))
def test_random_walks_never_make_a_disallowed_move(app, clinic, walk) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(IN_THE_WINDOW, tick=False):
        patient = enrol(clinic)
        for action, value in walk:
            before = history(patient)
            try:
                _act(patient, action, value)
            except DomainError as exc:
                db.session.rollback()
                assert history(patient) == before, "a refused action wrote nothing"
                if action == "move" and isinstance(exc, ValidationFailed):
                    assert (Stage(patient.stage), value) not in ALLOWED
            else:
                db.session.commit()
                if action == "move":
                    assert patient.stage == value
            _check_invariants(patient)


def _check_invariants(patient: Patient) -> None:
    moves = history(patient)
    assert moves[0] == (None, WW)
    for (_, previous), (source, target) in pairwise(moves):
        assert source == previous, "the history is one unbroken chain"
        assert (Stage(source), Stage(target)) in ALLOWED
    assert patient.stage == moves[-1][1]
    if patient.active_plan is not None:
        assert patient.stage in SURVEILLANCE_STAGES
    stored = db.session.scalar(
        select(func.count(StageChange.id)).where(StageChange.patient_id == patient.id)
    )
    assert stored == len(moves)
