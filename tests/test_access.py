"""Every route in the app, walked as an anonymous visitor and as a coordinator of another
clinic, with real ids of clinic A's records in the URL, for every method.

The walk enumerates ``app.url_map`` itself, so a route added later is walked too: it must
either refuse both visitors or be named in ``PUBLIC`` (with a reason) below.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, or_, select
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from surveillance.audit import AuditEntry
from surveillance.extensions import db
from surveillance.models import OutboxMessage, Patient
from tests import security_world
from tests.screens import sign_in

# Endpoints anyone may reach, and why. Everything else must refuse anonymous visitors.
PUBLIC = {
    "static": "the app's CSS and JavaScript",
    "bootstrap.static": "Bootstrap, served locally",
    "learn.index": "patient education, public by design",
    "learn.article": "patient education, public by design",
    "auth.sign_in": "the way in",
    "auth.root": "redirects to sign-in or Today",
    "api.openapi_json": "the API's description (no data)",
}
# Capability URLs: the secret in the URL is the permission (hashed at rest, rotatable).
CAPABILITY = {
    "feeds.patient_feed": "patient_feed_secret",
    "feeds.single_event": "patient_feed_secret",
    "patient.page": "patient_feed_secret",
    "patient.qr": "patient_feed_secret",
    "feeds.clinic_feed": "clinic_feed_secret_a",
}
# Screens and API calls no coordinator may use, whatever the clinic.
ADMIN_ONLY = {
    "coordinator.settings",
    "coordinator.new_user",
    "coordinator.audit_log",
    "api.audit_log",
}
# Variables whose value is a record of clinic A's: another clinic's coordinator gets 403/404.
RECORD_VARIABLES = {
    "patient_id",
    "event_id",
    "closure_id",
    "clinic_id",
    "user_id",
    "token_id",
    "message_id",
    "attempt_id",
}
STATIC_FILES = {"static": "app.css", "bootstrap.static": "css/bootstrap.min.css"}
REFUSED = {401, 403, 404}


@dataclass(frozen=True)
class Call:
    rule: Rule
    method: str
    url: str

    @property
    def endpoint(self) -> str:
        return self.rule.endpoint

    @property
    def is_api(self) -> bool:
        return self.rule.rule.startswith("/api/")

    def __str__(self) -> str:
        return f"{self.method} {self.url} ({self.endpoint})"


@pytest.fixture
def world(app: Flask) -> Iterator[security_world.World]:
    with time_machine.travel(security_world.TODAY, tick=False):
        # Many refused token checks in a row are the point here, not an attack to stop.
        app.config["TOKEN_FAILURE_LIMIT"] = "100000 per minute"
        yield security_world.build()


def calls(app: Flask, world: security_world.World) -> list[Call]:
    values = world.url_values()
    found = []
    for rule in app.url_map.iter_rules():
        url_values: dict[str, Any] = {}
        for name in rule.arguments:
            if name == "token":
                url_values[name] = getattr(world, CAPABILITY[rule.endpoint])
            elif name == "filename":
                url_values[name] = STATIC_FILES[rule.endpoint]
            else:
                assert name in values, (
                    f"{rule.rule}: give tests.security_world.World.url_values a real value "
                    f"for <{name}> so that this route's protection is tested"
                )
                url_values[name] = values[name]
        with app.test_request_context():
            from flask import url_for

            url = url_for(rule.endpoint, **url_values)
        for method in sorted(rule.methods - {"OPTIONS"}):
            found.append(Call(rule, method, url))
    return found


def send(client: FlaskClient, call: Call, token: str | None = None) -> TestResponse:
    """One request in its own app context, as a real server would (Flask-Login caches the
    user in ``g``, which the test's own app context would otherwise keep between requests)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: dict[str, Any] = {}
    if call.method in {"POST", "PATCH", "PUT", "DELETE"}:
        body = {"json": {}} if call.is_api else {"data": {}}
    with client.application.app_context():
        return client.open(call.url, method=call.method, headers=headers, **body)


def _signin_redirect(response: TestResponse) -> bool:
    return response.status_code == 302 and "/sign-in" in response.headers.get("Location", "")


def test_the_walk_covers_every_route(app, world) -> None:  # type: ignore[no-untyped-def]
    walked = {c.endpoint for c in calls(app, world)}
    assert walked == {r.endpoint for r in app.url_map.iter_rules()}
    assert len(walked) > 50
    assert set(PUBLIC) | set(CAPABILITY) <= walked
    assert walked >= ADMIN_ONLY


def test_anonymous_visitors_reach_only_public_routes(app, world) -> None:  # type: ignore[no-untyped-def]
    assert anonymous_problems(app, world) == []


def test_a_new_unprotected_route_fails_the_walk(app, world) -> None:  # type: ignore[no-untyped-def]
    """The walk's own check: a route nobody protected is reported."""
    app.add_url_rule("/leak", "leak", lambda: security_world.A_FAMILY)
    problems = anonymous_problems(app, world)
    assert "GET /leak (leak) → 200, expected a redirect to sign-in" in problems
    assert "GET /leak (leak) shows clinic A's patient" in problems


def anonymous_problems(app: Flask, world: security_world.World) -> list[str]:
    client = app.test_client()
    wrong: list[str] = []
    for call in calls(app, world):
        response = send(client, call)
        status = response.status_code
        if call.endpoint in PUBLIC or call.endpoint in CAPABILITY:
            if call.method in {"GET", "HEAD"}:
                expected = 302 if call.endpoint == "auth.root" else 200
                if status != expected:
                    wrong.append(f"{call} → {status}, expected {expected}")
            elif status not in {400, 405, 422, 429}:  # sign-in with an empty form
                wrong.append(f"{call} → {status}")
        elif call.is_api:
            if status != 401 or (call.method != "HEAD" and "error" not in response.json):
                wrong.append(f"{call} → {status}, expected 401")
        elif not (_signin_redirect(response) or status in REFUSED):
            wrong.append(f"{call} → {status}, expected a redirect to sign-in")
        if status < 400 and shows_clinic_a(response) and call.endpoint not in CAPABILITY:
            wrong.append(f"{call} shows clinic A's patient")
    return wrong


def shows_clinic_a(response: TestResponse) -> bool:
    text = (
        response.get_data(as_text=True)
        if response.mimetype.startswith(("text", "application/json"))
        else ""
    )
    return any(
        marker in text
        for marker in (security_world.A_FAMILY, security_world.A_MRN, security_world.A_EMAIL)
    )


def test_capability_urls_refuse_a_wrong_or_rotated_secret(app, world) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    for call in calls(app, world):
        if call.endpoint not in CAPABILITY or call.method != "GET":
            continue
        secret = getattr(world, CAPABILITY[call.endpoint])
        forged = call.url.replace(
            secret, secret[:-4] + ("aaaa" if not secret.endswith("aaaa") else "bbbb")
        )
        assert forged != call.url
        response = send(client, Call(call.rule, "GET", forged))
        assert response.status_code == 404, call
        assert not shows_clinic_a(response)


def _snapshot_of_a(world: security_world.World) -> dict[str, Any]:
    """What another clinic's coordinator must never change."""
    db.session.expire_all()
    reminder = db.session.get(OutboxMessage, world.reminder_a.id)
    return {
        "patients": db.session.scalar(
            select(func.count(Patient.id)).where(Patient.clinic_id == world.clinic_a.id)
        ),
        "reminder": (reminder.status, reminder.dismissed_at, reminder.attempts),
        "token": world.token_a.revoked_at,
        "feed": (world.patient_a.feed_token_hash, world.coordinator_a.feed_token_hash),
    }


def _audit_entries_about_a(world: security_world.World, after_id: int) -> list[AuditEntry]:
    return list(
        db.session.scalars(
            select(AuditEntry).where(
                AuditEntry.id > after_id,
                or_(
                    AuditEntry.patient_id == world.patient_a.id,
                    (AuditEntry.entity == "clinics") & (AuditEntry.entity_id == world.clinic_a.id),
                    (AuditEntry.entity == "users")
                    & (AuditEntry.entity_id == world.coordinator_a.id),
                    (AuditEntry.entity == "api_tokens")
                    & (AuditEntry.entity_id == world.token_a.id),
                    (AuditEntry.entity == "clinic_closures")
                    & (AuditEntry.entity_id == world.closure_a.id),
                ),
            )
        )
    )


def test_another_clinics_coordinator_reaches_nothing_of_clinic_a(app, world) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    with app.app_context():
        sign_in(client, world.coordinator_b.email)
    before = _snapshot_of_a(world)
    last_entry = db.session.scalar(select(func.max(AuditEntry.id))) or 0
    wrong: list[str] = []
    for call in calls(app, world):
        if call.endpoint in PUBLIC or call.endpoint in CAPABILITY:
            continue  # the same for everyone (see the anonymous walk)
        response = send(client, call, token=world.token_b_secret if call.is_api else None)
        status = response.status_code
        if set(call.rule.arguments) & RECORD_VARIABLES or call.endpoint in ADMIN_ONLY:
            if status not in REFUSED:
                wrong.append(f"{call} → {status}, expected 403 or 404")
        elif status >= 500 or (_signin_redirect(response) and call.endpoint != "auth.sign_out"):
            wrong.append(f"{call} → {status}")
        if shows_clinic_a(response):
            wrong.append(f"{call} → {status} shows clinic A's patient")
        if call.endpoint == "auth.sign_out":
            with app.app_context():
                sign_in(client, world.coordinator_b.email)
    assert not wrong, "\n".join(wrong)
    assert _snapshot_of_a(world) == before
    assert _audit_entries_about_a(world, last_entry) == []


def test_own_clinic_sees_what_the_other_clinic_cannot(app, world) -> None:  # type: ignore[no-untyped-def]
    """The control: clinic A's coordinator reaches the same URLs, so the refusals above are
    about the clinic and not about broken URLs."""
    client = app.test_client()
    with app.app_context():
        sign_in(client, world.coordinator_a.email)
    checked = 0
    for call in calls(app, world):
        if call.method != "GET" or call.endpoint in ADMIN_ONLY:
            continue
        if not set(call.rule.arguments) & {"patient_id", "event_id", "token_id", "message_id"}:
            continue
        if call.endpoint.startswith("coordinator.settings"):
            continue
        response = send(client, call, token=world.token_a_secret if call.is_api else None)
        assert response.status_code == 200, f"{call} → {response.status_code}"
        checked += 1
    assert checked >= 7


def test_enrolling_or_importing_into_another_clinic_is_refused(app, world) -> None:  # type: ignore[no-untyped-def]
    from tests import factories

    client = app.test_client()
    api = factories.ApiClient(client, world.token_b_secret)
    before = db.session.scalar(select(func.count(Patient.id)))
    refused = api.post("/patients", json=factories.enrolment_payload(clinic=world.clinic_a.slug))
    assert refused.status_code == 422
    assert refused.json["fields"] == {"clinic": "Unknown clinic."}
    with app.app_context():
        sign_in(client, world.coordinator_b.email)
    header = ",".join(
        (
            "mrn,given_name,family_name,birth_date,enrolled_on",
            "primary_site,differentiation,grade,clinic",
        )
    )
    row = f"IMP-9,Ima,Intruder,1960-01-01,2026-01-05,pancreas,well,G1,{world.clinic_a.slug}"
    with app.app_context():
        page = client.post(
            "/coordinator/import",
            data={"file": (io.BytesIO(f"{header}\n{row}\n".encode()), "x.csv")},
            content_type="multipart/form-data",
        )
    assert re.search(r"clinic: Unknown clinic", page.get_data(as_text=True))
    assert db.session.scalar(select(func.count(Patient.id))) == before
