"""The audit log screen (admins): filter by record kind, patient, actor and dates; each entry
shows who did what, when, and the values before and after."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import render_template, request
from flask_wtf import FlaskForm
from sqlalchemy import Select, func, select
from wtforms import DateField, IntegerField, SelectField, StringField
from wtforms.validators import Length, NumberRange, Optional, ValidationError

from surveillance.audit import AUDITED_TABLES, AuditEntry
from surveillance.coordinator import bp
from surveillance.coordinator.forms import options
from surveillance.coordinator.settings import admin_required
from surveillance.coordinator.support import page_number
from surveillance.extensions import db
from surveillance.web import MAX_ID

PER_PAGE = 50
ENTITY_LABELS = {
    "patients": "Patients",
    "surveillance_plans": "Plans",
    "plan_events": "Events",
    "stage_changes": "Care stages",
    "contact_attempts": "Contact attempts",
    "clinics": "Clinics",
    "clinic_closures": "Clinic closures",
    "users": "Users",
    "api_tokens": "API tokens",
}


def _label(table: str) -> str:
    return ENTITY_LABELS.get(table, table)


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET search form: it changes nothing

    entity = SelectField(
        "Record kind",
        choices=options(
            [("", "Any")]
            + [(t, ENTITY_LABELS.get(t, t)) for t in sorted(AUDITED_TABLES, key=_label)]
        ),
        validators=[Optional()],
    )
    patient_id = IntegerField(
        "Patient id",
        validators=[Optional(), NumberRange(1, MAX_ID, "Enter a patient id (a whole number).")],
    )
    actor = StringField(
        "Actor",
        validators=[Optional(), Length(max=200)],
        description="Part of an email, or cli / scheduler / system.",
    )
    date_from = DateField("From", validators=[Optional()], description="UTC day.")
    date_to = DateField("To", validators=[Optional()], description="UTC day, included.")

    def validate_date_to(self, field: DateField) -> None:
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("“To” must not be before “From”.")


@dataclass(frozen=True)
class FieldChange:
    name: str
    before: Any
    after: Any


def field_changes(entry: AuditEntry) -> list[FieldChange]:
    """An entry's changes as rows of (field, before, after), whatever its action."""
    changes = entry.changes or {}
    if entry.action == "create":
        return [FieldChange(k, None, v) for k, v in sorted(changes.get("after", {}).items())]
    if entry.action == "delete":
        return [FieldChange(k, v, None) for k, v in sorted(changes.get("before", {}).items())]
    return [FieldChange(k, v[0], v[1]) for k, v in sorted(changes.items())]


def _filtered(form: AuditFilterForm) -> Select:  # type: ignore[type-arg]
    query = select(AuditEntry)
    if form.entity.data:
        query = query.where(AuditEntry.entity == form.entity.data)
    if form.patient_id.data is not None:
        query = query.where(AuditEntry.patient_id == form.patient_id.data)
    if actor := (form.actor.data or "").strip():
        query = query.where(func.lower(AuditEntry.actor).contains(actor.lower(), autoescape=True))
    if form.date_from.data:
        query = query.where(AuditEntry.occurred_at >= _utc_midnight(form.date_from.data))
    if form.date_to.data:
        end = _utc_midnight(form.date_to.data + timedelta(days=1))
        query = query.where(AuditEntry.occurred_at < end)
    return query


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


@bp.get("/audit")
@admin_required
def audit_log() -> Any:
    form = AuditFilterForm(request.args)
    page = page_number()
    entries: list[AuditEntry] = []
    total = 0
    status = 200
    if form.validate():
        query = _filtered(form)
        total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        entries = list(
            db.session.scalars(
                query.order_by(AuditEntry.id.desc()).limit(PER_PAGE).offset((page - 1) * PER_PAGE)
            )
        )
    else:
        status = 422
    filters = {k: v for k, v in request.args.items() if k != "page" and v}
    return (
        render_template(
            "coordinator/audit.html",
            form=form,
            entries=entries,
            total=total,
            page=page,
            pages=max(math.ceil(total / PER_PAGE), 1),
            filters=filters,
            field_changes=field_changes,
            entity_labels=ENTITY_LABELS,
        ),
        status,
    )
