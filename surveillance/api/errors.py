"""Every API error is JSON: ``{"error": "...", "fields": {"field": "message"}}``."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from pydantic import ValidationError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from surveillance.api import bp
from surveillance.errors import DomainError
from surveillance.extensions import db


def error_response(status: int, message: str, fields: dict[str, str] | None = None) -> Any:
    response = jsonify({"error": message, "fields": fields or {}})
    response.status_code = status
    return response


def pydantic_fields(exc: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "body"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "Unknown field."
        elif error["type"] == "missing":
            message = "This field is required."
        fields.setdefault(name, message)
    return fields


@bp.errorhandler(ValidationError)
def _invalid(exc: ValidationError) -> Any:
    db.session.rollback()
    return error_response(422, "Some fields are not valid.", pydantic_fields(exc))


@bp.errorhandler(DomainError)
def _domain(exc: DomainError) -> Any:
    db.session.rollback()
    return error_response(exc.status_code, exc.message, exc.fields)


@bp.errorhandler(StaleDataError)
def _concurrent_change(exc: StaleDataError) -> Any:
    db.session.rollback()
    return error_response(
        409, "Someone else changed this record at the same moment; reload and try again."
    )


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException) -> Any:
    db.session.rollback()
    return error_response(exc.code or 500, exc.description or exc.name)


@bp.app_errorhandler(404)
@bp.app_errorhandler(405)
def _unrouted(exc: HTTPException) -> Any:
    """Unknown URLs under /api answer in JSON too; elsewhere Flask's own page stands."""
    from flask import request

    if request.path.startswith(bp.url_prefix or "/api/"):
        return error_response(exc.code or 404, exc.description or exc.name)
    return exc
