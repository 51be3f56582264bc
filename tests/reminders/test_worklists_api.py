"""Worklists over the API (JSON and CSV), contact attempts and failed reminders."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from surveillance.api import schemas
from surveillance.api.openapi import document
from surveillance.extensions import db
from surveillance.models import OutboxMessage, OutboxStatus
from surveillance.services import counting
from tests import factories
from tests.reminders.helpers import event, patient

TODAY = "2026-01-05 17:00:00+00:00"


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    with time_machine.travel(TODAY, tick=False):
        yield


def overdue_patient(clinic, **fields):  # type: ignore[no-untyped-def]
    """Enrolled in June 2025: visits due in September and December 2025 are overdue."""
    return patient(clinic, enrolled_on="2025-06-02", **fields)


def failed_message(clinic, p=None, **fields) -> OutboxMessage:  # type: ignore[no-untyped-def]
    now = datetime(2026, 1, 5, 17, tzinfo=UTC)
    values = {
        "dedupe_key": f"test:{uuid.uuid4().hex}",
        "rule": "book-window",
        "audience": "patient",
        "clinic_id": clinic.id,
        "event_id": event(p).id if p else None,
        "patient_id": p.id if p else None,
        "recipient": p.email if p else "someone@example.org",
        "due_at": now - timedelta(hours=3),
        "expires_at": now + timedelta(days=10),
        "status": OutboxStatus.FAILED,
        "attempts": 10,
        "next_attempt_at": now,
        "message_id": f"<test-{uuid.uuid4().hex}@watchful.test>",
        "last_error": "The mail server refused the recipient (550).",
        "failed_at": now - timedelta(hours=1),
    }
    values.update(fields)
    message = OutboxMessage(**values)
    db.session.add(message)
    db.session.commit()
    return message


def test_worklist_json_is_paginated_and_carries_contact_details(api, clinic) -> None:  # type: ignore[no-untyped-def]
    people = [overdue_patient(clinic) for _ in range(3)]
    response = api.get("/worklists/overdue?per_page=4&page=1")
    assert response.status_code == 200, response.json
    body = schemas.WorklistPageOut.model_validate(response.json)
    assert (body.name, body.total, body.page, body.per_page) == ("overdue", 6, 1, 4)
    assert len(body.items) == 4
    first = body.items[0]
    assert first.event is not None and first.event.status == "planned" and first.event.overdue
    assert first.patient is not None and first.patient.phone == "+1 303 555 0199"
    assert first.reminder is None
    ids = {p.id for p in people}
    assert {item.patient.id for item in body.items if item.patient} <= ids
    assert body.has_more and not body.total_is_capped
    second = api.get("/worklists/overdue?per_page=4&page=2").json
    assert len(second["items"]) == 2 and not second["has_more"]


def test_worklist_counts_stop_at_the_limit(api, clinic, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        overdue_patient(clinic)  # six overdue visits
    monkeypatch.setattr(counting, "COUNT_LIMIT", 5)
    page = api.get("/worklists/overdue?per_page=2").json
    assert (page["total"], page["total_is_capped"], page["has_more"]) == (5, True, True)
    index = {item["name"]: item for item in api.get("/worklists").json["items"]}
    assert (index["overdue"]["count"], index["overdue"]["count_is_capped"]) == (5, True)
    assert (index["missed"]["count"], index["missed"]["count_is_capped"]) == (0, False)
    monkeypatch.setattr(counting, "COUNT_LIMIT", 6)
    page = api.get("/worklists/overdue?per_page=2&page=3").json
    assert (page["total"], page["total_is_capped"], page["has_more"]) == (6, False, False)


def test_worklists_are_scoped_to_the_users_clinics(api, clinic, client) -> None:  # type: ignore[no-untyped-def]
    mine = overdue_patient(clinic)
    other_clinic = factories.clinic()
    overdue_patient(other_clinic)
    body = api.get("/worklists/overdue").json
    assert {item["patient"]["id"] for item in body["items"]} == {mine.id}
    assert api.get(f"/worklists/overdue?clinic={other_clinic.slug}").status_code == 422
    assert api.get("/worklists/overdue?clinic=nowhere").json["fields"] == {
        "clinic": "Unknown clinic."
    }
    admin = factories.ApiClient(client, factories.token_for(factories.user(role="admin")))
    assert admin.get("/worklists/overdue").json["total"] == 4
    only = admin.get(f"/worklists/overdue?clinic={other_clinic.slug}").json
    assert only["total"] == 2 and {i["patient"]["clinic"] for i in only["items"]} == {
        other_clinic.slug
    }


def test_bad_worklist_requests(api, client) -> None:  # type: ignore[no-untyped-def]
    response = api.get("/worklists/everything")
    assert response.status_code == 404 and "overdue" in response.json["error"]
    assert api.get("/worklists/everything.csv").status_code == 404
    assert api.get("/worklists/overdue?page=0").json["fields"] == {
        "page": "Must be a whole number from 1 to 1000000."
    }
    assert client.get("/api/v1/worklists/overdue").status_code == 401
    assert client.get("/api/v1/worklists/overdue.csv").status_code == 401


def test_worklist_index_counts_every_list(api, clinic) -> None:  # type: ignore[no-untyped-def]
    overdue_patient(clinic)
    failed_message(clinic)
    body = schemas.WorklistIndexOut.model_validate(api.get("/worklists").json)
    counts = {item.name: item.count for item in body.items}
    assert counts == {
        "overdue": 2,
        "to-book": 0,
        "biopsy-due": 0,
        "missed": 0,
        "failed-reminders": 1,
    }


def test_contact_attempt_with_call_again_on_snoozes_the_item(api, clinic) -> None:  # type: ignore[no-untyped-def]
    p = overdue_patient(clinic)
    first = event(p)
    response = api.post(
        f"/events/{first.id}/contact-attempts",
        json={"result": "no_answer", "note": "Rang twice", "call_again_on": "2026-01-08"},
    )
    assert response.status_code == 201, response.json
    attempt = schemas.ContactAttemptOut.model_validate(response.json)
    assert (attempt.result, attempt.call_again_on.isoformat()) == ("no_answer", "2026-01-08")
    assert attempt.by is not None and attempt.attempted_at.isoformat().startswith("2026-01-05T17")
    listed = api.get("/worklists/overdue").json["items"]
    assert first.id not in {i["event"]["id"] for i in listed} and len(listed) == 1
    patient_json = api.get(f"/patients/{p.id}").json
    assert next(e for e in patient_json["events"] if e["id"] == first.id)["call_again_on"] == (
        "2026-01-08"
    )
    with time_machine.travel("2026-01-08 17:00:00+00:00", tick=False):
        back = api.get("/worklists/overdue").json["items"]
    item = next(i for i in back if i["event"]["id"] == first.id)
    assert item["last_contact_attempt"]["note"] == "Rang twice"


def test_a_later_attempt_without_a_date_puts_the_item_back(api, clinic) -> None:  # type: ignore[no-untyped-def]
    p = overdue_patient(clinic)
    first = event(p)
    api.post(
        f"/events/{first.id}/contact-attempts",
        json={"result": "left_message", "call_again_on": "2026-02-01"},
    )
    api.post(f"/events/{first.id}/contact-attempts", json={"result": "called"})
    assert first.id in {i["event"]["id"] for i in api.get("/worklists/overdue").json["items"]}
    items = api.get(f"/events/{first.id}/contact-attempts").json["items"]
    assert [a["result"] for a in items] == ["called", "left_message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"result": "emailed"}, "result"),
        ({"result": "called", "call_again_on": "2026-01-05"}, "call_again_on"),
        ({"result": "called", "call_again_on": "2027-06-01"}, "call_again_on"),
        ({"result": "called", "call_again_on": "2026-02-30"}, "call_again_on"),
        ({"result": "called", "note": "x" * 2001}, "note"),
        ({"result": "called", "colour": "red"}, "colour"),
        ({}, "result"),
    ],
)
def test_bad_contact_attempts_are_422_and_write_nothing(api, clinic, body, field) -> None:  # type: ignore[no-untyped-def]
    first = event(overdue_patient(clinic))
    response = api.post(f"/events/{first.id}/contact-attempts", json=body)
    assert response.status_code == 422, response.json
    assert field in response.json["fields"]
    assert api.get(f"/events/{first.id}/contact-attempts").json["items"] == []
    db.session.expire_all()
    assert first.call_again_on is None


def test_contact_attempts_on_closed_or_foreign_events(api, clinic) -> None:  # type: ignore[no-untyped-def]
    p = overdue_patient(clinic)
    first = event(p)
    api.post(f"/events/{first.id}/cancel", json={})
    assert (
        api.post(f"/events/{first.id}/contact-attempts", json={"result": "called"}).status_code
        == 409
    )
    foreign = event(overdue_patient(factories.clinic()))
    assert (
        api.post(f"/events/{foreign.id}/contact-attempts", json={"result": "called"}).status_code
        == 404
    )
    assert api.get(f"/events/{foreign.id}/contact-attempts").status_code == 404


def test_csv_export_has_contact_details_and_neutralises_formulas(api, clinic) -> None:  # type: ignore[no-untyped-def]
    p = overdue_patient(clinic, family_name='=HYPERLINK("http://x")', given_name="@Sam")
    api.post(f"/events/{event(p).id}/contact-attempts", json={"result": "called", "note": "-2+3"})
    response = api.get(f"/worklists/overdue.csv?clinic={clinic.slug}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="overdue-{clinic.slug}-2026-01-05.csv"'
    )
    assert response.headers["Cache-Control"] == "no-store"
    table = list(csv.DictReader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert len(table) == 2
    row = next(r for r in table if r["event_id"] == str(event(p).id))
    assert row["family_name"] == '\'=HYPERLINK("http://x")'
    assert row["given_name"] == "'@Sam"
    assert row["phone"] == "'+1 303 555 0199"
    assert row["email"] == p.email and row["mrn"] == p.mrn
    assert row["last_contact_note"] == "'-2+3" and row["last_contact_result"] == "called"
    assert row["due_on"] == "2025-09-02" and row["status"] == "planned"
    for value in (v for r in table for v in r.values()):
        assert not value.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_csv_export_streams_long_lists(api, clinic, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from surveillance.api import worklists as worklist_api

    monkeypatch.setattr(worklist_api, "CSV_CHUNK", 2)
    for _ in range(3):
        overdue_patient(clinic)
    table = list(
        csv.reader(io.StringIO(api.get("/worklists/overdue.csv").data.decode("utf-8-sig")))
    )
    assert len(table) == 1 + 6
    assert len({row[9] for row in table[1:]}) == 6  # every event once, none repeated


def test_failed_reminders_list_dismiss_and_retry(api, clinic) -> None:  # type: ignore[no-untyped-def]
    p = overdue_patient(clinic)
    failed = failed_message(clinic, p)
    digest = failed_message(clinic, rule="digest", audience="coordinator")
    foreign = failed_message(factories.clinic())
    body = schemas.WorklistPageOut.model_validate(api.get("/worklists/failed-reminders").json)
    assert body.total == 2
    by_id = {item.reminder.id: item for item in body.items if item.reminder}
    assert set(by_id) == {failed.id, digest.id}
    assert by_id[failed.id].patient.phone == "+1 303 555 0199"  # type: ignore[union-attr]
    assert by_id[failed.id].event.id == event(p).id  # type: ignore[union-attr]
    assert by_id[digest.id].event is None and by_id[digest.id].patient is None
    csv_rows = list(
        csv.DictReader(
            io.StringIO(api.get("/worklists/failed-reminders.csv").data.decode("utf-8-sig"))
        )
    )
    assert {r["reminder_error"] for r in csv_rows} == {
        "The mail server refused the recipient (550)."
    }

    dismissed = api.post(f"/reminders/{digest.id}/dismiss", json={})
    assert dismissed.status_code == 200 and dismissed.json["dismissed_at"] == "2026-01-05T17:00:00Z"
    retried = api.post(f"/reminders/{failed.id}/retry", json={})
    assert retried.status_code == 200
    assert (retried.json["status"], retried.json["attempts"]) == ("queued", 0)
    assert api.get("/worklists/failed-reminders").json["total"] == 0
    assert api.post(f"/reminders/{failed.id}/dismiss", json={}).status_code == 409
    assert api.post(f"/reminders/{foreign.id}/retry", json={}).status_code == 404
    expired = failed_message(clinic, expires_at=datetime(2026, 1, 5, tzinfo=UTC))
    response = api.post(f"/reminders/{expired.id}/retry", json={})
    assert response.status_code == 409 and "another way" in response.json["error"]


def test_openapi_describes_every_api_route(app, client) -> None:  # type: ignore[no-untyped-def]
    doc = document()
    paths = doc["paths"]
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint == "api.openapi_json":
            continue
        path = rule.rule.removeprefix("/api/v1").replace("<int:", "{").replace("<", "{")
        path = path.replace(">", "}")
        assert path in paths, path
        for method in rule.methods - {"HEAD", "OPTIONS"}:  # type: ignore[operator]
            assert method.lower() in paths[path], (path, method)
    schemas_doc = doc["components"]["schemas"]
    assert {"ContactAttemptIn", "WorklistPageOut", "WorklistItemOut", "ReminderOut"} <= set(
        schemas_doc
    )
    assert paths["/worklists/{name}"]["get"]["parameters"][0]["schema"]["enum"] == [
        "overdue",
        "to-book",
        "biopsy-due",
        "missed",
        "failed-reminders",
    ]
    assert client.get("/api/v1/openapi.json").json == doc
