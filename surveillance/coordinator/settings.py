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
    UserForm,
    options,
)
from surveillance.coordinator.support import me, show_errors
from surveillance.errors import DomainError, NotFound
from surveillance.extensions import db
from surveillance.models import Clinic, User
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
    status: int = 200,
) -> Any:
    if form is None:
        form = ClinicForm(obj=clinic)
        form.working_weekdays.data = list(clinic.working_weekdays)
    return (
        render_template(
            "coordinator/clinic.html",
            clinic=clinic,
            form=form,
            closure_form=closure_form or ClosureForm(formdata=None),
            remove_form=ActionForm(formdata=None),
        ),
        status,
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
