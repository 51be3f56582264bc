"""Feed addresses in the JSON API, their rotation and revocation, and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine
from sqlalchemy import func, select

from surveillance.api import schemas
from surveillance.extensions import db
from surveillance.models import Patient
from tests import factories


@pytest.fixture(autouse=True)
def _now() -> Iterator[None]:
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        yield


def enrol(api: factories.ApiClient) -> dict[str, Any]:
    response = api.post("/patients", json=factories.enrolment_payload())
    assert response.status_code == 201, response.json
    return response.json


def test_patient_has_absolute_https_and_webcal_feed_urls(client, api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    feed_url, webcal_url = patient["feed_url"], patient["webcal_url"]
    parts = urlsplit(feed_url)
    assert (parts.scheme, parts.netloc) == ("https", "watchful.test")
    assert parts.path.startswith("/calendar/") and parts.path.endswith(".ics")
    secret = parts.path[len("/calendar/") : -len(".ics")]
    assert len(secret) >= 43  # 256 bits, URL-safe base64
    assert webcal_url == "webcal://watchful.test" + parts.path
    assert client.get(parts.path).status_code == 200
    # Every representation of the patient carries the same address.
    assert api.get(f"/patients/{patient['id']}").json["feed_url"] == feed_url
    # The database holds only a salt and a hash, never the secret.
    stored = db.session.execute(
        select(Patient.feed_token_salt, Patient.feed_token_hash).where(Patient.id == patient["id"])
    ).one()
    assert secret not in stored


def test_feed_url_follows_public_base_url(app, api) -> None:  # type: ignore[no-untyped-def]
    app.config["PUBLIC_BASE_URL"] = "https://calendar.northside.example/"
    patient = enrol(api)
    assert patient["feed_url"].startswith("https://calendar.northside.example/calendar/")
    assert patient["webcal_url"].startswith("webcal://calendar.northside.example/calendar/")


def test_rotation_answers_with_the_new_url_and_kills_the_old(client, api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    old = urlsplit(patient["feed_url"]).path
    response = api.post(f"/patients/{patient['id']}/feed-token")
    assert response.status_code == 200
    body = response.json
    assert set(body) == {"feed_url", "webcal_url"}
    assert body["feed_url"] != patient["feed_url"]
    assert body["webcal_url"] == body["feed_url"].replace("https://", "webcal://", 1)
    assert client.get(old).status_code == 404
    assert client.get(urlsplit(body["feed_url"]).path).status_code == 200
    assert api.get(f"/patients/{patient['id']}").json["feed_url"] == body["feed_url"]


def test_revocation(client, api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    path = urlsplit(patient["feed_url"]).path
    response = api.delete(f"/patients/{patient['id']}/feed-token")
    assert response.status_code == 204 and response.data == b""
    assert client.get(path).status_code == 404
    shown = api.get(f"/patients/{patient['id']}").json
    assert shown["feed_url"] is None and shown["webcal_url"] is None
    assert api.delete(f"/patients/{patient['id']}/feed-token").status_code == 204  # idempotent
    reissued = api.post(f"/patients/{patient['id']}/feed-token").json
    assert client.get(urlsplit(reissued["feed_url"]).path).status_code == 200


def test_feed_token_endpoints_respect_clinics_and_input(client, api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    other = factories.ApiClient(
        client, factories.token_for(factories.user(clinics=[factories.clinic()]))
    )
    before = db.session.scalar(select(Patient.feed_token_hash).where(Patient.id == patient["id"]))
    assert other.post(f"/patients/{patient['id']}/feed-token").status_code == 404
    assert other.delete(f"/patients/{patient['id']}/feed-token").status_code == 404
    assert api.post("/patients/999999/feed-token").status_code == 404
    response = api.post(f"/patients/{patient['id']}/feed-token", json={"secret": "mine"})
    assert response.status_code == 422 and "secret" in response.json["fields"]
    db.session.expire_all()
    after = db.session.scalar(select(Patient.feed_token_hash).where(Patient.id == patient["id"]))
    assert after == before  # refused requests change nothing
    assert client.post(f"/api/v1/patients/{patient['id']}/feed-token").status_code == 401
    assert client.get(urlsplit(patient["feed_url"]).path).status_code == 200


def test_openapi_document_describes_feed_links(client, api) -> None:  # type: ignore[no-untyped-def]
    document = client.get("/api/v1/openapi.json").json
    operations = document["paths"]["/patients/{patient_id}/feed-token"]
    assert set(operations) == {"post", "delete"}
    assert operations["post"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FeedLinksOut"
    }
    assert "204" in operations["delete"]["responses"]
    patient_schema = document["components"]["schemas"]["PatientOut"]
    assert {"feed_url", "webcal_url"} <= set(patient_schema["required"])
    # Real responses match the documented models.
    patient = enrol(api)
    schemas.PatientOut.model_validate(patient)
    schemas.FeedLinksOut.model_validate(api.post(f"/patients/{patient['id']}/feed-token").json)
    revoked = api.delete(f"/patients/{patient['id']}/feed-token")
    assert revoked.status_code == 204
    schemas.PatientOut.model_validate(api.get(f"/patients/{patient['id']}").json)
    assert db.session.scalar(select(func.count(Patient.id))) == 1
