"""Event actions through the API: booking, rescheduling, completion, missed, cancel, ending."""

from __future__ import annotations

import pytest
import time_machine
from sqlalchemy import select

from surveillance.extensions import db
from surveillance.models import PlanEvent
from tests import factories


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    # Monday 5 January 2026, 10:00 in Denver.
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False) as traveller:
        yield traveller


@pytest.fixture
def patient(api):  # type: ignore[no-untyped-def]
    response = api.post("/patients", json=factories.enrolment_payload(interval_months=6))
    assert response.status_code == 201
    return response.json


def first(patient_json, kind: str = "visit", ordinal: int = 1):  # type: ignore[no-untyped-def]
    return next(e for e in patient_json["events"] if e["kind"] == kind and e["ordinal"] == ordinal)


def snapshot() -> list[tuple]:  # type: ignore[type-arg]
    db.session.expire_all()
    rows = db.session.scalars(select(PlanEvent).order_by(PlanEvent.id)).all()
    return [(e.id, e.status, e.due_on, e.starts_at, e.sequence, e.outcome) for e in rows]


def test_book_converts_local_clinic_time(api, patient) -> None:  # type: ignore[no-untyped-def]
    visit = first(patient)
    response = api.post(
        f"/events/{visit['id']}/book",
        json={"starts_at": "2026-07-06T09:30", "duration_minutes": 45, "location": "Room 4"},
    )
    assert response.status_code == 200, response.json
    booked = first(response.json)
    assert booked["status"] == "booked"
    assert booked["starts_at"] == "2026-07-06T09:30"
    assert booked["ends_at"] == "2026-07-06T10:15"
    assert booked["location"] == "Room 4"
    assert booked["sequence"] == visit["sequence"] + 1
    assert booked["uid"] == visit["uid"]
    stored = db.session.get(PlanEvent, visit["id"])
    assert stored.starts_at.isoformat() == "2026-07-06T15:30:00+00:00"  # MDT is UTC-6


def test_booking_defaults_to_the_clinic_address(api, patient, clinic) -> None:  # type: ignore[no-untyped-def]
    visit = first(patient)
    body = api.post(f"/events/{visit['id']}/book", json={"starts_at": "2026-07-06T09:30"}).json
    assert first(body)["location"] == clinic.address
    assert first(body)["ends_at"] == "2026-07-06T10:00"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"starts_at": "2026-07-04T09:30"}, "starts_at"),  # Saturday (and Independence Day)
        ({"starts_at": "2026-07-03T09:30"}, "starts_at"),  # observed holiday (Friday)
        ({"starts_at": "2026-03-08T02:30"}, "starts_at"),  # Sunday, and a time that doesn't exist
        ({"starts_at": "2026-07-06T09:30+02:00"}, "starts_at"),
        ({"starts_at": "2026-07-06"}, "starts_at"),
        ({"starts_at": "2026-07-06T09:30", "duration_minutes": 0}, "duration_minutes"),
        ({"starts_at": "2026-07-06T09:30", "room": "4"}, "room"),
        ({}, "starts_at"),
    ],
)
def test_bad_booking_is_422_and_changes_nothing(api, patient, payload, field) -> None:  # type: ignore[no-untyped-def]
    before = snapshot()
    response = api.post(f"/events/{first(patient)['id']}/book", json=payload)
    assert response.status_code == 422, response.json
    assert field in response.json["fields"]
    assert snapshot() == before


def test_booking_on_a_clinic_closure_is_refused(api, patient, clinic) -> None:  # type: ignore[no-untyped-def]
    from datetime import date

    from surveillance.models import ClinicClosure

    db.session.add(ClinicClosure(clinic=clinic, closed_on=date(2026, 7, 7), reason="Training"))
    db.session.commit()
    response = api.post(
        f"/events/{first(patient)['id']}/book", json={"starts_at": "2026-07-07T09:00"}
    )
    assert response.status_code == 422
    assert "closed" in response.json["fields"]["starts_at"]


def test_nonexistent_local_time_is_refused(api, patient, clinic) -> None:  # type: ignore[no-untyped-def]
    clinic.working_weekdays = "0123456"
    clinic.observe_us_holidays = False
    db.session.commit()
    response = api.post(
        f"/events/{first(patient)['id']}/book", json={"starts_at": "2026-03-08T02:30"}
    )
    assert response.status_code == 422
    assert "does not exist" in response.json["fields"]["starts_at"]


def test_reschedule_moves_a_booked_event(api, patient) -> None:  # type: ignore[no-untyped-def]
    visit_id = first(patient)["id"]
    assert (
        api.post(
            f"/events/{visit_id}/reschedule", json={"starts_at": "2026-07-06T09:30"}
        ).status_code
        == 409
    )
    booked = first(
        api.post(f"/events/{visit_id}/book", json={"starts_at": "2026-07-06T09:30"}).json
    )
    moved = first(
        api.post(
            f"/events/{visit_id}/reschedule",
            json={"starts_at": "2026-07-08T14:00", "duration_minutes": 30},
        ).json
    )
    assert moved["starts_at"] == "2026-07-08T14:00"
    assert moved["sequence"] == booked["sequence"] + 1
    assert moved["uid"] == booked["uid"]
    assert (
        api.post(f"/events/{visit_id}/book", json={"starts_at": "2026-07-09T09:30"}).status_code
        == 409
    )


def test_complete_on_due_date_keeps_the_schedule(api, patient, _today) -> None:  # type: ignore[no-untyped-def]
    visit = first(patient)
    _today.move_to("2026-07-07 17:00:00+00:00")
    body = api.post(
        f"/events/{visit['id']}/complete",
        json={"completed_on": visit["due_on"], "outcome": "stable"},
    ).json
    assert first(body)["status"] == "completed"
    assert first(body)["outcome"] == "stable"
    assert first(body, ordinal=2)["due_on"] == first(patient, ordinal=2)["due_on"]
    assert body["plan"]["anchor_on"] == patient["plan"]["anchor_on"]


def test_complete_late_reanchors_later_visits_but_not_the_biopsy(api, patient, _today) -> None:  # type: ignore[no-untyped-def]
    visit = first(patient)
    _today.move_to("2026-07-21 17:00:00+00:00")
    body = api.post(
        f"/events/{visit['id']}/complete", json={"completed_on": "2026-07-20", "outcome": "stable"}
    ).json
    second = first(body, ordinal=2)
    assert body["plan"]["anchor_on"] == "2026-07-20"
    assert second["due_on"] == "2027-01-20"  # six months after the actual visit
    assert second["uid"] == first(patient, ordinal=2)["uid"]
    assert second["sequence"] == first(patient, ordinal=2)["sequence"] + 1
    assert first(body, kind="biopsy")["due_on"] == first(patient, kind="biopsy")["due_on"]


def test_complete_validates_date_and_outcome(api, patient) -> None:  # type: ignore[no-untyped-def]
    visit_id = first(patient)["id"]
    before = snapshot()
    tomorrow = api.post(
        f"/events/{visit_id}/complete", json={"completed_on": "2026-01-06", "outcome": "stable"}
    )
    assert tomorrow.status_code == 422 and "completed_on" in tomorrow.json["fields"]
    unknown = api.post(
        f"/events/{visit_id}/complete", json={"completed_on": "2026-01-05", "outcome": "great"}
    )
    assert unknown.status_code == 422 and "outcome" in unknown.json["fields"]
    assert snapshot() == before


def test_progression_ends_surveillance_and_cancels_the_future(api, patient, _today) -> None:  # type: ignore[no-untyped-def]
    visit = first(patient)
    _today.move_to("2026-07-07 17:00:00+00:00")
    body = api.post(
        f"/events/{visit['id']}/complete",
        json={"completed_on": "2026-07-06", "outcome": "progression"},
    ).json
    assert body["plan"]["status"] == "ended"
    assert body["plan"]["end_reason"]
    others = [e for e in body["events"] if e["id"] != visit["id"]]
    assert others and all(e["status"] == "cancelled" for e in others)
    assert all(e["sequence"] >= 1 for e in others)
    # Nothing more can be booked on an ended plan.
    response = api.post(f"/events/{others[0]['id']}/book", json={"starts_at": "2026-08-03T09:00"})
    assert response.status_code == 409


def test_completing_a_cancelled_event_is_409(api, patient) -> None:  # type: ignore[no-untyped-def]
    visit_id = first(patient)["id"]
    cancelled = api.post(f"/events/{visit_id}/cancel", json={"reason": "Patient moved away"})
    assert first(cancelled.json)["status"] == "cancelled"
    before = snapshot()
    response = api.post(
        f"/events/{visit_id}/complete", json={"completed_on": "2026-01-05", "outcome": "stable"}
    )
    assert response.status_code == 409 and response.json["error"]
    assert api.post(f"/events/{visit_id}/cancel", json={}).status_code == 409
    assert snapshot() == before


def test_missed_only_once_its_date_has_come(api, patient, _today) -> None:  # type: ignore[no-untyped-def]
    visit_id = first(patient)["id"]
    assert api.post(f"/events/{visit_id}/missed").status_code == 409
    _today.move_to("2026-07-07 17:00:00+00:00")
    body = api.post(f"/events/{visit_id}/missed").json
    assert first(body)["status"] == "missed"
    # A missed visit can be booked again, then completed.
    rebooked = api.post(f"/events/{visit_id}/book", json={"starts_at": "2026-07-09T09:00"})
    assert first(rebooked.json)["status"] == "booked"


def test_end_surveillance(api, patient) -> None:  # type: ignore[no-untyped-def]
    url = f"/patients/{patient['id']}/end-surveillance"
    assert api.post(url, json={}).status_code == 422
    assert api.post(url, json={"reason": "   "}).status_code == 422
    body = api.post(url, json={"reason": "Patient chose to stop follow-up"}).json
    assert body["plan"]["status"] == "ended"
    assert body["plan"]["ended_on"] == "2026-01-05"
    assert all(e["status"] == "cancelled" for e in body["events"])
    assert api.post(url, json={"reason": "again"}).status_code == 409
    response = api.patch(
        f"/patients/{patient['id']}", json={"interval_months": 3, "phone": "+1 720 555 0000"}
    )
    assert response.status_code == 409  # an invalid state change, and nothing is written
    assert api.get(f"/patients/{patient['id']}").json["phone"] == patient["phone"]


def test_unknown_event_is_404(api) -> None:  # type: ignore[no-untyped-def]
    assert api.post("/events/999999/cancel", json={}).status_code == 404
