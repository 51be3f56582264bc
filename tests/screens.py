"""Helpers for the coordinator-screen tests (HTTP level, Flask test client)."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy import func, select

from surveillance.extensions import db
from surveillance.models import Patient, PlanEvent, SurveillancePlan

PASSWORD = "correct horse battery"  # what tests.factories.user() sets


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD) -> None:
    response = client.post("/sign-in", data={"email": email, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)


def counts() -> tuple[int, int, int]:
    return (
        db.session.scalar(select(func.count(Patient.id))) or 0,
        db.session.scalar(select(func.count(SurveillancePlan.id))) or 0,
        db.session.scalar(select(func.count(PlanEvent.id))) or 0,
    )


def field_error(html: str, field_id: str) -> str:
    """The error message shown next to a field (empty when there is none)."""
    match = re.search(rf'id="{re.escape(field_id)}-error">([^<]*)<', html)
    return match.group(1) if match else ""


def input_value(html: str, field_id: str) -> str | None:
    match = re.search(rf'<input[^>]*\bid="{re.escape(field_id)}"[^>]*>', html)
    if not match:
        return None
    value = re.search(r'\bvalue="([^"]*)"', match.group(0))
    return value.group(1) if value else ""


def enrol_form(**overrides: str) -> dict[str, str]:
    data = {
        "mrn": "SCR-0001",
        "given_name": "Robin",
        "family_name": "Screenwright",
        "birth_date": "1961-02-03",
        "email": "robin@example.org",
        "phone": "+1 303 555 0142",
        "preferred_language": "en",
        "primary_site": "small_bowel",
        "differentiation": "well",
        "grade": "G1",
        "ki67": "1.2",
        "size_mm": "12",
        "functional": "no",
        "enrolled_on": "2026-01-05",
        "interval_months": "",
        "justification": "",
        "save": "Enrol patient",
    }
    data.update(overrides)
    return data
