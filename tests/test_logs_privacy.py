"""Logs and error pages never contain a patient's name, MRN, birth date or diagnosis, nor a
token: every log record of a normal working session and of a request that fails with a
database integrity error is checked, with SQL statement logging switched on."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask

from surveillance.extensions import db
from surveillance.services import plans
from tests import factories, security_world
from tests.screens import sign_in

DIAGNOSIS_NOTE = "Xyloquartz growth pattern noted at review"  # a distinctive justification
NEW_PATIENT = {
    "mrn": "LOGMRN-7731",
    "given_name": "Ottoline",
    "family_name": "Vanderquist",
    "birth_date": "1949-02-28",
    "email": "ottoline.vanderquist@example.org",
}


@pytest.fixture
def world(app: Flask, caplog: pytest.LogCaptureFixture) -> Iterator[security_world.World]:
    caplog.set_level(logging.DEBUG)
    # Statement logging on, as an operator chasing a problem might: the values stay hidden.
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    app.config["PROPAGATE_EXCEPTIONS"] = False  # errors handled and logged as in production
    with time_machine.travel(security_world.TODAY, tick=False):
        yield security_world.build()


def secrets_of(world: security_world.World) -> list[str]:
    return [
        security_world.A_GIVEN,
        security_world.A_FAMILY,
        security_world.A_MRN,
        security_world.A_BIRTH,
        security_world.A_EMAIL,
        world.token_a_secret,
        world.token_b_secret,
        world.patient_feed_secret,
        world.clinic_feed_secret_a,
        DIAGNOSIS_NOTE,
        *NEW_PATIENT.values(),
    ]


def assert_nothing_private(text: str, world: security_world.World, where: str) -> None:
    found = [s for s in secrets_of(world) if s in text]
    assert not found, f"{where} contains {found}"


def all_log_text(caplog: pytest.LogCaptureFixture) -> str:
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        if record.exc_text:
            parts.append(record.exc_text)
    return "\n".join(parts)


def test_a_working_session_logs_nothing_private(app, client, world, caplog) -> None:  # type: ignore[no-untyped-def]
    auth = {"Authorization": f"Bearer {world.token_a_secret}"}
    patient = world.patient_a
    with app.app_context():
        sign_in(client, world.coordinator_a.email)
    pages = [
        f"/coordinator/patients/{patient.id}",
        f"/coordinator/patients?q={security_world.A_FAMILY}",
        "/coordinator/tokens",
        f"/p/{world.patient_feed_secret}",
        f"/calendar/{world.patient_feed_secret}.ics",
        f"/calendar/{world.patient_feed_secret}/events/{world.event_a.uid}.ics",
        f"/calendar/clinic/{world.clinic_feed_secret_a}.ics",
        f"/calendar/{world.patient_feed_secret}x.ics",  # a wrong secret: 404
    ]
    for path in pages:
        with app.app_context():
            assert client.get(path).status_code in {200, 404}
    with app.app_context():
        assert client.get(f"/api/v1/patients/{patient.id}", headers=auth).status_code == 200
        assert (
            client.get(f"/api/v1/patients?q={security_world.A_MRN}", headers=auth).status_code
            == 200
        )
        changed = client.patch(
            f"/api/v1/patients/{patient.id}", json={"interval_months": 3}, headers=auth
        )
        assert changed.status_code == 200
        enrolled = client.post(
            "/api/v1/patients",
            json=factories.enrolment_payload(
                **NEW_PATIENT, differentiation="poorly", grade="G3", justification=DIAGNOSIS_NOTE
            ),
            headers=auth,
        )
        assert enrolled.status_code == 201, enrolled.json
        bad = client.post("/api/v1/patients", json={"mrn": security_world.A_MRN}, headers=auth)
        assert bad.status_code in {409, 422}
        assert (
            client.get("/api/v1/patients", headers={"Authorization": "Bearer wrong"}).status_code
            == 401
        )
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)  # logging was on
    assert "[SQL parameters hidden due to hide_parameters=True]" in caplog.text
    assert_nothing_private(all_log_text(caplog), world, "the log")


def test_an_integrity_error_logs_and_shows_nothing_private(
    app, client, world, caplog, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A bug that writes a duplicate MRN: the database refuses it and its error message
    quotes the row's values; neither the log nor the answer may repeat them."""

    def duplicate_mrn(patient) -> None:  # type: ignore[no-untyped-def]
        patient.mrn = security_world.A_MRN
        db.session.flush()

    monkeypatch.setattr(plans.care_stages, "enrolled", duplicate_mrn)
    auth = {"Authorization": f"Bearer {world.token_a_secret}"}
    with app.app_context():
        api_answer = client.post(
            "/api/v1/patients",
            json=factories.enrolment_payload(**NEW_PATIENT, justification=DIAGNOSIS_NOTE),
            headers=auth,
        )
    with app.app_context():
        sign_in(client, world.coordinator_a.email)
        form = {
            **{k: v for k, v in NEW_PATIENT.items()},
            "enrolled_on": "2026-01-05",
            "primary_site": "small_bowel",
            "differentiation": "well",
            "grade": "G1",
            "functional": "no",
        }
        screen_answer = client.post("/coordinator/patients/new", data=form)
    assert api_answer.status_code == screen_answer.status_code == 500
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("IntegrityError" in r.getMessage() for r in errors), [r.getMessage() for r in errors]
    assert any("/api/v1/patients [POST]" in r.getMessage() for r in errors)
    assert_nothing_private(all_log_text(caplog), world, "the log")
    assert_nothing_private(api_answer.get_data(as_text=True), world, "the API's 500")
    assert_nothing_private(screen_answer.get_data(as_text=True), world, "the 500 page")


def test_an_error_on_a_capability_url_logs_the_route_not_the_secret(
    app, client, world, caplog, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from surveillance.patient import views

    def broken(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"cannot render page for {security_world.A_FAMILY}")

    monkeypatch.setattr(views, "render_template", broken)
    with app.app_context():
        response = client.get(f"/p/{world.patient_feed_secret}")
    assert response.status_code == 500
    assert "Exception on /p/<token> [GET]: builtins.RuntimeError" in caplog.text
    assert_nothing_private(all_log_text(caplog), world, "the log")


def test_engine_options_hide_parameters(app) -> None:  # type: ignore[no-untyped-def]
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["hide_parameters"] is True
    with pytest.raises(sa.exc.StatementError) as raised:
        db.session.execute(
            sa.text("SELECT * FROM no_such_table WHERE x = :secret"), {"secret": "Zabriskiewicz"}
        )
    db.session.rollback()
    assert "Zabriskiewicz" not in str(raised.value)
