"""Today (worklists and a day's bookings) and the Patients list."""

from __future__ import annotations

from datetime import datetime

import pytest
import time_machine

from surveillance.extensions import db
from surveillance.services import counting, plans
from tests import factories
from tests.screens import sign_in


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    # Monday 5 January 2026, 10:00 in Denver.
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        yield


def test_today_shows_counts_and_rows_one_click_from_the_patient(
    client, clinic, coordinator
) -> None:  # type: ignore[no-untyped-def]
    late = factories.enrol(
        clinic, mrn="LATE-1", family_name="Latecomer", enrolled_on="2025-06-02", interval_months=3
    )
    factories.enrol(clinic, mrn="NEW-1", family_name="Newcomer")  # nothing due yet
    sign_in(client, coordinator.email)
    html = client.get("/coordinator/").get_data(as_text=True)
    assert 'id="worklist-overdue"' in html
    assert 'data-count="2"' in html  # two overdue visits (Sep and Dec 2025)
    overdue = [e for e in late.active_plan.events if e.due_on < datetime(2026, 1, 5).date()]
    for event in overdue:
        assert f'href="/coordinator/patients/{late.id}#event-{event.id}"' in html
    assert "Newcomer" not in html


def test_today_counts_stop_at_the_limit_and_pages_go_on(
    client, clinic, coordinator, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    for n in range(14):
        factories.enrol(clinic, mrn=f"LATE-{n}", enrolled_on="2025-06-02", interval_months=3)
    monkeypatch.setattr(counting, "COUNT_LIMIT", 20)
    sign_in(client, coordinator.email)
    html = client.get("/coordinator/?list=overdue").get_data(as_text=True)
    assert 'data-count="20+"' in html and "(20+)" in html  # 28 overdue visits
    assert "Page 1<" in html and 'rel="next"' in html and 'rel="prev"' not in html
    last = client.get("/coordinator/?list=overdue&page=2").get_data(as_text=True)
    assert 'rel="prev"' in last and 'rel="next"' not in last


def test_today_filters_by_clinic_and_ignores_clinics_not_visible(client, clinic) -> None:  # type: ignore[no-untyped-def]
    north = factories.clinic(name="North Clinic")
    hidden = factories.clinic(name="Hidden Clinic")
    user = factories.user(clinics=[clinic, north])
    factories.enrol(clinic, mrn="A-1", family_name="Southside", enrolled_on="2025-06-02")
    factories.enrol(north, mrn="B-1", family_name="Northside", enrolled_on="2025-06-02")
    factories.enrol(hidden, mrn="C-1", family_name="Elsewhere", enrolled_on="2025-06-02")
    sign_in(client, user.email)
    everything = client.get("/coordinator/?list=overdue").get_data(as_text=True)
    assert "Southside" in everything and "Northside" in everything
    assert "Elsewhere" not in everything
    only_north = client.get(f"/coordinator/?list=overdue&clinic={north.id}").get_data(as_text=True)
    assert "Northside" in only_north and "Southside" not in only_north
    # A clinic the user cannot see is ignored, not shown.
    sneaky = client.get(f"/coordinator/?list=overdue&clinic={hidden.id}").get_data(as_text=True)
    assert "Elsewhere" not in sneaky


def test_bookings_of_a_day_in_the_clinic_time_zone(client, clinic, coordinator) -> None:  # type: ignore[no-untyped-def]
    patient = factories.enrol(clinic, mrn="BK-1", family_name="Booked", enrolled_on="2025-12-01")
    event = next(e for e in patient.active_plan.events if e.kind == "visit")
    # 17:30 in Denver on Tuesday is already Wednesday in UTC: it still belongs to Tuesday.
    plans.book(event, datetime(2026, 1, 6, 17, 30), 30, "Room 2")
    db.session.commit()
    sign_in(client, coordinator.email)
    tuesday = client.get("/coordinator/?day=2026-01-06").get_data(as_text=True)
    assert "Booked for Tue 6 Jan 2026 (tomorrow)" in tuesday
    assert "Booked, Alex" in tuesday and "17:30" in tuesday
    wednesday = client.get("/coordinator/?day=2026-01-07").get_data(as_text=True)
    assert "Booked, Alex" not in wednesday
    # A nonsense day falls back to today.
    assert "(today)" in client.get("/coordinator/?day=nonsense").get_data(as_text=True)


def test_patients_search_by_name_and_mrn(client, clinic, coordinator) -> None:  # type: ignore[no-untyped-def]
    factories.enrol(clinic, mrn="ZZ-9", given_name="Sam", family_name="Findme")
    factories.enrol(clinic, mrn="YY-1", given_name="Lee", family_name="Other")
    sign_in(client, coordinator.email)
    for term in ("findme", "Sam Findme", "Findme, Sam", "zz-9"):
        html = client.get("/coordinator/patients", query_string={"q": term}).get_data(as_text=True)
        assert "Findme, Sam" in html and "Other, Lee" not in html, term
        assert "1 patient matching" in html


def test_patients_sort_by_next_due_event_and_paginate(client, clinic, coordinator) -> None:  # type: ignore[no-untyped-def]
    later = factories.enrol(clinic, mrn="P-1", family_name="Aaron", enrolled_on="2026-01-05")
    sooner = factories.enrol(
        clinic, mrn="P-2", family_name="Zed", enrolled_on="2025-11-03", interval_months=3
    )
    ended = factories.enrol(clinic, mrn="P-3", family_name="Middle")
    plans.end_surveillance(ended.active_plan, "Moved away")
    db.session.commit()
    sign_in(client, coordinator.email)
    html = client.get("/coordinator/patients").get_data(as_text=True)
    assert html.index("Zed,") < html.index("Aaron,") < html.index("Middle,")
    by_name = client.get("/coordinator/patients?sort=name").get_data(as_text=True)
    assert by_name.index("Aaron,") < by_name.index("Middle,") < by_name.index("Zed,")
    for n in range(26):
        factories.enrol(clinic, mrn=f"BULK-{n}", family_name=f"Bulk{n:02d}")
    first = client.get("/coordinator/patients?sort=name").get_data(as_text=True)
    assert "Page 1<" in first and 'rel="next"' in first and "29 patients" in first
    second = client.get("/coordinator/patients?sort=name&page=2").get_data(as_text=True)
    assert "Zed," in second and "Aaron," not in second
    # The last page: a way back, none further.
    assert "Page 2<" in second and 'rel="prev"' in second and 'rel="next"' not in second
    assert later.id and sooner.id
