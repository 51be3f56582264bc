"""Worklists (JSON and CSV), contact attempts and failed reminders."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from flask import Response, request, stream_with_context
from sqlalchemy import select

from surveillance import clock
from surveillance.api import bp, schemas
from surveillance.api.auth import current_user, token_required
from surveillance.api.serializers import event_json
from surveillance.api.views import _pagination, parse_body
from surveillance.errors import NotFound, ValidationFailed
from surveillance.extensions import db
from surveillance.models import (
    Clinic,
    ContactAttempt,
    OutboxMessage,
    Patient,
    User,
)
from surveillance.reminders import outbox
from surveillance.services import access, contacts, worklists

CSV_CHUNK = 500
# Cells a spreadsheet would read as a formula (CSV injection): neutralised with a quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _utc(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def attempt_json(attempt: ContactAttempt) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "event_id": attempt.event_id,
        "attempted_at": _utc(attempt.attempted_at),
        "by": attempt.user.email if attempt.user else None,
        "result": attempt.result,
        "note": attempt.note,
        "call_again_on": _iso(attempt.call_again_on),
    }


def patient_contact_json(patient: Patient) -> dict[str, Any]:
    return {
        "id": patient.id,
        "mrn": patient.mrn,
        "given_name": patient.given_name,
        "family_name": patient.family_name,
        "phone": patient.phone,
        "email": patient.email,
        "preferred_language": patient.preferred_language,
        "email_opt_out": patient.email_opt_out,
        "clinic": patient.clinic.slug,
    }


def reminder_json(message: OutboxMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "rule": message.rule,
        "audience": message.audience,
        "recipient": message.recipient,
        "status": message.status,
        "due_at": _utc(message.due_at),
        "attempts": message.attempts,
        "last_error": message.last_error,
        "failed_at": _utc(message.failed_at),
        "dismissed_at": _utc(message.dismissed_at),
        "event_id": message.event_id,
        "patient_id": message.patient_id,
    }


def _item(item: Any, today: date, latest: dict[int, ContactAttempt]) -> dict[str, Any]:
    if isinstance(item, OutboxMessage):
        event, patient = item.event, item.patient
        reminder = reminder_json(item)
    else:
        event, patient, reminder = item, item.patient, None
    attempt = latest.get(event.id) if event is not None else None
    return {
        "event": event_json(event, today) if event is not None else None,
        "patient": patient_contact_json(patient) if patient is not None else None,
        "last_contact_attempt": attempt_json(attempt) if attempt else None,
        "reminder": reminder,
    }


def _event_ids(items: list[Any]) -> list[int]:
    ids = []
    for item in items:
        event_id = item.event_id if isinstance(item, OutboxMessage) else item.id
        if event_id is not None:
            ids.append(event_id)
    return ids


def _worklist(name: str) -> worklists.Worklist:
    worklist = worklists.WORKLISTS.get(name)
    if worklist is None:
        raise NotFound(f"No worklist called {name!r}; try one of {', '.join(worklists.WORKLISTS)}.")
    return worklist


def _clinic_filter(user: User) -> Clinic | None:
    slug = request.args.get("clinic")
    if slug is None:
        return None
    clinic = db.session.scalar(select(Clinic).where(Clinic.slug == slug))
    if clinic is None or not access.can_see_clinic(user, clinic.id):
        raise ValidationFailed({"clinic": "Unknown clinic."})
    return clinic


def _today(user: User, clinic: Clinic | None) -> date:
    """ "Today" where the list's clinic is (the user's first clinic without a filter)."""
    if clinic is not None:
        return clock.today_in(clinic.timezone)
    if user.clinics:
        return clock.today_in(user.clinics[0].timezone)
    return clock.today_in("UTC")  # an admin of no clinic in particular


@bp.get("/worklists")
@token_required
def worklist_index() -> Any:
    user = current_user()
    clinic = _clinic_filter(user)
    counts = worklists.counts(user, _today(user, clinic), clinic.id if clinic else None)
    return {
        "items": [
            {
                "name": w.name,
                "title": w.title,
                "description": w.description,
                "count": counts[name].value,
                "count_is_capped": counts[name].capped,
            }
            for name, w in worklists.WORKLISTS.items()
        ]
    }


@bp.get("/worklists/<name>")
@token_required
def worklist(name: str) -> Any:
    user = current_user()
    worklist = _worklist(name)
    page, per_page = _pagination()
    clinic = _clinic_filter(user)
    today = _today(user, clinic)
    clinic_id = clinic.id if clinic else None
    result = worklists.fetch(name, user, today, page, per_page, clinic_id)
    latest = worklists.latest_contact_attempts(_event_ids(result.items))
    total = worklists.count(name, user, today, clinic_id)
    return {
        "name": worklist.name,
        "title": worklist.title,
        "description": worklist.description,
        "items": [_item(item, today, latest) for item in result.items],
        "page": result.page,
        "per_page": result.per_page,
        "total": total.value,
        "total_is_capped": total.capped,
        "has_more": result.has_next,
    }


# --- CSV --------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "clinic",
    "patient_id",
    "mrn",
    "given_name",
    "family_name",
    "phone",
    "email",
    "preferred_language",
    "email_opt_out",
    "event_id",
    "kind",
    "status",
    "due_on",
    "window_start",
    "window_end",
    "starts_at",
    "call_again_on",
    "last_contact_result",
    "last_contact_at",
    "last_contact_note",
    "reminder_rule",
    "reminder_recipient",
    "reminder_error",
    "reminder_failed_at",
)


def safe_cell(value: Any) -> str:
    """A CSV cell that no spreadsheet will run as a formula."""
    if value is None:
        return ""
    text = str(value)
    # Leading spaces too: some spreadsheets skip them before deciding it is a formula.
    return "'" + text if text.lstrip(" ").startswith(FORMULA_STARTS) else text


def csv_row(item: dict[str, Any]) -> list[str]:
    event = item["event"] or {}
    patient = item["patient"] or {}
    attempt = item["last_contact_attempt"] or {}
    reminder = item["reminder"] or {}
    values = {
        "clinic": patient.get("clinic"),
        "patient_id": patient.get("id"),
        "mrn": patient.get("mrn"),
        "given_name": patient.get("given_name"),
        "family_name": patient.get("family_name"),
        "phone": patient.get("phone"),
        "email": patient.get("email"),
        "preferred_language": patient.get("preferred_language"),
        "email_opt_out": patient.get("email_opt_out"),
        "event_id": event.get("id"),
        "kind": event.get("kind"),
        "status": event.get("status"),
        "due_on": event.get("due_on"),
        "window_start": event.get("window_start"),
        "window_end": event.get("window_end"),
        "starts_at": event.get("starts_at"),
        "call_again_on": event.get("call_again_on"),
        "last_contact_result": attempt.get("result"),
        "last_contact_at": attempt.get("attempted_at"),
        "last_contact_note": attempt.get("note"),
        "reminder_rule": reminder.get("rule"),
        "reminder_recipient": reminder.get("recipient"),
        "reminder_error": reminder.get("last_error"),
        "reminder_failed_at": reminder.get("failed_at"),
    }
    return [safe_cell(values[column]) for column in CSV_COLUMNS]


def _csv_lines(name: str, user: User, today: date, clinic_id: int | None) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    # A byte-order mark so spreadsheet programs read names in UTF-8.
    writer.writerow(CSV_COLUMNS)
    yield "\ufeff" + buffer.getvalue()
    page = 1
    while True:
        buffer.seek(0)
        buffer.truncate()
        result = worklists.fetch(name, user, today, page, CSV_CHUNK, clinic_id)
        latest = worklists.latest_contact_attempts(_event_ids(result.items))
        for item in result.items:
            writer.writerow(csv_row(_item(item, today, latest)))
        # The session's identity map holds clean objects weakly: finished pages are freed.
        yield buffer.getvalue()
        if not result.has_next:
            return
        page += 1


@bp.get("/worklists/<name>.csv")
@token_required
def worklist_csv(name: str) -> Any:
    user = current_user()
    _worklist(name)
    clinic = _clinic_filter(user)
    today = _today(user, clinic)
    lines = _csv_lines(name, user, today, clinic.id if clinic else None)
    filename = f"{name}-{clinic.slug + '-' if clinic else ''}{today.isoformat()}.csv"
    return Response(
        stream_with_context(lines),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


# --- Contact attempts -------------------------------------------------------------------------


@bp.post("/events/<int:event_id>/contact-attempts")
@token_required
def log_contact_attempt(event_id: int) -> Any:
    user = current_user()
    event = access.get_event(user, event_id)
    body = parse_body(schemas.ContactAttemptIn)
    attempt = contacts.log_attempt(event, user, body.result, body.note, body.call_again_on)
    db.session.commit()
    return attempt_json(attempt), 201


@bp.get("/events/<int:event_id>/contact-attempts")
@token_required
def list_contact_attempts(event_id: int) -> Any:
    event = access.get_event(current_user(), event_id)
    return {"items": [attempt_json(a) for a in contacts.attempts_for(event)]}


# --- Failed reminders -------------------------------------------------------------------------


def _message(user: User, message_id: int) -> OutboxMessage:
    message = db.session.get(OutboxMessage, message_id)
    if message is None or not access.can_see_clinic(user, message.clinic_id):
        raise NotFound("Reminder not found.")
    return message


@bp.post("/reminders/<int:message_id>/dismiss")
@token_required
def dismiss_reminder(message_id: int) -> Any:
    message = _message(current_user(), message_id)
    parse_body(schemas.EmptyIn)
    outbox.dismiss(message, clock.utcnow())
    db.session.commit()
    return reminder_json(message)


@bp.post("/reminders/<int:message_id>/retry")
@token_required
def retry_reminder(message_id: int) -> Any:
    message = _message(current_user(), message_id)
    parse_body(schemas.EmptyIn)
    outbox.retry(message, clock.utcnow())
    db.session.commit()
    return reminder_json(message)
