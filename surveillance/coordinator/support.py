"""Small helpers shared by the coordinator views (no rules: those live in services)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from flask import flash, redirect
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


@dataclass(frozen=True)
class RedirectWith:
    """An answer that flashes a message (and any notes after it) and redirects."""

    url: str
    message: str
    category: str = "success"
    notes: tuple[tuple[str, str], ...] = ()  # further (message, category) pairs

    def send(self) -> Any:
        for message, category in ((self.message, self.category), *self.notes):
            flash(message, category)
        return redirect(self.url)


Result = TypeVar("Result")


def commit_or_roll_back(
    action: Callable[[], Result],
    *,
    done: Callable[[Result], RedirectWith | Any],
    failed: Callable[[DomainError], RedirectWith | Any],
    form: FlaskForm | None = None,
) -> Any:
    """Run one screen action as the request's one transaction, and answer.

    When the action raises a domain error (a broken rule, a conflict, something not found)
    nothing it wrote stays: the transaction is rolled back, the error's messages go next to
    ``form``'s fields when the screen shows that form again, and ``failed`` answers. Otherwise
    the transaction is committed and ``done`` answers, called after the commit so its message
    describes what was saved. Either answer may be a :class:`RedirectWith` (flash, redirect)
    or a response of its own (the form again, with its status)."""
    try:
        result = action()
    except DomainError as exc:
        db.session.rollback()
        if form is not None:
            show_errors(form, exc)
        return _send(failed(exc))
    db.session.commit()
    return _send(done(result))


def _send(answer: RedirectWith | Any) -> Any:
    return answer.send() if isinstance(answer, RedirectWith) else answer


__all__ = [
    "RedirectWith",
    "access",
    "chosen_clinic",
    "commit_or_roll_back",
    "me",
    "show_errors",
    "today_for",
    "visible_clinics",
]


MAX_PAGE = 100_000


def page_number() -> int:
    """The ``page`` query argument as a page number from 1 to MAX_PAGE. Anything else reads as
    page 1 or the last allowed page: an absurd number must not overflow the database's OFFSET."""
    from flask import request

    page = request.args.get("page", 1, type=int) or 1
    return min(max(page, 1), MAX_PAGE)
