"""The OpenAPI 3.1 document, generated from the pydantic schemas the API validates with."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from surveillance.api import bp, schemas

REF = "#/components/schemas/{model}"

_MODELS: tuple[type[BaseModel], ...] = (
    schemas.EnrolmentIn,
    schemas.PatientPatch,
    schemas.BookingIn,
    schemas.CompletionIn,
    schemas.CancelIn,
    schemas.EmptyIn,
    schemas.EndSurveillanceIn,
    schemas.StageChangeIn,
    schemas.PatientOut,
    schemas.PatientPageOut,
    schemas.FeedLinksOut,
    schemas.ErrorOut,
    schemas.AuditPageOut,
    # Worklists, contact attempts and reminders (issue 4).
    schemas.ContactAttemptIn,
    schemas.ContactAttemptOut,
    schemas.ContactAttemptListOut,
    schemas.ReminderOut,
    schemas.WorklistPageOut,
    schemas.WorklistIndexOut,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed JSON.",
        401: "Missing or invalid API token.",
        403: "Only admins may do this.",
        404: "Not found (or another clinic's record).",
        409: "Conflict: duplicate or invalid state change.",
        415: "The body is not application/json.",
        413: "The body is too large.",
        422: "Invalid input; `fields` says which and why.",
        429: "Too many failed token checks from this address; wait and retry.",
        503: "The database is unavailable; retry after the Retry-After seconds.",
    }
    return {str(c): {"description": text[c], "content": _json(schemas.ErrorOut)} for c in codes}


def _operation(
    summary: str,
    response: type[BaseModel],
    body: type[BaseModel] | None = None,
    status: int = 200,
    errors: tuple[int, ...] = (401, 404),
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {
            str(status): {"description": "Success.", "content": _json(response)},
            **_errors(*errors, 429, 503),
        },
    }
    if body is not None:
        op["requestBody"] = {"required": body is not schemas.EmptyIn, "content": _json(body)}
        op["responses"].update(_errors(400, 413, 415, 422))
    if parameters:
        op["parameters"] = parameters
    return op


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _event_action(summary: str, body: type[BaseModel]) -> dict[str, Any]:
    return {
        "post": _operation(
            summary,
            schemas.PatientOut,
            body,
            errors=(401, 404, 409),
            parameters=[_path_id("event_id")],
        )
    }


def _worklist_paths() -> dict[str, Any]:
    """Worklists, their CSV exports, contact attempts and failed reminders (issue 4)."""
    from surveillance.services.worklists import WORKLISTS

    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(WORKLISTS)},
    }
    clinic = _query("clinic", {"type": "string"}, "Only this clinic (slug).")
    paging = [
        _query("page", {"type": "integer", "minimum": 1}, "Page number."),
        _query("per_page", {"type": "integer", "minimum": 1, "maximum": 200}, "Page size."),
    ]
    csv_operation = {
        "summary": "A worklist as CSV, with contact details (cells that a spreadsheet would "
        "read as a formula start with a single quote)",
        "security": [{"bearer": []}],
        "parameters": [name, clinic],
        "responses": {
            "200": {
                "description": "UTF-8 CSV with a byte-order mark.",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            },
            **_errors(401, 404, 422),
        },
    }
    reminder_id = [_path_id("message_id")]
    return {
        "/worklists": {
            "get": _operation(
                "Every worklist with its count",
                schemas.WorklistIndexOut,
                errors=(401, 422),
                parameters=[clinic],
            )
        },
        "/worklists/{name}": {
            "get": _operation(
                "One worklist, paginated, scoped to your clinics",
                schemas.WorklistPageOut,
                errors=(401, 404, 422),
                parameters=[name, clinic, *paging],
            )
        },
        "/worklists/{name}.csv": {"get": csv_operation},
        "/events/{event_id}/contact-attempts": {
            "post": _operation(
                "Log a contact attempt; `call_again_on` keeps the event off the worklists",
                schemas.ContactAttemptOut,
                schemas.ContactAttemptIn,
                status=201,
                errors=(401, 404, 409),
                parameters=[_path_id("event_id")],
            ),
            "get": _operation(
                "The event's contact attempts, newest first",
                schemas.ContactAttemptListOut,
                parameters=[_path_id("event_id")],
            ),
        },
        "/reminders/{message_id}/dismiss": {
            "post": _operation(
                "Take a failed reminder off the worklist",
                schemas.ReminderOut,
                schemas.EmptyIn,
                errors=(401, 404, 409),
                parameters=reminder_id,
            )
        },
        "/reminders/{message_id}/retry": {
            "post": _operation(
                "Queue a failed reminder again",
                schemas.ReminderOut,
                schemas.EmptyIn,
                errors=(401, 404, 409),
                parameters=reminder_id,
            )
        },
    }


@cache
def document() -> dict[str, Any]:
    _, definitions = models_json_schema(
        [
            (m, "validation" if m.__name__.endswith(("In", "Patch")) else "serialization")
            for m in _MODELS
        ],
        ref_template=REF,
    )
    patient_id = [_path_id("patient_id")]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Watchful API",
            "version": "1.0.0",
            "description": "Enrol patients in watchful waiting and manage their surveillance "
            "plans. Authenticate with `Authorization: Bearer <token>` "
            "(`flask --app surveillance users api-token EMAIL`).",
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/patients": {
                "post": _operation(
                    "Enrol a patient and generate their plan",
                    schemas.PatientOut,
                    schemas.EnrolmentIn,
                    status=201,
                    errors=(401, 409),
                ),
                "get": _operation(
                    "List patients",
                    schemas.PatientPageOut,
                    errors=(401, 422),
                    parameters=[
                        _query("clinic", {"type": "string"}, "Clinic slug."),
                        _query("q", {"type": "string"}, "Part of a name or MRN."),
                        _query("page", {"type": "integer", "minimum": 1}, "Page number."),
                        _query(
                            "per_page",
                            {"type": "integer", "minimum": 1, "maximum": 200},
                            "Page size.",
                        ),
                    ],
                ),
            },
            "/patients/{patient_id}": {
                "get": _operation(
                    "A patient with their plan", schemas.PatientOut, parameters=patient_id
                ),
                "patch": _operation(
                    "Change contact details or the interval",
                    schemas.PatientOut,
                    schemas.PatientPatch,
                    errors=(401, 404, 409),
                    parameters=patient_id,
                ),
            },
            "/patients/{patient_id}/end-surveillance": {
                "post": _operation(
                    "End surveillance; future events are cancelled",
                    schemas.PatientOut,
                    schemas.EndSurveillanceIn,
                    errors=(401, 404, 409),
                    parameters=patient_id,
                )
            },
            "/patients/{patient_id}/stage": {
                "post": _operation(
                    "Move the patient to another care stage (422 for an unknown stage or a "
                    "move the care-stage table does not allow)",
                    schemas.PatientOut,
                    schemas.StageChangeIn,
                    parameters=patient_id,
                )
            },
            "/patients/{patient_id}/feed-token": {
                "post": _operation(
                    "Issue a new calendar feed address; the old one answers 404 at once",
                    schemas.FeedLinksOut,
                    schemas.EmptyIn,
                    parameters=patient_id,
                ),
                "delete": {
                    "summary": "Revoke the calendar feed and patient page addresses",
                    "security": [{"bearer": []}],
                    "parameters": patient_id,
                    "responses": {"204": {"description": "Revoked."}, **_errors(401, 404)},
                },
            },
            "/events/{event_id}/book": _event_action("Book an event", schemas.BookingIn),
            "/events/{event_id}/reschedule": _event_action(
                "Move a booked event", schemas.BookingIn
            ),
            "/events/{event_id}/complete": _event_action(
                "Record an event as done, with its outcome", schemas.CompletionIn
            ),
            "/events/{event_id}/missed": _event_action(
                "Record that the patient did not come", schemas.EmptyIn
            ),
            "/events/{event_id}/cancel": _event_action("Cancel an event", schemas.CancelIn),
            "/audit": {
                "get": _operation(
                    "The audit log, newest first (admins only)",
                    schemas.AuditPageOut,
                    errors=(401, 403, 422),
                    parameters=[
                        _query("entity", {"type": "string"}, "Table, e.g. patients."),
                        _query("entity_id", {"type": "integer"}, "Record id."),
                        _query("patient_id", {"type": "integer"}, "Everything about a patient."),
                        _query("actor", {"type": "string"}, "e.g. user:ana@example.org."),
                        _query("action", {"type": "string"}, "create, update or delete."),
                        _query("page", {"type": "integer", "minimum": 1}, "Page number."),
                        _query(
                            "per_page",
                            {"type": "integer", "minimum": 1, "maximum": 200},
                            "Page size.",
                        ),
                    ],
                )
            },
            **_worklist_paths(),
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Any:
    return document()
