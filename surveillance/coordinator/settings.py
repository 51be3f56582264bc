"""Clinic settings and users (admins only)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import abort, redirect, render_template, request, url_for
from sqlalchemy import select

from surveillance.coordinator import bp
from surveillance.coordinator.forms import (
    ActionForm,
    ClinicForm,
    ClosureForm,
    NewUserForm,
    ReminderSettingsForm,
    UserForm,
    options,
)
from surveillance.coordinator.support import RedirectWith, commit_or_roll_back, me
from surveillance.errors import NotFound
from surveillance.extensions import db
from surveillance.models import Clinic, User
from surveillance.privacy import NEUTRAL_CLINIC_NAME
from surveillance.reminders import settings as reminder_settings
from surveillance.reminders.rules import ReminderPolicy, format_days
from surveillance.services import accounts, clinic_admin


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not me().is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def _clinic(clinic_id: int) -> Clinic:
    clinic = db.session.get(Clinic, clinic_id)
    if clinic is None:
        raise NotFound("Clinic not found.")
    return clinic


def _user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("User not found.")
    return user


@bp.get("/settings")
@admin_required
def settings() -> Any:
    return render_template(
        "coordinator/settings.html",
        clinics=db.session.scalars(select(Clinic).order_by(Clinic.name)).all(),
        users=db.session.scalars(select(User).order_by(User.email)).all(),
        neutral_clinic_name=NEUTRAL_CLINIC_NAME,
    )


def _calendar_notes(change: clinic_admin.CalendarChange) -> tuple[tuple[str, str], ...]:
    """What a calendar change did to plans, as (message, category) flashes."""
    notes = []
    if change.moved:
        notes.append((f"{change.moved} planned events moved onto working days.", "info"))
    if change.booked_on_closed_days:
        names = ", ".join(
            f"{e.patient.family_name} (MRN {e.patient.mrn})" for e in change.booked_on_closed_days
        )
        notes.append(
            (f"Booked appointments now fall on a closed day; rebook them: {names}.", "warning")
        )
    return tuple(notes)


@bp.route("/settings/clinics/<int:clinic_id>", methods=["GET", "POST"])
@admin_required
def clinic_settings(clinic_id: int) -> Any:
    clinic = _clinic(clinic_id)
    form = ClinicForm(obj=clinic if request.method == "GET" else None)
    if request.method == "GET":
        form.working_weekdays.data = list(clinic.working_weekdays)
        return _clinic_page(clinic, form=form)
    if not form.validate():
        return _clinic_page(clinic, form=form, status=422)
    return commit_or_roll_back(
        lambda: clinic_admin.update_clinic(
            clinic,
            name=form.name.data or "",
            timezone=form.timezone.data or "",
            address=form.address.data or "",
            calendar_name=form.calendar_name.data or "",
            calendar_address=form.calendar_address.data or "",
            phone=form.phone.data or "",
            working_weekdays=[int(d) for d in form.working_weekdays.data or []],
            observe_us_holidays=bool(form.observe_us_holidays.data),
        ),
        form=form,
        failed=lambda exc: _clinic_page(clinic, form=form, status=exc.status_code),
        done=lambda change: RedirectWith(
            url_for("coordinator.clinic_settings", clinic_id=clinic.id),
            f"Saved the settings of {clinic.name}.",
            notes=_calendar_notes(change),
        ),
    )


def _clinic_page(
    clinic: Clinic,
    form: ClinicForm | None = None,
    closure_form: ClosureForm | None = None,
    reminder_form: ReminderSettingsForm | None = None,
    status: int = 200,
) -> Any:
    if form is None:
        form = ClinicForm(obj=clinic)
        form.working_weekdays.data = list(clinic.working_weekdays)
    if reminder_form is None:
        reminder_form = _reminder_form(clinic)
    return (
        render_template(
            "coordinator/clinic.html",
            clinic=clinic,
            form=form,
            closure_form=closure_form or ClosureForm(formdata=None),
            remove_form=ActionForm(formdata=None),
            reminder_form=reminder_form,
            neutral_clinic_name=NEUTRAL_CLINIC_NAME,
        ),
        status,
    )


# --- Reminder settings ------------------------------------------------------------------------


def _reminder_form(clinic: Clinic) -> ReminderSettingsForm:
    """The form filled with the clinic's current settings (defaults when never changed)."""
    policy = reminder_settings.policy_for(clinic.id)
    form = ReminderSettingsForm(formdata=None)
    for name in reminder_settings.FIELDS:
        value = getattr(policy, name)
        form[name].data = format_days(value) if name == "booked_reminder_days" else value
    return form


@bp.post("/settings/clinics/<int:clinic_id>/reminders")
@admin_required
def reminder_settings_update(clinic_id: int) -> Any:
    clinic = _clinic(clinic_id)
    form = ReminderSettingsForm()
    if not form.validate():
        return _clinic_page(clinic, reminder_form=form, status=422)
    return commit_or_roll_back(
        lambda: reminder_settings.update(
            clinic, **{name: form[name].data for name in reminder_settings.FIELDS}
        ),
        form=form,
        failed=lambda exc: _clinic_page(
            _clinic(clinic_id), reminder_form=form, status=exc.status_code
        ),
        done=lambda policy: RedirectWith(
            url_for("coordinator.clinic_settings", clinic_id=clinic.id, _anchor="reminders"),
            f"Saved the reminder settings of {clinic.name}: {_policy_summary(policy)}.",
        ),
    )


def _policy_summary(policy: ReminderPolicy) -> str:
    if not policy.enabled:
        return "reminders are off"
    days = format_days(policy.booked_reminder_days) or "none"
    summary = (
        f"booked-visit reminders {days} days ahead, biopsy heads-up "
        f"{policy.biopsy_heads_up_days} days ahead, sent at {policy.send_hour}:00"
    )
    return summary + (
        f", digest at {policy.digest_hour}:00" if policy.digest_enabled else ", no digest"
    )


@bp.post("/settings/clinics/<int:clinic_id>/closures")
@admin_required
def add_closure(clinic_id: int) -> Any:
    clinic = _clinic(clinic_id)
    form = ClosureForm()
    if not form.validate():
        return _clinic_page(clinic, closure_form=form, status=422)
    return commit_or_roll_back(
        lambda: clinic_admin.add_closure(clinic, form.closed_on.data, form.reason.data or ""),
        form=form,
        failed=lambda exc: _clinic_page(
            _clinic(clinic_id), closure_form=form, status=exc.status_code
        ),
        done=lambda change: RedirectWith(
            _closures_url(clinic),
            f"Added a closure on {form.closed_on.data:%a %-d %b %Y}.",
            notes=_calendar_notes(change),
        ),
    )


def _closures_url(clinic: Clinic) -> str:
    return url_for("coordinator.clinic_settings", clinic_id=clinic.id, _anchor="closures")


@bp.post("/settings/clinics/<int:clinic_id>/closures/<int:closure_id>/remove")
@admin_required
def remove_closure(clinic_id: int, closure_id: int) -> Any:
    clinic = _clinic(clinic_id)
    if ActionForm().validate():
        day, change = clinic_admin.remove_closure(clinic, closure_id)
        db.session.commit()
        message = f"Removed the closure on {day:%a %-d %b %Y}."
        return RedirectWith(_closures_url(clinic), message, notes=_calendar_notes(change)).send()
    return redirect(_closures_url(clinic))


def _clinic_choices(form: UserForm) -> None:
    form.clinics.choices = options(
        (c.id, c.name) for c in db.session.scalars(select(Clinic).order_by(Clinic.name))
    )


@bp.route("/settings/users/new", methods=["GET", "POST"])
@admin_required
def new_user() -> Any:
    form = NewUserForm()
    _clinic_choices(form)
    if not form.is_submitted():
        return _user_page(form, None)
    if not form.validate():
        return _user_page(form, None, 422)

    def create() -> User:
        user = accounts.create_user(
            form.email.data or "",
            form.role.data or "",
            form.password.data or "",
            clinic_admin.clinics_by_ids(form.clinics.data or []),
            form.full_name.data or "",
        )
        clinic_admin.update_user(
            me(),
            user,
            full_name=user.full_name,
            role=user.role,
            clinics=list(user.clinics),
            is_active=bool(form.is_active.data),
        )
        return user

    return commit_or_roll_back(
        create,
        form=form,
        failed=lambda exc: _user_page(form, None, exc.status_code),
        done=lambda user: RedirectWith(
            url_for("coordinator.settings"), f"Created {user.role} {user.email}."
        ),
    )


def _user_page(form: UserForm, user: User | None, status: int = 200) -> Any:
    return render_template("coordinator/user.html", form=form, user=user), status


@bp.route("/settings/users/<int:user_id>", methods=["GET", "POST"])
@admin_required
def edit_user(user_id: int) -> Any:
    user = _user(user_id)
    form = UserForm(obj=user if request.method == "GET" else None)
    _clinic_choices(form)
    if request.method == "GET":
        form.clinics.data = [c.id for c in user.clinics]
    if not form.is_submitted():
        return _user_page(form, user)
    if not form.validate():
        return _user_page(form, user, 422)
    return commit_or_roll_back(
        lambda: clinic_admin.update_user(
            me(),
            user,
            full_name=form.full_name.data or "",
            role=form.role.data or "",
            clinics=clinic_admin.clinics_by_ids(form.clinics.data or []),
            is_active=bool(form.is_active.data),
        ),
        form=form,
        failed=lambda exc: _user_page(form, user, exc.status_code),
        done=lambda _: RedirectWith(url_for("coordinator.settings"), f"Saved {user.email}."),
    )


@bp.app_context_processor
def _weekday_names() -> dict[str, Any]:
    from surveillance.clinic_calendar import WEEKDAY_NAMES

    return {"weekday_names": WEEKDAY_NAMES}
