"""Builders for synthetic test data. Every person here is invented."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from surveillance.extensions import db
from surveillance.models import Clinic, Patient, User
from surveillance.services import accounts, plans
from tests import openapi_check

_counter = itertools.count(1)


def clinic(slug: str | None = None, **fields: Any) -> Clinic:
    n = next(_counter)
    created = accounts.create_clinic(
        slug or f"clinic-{n}",
        fields.pop("name", f"Test Clinic {n}"),
        fields.pop("timezone", "America/Denver"),
        fields.pop("address", "1 Test Street, Denver, CO 80202"),
    )
    for name, value in fields.items():
        setattr(created, name, value)
    db.session.commit()
    return created


def user(clinics: list[Clinic] | None = None, role: str = "coordinator", **fields: Any) -> User:
    n = next(_counter)
    created = accounts.create_user(
        fields.pop("email", f"user{n}@watchful.test"),
        role,
        fields.pop("password", "correct horse battery"),
        clinics or [],
    )
    db.session.commit()
    return created


def token_for(owner: User) -> str:
    secret = accounts.issue_api_token(owner, "test")
    db.session.commit()
    return secret


def enrolment_payload(**overrides: Any) -> dict[str, Any]:
    n = next(_counter)
    payload: dict[str, Any] = {
        "mrn": f"MRN{n:06d}",
        "given_name": "Alex",
        "family_name": f"Testperson{n}",
        "birth_date": "1960-04-12",
        "email": f"alex{n}@example.org",
        "phone": "+1 303 555 0199",
        "enrolled_on": "2026-01-05",
        "interval_months": 6,
        "primary_site": "small_bowel",
        "differentiation": "well",
        "grade": "G1",
        "ki67": 1.5,
        "size_mm": 14,
        "functional": "no",
    }
    payload.update(overrides)
    return payload


def enrol(at_clinic: Clinic, **overrides: Any) -> Patient:
    """Enrol through the service layer (the API tests go through HTTP instead)."""
    payload = enrolment_payload(**overrides)
    for name in ("birth_date", "enrolled_on"):
        if isinstance(payload[name], str):
            payload[name] = date.fromisoformat(payload[name])
    payload.pop("clinic", None)
    patient = plans.enrol(plans.Enrolment(**payload), at_clinic)
    db.session.commit()
    return patient


@dataclass
class ApiClient:
    """A test client that sends the bearer token and JSON bodies."""

    client: FlaskClient
    token: str

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        """Send a request and check the answer against the OpenAPI document."""
        url = f"/api/v1{path}"
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        response = self.client.open(url, method=method, headers=headers, **kwargs)
        openapi_check.check(self.client.application, method, url, response)
        return response

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> TestResponse:
        return self.request("POST", path, json=json, **kwargs)

    def patch(self, path: str, json: Any = None, **kwargs: Any) -> TestResponse:
        return self.request("PATCH", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("DELETE", path, **kwargs)
