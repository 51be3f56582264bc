"""Clinic settings and users (admins only)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
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
from surveillance.coordinator.support import me, show_errors
from surveillance.errors import DomainError, NotFound
from surveillance.extensions import db
from surveillance.models import Clinic, User
from surveillance.privacy import NEUTRAL_CLINIC_NAME
from surveillance.reminders import settings as reminder_settings
from surveillance.reminders.rules import format_days
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


def _calendar_message(change: clinic_admin.CalendarChange) -> None:
    if change.moved:
        flash(f"{change.moved} planned events moved onto working days.", "info")
    if change.booked_on_closed_days:
        names = ", ".join(
            f"{e.patient.family_name} (MRN {e.patient.mrn})" for e in change.booked_on_closed_days
        )
        flash(f"Booked appointments now fall on a closed day; rebook them: {names}.", "warning")


@bp.route("/settings/clinics/<int:clinic_id>", methods=["GET", "POST"])
@admin_required
def clinic_settings(clinic_id: int) -> Any:
    clinic = _clinic(clinic_id)
    form = ClinicForm(obj=clinic if request.method == "GET" else None)
    if request.method == "GET":
        form.working_weekdays.data = list(clinic.working_weekdays)
    status = 200
    if request.method == "POST":
        status = 422
        if form.validate():
            try:
                change = clinic_admin.update_clinic(
                    clinic,
                    name=form.name.data or "",
                    timezone=form.timezone.data or "",
                    address=form.address.data or "",
                    calendar_name=form.calendar_name.data or "",
                    calendar_address=form.calendar_address.data or "",
                    phone=form.phone.data or "",
                    working_weekdays=[int(d) for d in form.working_weekdays.data or []],
                    observe_us_holidays=bool(form.observe_us_holidays.data),
                )
            except DomainError as exc:
                db.session.rollback()
                show_errors(form, exc)
                status = exc.status_code
            else:
                db.session.commit()
                flash(f"Saved the settings of {clinic.name}.", "success")
                _calendar_message(change)
                return redirect(url_for("coordinator.clinic_settings", clinic_id=clinic.id))
    return _clinic_page(clinic, form=form, status=status)


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
    try:
        policy = reminder_settings.update(
            clinic, **{name: form[name].data for name in reminder_settings.FIELDS}
        )
    except DomainError as exc:
        db.session.rollback()
        show_errors(form, exc)
        return _clinic_page(_clinic(clinic_id), reminder_form=form, status=exc.status_code)
    db.session.commit()
    if not policy.enabled:
        summary = "reminders are off"
    else:
        days = format_days(policy.booked_reminder_days) or "none"
        summary = (
            f"booked-visit reminders {days} days ahead, biopsy heads-up "
            f"{policy.biopsy_heads_up_days} days ahead, sent at {policy.send_hour}:00"
        )
        summary += (
            f", digest at {policy.digest_hour}:00" if policy.digest_enabled else ", no digest"
        )
    flash(f"Saved the reminder settings of {clinic.name}: {summary}.", "success")
    return redirect(
        url_for("coordinator.clinic_settings", clinic_id=clinic.id, _anchor="reminders")
    )


@bp.post("/settings/clinics/<int:clinic_id>/closures")
@admin_required
def add_closure(clinic_id: int) -> Any:
    clinic = _clinic(clinic_id)
    form = ClosureForm()
    if not form.validate():
        return _clinic_page(clinic, closure_form=form, status=422)
    try:
        change = clinic_admin.add_closure(clinic, form.closed_on.data, form.reason.data or "")
    except DomainError as exc:
        db.session.rollback()
        show_errors(form, exc)
        return _clinic_page(_clinic(clinic_id), closure_form=form, status=exc.status_code)
    db.session.commit()
    flash(f"Added a closure on {form.closed_on.data:%a %-d %b %Y}.", "success")
    _calendar_message(change)
    return redirect(url_for("coordinator.clinic_settings", clinic_id=clinic.id, _anchor="closures"))


@bp.post("/settings/clinics/<int:clinic_id>/closures/<int:closure_id>/remove")
@admin_required
def remove_closure(clinic_id: int, closure_id: int) -> Any:
    clinic = _clinic(clinic_id)
    if ActionForm().validate():
        day, change = clinic_admin.remove_closure(clinic, closure_id)
        db.session.commit()
        flash(f"Removed the closure on {day:%a %-d %b %Y}.", "success")
        _calendar_message(change)
    return redirect(url_for("coordinator.clinic_settings", clinic_id=clinic.id, _anchor="closures"))


def _clinic_choices(form: UserForm) -> None:
    form.clinics.choices = options(
        (c.id, c.name) for c in db.session.scalars(select(Clinic).order_by(Clinic.name))
    )


@bp.route("/settings/users/new", methods=["GET", "POST"])
@admin_required
def new_user() -> Any:
    form = NewUserForm()
    _clinic_choices(form)
    status = 200
    if form.is_submitted():
        status = 422
        if form.validate():
            try:
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
            except DomainError as exc:
                db.session.rollback()
                show_errors(form, exc)
                status = exc.status_code
            else:
                db.session.commit()
                flash(f"Created {user.role} {user.email}.", "success")
                return redirect(url_for("coordinator.settings"))
    return render_template("coordinator/user.html", form=form, user=None), status


@bp.route("/settings/users/<int:user_id>", methods=["GET", "POST"])
@admin_required
def edit_user(user_id: int) -> Any:
    user = _user(user_id)
    form = UserForm(obj=user if request.method == "GET" else None)
    _clinic_choices(form)
    if request.method == "GET":
        form.clinics.data = [c.id for c in user.clinics]
    status = 200
    if form.is_submitted():
        status = 422
        if form.validate():
            try:
                clinic_admin.update_user(
                    me(),
                    user,
                    full_name=form.full_name.data or "",
                    role=form.role.data or "",
                    clinics=clinic_admin.clinics_by_ids(form.clinics.data or []),
                    is_active=bool(form.is_active.data),
                )
            except DomainError as exc:
                db.session.rollback()
                show_errors(form, exc)
                status = exc.status_code
            else:
                db.session.commit()
                flash(f"Saved {user.email}.", "success")
                return redirect(url_for("coordinator.settings"))
    return render_template("coordinator/user.html", form=form, user=user), status


@bp.app_context_processor
def _weekday_names() -> dict[str, Any]:
    from surveillance.clinic_calendar import WEEKDAY_NAMES

    return {"weekday_names": WEEKDAY_NAMES}
