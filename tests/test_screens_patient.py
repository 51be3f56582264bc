"""The patient screen: timeline, event actions and plan actions, through HTTP."""

from __future__ import annotations

import re
from datetime import date

import pytest
import time_machine

from surveillance.extensions import db
from surveillance.models import EventStatus, PlanStatus
from tests import factories
from tests.screens import field_error, input_value, sign_in


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    # Monday 5 January 2026, 10:00 in Denver.
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        yield


@pytest.fixture
def signed_in(client, coordinator):  # type: ignore[no-untyped-def]
    sign_in(client, coordinator.email)
    return client


@pytest.fixture
def patient(clinic):  # type: ignore[no-untyped-def]
    return factories.enrol(clinic, mrn="PT-1", enrolled_on="2025-06-02", interval_months=3)


def first_visit(patient):  # type: ignore[no-untyped-def]
    return next(e for e in patient.active_plan.events if e.kind == "visit")


def upcoming_visit(patient):  # type: ignore[no-untyped-def]
    return next(
        e for e in patient.active_plan.events if e.kind == "visit" and e.due_on > date(2026, 1, 5)
    )


def test_page_shows_profile_plan_timeline_and_events(signed_in, patient) -> None:  # type: ignore[no-untyped-def]
    html = signed_in.get(f"/coordinator/patients/{patient.id}").get_data(as_text=True)
    assert "MRN PT-1" in html and "Under surveillance" in html
    assert "Small bowel" in html and "Every 3 months" in html
    events = patient.active_plan.events
    assert html.count('<g class="tl-event') == len(events)
    assert html.count("tl-overdue") >= 2  # visits in Sep and Dec 2025 were never recorded
    assert 'class="tl-today"' in html
    assert html.count('class="event-row') == len(events)
    # An overdue planned visit can be booked, completed, marked missed or cancelled.
    visit = first_visit(patient)
    for action in ("book", "complete", "cancel"):
        assert f"/coordinator/events/{visit.id}/{action}" in html
    assert f"/coordinator/events/{visit.id}/missed" in html
    # A visit still in the future cannot be marked missed.
    assert f"/coordinator/events/{upcoming_visit(patient).id}/missed" not in html


def test_another_clinics_patient_is_not_found(signed_in) -> None:  # type: ignore[no-untyped-def]
    stranger = factories.enrol(factories.clinic(), mrn="OTHER-1")
    assert signed_in.get(f"/coordinator/patients/{stranger.id}").status_code == 404
    event = first_visit(stranger)
    assert signed_in.get(f"/coordinator/events/{event.id}/book").status_code == 404
    assert signed_in.post(f"/coordinator/events/{event.id}/missed").status_code == 404
    assert signed_in.get("/coordinator/patients/999999").status_code == 404


def test_booking_on_a_weekend_is_refused_and_keeps_the_typed_values(signed_in, patient) -> None:  # type: ignore[no-untyped-def]
    visit = upcoming_visit(patient)
    response = signed_in.post(
        f"/coordinator/events/{visit.id}/book",
        data={
            "day": "2026-03-07",
            "start_time": "09:30",
            "duration_minutes": "45",
            "location": "Room 4",
        },
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "does not work on Sat" in html
    assert input_value(html, "day") == "2026-03-07"
    assert input_value(html, "location") == "Room 4"
    assert input_value(html, "duration_minutes") == "45"
    db.session.refresh(visit)
    assert visit.status == EventStatus.PLANNED and visit.sequence == 0


def test_booking_form_errors_are_next_to_the_fields(signed_in, patient) -> None:  # type: ignore[no-untyped-def]
    visit = upcoming_visit(patient)
    html = signed_in.post(
        f"/coordinator/events/{visit.id}/book",
        data={"day": "", "start_time": "9h", "duration_minutes": "2", "location": ""},
    ).get_data(as_text=True)
    assert field_error(html, "day") == "Enter the date."
    assert field_error(html, "start_time") != ""
    assert field_error(html, "duration_minutes") == "Duration must be 5 to 480 minutes."


def test_book_then_reschedule_says_what_it_did(signed_in, patient) -> None:  # type: ignore[no-untyped-def]
    visit = upcoming_visit(patient)
    response = signed_in.post(
        f"/coordinator/events/{visit.id}/book",
        data={"day": "2026-03-04", "start_time": "09:30", "duration_minutes": "30"},
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert (
        "Booked visit 3: Wed 4 Mar 2026, 09:30 to 10:00 at 1 Test Street, Denver, CO 80202." in html
    )
    db.session.refresh(visit)
    assert visit.status == EventStatus.BOOKED
    page = signed_in.get(f"/coordinator/events/{visit.id}/reschedule").get_data(as_text=True)
    assert input_value(page, "day") == "2026-03-04"
    assert input_value(page, "start_time") == "09:30"
    response = signed_in.post(
        f"/coordinator/events/{visit.id}/reschedule",
        data={
            "day": "2026-03-05",
            "start_time": "14:00",
            "duration_minutes": "60",
            "location": "B",
        },
        follow_redirects=True,
    )
    assert "Rescheduled visit 3: Thu 5 Mar 2026, 14:00 to 15:00 at B." in response.get_data(
        as_text=True
    )


def test_complete_as_stable_re_anchors_and_as_progression_ends_surveillance(
    signed_in, patient
) -> None:  # type: ignore[no-untyped-def]
    visit = first_visit(patient)  # due 2 Sep 2025
    response = signed_in.post(
        f"/coordinator/events/{visit.id}/complete",
        data={"completed_on": "2025-09-10", "outcome": "stable"},
        follow_redirects=True,
    )
    assert "Recorded visit 1 as completed on Wed 10 Sep 2025 (stable)." in response.get_data(
        as_text=True
    )
    db.session.refresh(patient)
    assert patient.active_plan.anchor_on == date(2025, 9, 10)

    nxt = next(e for e in patient.active_plan.events if e.status == "planned")
    response = signed_in.post(
        f"/coordinator/events/{nxt.id}/complete",
        data={"completed_on": "2026-01-02", "outcome": "progression"},
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert "Progression ends surveillance: upcoming events were cancelled." in html
    assert "Surveillance ended" in html
    db.session.refresh(patient)
    plan = patient.latest_plan
    assert plan.status == PlanStatus.ENDED
    assert all(e.status in ("completed", "cancelled") for e in plan.events)


def test_completing_in_the_future_or_without_outcome_is_refused(signed_in, patient) -> None:  # type: ignore[no-untyped-def]
    visit = first_visit(patient)
    html = signed_in.post(
        f"/coordinator/events/{visit.id}/complete", data={"completed_on": "2026-02-01"}
    ).get_data(as_text=True)
    assert field_error(html, "outcome") == "Choose the outcome."
    response = signed_in.post(
        f"/coordinator/events/{visit.id}/complete",
        data={"completed_on": "2026-02-01", "outcome": "stable"},
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert field_error(html, "completed_on") == "Completion date cannot be in the future."
    assert input_value(html, "completed_on") == "2026-02-01"
    assert re.search(r'<input checked[^>]*value="stable"', html)


def test_invalid_state_change_shows_the_conflict(signed_in, patient) -> None:  # type: ignore[no-untyped-def]
    visit = first_visit(patient)
    signed_in.post(f"/coordinator/events/{visit.id}/cancel", data={"reason": "Duplicate"})
    response = signed_in.post(
        f"/coordinator/events/{visit.id}/complete",
        data={"completed_on": "2025-09-02", "outcome": "stable"},
    )
    assert response.status_code == 409
    assert "A cancelled visit cannot be completed." in response.get_data(as_text=True)


def test_mark_missed_and_cancel(signed_in, patient) -> None:  # type: ignore[no-untyped-def]
    visit = first_visit(patient)
    response = signed_in.post(f"/coordinator/events/{visit.id}/missed", follow_redirects=True)
    assert "Marked visit 1 as missed" in response.get_data(as_text=True)
    db.session.refresh(visit)
    assert visit.status == EventStatus.MISSED
    future = upcoming_visit(patient)
    response = signed_in.post(f"/coordinator/events/{future.id}/missed", follow_redirects=True)
    assert "Not marked missed: An event cannot be marked missed before its date." in (
        response.get_data(as_text=True)
    )
    response = signed_in.post(
        f"/coordinator/events/{future.id}/cancel",
        data={"reason": "Patient moved away"},
        follow_redirects=True,
    )
    assert "Cancelled visit 3 (due" in response.get_data(as_text=True)
    db.session.refresh(future)
    assert future.status == EventStatus.CANCELLED and future.cancel_reason == "Patient moved away"


def test_change_interval(signed_in, patient) -> None:  # type: ignore[no-untyped-def]
    response = signed_in.post(
        f"/coordinator/patients/{patient.id}/interval",
        data={"interval_months": "6"},
        follow_redirects=True,
    )
    assert "Interval changed from 3 to 6 months" in response.get_data(as_text=True)
    db.session.refresh(patient)
    assert patient.active_plan.interval_months == 6
    response = signed_in.post(
        f"/coordinator/patients/{patient.id}/interval", data={"interval_months": "7"}
    )
    assert response.status_code == 422
    assert "Not a valid choice" in response.get_data(as_text=True)
    db.session.refresh(patient)
    assert patient.active_plan.interval_months == 6


def test_end_surveillance_needs_a_reason_and_keeps_the_form_open(signed_in, patient) -> None:  # type: ignore[no-untyped-def]
    response = signed_in.post(
        f"/coordinator/patients/{patient.id}/end-surveillance", data={"reason": "  "}
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert field_error(html, "reason") == "Say why surveillance ends."
    assert '<details class="card card-body" id="end-surveillance" open>' in html
    response = signed_in.post(
        f"/coordinator/patients/{patient.id}/end-surveillance",
        data={"reason": "Moved to treatment planning"},
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert "Surveillance ended; " in html and "Moved to treatment planning" in html
    db.session.refresh(patient)
    assert patient.active_plan is None


def test_rotate_and_revoke_the_calendar_link(signed_in, patient) -> None:  # type: ignore[no-untyped-def]
    old_hash = patient.feed_token_hash
    response = signed_in.post(
        f"/coordinator/patients/{patient.id}/calendar-link/rotate", follow_redirects=True
    )
    assert "A new calendar link was issued; the old link no longer works." in response.get_data(
        as_text=True
    )
    db.session.refresh(patient)
    assert patient.feed_token_hash not in (None, old_hash)
    response = signed_in.post(
        f"/coordinator/patients/{patient.id}/calendar-link/revoke", follow_redirects=True
    )
    html = response.get_data(as_text=True)
    assert "The calendar link was revoked" in html
    assert "no working calendar link" in html
    db.session.refresh(patient)
    assert patient.feed_token_hash is None
