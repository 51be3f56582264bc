"""The API's patient list finds each row's next event with one statement for the whole page
(``patient_search.next_open_events``) instead of loading every event. These tests check that
each item is still exactly what the fully loaded plan gives, in the cases that could differ:
several plans, completed, missed and cancelled events, booked before planned, equal dates."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

import pytest
import time_machine

from surveillance.api.serializers import patient_summary_json
from surveillance.extensions import db
from surveillance.models import EventKind, EventStatus, Patient, PlanEvent, SurveillancePlan
from surveillance.services import patient_search, plans
from tests import factories

TODAY = date(2026, 1, 5)


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        yield


def _open(plan: SurveillancePlan) -> list[PlanEvent]:
    return [e for e in plan.events if e.status in patient_search.OPEN_STATUSES]


def _enrol(clinic, family: str, **fields: Any) -> Patient:  # type: ignore[no-untyped-def]
    return factories.enrol(clinic, family_name=family, **fields)


@pytest.fixture
def varied(clinic) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """One patient for each case, by family name (the list's order); their ids."""
    long_ago = {"enrolled_on": date(2024, 12, 2), "interval_months": 3}
    made: dict[str, Patient] = {}

    made["Aplain"] = _enrol(clinic, "Aplain")

    # Earlier events done, missed and cancelled: the next open one is further down the plan.
    patient = made["Bdone"] = _enrol(clinic, "Bdone", **long_ago)
    first, second, third = _open(patient.active_plan)[:3]
    plans.complete(first, first.due_on, "stable")
    plans.mark_missed(second)
    plans.cancel(third, "Patient asked.")

    # A booked event later in the plan does not jump ahead of an earlier planned one...
    patient = made["Cbooked_later"] = _enrol(clinic, "Cbooked_later")
    later = [e for e in _open(patient.active_plan) if e.kind == EventKind.VISIT][1]
    plans.book(later, datetime.combine(later.due_on, time(9)), 30, None)

    # ...and a booked first event is the one shown, with its booking.
    patient = made["Dbooked_first"] = _enrol(clinic, "Dbooked_first", **long_ago)
    for event in _open(patient.active_plan)[:-1]:
        if event.due_on < TODAY:
            plans.cancel(event, "Not needed.")
    upcoming = _open(patient.active_plan)[0]
    plans.book(upcoming, datetime.combine(upcoming.window_end, time(9)), 30, "Room 2")

    # Surveillance ended: no next event, status "ended".
    patient = made["Eended"] = _enrol(clinic, "Eended")
    plans.end_surveillance(patient.active_plan, "Moved away.")

    # Ended, then restarted: two plans; the latest one's events count, the old plan's do not
    # (one of its events is put back to planned, earlier than anything in the new plan).
    patient = made["Frestarted"] = _enrol(clinic, "Frestarted", **long_ago)
    old_plan = patient.active_plan
    plans.end_surveillance(old_plan, "Treatment.")
    plans.restart_surveillance(patient, "Back to watching.")
    old_plan.events[0].status = EventStatus.PLANNED

    # Two open events on the same day: the plan's order (kind, then ordinal) decides. The
    # biopsy, planned after the first visit, is moved to the visit's day: it comes first.
    patient = made["Gsame_day"] = _enrol(clinic, "Gsame_day")
    visit, *_ = _open(patient.active_plan)
    biopsy = next(e for e in _open(patient.active_plan) if e.kind == EventKind.BIOPSY)
    assert visit.kind == EventKind.VISIT and visit.due_on < biopsy.due_on
    biopsy.window_start = min(biopsy.window_start, visit.due_on)
    biopsy.due_on = visit.due_on

    db.session.commit()
    return {family: patient.id for family, patient in made.items()}


def _expected_item(patient: Patient) -> dict[str, Any]:
    """The item as the fully loaded latest plan gives it: the serializer with the event found
    plan by plan, not by the page's one statement."""
    return patient_summary_json(patient, patient_search.next_open_event(patient.latest_plan), TODAY)


def test_items_are_what_the_full_plans_give(api, varied) -> None:  # type: ignore[no-untyped-def]
    items = api.get("/patients").json["items"]
    assert [i["family_name"] for i in items] == list(varied)
    db.session.expire_all()
    for item in items:
        assert item == _expected_item(db.session.get(Patient, item["id"]))
    by_name = {i["family_name"]: i for i in items}

    done = db.session.get(Patient, varied["Bdone"]).active_plan
    statuses = [e.status for e in done.events]
    assert {EventStatus.COMPLETED, EventStatus.MISSED, EventStatus.CANCELLED} <= set(statuses)
    assert by_name["Bdone"]["next_event"]["id"] == _open(done)[0].id

    assert by_name["Cbooked_later"]["next_event"]["status"] == EventStatus.PLANNED
    booked = by_name["Dbooked_first"]["next_event"]
    assert booked["status"] == EventStatus.BOOKED and booked["location"] == "Room 2"
    assert booked["starts_at"].endswith("T09:00")

    assert by_name["Eended"]["plan_status"] == "ended" and by_name["Eended"]["next_event"] is None

    restarted = db.session.get(Patient, varied["Frestarted"])
    old_plan, new_plan = restarted.plans
    assert old_plan.events[0].status == EventStatus.PLANNED
    assert old_plan.events[0].due_on < _open(new_plan)[0].due_on
    assert by_name["Frestarted"]["plan_status"] == "active"
    assert by_name["Frestarted"]["next_event"]["id"] == _open(new_plan)[0].id

    first, second = _open(db.session.get(Patient, varied["Gsame_day"]).latest_plan)[:2]
    assert (first.kind, second.kind) == (EventKind.BIOPSY, EventKind.VISIT)
    assert first.due_on == second.due_on
    assert by_name["Gsame_day"]["next_event"]["id"] == first.id


def test_every_page_size_gives_the_same_items(api, varied) -> None:  # type: ignore[no-untyped-def]
    whole = api.get("/patients").json["items"]
    for per_page in (1, 2, 3):
        paged: list[dict[str, Any]] = []
        for page in range(1, len(whole) // per_page + 2):
            paged += api.get(f"/patients?per_page={per_page}&page={page}").json["items"]
        assert paged == whole


def test_search_rows_show_the_chosen_plans_next_event(clinic, coordinator, varied) -> None:  # type: ignore[no-untyped-def]
    """The Patients screen shows the active plan's next event, the API the latest plan's."""
    for row_plan in patient_search.RowPlan:
        db.session.expire_all()
        rows = patient_search.search(coordinator, row_plan=row_plan, per_page=50).rows
        assert len(rows) == len(varied)
        for row in rows:
            patient = row.patient
            plan = (
                patient.active_plan
                if row_plan == patient_search.RowPlan.ACTIVE
                else patient.latest_plan
            )
            assert row.next_event is patient_search.next_open_event(plan)
    ended = db.session.get(Patient, varied["Eended"])
    assert ended.active_plan is None and ended.latest_plan is not None
