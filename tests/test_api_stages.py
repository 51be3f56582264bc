"""Care stages through the JSON API, including the progression path end to end."""

from __future__ import annotations

import pytest
import time_machine
from sqlalchemy import func, select

from surveillance.api import openapi, schemas
from surveillance.extensions import db
from surveillance.models import AuditEntry, StageChange
from surveillance.stages import Stage
from tests import factories


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    # Enrolled 2025-01-06, 6-monthly: visits due 2025-07-07 and 2026-01-06 are in the past,
    # the biopsy (due 2026-01-06) is in its window.
    with time_machine.travel("2026-01-20 17:00:00+00:00", tick=False):
        yield


def enrol(api) -> dict:  # type: ignore[no-untyped-def]
    response = api.post(
        "/patients", json=factories.enrolment_payload(enrolled_on="2025-01-06", interval_months=6)
    )
    assert response.status_code == 201, response.json
    return response.json


def stage_changes() -> int:
    return db.session.scalar(select(func.count(StageChange.id)))


def test_enrolled_patient_shows_stage_history_and_next_stages(api) -> None:  # type: ignore[no-untyped-def]
    body = enrol(api)
    assert body["stage"] == "watchful_waiting"
    assert body["next_stages"] == ["biopsy_review", "treatment_planning", "surveillance_ended"]
    (entry,) = body["stage_history"]
    assert entry["from_stage"] is None and entry["to_stage"] == "watchful_waiting"
    assert entry["changed_by"] is None  # the system, at enrolment
    assert entry["changed_at"].startswith("2026-01-20T17:00:00")
    assert api.get(f"/patients/{body['id']}").json["stage_history"] == body["stage_history"]


def test_change_stage(api, coordinator) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    response = api.post(
        f"/patients/{patient['id']}/stage",
        json={"stage": "biopsy_review", "reason": "Biopsy results to discuss."},
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert body["stage"] == "biopsy_review"
    assert body["stage_history"][-1] == {
        "from_stage": "watchful_waiting",
        "to_stage": "biopsy_review",
        "changed_at": "2026-01-20T17:00:00+00:00",
        "changed_by": coordinator.email,
        "reason": "Biopsy results to discuss.",
    }
    assert body["plan"]["status"] == "active"


@pytest.mark.parametrize(
    ("payload", "field", "message_part"),
    [
        ({"stage": "cured", "reason": "x"}, "stage", "Input should be 'assessment'"),
        (
            {"stage": "clinical_trial", "reason": "Found a trial."},
            "stage",
            "Cannot move from Watchful waiting to Clinical trial. Allowed next stages: "
            "Biopsy review (biopsy_review), Treatment planning (treatment_planning), "
            "Surveillance ended (surveillance_ended).",
        ),
        (
            {"stage": "watchful_waiting", "reason": "Again."},
            "stage",
            "The patient is already in Watchful waiting.",
        ),
        ({"stage": "treatment_planning"}, "reason", "This field is required."),
        ({"stage": "treatment_planning", "reason": "  "}, "reason", "at least 1 character"),
        ({"stage": "treatment_planning", "reason": "x", "by": "me"}, "by", "Unknown field."),
        ({"stage": 3, "reason": "x"}, "stage", "Input should be"),
    ],
)
def test_bad_stage_changes_are_422_and_write_nothing(api, payload, field, message_part) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    before = stage_changes()
    response = api.post(f"/patients/{patient['id']}/stage", json=payload)
    assert response.status_code == 422, response.json
    assert message_part in response.json["fields"][field]
    assert response.json["error"]
    db.session.expire_all()
    assert stage_changes() == before
    after = api.get(f"/patients/{patient['id']}").json
    assert after["stage"] == "watchful_waiting" and after["plan"]["status"] == "active"


def test_stage_change_needs_a_token_and_the_patients_clinic(client, api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    payload = {"stage": "treatment_planning", "reason": "x"}
    assert client.post(f"/api/v1/patients/{patient['id']}/stage", json=payload).status_code == 401
    stranger = factories.ApiClient(
        client, factories.token_for(factories.user(clinics=[factories.clinic()]))
    )
    assert stranger.post(f"/patients/{patient['id']}/stage", json=payload).status_code == 404
    assert api.post("/patients/999999/stage", json=payload).status_code == 404


def test_moving_to_treatment_through_the_api_ends_the_plan(api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    body = api.post(
        f"/patients/{patient['id']}/stage",
        json={"stage": "treatment_planning", "reason": "Team review after new symptoms."},
    ).json
    assert body["plan"]["status"] == "ended"
    assert body["plan"]["end_reason"] == "Team review after new symptoms."
    assert {e["status"] for e in body["events"]} == {"cancelled"}
    assert body["next_stages"] == [
        "watchful_waiting",
        "systemic_treatment",
        "local_treatment",
        "clinical_trial",
        "surveillance_ended",
    ]


@pytest.mark.parametrize("kind", ["visit", "biopsy"])
def test_progression_path_end_to_end(api, kind) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    event = next(e for e in patient["events"] if e["kind"] == kind)
    response = api.post(
        f"/events/{event['id']}/complete",
        json={"completed_on": event["due_on"], "outcome": "progression"},
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert body["stage"] == "treatment_planning"
    assert body["plan"]["status"] == "ended"
    assert body["plan"]["end_reason"] == "Progression found at a surveillance event."
    stages = [(h["from_stage"], h["to_stage"]) for h in body["stage_history"]]
    if kind == "biopsy":
        assert stages == [
            (None, "watchful_waiting"),
            ("watchful_waiting", "biopsy_review"),
            ("biopsy_review", "treatment_planning"),
        ]
    else:
        assert stages == [(None, "watchful_waiting"), ("watchful_waiting", "treatment_planning")]
    future = [e for e in body["events"] if e["due_on"] > "2026-01-20"]
    assert future and all(e["status"] == "cancelled" for e in future)
    completed = next(e for e in body["events"] if e["id"] == event["id"])
    assert (completed["status"], completed["outcome"]) == ("completed", "progression")
    # Nothing surveillance-related can be booked any more.
    booking = api.post(f"/events/{future[0]['id']}/book", json={"starts_at": "2026-07-07T09:00:00"})
    assert booking.status_code == 409


def test_stable_biopsy_goes_back_to_watchful_waiting(api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    biopsy = next(e for e in patient["events"] if e["kind"] == "biopsy")
    booked = api.post(f"/events/{biopsy['id']}/book", json={"starts_at": "2026-01-27T09:00:00"})
    assert booked.json["stage"] == "biopsy_review"
    with time_machine.travel("2026-01-28 17:00:00+00:00", tick=False):
        done = api.post(
            f"/events/{biopsy['id']}/complete",
            json={"completed_on": "2026-01-27", "outcome": "stable"},
        ).json
    assert done["stage"] == "watchful_waiting"
    assert done["plan"]["status"] == "active"


def test_end_surveillance_records_who_ended_it(api, coordinator) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    body = api.post(
        f"/patients/{patient['id']}/end-surveillance", json={"reason": "Moved away."}
    ).json
    assert body["stage"] == "surveillance_ended"
    assert body["stage_history"][-1]["changed_by"] == coordinator.email
    assert body["next_stages"] == ["assessment"]


def test_patient_json_matches_the_documented_schema(api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    body = api.post(
        f"/patients/{patient['id']}/stage", json={"stage": "treatment_planning", "reason": "x"}
    ).json
    assert set(body) == set(schemas.PatientOut.model_fields)
    schemas.PatientOut.model_validate(body)
    for entry in body["stage_history"]:
        assert set(entry) == set(schemas.StageChangeOut.model_fields)


def test_openapi_documents_the_stage_endpoint() -> None:
    document = openapi.document()
    operation = document["paths"]["/patients/{patient_id}/stage"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StageChangeIn"
    }
    assert {"200", "401", "404", "422"} <= set(operation["responses"])
    components = document["components"]["schemas"]
    assert components["Stage"]["enum"] == [s.value for s in Stage]
    assert set(components["StageChangeIn"]["required"]) == {"stage", "reason"}
    assert {"stage", "next_stages", "stage_history"} <= set(components["PatientOut"]["properties"])


def test_served_openapi_matches(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/v1/openapi.json").json == openapi.document()


def test_a_stage_change_is_in_the_audit_log_under_its_user(api, coordinator) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    api.post(
        f"/patients/{patient['id']}/stage", json={"stage": "biopsy_review", "reason": "Review."}
    )
    entries = db.session.scalars(
        select(AuditEntry).where(
            AuditEntry.entity == "stage_changes", AuditEntry.actor_user_id == coordinator.id
        )
    ).all()
    created = [e for e in entries if e.action == "create"]
    # Enrolment's first stage (a rule, so ``changed_by`` is empty) and the move by hand: both
    # under the coordinator who acted.
    assert [e.changes["after"]["to_stage"] for e in created] == [
        "watchful_waiting",
        "biopsy_review",
    ]
    assert all(e.patient_id == patient["id"] for e in created)


def test_back_to_watchful_waiting_starts_a_new_plan_from_today(api) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-03-02 17:00:00+00:00", tick=False):
        body = api.post("/patients", json=factories.enrolment_payload(interval_months=4)).json
        pid = body["id"]
        moved = api.post(
            f"/patients/{pid}/stage",
            json={"stage": "treatment_planning", "reason": "Scan showed growth"},
        )
        assert moved.status_code == 200 and moved.json["plan"]["status"] == "ended"
        back = api.post(
            f"/patients/{pid}/stage",
            json={"stage": "watchful_waiting", "reason": "Board chose to watch"},
        )
    assert back.status_code == 200, back.json
    patient = back.json
    assert patient["stage"] == "watchful_waiting"
    assert patient["plan"]["status"] == "active"
    assert patient["plan"]["enrolled_on"] == "2026-03-02"
    assert patient["plan"]["interval_months"] == 4  # the last plan's interval
    visits = [e for e in patient["events"] if e["kind"] == "visit"]
    assert visits[0]["due_on"] == "2026-07-02" and visits[0]["status"] == "planned"
    assert any(e["kind"] == "biopsy" for e in patient["events"])
