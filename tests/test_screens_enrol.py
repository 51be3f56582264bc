"""The enrolment screen: the API's fields and rules, inline errors, a preview, then saving."""

from __future__ import annotations

import pytest
import time_machine

from surveillance.extensions import db
from surveillance.models import Patient
from tests import factories
from tests.screens import counts, enrol_form, field_error, input_value, sign_in


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        yield


@pytest.fixture
def signed_in(client, coordinator):  # type: ignore[no-untyped-def]
    sign_in(client, coordinator.email)
    return client


def test_form_labels_every_input_and_defaults_enrolment_to_today(signed_in) -> None:  # type: ignore[no-untyped-def]
    html = signed_in.get("/coordinator/patients/new").get_data(as_text=True)
    for name in ("mrn", "given_name", "family_name", "birth_date", "email", "phone", "ki67"):
        assert f'<label class="form-label" for="{name}">' in html
    assert input_value(html, "enrolled_on") == "2026-01-05"


def test_errors_appear_next_to_fields_keep_what_was_typed_and_write_nothing(signed_in) -> None:  # type: ignore[no-untyped-def]
    response = signed_in.post(
        "/coordinator/patients/new",
        data=enrol_form(
            mrn="bad mrn!", family_name="", birth_date="2030-01-01", ki67="abc", size_mm="12"
        ),
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "letters, digits and hyphens" in field_error(html, "mrn")
    assert field_error(html, "family_name") == "This field is required."
    assert "percentage from 0 to 100" in field_error(html, "ki67")
    assert input_value(html, "mrn") == "bad mrn!"
    assert input_value(html, "given_name") == "Robin"
    assert input_value(html, "ki67") == "abc"
    assert 'aria-invalid="true"' in html
    assert counts() == (0, 0, 0)


def test_rule_errors_come_from_check_enrolment(signed_in) -> None:  # type: ignore[no-untyped-def]
    html = signed_in.post(
        "/coordinator/patients/new", data=enrol_form(birth_date="2026-02-01")
    ).get_data(as_text=True)
    assert field_error(html, "birth_date") == "Birth date cannot be in the future."
    html = signed_in.post(
        "/coordinator/patients/new", data=enrol_form(enrolled_on="2027-06-01")
    ).get_data(as_text=True)
    assert field_error(html, "enrolled_on") == "Enrolment cannot be more than a year ahead."
    assert counts() == (0, 0, 0)


def test_g3_needs_a_justification_and_the_field_is_shown(signed_in) -> None:  # type: ignore[no-untyped-def]
    form = enrol_form(differentiation="poorly", grade="G3", ki67="30")
    response = signed_in.post("/coordinator/patients/new", data=form)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "written clinical justification" in field_error(html, "justification")
    assert '<div id="justification-group">' in html  # visible, not d-none
    assert counts() == (0, 0, 0)
    form["justification"] = "Frail; discussed at the tumour board."
    response = signed_in.post("/coordinator/patients/new", data=form)
    assert response.status_code == 302
    patient = db.session.query(Patient).one()
    assert patient.active_plan.justification == "Frail; discussed at the tumour board."
    assert patient.active_plan.interval_months == 3


def test_justification_is_hidden_for_a_low_grade_profile(signed_in) -> None:  # type: ignore[no-untyped-def]
    html = signed_in.post(
        "/coordinator/patients/new", data=enrol_form(mrn="", grade="G1")
    ).get_data(as_text=True)
    assert '<div id="justification-group" class="d-none">' in html
    assert "Suggested interval: <strong>6 months</strong>" in html


def test_preview_shows_the_plan_and_saves_nothing(signed_in) -> None:  # type: ignore[no-untyped-def]
    data = enrol_form(interval_months="6")
    del data["save"]
    data["preview"] = "Preview plan"
    response = signed_in.post("/coordinator/patients/new", data=data)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Plan preview (not saved yet)" in html
    assert "Mon 6 Jul 2026" in html  # first visit, as the API plans it
    assert "Biopsy" in html
    assert input_value(html, "mrn") == "SCR-0001"
    assert counts() == (0, 0, 0)


def test_saving_enrols_and_shows_the_patient_with_what_was_done(signed_in) -> None:  # type: ignore[no-untyped-def]
    response = signed_in.post("/coordinator/patients/new", data=enrol_form())
    assert response.status_code == 302
    patient = db.session.query(Patient).one()
    assert response.location == f"/coordinator/patients/{patient.id}"
    html = signed_in.get(response.location).get_data(as_text=True)
    assert "Enrolled Robin Screenwright (MRN SCR-0001): 5 events planned, every 6 months." in html
    assert patient.active_plan.interval_months == 6  # the suggestion for well G1
    assert counts() == (1, 1, 5)


def test_duplicate_mrn_is_refused_at_the_mrn_field(signed_in, clinic) -> None:  # type: ignore[no-untyped-def]
    factories.enrol(clinic, mrn="SCR-0001")
    response = signed_in.post("/coordinator/patients/new", data=enrol_form())
    assert response.status_code == 409
    assert field_error(response.get_data(as_text=True), "mrn") == "MRN already in use."
    assert counts()[0] == 1


def test_a_clinic_the_user_does_not_belong_to_is_refused(signed_in) -> None:  # type: ignore[no-untyped-def]
    other = factories.clinic()
    response = signed_in.post("/coordinator/patients/new", data=enrol_form(clinic=other.slug))
    assert response.status_code == 422
    assert "Unknown clinic." in response.get_data(as_text=True)
    assert counts() == (0, 0, 0)


def test_interval_advice_endpoint_is_the_planning_rule(signed_in) -> None:  # type: ignore[no-untyped-def]
    def advice(**params: str):  # type: ignore[no-untyped-def]
        return signed_in.get("/coordinator/interval-advice", query_string=params).json

    assert advice(differentiation="well", grade="G1")["months"] == 6
    assert advice(differentiation="well", grade="G1", ki67="3")["months"] == 3
    assert advice(differentiation="well", grade="G2")["months"] == 3
    g3 = advice(differentiation="well", grade="G3")
    assert g3["requires_justification"] is True
    assert advice(differentiation="", grade="G1")["months"] is None
    assert advice(differentiation="well", grade="G1", ki67="abc")["months"] == 6
