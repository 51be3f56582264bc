"""Property-based API testing: schemathesis generates requests from the served OpenAPI
document and checks that none ends in a server error and every answer matches the document.

Bounded (25 examples per operation, fixed seed) so it runs in well under two minutes, against
real records of clinic A with a real API token of clinic A's coordinator.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
import time_machine
from flask import Flask
from hypothesis import HealthCheck, settings

from surveillance.api.openapi import document
from tests import security_world

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.response_schema_conformance,
]


@pytest.fixture
def world(app: Flask) -> Iterator[security_world.World]:
    with time_machine.travel(security_world.TODAY, tick=False):
        # Generated requests include many bad tokens; the lockout would turn them into 429s.
        app.config["TOKEN_FAILURE_LIMIT"] = "100000 per minute"
        yield security_world.build()


# The document the app serves at /api/v1/openapi.json (``test_served_document_is_the_one_tested``
# proves they are the same). Loaded at import time because schemathesis' fixture-based loader
# does not work with this pytest; each generated request still goes to the test's own app.
schema = schemathesis.openapi.from_dict(document())


def test_served_document_is_the_one_tested(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/v1/openapi.json").json == document()


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,  # the same examples on every run
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_never_fails_and_always_matches_its_document(case, app, world) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(security_world.TODAY, tick=False):
        case.call_and_validate(
            app=app,
            base_url="http://localhost/api/v1",
            headers={"Authorization": f"Bearer {world.token_a_secret}"},
            checks=CHECKS,
        )
