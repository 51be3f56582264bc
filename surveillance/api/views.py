"""API endpoints: thin wrappers that validate, call a service, commit, and serialise."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import current_app, request
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select

from surveillance import clock
from surveillance.api import bp, schemas
from surveillance.api.auth import current_user, token_required
from surveillance.api.errors import error_response
from surveillance.api.serializers import patient_json, patient_summary_json
from surveillance.errors import DomainError, ValidationFailed
from surveillance.extensions import db
from surveillance.models import AuditEntry, Clinic, Patient
from surveillance.services import access, patient_search, plans
from surveillance.services import stages as care_stages
from surveillance.web import MAX_ID

Model = TypeVar("Model", bound=BaseModel)


class UnsupportedMediaType(DomainError):
    status_code = 415


class BadRequest(DomainError):
    status_code = 400


def parse_body(model: type[Model]) -> Model:
    """Validate the JSON body strictly; an empty body counts as ``{}``."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        raw = b"{}"
    elif not request.is_json:
        raise UnsupportedMediaType("Send the body as application/json.")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise BadRequest("The body is not valid JSON.") from exc
        raise


def patient_response(patient: Patient, status: int = 200) -> Any:
    return patient_json(patient), status


# --- Patients ---------------------------------------------------------------------------------


@bp.post("/patients")
@token_required
def enrol_patient() -> Any:
    body = parse_body(schemas.EnrolmentIn)
    user = current_user()
    clinic = access.clinic_for_enrolment(user, body.clinic)
    data = plans.Enrolment(**body.model_dump(exclude={"clinic"}, mode="python"))
    patient = plans.enrol(data, clinic)
    db.session.commit()
    return patient_response(patient, 201)


@bp.get("/patients")
@token_required
def list_patients() -> Any:
    user = current_user()
    page, per_page = _pagination()
    clinic_id = None
    if slug := request.args.get("clinic"):
        clinic = db.session.scalar(select(Clinic).where(Clinic.slug == slug))
        if clinic is None or not access.can_see_clinic(user, clinic.id):
            raise ValidationFailed({"clinic": "Unknown clinic."})
        clinic_id = clinic.id
    found = patient_search.search(
        user,
        request.args.get("q", ""),
        clinic_id,
        patient_search.SortOrder.NAME,
        page,
        per_page,
        patient_search.RowPlan.LATEST,
    )
    return {
        "items": [
            patient_summary_json(
                row.patient, row.next_event, clock.today_in(row.patient.clinic.timezone)
            )
            for row in found.rows
        ],
        "page": page,
        "per_page": per_page,
        "total": found.total.value,
        "total_is_capped": found.total.capped,
        "has_more": found.has_next,
    }


def _pagination() -> tuple[int, int]:
    errors = {}
    values = {}
    default_size = int(current_app.config.get("API_PAGE_SIZE", 50))
    for name, default, upper in (("page", 1, 1_000_000), ("per_page", default_size, 200)):
        raw = request.args.get(name, str(default))
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= upper:
            errors[name] = f"Must be a whole number from 1 to {upper}."
        else:
            values[name] = int(raw)
    if errors:
        raise ValidationFailed(errors)
    return values["page"], values["per_page"]


@bp.get("/patients/<int:patient_id>")
@token_required
def get_patient(patient_id: int) -> Any:
    return patient_response(access.get_patient(current_user(), patient_id))


@bp.patch("/patients/<int:patient_id>")
@token_required
def update_patient(patient_id: int) -> Any:
    patient = access.get_patient(current_user(), patient_id)
    body = parse_body(schemas.PatientPatch)
    changes = body.model_dump(exclude_unset=True)
    interval = changes.pop("interval_months", None)
    for required in ("given_name", "family_name", "preferred_language", "email_opt_out"):
        if required in changes and changes[required] is None:
            raise ValidationFailed({required: "This field cannot be empty."})
    for name, value in changes.items():
        setattr(patient, name, value)
    if interval is not None and patient.latest_plan is not None:
        plans.change_interval(patient.latest_plan, interval)  # 409 once surveillance ended
    db.session.commit()
    return patient_response(patient)


@bp.post("/patients/<int:patient_id>/end-surveillance")
@token_required
def end_surveillance(patient_id: int) -> Any:
    patient = access.get_patient(current_user(), patient_id)
    body = parse_body(schemas.EndSurveillanceIn)
    plan = patient.active_plan
    if plan is None:
        return error_response(409, "Surveillance has already ended for this patient.")
    plans.end_surveillance(plan, body.reason, user=current_user())
    db.session.commit()
    return patient_response(patient)


@bp.post("/patients/<int:patient_id>/stage")
@token_required
def change_stage(patient_id: int) -> Any:
    patient = access.get_patient(current_user(), patient_id)
    body = parse_body(schemas.StageChangeIn)
    care_stages.change_stage(patient, body.stage, body.reason, current_user())
    db.session.commit()
    return patient_response(patient)


# --- Events -----------------------------------------------------------------------------------


@bp.post("/events/<int:event_id>/book")
@token_required
def book_event(event_id: int) -> Any:
    event = access.get_event(current_user(), event_id)
    body = parse_body(schemas.BookingIn)
    plans.book(event, body.starts_at, body.duration_minutes, body.location)
    db.session.commit()
    return patient_response(event.patient)


@bp.post("/events/<int:event_id>/reschedule")
@token_required
def reschedule_event(event_id: int) -> Any:
    event = access.get_event(current_user(), event_id)
    body = parse_body(schemas.BookingIn)
    plans.reschedule(event, body.starts_at, body.duration_minutes, body.location)
    db.session.commit()
    return patient_response(event.patient)


@bp.post("/events/<int:event_id>/complete")
@token_required
def complete_event(event_id: int) -> Any:
    event = access.get_event(current_user(), event_id)
    body = parse_body(schemas.CompletionIn)
    plans.complete(event, body.completed_on, body.outcome)
    db.session.commit()
    return patient_response(event.patient)


@bp.post("/events/<int:event_id>/missed")
@token_required
def mark_event_missed(event_id: int) -> Any:
    event = access.get_event(current_user(), event_id)
    parse_body(schemas.EmptyIn)
    plans.mark_missed(event)
    db.session.commit()
    return patient_response(event.patient)


@bp.post("/events/<int:event_id>/cancel")
@token_required
def cancel_event(event_id: int) -> Any:
    event = access.get_event(current_user(), event_id)
    body = parse_body(schemas.CancelIn)
    plans.cancel(event, body.reason)
    db.session.commit()
    return patient_response(event.patient)


# --- Audit log (admins) -----------------------------------------------------------------------


class Forbidden(DomainError):
    status_code = 403


@bp.get("/audit")
@token_required
def audit_log() -> Any:
    if not current_user().is_admin:
        raise Forbidden("Only admins can read the audit log.")
    page, per_page = _pagination()
    query = select(AuditEntry)
    for name in ("entity", "actor", "action"):
        if value := request.args.get(name):
            query = query.where(getattr(AuditEntry, name) == value)
    for name in ("patient_id", "entity_id"):
        if (value := request.args.get(name)) is not None:
            if not (value.isascii() and value.isdigit()) or int(value) > MAX_ID:
                raise ValidationFailed({name: "Must be a whole number."})
            query = query.where(getattr(AuditEntry, name) == int(value))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(AuditEntry.id.desc()).limit(per_page).offset((page - 1) * per_page)
    ).all()
    return {
        "items": [
            {
                "id": e.id,
                "occurred_at": e.occurred_at.isoformat(),
                "actor": e.actor,
                "actor_user_id": e.actor_user_id,
                "action": e.action,
                "entity": e.entity,
                "entity_id": e.entity_id,
                "patient_id": e.patient_id,
                "changes": e.changes,
            }
            for e in rows
        ],
        "page": page,
        "per_page": per_page,
        "total": total,
    }
