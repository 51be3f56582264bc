"""A failure half-way through an action leaves nothing half-written.

Each test injects a fault in the middle of a real action, after rows were already written to
the transaction, sends the action through its real HTTP endpoint, and compares every row of
every table (audit log and outbox included) with the state before.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from sqlalchemy import event
from sqlalchemy.orm import Session

from surveillance.extensions import db
from surveillance.models import Patient, PlanEvent, StageChange, SurveillancePlan
from surveillance.services import plans
from tests import factories
from tests.screens import enrol_form, sign_in


class InjectedFault(RuntimeError):
    """Stands for anything that can go wrong mid-action: a bug, a lost connection, a crash."""


@pytest.fixture(autouse=True)
def _production_errors(app: Flask) -> Iterator[None]:
    """Errors are handled as in production (a 500 answer) instead of raised into the test."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        yield


def token_used(api: factories.ApiClient) -> None:
    """Use the token once first: its "last used" time is bookkeeping saved on its own, before
    the action (and only every five minutes), so it is not part of what the action changes."""
    assert api.get("/patients").status_code == 200


def database_rows() -> dict[str, list[tuple[Any, ...]]]:
    """Every committed row of every table, read on a connection of its own."""
    rows = {}
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            query = sa.select(table).order_by(*table.primary_key.columns)
            rows[table.name] = [tuple(r) for r in conn.execute(query)]
    return rows


def request(app: Flask, send: Callable[[], Any]) -> Any:
    """One request in its own app context and session, as a real server handles it."""
    with app.app_context():
        return send()


@contextmanager
def fail_after_flushing(model: type) -> Iterator[list[int]]:
    """Raise right after a flush has written a ``model`` row (the rows stay in the open
    transaction: only a rollback removes them)."""
    fired: list[int] = []

    def after_flush(session: Session, _context: Any) -> None:
        if any(isinstance(o, model) for o in session.new | session.dirty) and not fired:
            fired.append(1)
            raise InjectedFault(f"fault after writing {model.__name__}")

    event.listen(Session, "after_flush", after_flush)
    try:
        yield fired
    finally:
        event.remove(Session, "after_flush", after_flush)


@pytest.fixture
def enrolled(clinic) -> Patient:  # type: ignore[no-untyped-def]
    return factories.enrol(clinic, enrolled_on="2025-06-02")


def _fail_after_enrol_flush(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make ``plans.enrol`` fail after its flush wrote the patient, plan and events."""
    calls: list[int] = []

    def explode(patient: Patient) -> None:
        assert db.session.scalar(sa.select(Patient.id).where(Patient.id == patient.id))
        calls.append(patient.id)
        raise InjectedFault("fault after the patient insert")

    monkeypatch.setattr(plans.care_stages, "enrolled", explode)
    return calls


def test_api_enrolment_failing_after_the_insert_leaves_nothing(app, api, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    token_used(api)
    before = database_rows()
    calls = _fail_after_enrol_flush(monkeypatch)
    response = request(
        app,
        lambda: api.client.post(
            "/api/v1/patients",
            json=factories.enrolment_payload(),
            headers={"Authorization": f"Bearer {api.token}"},
        ),
    )
    assert calls, "the fault was never reached"
    assert response.status_code == 500
    assert response.json["error"]
    assert database_rows() == before


def test_screen_enrolment_failing_after_the_insert_leaves_nothing(
    app, client, coordinator, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    request(app, lambda: sign_in(client, coordinator.email))
    before = database_rows()
    calls = _fail_after_enrol_flush(monkeypatch)
    response = request(app, lambda: client.post("/coordinator/patients/new", data=enrol_form()))
    assert calls
    assert response.status_code == 500
    assert "Something went wrong" in response.get_data(as_text=True)
    assert database_rows() == before


def test_replanning_failing_half_way_leaves_the_old_plan(app, api, enrolled) -> None:  # type: ignore[no-untyped-def]
    token_used(api)
    before = database_rows()
    with fail_after_flushing(PlanEvent) as fired:
        response = request(
            app,
            lambda: api.client.patch(
                f"/api/v1/patients/{enrolled.id}",
                json={"interval_months": 3, "phone": "+1 720 555 0000"},
                headers={"Authorization": f"Bearer {api.token}"},
            ),
        )
    assert fired
    assert response.status_code == 500
    assert database_rows() == before
    # And without the fault the same request does re-plan: the test above was not vacuous.
    done = request(
        app,
        lambda: api.client.patch(
            f"/api/v1/patients/{enrolled.id}",
            json={"interval_months": 3},
            headers={"Authorization": f"Bearer {api.token}"},
        ),
    )
    assert done.status_code == 200
    assert database_rows() != before


def test_screen_interval_change_failing_half_way_leaves_the_old_plan(
    app, client, coordinator, enrolled
) -> None:  # type: ignore[no-untyped-def]
    request(app, lambda: sign_in(client, coordinator.email))
    before = database_rows()
    with fail_after_flushing(SurveillancePlan) as fired:
        response = request(
            app,
            lambda: client.post(
                f"/coordinator/patients/{enrolled.id}/interval", data={"interval_months": "3"}
            ),
        )
    assert fired
    assert response.status_code == 500
    assert database_rows() == before


def test_stage_change_failing_half_way_leaves_the_plan_and_history(app, api, enrolled) -> None:  # type: ignore[no-untyped-def]
    """Leaving watchful waiting ends the plan and cancels its events; the fault comes after
    those writes, when the stage change itself is flushed."""
    token_used(api)
    before = database_rows()
    with fail_after_flushing(StageChange) as fired:
        response = request(
            app,
            lambda: api.client.post(
                f"/api/v1/patients/{enrolled.id}/stage",
                json={"stage": "treatment_planning", "reason": "Growth on the last scan"},
                headers={"Authorization": f"Bearer {api.token}"},
            ),
        )
    assert fired
    assert response.status_code == 500
    assert database_rows() == before


def test_import_failing_in_the_middle_of_a_row_keeps_no_row(
    app, client, clinic, coordinator
) -> None:  # type: ignore[no-untyped-def]
    """A fault (not a rejected row) half-way through row 2 loses the whole upload, row 1
    included: the coordinator sees an error and sends the file again; nothing is doubled."""
    header = "mrn,given_name,family_name,birth_date,enrolled_on,primary_site,differentiation,grade"
    rows = [
        "FI-1,Ari,One,1960-01-02,2026-01-05,pancreas,well,G1",
        "FI-2,Bo,Two,1961-01-02,2026-01-05,rectum,well,G2",
    ]
    content = "\n".join([header, *rows]).encode()
    request(app, lambda: sign_in(client, coordinator.email))
    before = database_rows()
    written: list[str] = []

    def after_flush(session: Session, _context: Any) -> None:
        for obj in session.new:
            if isinstance(obj, Patient):
                written.append(obj.mrn)
                if obj.mrn == "FI-2":
                    raise InjectedFault("fault in the middle of row 2")

    event.listen(Session, "after_flush", after_flush)
    try:
        response = request(
            app,
            lambda: client.post(
                "/coordinator/import",
                data={"file": (io.BytesIO(content), "p.csv"), "run": "Import"},
                content_type="multipart/form-data",
            ),
        )
    finally:
        event.remove(Session, "after_flush", after_flush)
    assert written == ["FI-1", "FI-2"]
    assert response.status_code == 500
    assert database_rows() == before
