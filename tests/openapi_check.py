"""Check real API responses against the served OpenAPI document.

Every request made through ``factories.ApiClient`` passes through here, so each API test is
also a test that the document tells the truth.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from flask import Flask
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from werkzeug.exceptions import HTTPException
from werkzeug.test import TestResponse

from surveillance.api.openapi import document

_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


@cache
def _registry() -> Registry:
    doc = document()
    return Registry().with_resource("urn:openapi", DRAFT202012.create_resource(doc))


def _schema_for(template: str, method: str, status: int) -> dict[str, Any] | None:
    operation = document()["paths"].get(template, {}).get(method.lower())
    if operation is None:
        raise AssertionError(f"{method} {template} is not in the OpenAPI document")
    response = operation["responses"].get(str(status))
    if response is None:
        raise AssertionError(f"{method} {template} answered {status}, undocumented")
    content = response.get("content", {}).get("application/json")
    return None if content is None else content["schema"]


def check(app: Flask, method: str, path: str, response: TestResponse) -> None:
    adapter = app.url_map.bind("localhost")
    try:
        rule, _ = adapter.match(path.split("?")[0], method=method, return_rule=True)
    except HTTPException:
        return  # no such route: nothing the document has to describe
    if not rule.rule.startswith("/api/v1/") or rule.endpoint == "api.openapi_json":
        return
    if response.mimetype != "application/json":
        return  # CSV exports and other media are checked by their own tests
    template = _CONVERTER.sub(r"{\1}", rule.rule.removeprefix("/api/v1"))
    schema = _schema_for(template, method, response.status_code)
    if schema is None:
        return
    ref = schema["$ref"].replace("#/", "urn:openapi#/")
    validator = Draft202012Validator({"$ref": ref}, registry=_registry())
    errors = sorted(validator.iter_errors(response.json), key=lambda e: list(e.path))
    assert not errors, f"{method} {path} → {response.status_code}: {errors[0].message}"
