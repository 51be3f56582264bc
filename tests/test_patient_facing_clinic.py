"""The clinic as patients see it: a name and address of its own, and staff text that patients
will read (those, and a booking's place) refused when it names the condition."""

from __future__ import annotations

from datetime import date, datetime

import pytest
import time_machine
from sqlalchemy import select

from surveillance import patient_page, privacy
from surveillance.extensions import db
from surveillance.feeds import content
from surveillance.models import Clinic, EventStatus
from surveillance.services import accounts, plans
from tests import factories
from tests.screens import field_error, input_value, sign_in

NAMED_FOR_THE_CONDITION = "Neuroendocrine Tumour Clinic"


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        yield


# --- The word list ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Neuroendocrine Tumour Clinic", ["Neuroendocrine", "Tumour"]),
        ("NET clinic, 2nd floor", ["NET"]),
        ("Mountain Cancer Center", ["Cancer"]),
        ("Neuro-oncology suite", ["oncology"]),
        ("Ki-67 lab", ["Ki-67"]),
        ("Northside Outpatients, Main site, 1 Stable Lane", []),  # record words are fine here
        ("Network Plaza, Cancel Street", []),  # whole words only
    ],
)
def test_condition_words_are_found_as_whole_words(text: str, found: list[str]) -> None:
    assert privacy.condition_words_in(text) == found


def test_a_first_patient_facing_name_never_names_the_condition() -> None:
    assert privacy.patient_facing_name_for(" Northside Clinic ") == "Northside Clinic"
    assert privacy.patient_facing_name_for(NAMED_FOR_THE_CONDITION) == "Outpatient clinic"
    assert privacy.patient_facing_name_for("") == "Outpatient clinic"
    assert privacy.patient_facing_address_for("Cancer Center, 1 Main St") == ""
    assert privacy.patient_facing_address_for("1 Main St") == "1 Main St"


def test_every_condition_word_is_also_forbidden_in_what_the_app_writes() -> None:
    assert set(privacy.CONDITION_WORDS) <= set(privacy.FORBIDDEN_PATIENT_WORDS)


def test_a_new_clinic_shows_patients_its_name_only_when_that_is_safe(app) -> None:  # type: ignore[no-untyped-def]
    safe = accounts.create_clinic("safe", "Northside Clinic", address="1 Main St")
    named = accounts.create_clinic("named", NAMED_FOR_THE_CONDITION, address="Cancer Center")
    assert (safe.calendar_name, safe.calendar_address) == ("Northside Clinic", "1 Main St")
    assert (named.calendar_name, named.calendar_address) == ("Outpatient clinic", "")
    assert named.for_patients().place == "Outpatient clinic"
    db.session.commit()


# --- Clinic settings --------------------------------------------------------------------------


@pytest.fixture
def admin(client, clinic):  # type: ignore[no-untyped-def]
    user = factories.user(clinics=[clinic], role="admin")
    sign_in(client, user.email)
    return user


def clinic_form(clinic: Clinic, **overrides: str) -> dict[str, object]:
    data: dict[str, object] = {
        "name": clinic.name,
        "timezone": clinic.timezone,
        "address": clinic.address,
        "calendar_name": clinic.calendar_name,
        "calendar_address": clinic.calendar_address,
        "phone": "",
        "working_weekdays": ["0", "1", "2", "3", "4"],
        "observe_us_holidays": "y",
    }
    data.update(overrides)
    return data


def test_settings_refuse_a_patient_facing_name_that_names_the_condition(  # type: ignore[no-untyped-def]
    client, admin, clinic
) -> None:
    before = (clinic.name, clinic.calendar_name, clinic.calendar_address)
    response = client.post(
        f"/coordinator/settings/clinics/{clinic.id}",
        data=clinic_form(
            clinic,
            name=NAMED_FOR_THE_CONDITION,
            calendar_name="NET Clinic",
            calendar_address="Cancer Center, 1 Main St",
        ),
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "leave out “NET”" in field_error(html, "calendar_name")
    assert "leave out “Cancer”" in field_error(html, "calendar_address")
    assert input_value(html, "calendar_name") == "NET Clinic"
    db.session.refresh(clinic)
    assert (clinic.name, clinic.calendar_name, clinic.calendar_address) == before

    empty = client.post(
        f"/coordinator/settings/clinics/{clinic.id}", data=clinic_form(clinic, calendar_name="")
    )
    assert empty.status_code == 422
    assert field_error(empty.get_data(as_text=True), "calendar_name") == privacy.NAME_NEEDED


def test_settings_keep_the_internal_name_for_staff_and_nudge_a_neutral_one(  # type: ignore[no-untyped-def]
    client, admin, clinic
) -> None:
    response = client.post(
        f"/coordinator/settings/clinics/{clinic.id}",
        data=clinic_form(
            clinic, name=NAMED_FOR_THE_CONDITION, calendar_name=privacy.NEUTRAL_CLINIC_NAME
        ),
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert f"Saved the settings of {NAMED_FOR_THE_CONDITION}." in html
    assert 'id="calendar-name-nudge"' in html  # still the neutral default: set a real one
    db.session.refresh(clinic)
    assert (clinic.name, clinic.calendar_name) == (NAMED_FOR_THE_CONDITION, "Outpatient clinic")
    listing = client.get("/coordinator/settings").get_data(as_text=True)
    assert 'Outpatient clinic <span class="badge text-bg-warning">not set</span>' in listing

    client.post(
        f"/coordinator/settings/clinics/{clinic.id}",
        data=clinic_form(clinic, calendar_name="Northside Outpatients"),
    )
    db.session.refresh(clinic)
    assert clinic.calendar_name == "Northside Outpatients"
    page = client.get(f"/coordinator/settings/clinics/{clinic.id}").get_data(as_text=True)
    assert 'id="calendar-name-nudge"' not in page


# --- A booking's place ------------------------------------------------------------------------


@pytest.fixture
def visit(clinic):  # type: ignore[no-untyped-def]
    patient = factories.enrol(clinic, enrolled_on="2025-09-01", interval_months=6)
    return next(e for e in patient.active_plan.events if e.kind == "visit")


def test_booking_form_refuses_a_place_that_names_the_condition(  # type: ignore[no-untyped-def]
    client, coordinator, visit
) -> None:
    sign_in(client, coordinator.email)
    response = client.post(
        f"/coordinator/events/{visit.id}/book",
        data={
            "day": "2026-03-04",
            "start_time": "09:30",
            "duration_minutes": "30",
            "location": "Tumor board room",
        },
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "leave out “Tumor”" in field_error(html, "location")
    assert input_value(html, "location") == "Tumor board room"
    db.session.refresh(visit)
    assert (visit.status, visit.location, visit.sequence) == (EventStatus.PLANNED, None, 0)


def test_api_refuses_a_place_that_names_the_condition_with_every_error(  # type: ignore[no-untyped-def]
    api, visit
) -> None:
    response = api.post(
        f"/events/{visit.id}/book",
        json={"starts_at": "2026-03-07T09:30", "location": "Oncology, 2nd floor"},
    )
    assert response.status_code == 422
    assert set(response.json) >= {"error", "fields"}
    assert "leave out “Oncology”" in response.json["fields"]["location"]
    assert "starts_at" in response.json["fields"]  # a Saturday: reported together
    db.session.refresh(visit)
    assert (visit.status, visit.location) == (EventStatus.PLANNED, None)
    booked = api.post(
        f"/events/{visit.id}/book", json={"starts_at": "2026-03-04T09:30", "location": "Room 4"}
    )
    assert booked.status_code == 200


# --- The command line -------------------------------------------------------------------------


def test_cli_creates_a_clinic_with_a_neutral_name_for_patients(runner) -> None:  # type: ignore[no-untyped-def]
    named = runner.invoke(args=["clinics", "create", "net", "--name", NAMED_FOR_THE_CONDITION])
    assert named.exit_code == 0, named.output
    assert "patients see it as “Outpatient clinic”" in named.output
    assert "--calendar-name" in named.output
    explicit = runner.invoke(
        args=[
            *("clinics", "create", "north", "--name", NAMED_FOR_THE_CONDITION),
            *("--calendar-name", "Northside Outpatients", "--calendar-address", "1 Main St"),
        ]
    )
    assert explicit.exit_code == 0, explicit.output
    clinic = db.session.scalar(select(Clinic).where(Clinic.slug == "north"))
    assert (clinic.calendar_name, clinic.calendar_address) == ("Northside Outpatients", "1 Main St")
    refused = runner.invoke(
        args=["clinics", "create", "south", "--name", "S", "--calendar-name", "Cancer Care"]
    )
    assert refused.exit_code != 0 and "calendar_name" in refused.output
    assert db.session.scalar(select(Clinic).where(Clinic.slug == "south")) is None


def test_a_place_typed_before_the_check_never_reaches_the_patient(app, clinic, visit) -> None:  # type: ignore[no-untyped-def]
    """Defence in depth: a stored place naming the condition (typed before the check, or
    written around it) shows patients the clinic's place; staff still see it as typed."""
    plans.book(visit, datetime(2026, 3, 4, 9, 30), 30, "Room 4")
    visit.location = "Oncology wing, Room 4"
    db.session.commit()
    shown = clinic.for_patients()
    assert content.patient_event(visit, clinic, None).location == shown.place
    assert content.clinic_event(visit).location == "Oncology wing, Room 4"
    (booked,) = [
        a
        for a in patient_page.appointments(
            visit.plan.events, clinic.timezone, date(2026, 3, 1), clinic_place=shown.place
        )
        if a.booked
    ]
    assert booked.place == shown.place
    assert privacy.place_for_patients("Room 4", shown.place) == "Room 4"
    assert privacy.place_for_patients(None, shown.place) == shown.place
