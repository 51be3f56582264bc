"""The served OpenAPI document is valid and describes exactly the API's routes."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


def test_document_is_valid_openapi_3_1(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = response.json
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_every_route_is_documented_and_nothing_else(app, client) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/api/v1/openapi.json").json
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint == "api.openapi_json":
            continue
        path = _CONVERTER.sub(r"{\1}", rule.rule.removeprefix("/api/v1"))
        routes |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented


def test_every_operation_documents_auth_and_errors(client) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/api/v1/openapi.json").json
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"bearer": []}], (path, method)
            assert "401" in operation["responses"], (path, method)
            if "requestBody" in operation:
                assert {"400", "415", "422"} <= set(operation["responses"]), (path, method)
