"""Small helpers shared by the coordinator views (no rules: those live in services)."""

from __future__ import annotations

from datetime import date

from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select

from surveillance import clock
from surveillance.errors import DomainError
from surveillance.extensions import db
from surveillance.models import Clinic, User
from surveillance.services import access

DEFAULT_TIMEZONE = "America/Denver"


def me() -> User:
    return current_user._get_current_object()  # type: ignore[attr-defined,no-any-return]


def visible_clinics(user: User) -> list[Clinic]:
    if user.is_admin:
        return list(db.session.scalars(select(Clinic).order_by(Clinic.name)).all())
    return list(user.clinics)


def chosen_clinic(user: User, clinic_id: int | None) -> Clinic | None:
    """The clinic picked in a filter, ignored when the user may not see it."""
    if clinic_id is None:
        return None
    return next((c for c in visible_clinics(user) if c.id == clinic_id), None)


def today_for(user: User, clinic: Clinic | None = None) -> date:
    """Today where the clinic is (the user's first clinic when none is chosen)."""
    if clinic is None:
        clinics = visible_clinics(user)
        clinic = clinics[0] if clinics else None
    return clock.today_in(clinic.timezone if clinic else DEFAULT_TIMEZONE)


def show_errors(form: FlaskForm, exc: DomainError) -> None:
    """Put a service's field errors next to the form's fields; the rest above the form."""
    placed = False
    for name, message in exc.fields.items():
        if name in form:
            form[name].errors = [*form[name].errors, message]
            placed = True
        else:
            form.form_errors.append(message)
            placed = True
    if not placed or not exc.fields:
        form.form_errors.append(exc.message)


__all__ = ["access", "chosen_clinic", "me", "show_errors", "today_for", "visible_clinics"]


MAX_PAGE = 100_000


def page_number() -> int:
    """The ``page`` query argument as a page number from 1 to MAX_PAGE. Anything else reads as
    page 1 or the last allowed page: an absurd number must not overflow the database's OFFSET."""
    from flask import request

    page = request.args.get("page", 1, type=int) or 1
    return min(max(page, 1), MAX_PAGE)
