"""Patients: search, enrol (with a preview), the patient's page and plan-wide actions."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from flask import flash, jsonify, redirect, render_template, request, url_for

from surveillance import planning, timeline
from surveillance.coordinator import bp
from surveillance.coordinator import patient_context as care
from surveillance.coordinator.forms import (
    ActionForm,
    ContactAttemptForm,
    EndSurveillanceForm,
    EnrolmentForm,
    IntervalForm,
    StageForm,
    options,
)
from surveillance.coordinator.support import (
    RedirectWith,
    chosen_clinic,
    commit_or_roll_back,
    me,
    page_number,
    show_errors,
    today_for,
    visible_clinics,
)
from surveillance.errors import DomainError, ValidationFailed
from surveillance.extensions import db
from surveillance.models import Patient, SurveillancePlan
from surveillance.services import access, enrolment_input, feed_tokens, patient_search, plans

PER_PAGE = 25


# --- Patients list ----------------------------------------------------------------------------


@bp.get("/patients")
def patients() -> Any:
    user = me()
    clinic = chosen_clinic(user, request.args.get("clinic", type=int))
    sort_arg = request.args.get("sort", patient_search.SortOrder.NEXT_DUE)
    sort = (
        patient_search.SortOrder(sort_arg)
        if sort_arg in set(patient_search.SortOrder)
        else patient_search.SortOrder.NEXT_DUE
    )
    term = request.args.get("q", "")[:100]
    page = page_number()
    found = patient_search.search(user, term, clinic.id if clinic else None, sort, page, PER_PAGE)
    return render_template(
        "coordinator/patients.html",
        found=found,
        term=term,
        sort=sort,
        clinic=clinic,
        clinics=visible_clinics(user),
        today=today_for(user, clinic),
    )


# --- Enrolment --------------------------------------------------------------------------------


@bp.route("/patients/new", methods=["GET", "POST"])
def enrol() -> Any:
    user = me()
    clinics = visible_clinics(user)
    form = EnrolmentForm()
    form.clinic.choices = options((c.slug, c.name) for c in clinics)
    if request.method == "GET":
        if len(clinics) >= 1:
            form.clinic.data = clinics[0].slug
            form.enrolled_on.data = today_for(user, clinics[0]).isoformat()
        return _enrol_page(form)
    if not form.validate():
        return _enrol_page(form, status=422)
    try:
        parsed = enrolment_input.parse(form.enrolment_fields())
        clinic = access.clinic_for_enrolment(user, parsed.clinic_slug)
        if form.preview.data:
            slots = enrolment_input.preview(parsed.enrolment, clinic)
            return _enrol_page(form, preview=slots, clinic=clinic)
        patient = plans.enrol(parsed.enrolment, clinic)
    except DomainError as exc:
        db.session.rollback()
        show_errors(form, exc)
        return _enrol_page(form, status=exc.status_code)
    db.session.commit()
    first = next((e for e in patient.active_plan.events), None) if patient.active_plan else None
    message = (
        f"Enrolled {patient.given_name} {patient.family_name} (MRN {patient.mrn}): "
        f"{len(patient.active_plan.events)} events planned, every "
        f"{patient.active_plan.interval_months} months."
    )
    if first is not None:
        message += f" First: {first.kind} due {first.due_on:%a %-d %b %Y}."
    flash(message, "success")
    return redirect(url_for("coordinator.patient", patient_id=patient.id))


def _enrol_page(
    form: EnrolmentForm,
    status: int = 200,
    preview: list[planning.EventSlot] | None = None,
    clinic: Any = None,
) -> Any:
    advice = enrolment_input.interval_advice(
        form.differentiation.data or "", form.grade.data or "", form.ki67.data
    )
    show_justification = bool(
        (advice and advice.requires_justification)
        or (form.justification.data or "").strip()
        or form.justification.errors
    )
    return (
        render_template(
            "coordinator/enrol.html",
            form=form,
            advice=advice,
            show_justification=show_justification,
            preview=preview,
            preview_clinic=clinic,
        ),
        status,
    )


@bp.get("/interval-advice")
def interval_advice() -> Any:
    """The suggested interval for a tumour profile (used by the enrolment form's script)."""
    advice = enrolment_input.interval_advice(
        request.args.get("differentiation", ""),
        request.args.get("grade", ""),
        request.args.get("ki67"),
    )
    if advice is None:
        return jsonify({"months": None, "requires_justification": False, "reason": ""})
    return jsonify(
        {
            "months": advice.months,
            "requires_justification": advice.requires_justification,
            "reason": advice.reason,
        }
    )


# --- The patient ------------------------------------------------------------------------------


@bp.get("/patients/<int:patient_id>")
def patient(patient_id: int) -> Any:
    return _patient_page(access.get_patient(me(), patient_id))


def _timeline(patient: Patient) -> timeline.Timeline | None:
    plan = patient.latest_plan
    if plan is None:
        return None
    zone = ZoneInfo(patient.clinic.timezone)
    events = [
        timeline.TimelineEvent(
            kind=e.kind,
            ordinal=e.ordinal,
            status=e.status,
            due_on=e.due_on,
            booked_on=e.starts_at.astimezone(zone).date() if e.starts_at else None,
            completed_on=e.completed_on,
            outcome=e.outcome,
        )
        for e in plan.events
    ]
    return timeline.build(events, today_for(me(), patient.clinic), plan.enrolled_on)


def _patient_page(
    patient: Patient,
    interval_form: IntervalForm | None = None,
    end_form: EndSurveillanceForm | None = None,
    stage_form: StageForm | None = None,
    contact_form: ContactAttemptForm | None = None,
    status: int = 200,
) -> Any:
    plan = patient.latest_plan
    events = list(plan.events) if plan else []
    if interval_form is None:
        interval_form = IntervalForm()
        if plan is not None:
            interval_form.interval_months.data = str(plan.interval_months)
    advice = planning.suggest_interval(patient.differentiation, patient.grade, patient.ki67)
    return (
        render_template(
            "coordinator/patient.html",
            patient=patient,
            plan=plan,
            advice=advice,
            today=today_for(me(), patient.clinic),
            timeline=_timeline(patient),
            actions={e.id: plans.allowed_actions(e) for e in plan.events} if plan else {},
            interval_form=interval_form,
            end_form=end_form or EndSurveillanceForm(),
            missed_form=ActionForm(),
            token_form=ActionForm(),
            has_calendar_link=patient.feed_token_hash is not None,
            open_end_form=end_form is not None,
            **care.stage_context(patient, stage_form),
            **care.contact_context(patient, events, contact_form),
            **care.calendar_context(patient),
        ),
        status,
    )


def patient_page_again(patient: Patient, exc: DomainError, **forms: Any) -> Any:
    """The patient page again, after a failed attempt, with the patient as stored."""
    db.session.refresh(patient)
    return _patient_page(patient, status=exc.status_code, **forms)


def _patient_url(patient: Patient) -> str:
    return url_for("coordinator.patient", patient_id=patient.id)


@bp.post("/patients/<int:patient_id>/interval")
def change_interval(patient_id: int) -> Any:
    patient = access.get_patient(me(), patient_id)
    form = IntervalForm()
    if not form.validate():
        return _patient_page(patient, interval_form=form, status=422)

    def change() -> tuple[SurveillancePlan, int]:
        plan = patient.active_plan
        if plan is None:
            raise ValidationFailed({"interval_months": "Surveillance has ended."})
        before = plan.interval_months
        plans.change_interval(plan, int(form.interval_months.data))
        return plan, before

    def changed(outcome: tuple[SurveillancePlan, int]) -> RedirectWith:
        plan, before = outcome
        if before == plan.interval_months:
            return RedirectWith(
                _patient_url(patient),
                f"The interval was already {before} months: nothing changed.",
                "info",
            )
        return RedirectWith(
            _patient_url(patient),
            f"Interval changed from {before} to {plan.interval_months} months; "
            "visits not yet booked or done were re-planned.",
        )

    return commit_or_roll_back(
        change,
        form=form,
        failed=lambda exc: patient_page_again(patient, exc, interval_form=form),
        done=changed,
    )


@bp.post("/patients/<int:patient_id>/end-surveillance")
def end_surveillance(patient_id: int) -> Any:
    patient = access.get_patient(me(), patient_id)
    form = EndSurveillanceForm()
    if not form.validate():
        return _patient_page(patient, end_form=form, status=422)

    def end() -> int:
        plan = patient.active_plan
        if plan is None:
            raise ValidationFailed({"reason": "Surveillance has already ended."})
        open_events = sum(e.status in ("planned", "booked") for e in plan.events)
        plans.end_surveillance(plan, form.reason.data or "", user=me())
        return open_events

    return commit_or_roll_back(
        end,
        form=form,
        failed=lambda exc: patient_page_again(patient, exc, end_form=form),
        done=lambda cancelled: RedirectWith(
            _patient_url(patient),
            f"Surveillance ended; {cancelled} upcoming events were cancelled.",
        ),
    )


@bp.post("/patients/<int:patient_id>/calendar-link/rotate")
def rotate_calendar_link(patient_id: int) -> Any:
    patient = access.get_patient(me(), patient_id)
    if ActionForm().validate():
        had_link = patient.feed_token_hash is not None
        feed_tokens.rotate_patient_token(patient)
        db.session.commit()
        flash(
            "A new calendar link was issued; the old link no longer works."
            if had_link
            else "A calendar link was issued.",
            "success",
        )
    return redirect(url_for("coordinator.patient", patient_id=patient.id, _anchor="calendar"))


@bp.post("/patients/<int:patient_id>/calendar-link/revoke")
def revoke_calendar_link(patient_id: int) -> Any:
    patient = access.get_patient(me(), patient_id)
    if ActionForm().validate():
        feed_tokens.revoke_patient_token(patient)
        db.session.commit()
        flash("The calendar link was revoked: it no longer works.", "success")
    return redirect(url_for("coordinator.patient", patient_id=patient.id, _anchor="calendar"))
