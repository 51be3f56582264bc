"""The enrolment API end to end: HTTP in, database and JSON out."""

from __future__ import annotations

from datetime import date

import pytest
import time_machine
from sqlalchemy import func, select

from surveillance.extensions import db
from surveillance.models import Patient, PlanEvent, SurveillancePlan
from tests import factories

TODAY = date(2026, 1, 5)


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        yield


def counts() -> tuple[int, int, int]:
    return (
        db.session.scalar(select(func.count(Patient.id))),
        db.session.scalar(select(func.count(SurveillancePlan.id))),
        db.session.scalar(select(func.count(PlanEvent.id))),
    )


def test_enrol_returns_patient_plan_and_events(api) -> None:  # type: ignore[no-untyped-def]
    response = api.post("/patients", json=factories.enrolment_payload(mrn="A-100"))
    assert response.status_code == 201, response.json
    body = response.json
    assert body["mrn"] == "A-100"
    assert body["plan"]["interval_months"] == 6
    assert body["plan"]["status"] == "active"
    visits = [e for e in body["events"] if e["kind"] == "visit"]
    biopsies = [e for e in body["events"] if e["kind"] == "biopsy"]
    assert [v["due_on"] for v in visits] == ["2026-07-06", "2027-01-05", "2027-07-06", "2028-01-05"]
    assert len(biopsies) == 1 and biopsies[0]["due_on"] == "2027-01-05"
    for event in body["events"]:
        assert set(event) >= {
            "id",
            "uid",
            "kind",
            "due_on",
            "window_start",
            "window_end",
            "status",
            "starts_at",
            "ends_at",
            "location",
            "sequence",
            "outcome",
        }
        assert event["status"] == "planned"
        assert event["sequence"] == 0
    assert counts() == (1, 1, 5)


def test_interval_defaults_to_the_suggestion(api) -> None:  # type: ignore[no-untyped-def]
    payload = factories.enrolment_payload(grade="G2", ki67=5.0)
    del payload["interval_months"]
    body = api.post("/patients", json=payload).json
    assert body["plan"]["interval_months"] == 3
    assert body["plan"]["suggested_interval_months"] == 3


def test_past_enrolment_gives_overdue_planned_events(api) -> None:  # type: ignore[no-untyped-def]
    body = api.post(
        "/patients", json=factories.enrolment_payload(enrolled_on="2025-01-06", interval_months=3)
    ).json
    past = [e for e in body["events"] if e["due_on"] < TODAY.isoformat()]
    assert past and all(e["status"] == "planned" and e["overdue"] for e in past)
    future = [e for e in body["events"] if e["due_on"] >= TODAY.isoformat()]
    assert not any(e["overdue"] for e in future)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"birth_date": "2026-02-01"}, "birth_date"),
        ({"birth_date": "2025-02-30"}, "birth_date"),
        ({"enrolled_on": "2027-01-06"}, "enrolled_on"),
        ({"interval_months": 2}, "interval_months"),
        ({"interval_months": 7}, "interval_months"),
        ({"interval_months": "6"}, "interval_months"),
        ({"ki67": "high"}, "ki67"),
        ({"grade": "G4"}, "grade"),
        ({"primary_site": "liver"}, "primary_site"),
        ({"email": "not-an-email"}, "email"),
        ({"favourite_colour": "blue"}, "favourite_colour"),
        ({"mrn": ""}, "mrn"),
        ({"preferred_language": "ywr-DC5i0Jo-3X-BJ-3HIIV-cZ"}, "preferred_language"),  # > column
        ({"differentiation": "poorly"}, "justification"),
        ({"grade": "G3"}, "justification"),
    ],
)
def test_bad_enrolment_is_422_with_the_field_and_writes_nothing(api, override, field) -> None:  # type: ignore[no-untyped-def]
    response = api.post("/patients", json=factories.enrolment_payload(**override))
    assert response.status_code == 422
    assert response.json["error"]
    assert field in response.json["fields"], response.json
    assert counts() == (0, 0, 0)


def test_missing_fields_are_named(api) -> None:  # type: ignore[no-untyped-def]
    response = api.post("/patients", json={})
    assert response.status_code == 422
    assert {"mrn", "given_name", "birth_date", "enrolled_on", "grade"} <= set(
        response.json["fields"]
    )


def test_g3_with_justification_is_accepted(api) -> None:  # type: ignore[no-untyped-def]
    response = api.post(
        "/patients",
        json=factories.enrolment_payload(grade="G3", justification="Frail, declines treatment."),
    )
    assert response.status_code == 201
    assert response.json["plan"]["justification"] == "Frail, declines treatment."


def test_duplicate_mrn_is_409(api) -> None:  # type: ignore[no-untyped-def]
    assert api.post("/patients", json=factories.enrolment_payload(mrn="DUP-1")).status_code == 201
    response = api.post("/patients", json=factories.enrolment_payload(mrn="DUP-1"))
    assert response.status_code == 409
    assert "mrn" in response.json["fields"]
    assert counts()[0] == 1


def test_missing_or_bad_token_is_401(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/v1/patients").status_code == 401
    response = client.get("/api/v1/patients", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json["error"]


def test_revoked_token_is_401(client, coordinator) -> None:  # type: ignore[no-untyped-def]
    from surveillance import clock

    secret = factories.token_for(coordinator)
    coordinator.api_tokens[0].revoked_at = clock.utcnow()
    db.session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/patients", headers=headers).status_code == 401


def test_another_clinics_patient_is_404(app, client, clinic, api) -> None:  # type: ignore[no-untyped-def]
    patient_id = api.post("/patients", json=factories.enrolment_payload()).json["id"]
    event_id = api.get(f"/patients/{patient_id}").json["events"][0]["id"]
    other = factories.ApiClient(
        client, factories.token_for(factories.user(clinics=[factories.clinic()]))
    )
    assert other.get(f"/patients/{patient_id}").status_code == 404
    assert other.patch(f"/patients/{patient_id}", json={"phone": "1"}).status_code == 404
    assert other.post(f"/events/{event_id}/cancel", json={}).status_code == 404
    assert other.get("/patients").json["total"] == 0
    admin = factories.ApiClient(client, factories.token_for(factories.user(role="admin")))
    assert admin.get(f"/patients/{patient_id}").status_code == 200


def test_enrol_in_a_named_clinic(client) -> None:  # type: ignore[no-untyped-def]
    first, second = factories.clinic("north"), factories.clinic("south")
    api = factories.ApiClient(client, factories.token_for(factories.user(clinics=[first, second])))
    response = api.post("/patients", json=factories.enrolment_payload())
    assert response.status_code == 422 and "clinic" in response.json["fields"]
    response = api.post("/patients", json=factories.enrolment_payload(clinic="south"))
    assert response.status_code == 201 and response.json["clinic"] == "south"
    outsider = factories.clinic("elsewhere")
    response = api.post("/patients", json=factories.enrolment_payload(clinic=outsider.slug))
    assert response.status_code == 422


def test_list_search_and_paginate(api) -> None:  # type: ignore[no-untyped-def]
    for n, family in enumerate(["Zephyr", "Abbott", "Moreau", "Abernathy"]):
        payload = factories.enrolment_payload(mrn=f"LIST-{n}", family_name=family)
        assert api.post("/patients", json=payload).status_code == 201
    page = api.get("/patients?per_page=3").json
    assert page["total"] == 4 and len(page["items"]) == 3
    assert [p["family_name"] for p in page["items"]] == ["Abbott", "Abernathy", "Moreau"]
    assert [p["family_name"] for p in api.get("/patients?page=2&per_page=3").json["items"]] == [
        "Zephyr"
    ]
    assert [p["family_name"] for p in api.get("/patients?q=abe").json["items"]] == ["Abernathy"]
    assert [p["mrn"] for p in api.get("/patients?q=list-2").json["items"]] == ["LIST-2"]
    assert api.get("/patients?page=0").status_code == 422
    assert api.get("/patients?per_page=abc").status_code == 422
    first = api.get("/patients?q=Abbott").json["items"][0]
    assert first["next_event"]["kind"] == "visit"


def test_patch_contact_fields_and_interval(api) -> None:  # type: ignore[no-untyped-def]
    body = api.post("/patients", json=factories.enrolment_payload()).json
    old_uids = {e["ordinal"]: e["uid"] for e in body["events"] if e["kind"] == "visit"}
    response = api.patch(
        f"/patients/{body['id']}", json={"phone": "+1 720 555 0100", "interval_months": 3}
    )
    assert response.status_code == 200, response.json
    updated = response.json
    assert updated["phone"] == "+1 720 555 0100"
    assert updated["plan"]["interval_months"] == 3
    visits = {e["ordinal"]: e for e in updated["events"] if e["kind"] == "visit"}
    for ordinal, uid in old_uids.items():
        assert visits[ordinal]["uid"] == uid
        assert visits[ordinal]["sequence"] == 1
    assert visits[1]["due_on"] == "2026-04-06"  # 5 April 2026 is a Sunday
    assert len(visits) > len(old_uids)


@pytest.mark.parametrize(
    "payload",
    [{"interval_months": 9}, {"mrn": "X"}, {"given_name": None}, {"email_opt_out": "yes"}],
)
def test_patch_rejects_bad_input(api, payload) -> None:  # type: ignore[no-untyped-def]
    patient_id = api.post("/patients", json=factories.enrolment_payload()).json["id"]
    before = api.get(f"/patients/{patient_id}").json
    response = api.patch(f"/patients/{patient_id}", json=payload)
    assert response.status_code == 422
    assert api.get(f"/patients/{patient_id}").json == before


def test_malformed_json_is_400_and_wrong_type_is_415(api) -> None:  # type: ignore[no-untyped-def]
    response = api.client.post(
        "/api/v1/patients",
        data="{not json",
        headers={**api._headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and response.json["error"]
    response = api.client.post(
        "/api/v1/patients",
        data="mrn=1",
        headers={**api._headers(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert counts() == (0, 0, 0)


def test_unknown_api_route_answers_json(api) -> None:  # type: ignore[no-untyped-def]
    response = api.get("/nothing-here")
    assert response.status_code == 404 and response.json["error"]


def test_repeated_bad_tokens_lock_the_address_out(client, coordinator) -> None:  # type: ignore[no-untyped-def]
    good = factories.ApiClient(client, factories.token_for(coordinator))
    bad = factories.ApiClient(client, "not-a-token")
    for _ in range(20):
        assert bad.get("/patients").status_code == 401
    locked = bad.get("/patients")
    assert locked.status_code == 429 and locked.json["error"]
    # Even a valid token from the locked address waits: guessing cannot be told from use.
    assert good.get("/patients").status_code == 429


@pytest.mark.parametrize(
    "path", ["/patients/²", "/patients/99999999999999999999", "/events/99999999999/missed"]
)
def test_odd_ids_are_404_not_500(api, path: str) -> None:  # type: ignore[no-untyped-def]
    method = "POST" if path.endswith("missed") else "GET"
    assert api.request(method, path).status_code == 404


@pytest.mark.parametrize("query", ["page=²", "per_page=1%C2%B2", "clinic=unknown"])
def test_odd_query_values_are_422(api, query: str) -> None:  # type: ignore[no-untyped-def]
    assert api.get(f"/patients?{query}").status_code == 422


def test_search_treats_percent_and_underscore_literally(api) -> None:  # type: ignore[no-untyped-def]
    api.post("/patients", json=factories.enrolment_payload(family_name="Under_score"))
    api.post("/patients", json=factories.enrolment_payload(family_name="Underxscore"))
    found = api.get("/patients?q=under_").json["items"]
    assert [p["family_name"] for p in found] == ["Under_score"]
    assert api.get("/patients?q=%25").json["total"] == 0
