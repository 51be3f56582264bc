"""Actions wired in from the care-stage and reminder work: move a patient's care stage, log a
contact attempt, deal with a failed reminder, and the coordinator's own calendar feed.

Every action calls the same service as the API, commits once, and says what it did.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from surveillance import clock, stages
from surveillance.coordinator import bp
from surveillance.coordinator.filters import contact_result, event_name, format_day, rule_label
from surveillance.coordinator.forms import ActionForm, ContactAttemptForm, StageForm
from surveillance.coordinator.patient_context import contact_form_for, stage_form_for
from surveillance.coordinator.patients import _patient_page, patient_page_again
from surveillance.coordinator.support import RedirectWith, commit_or_roll_back, me
from surveillance.errors import NotFound, ValidationFailed
from surveillance.extensions import db
from surveillance.feeds import urls
from surveillance.models import OutboxMessage, Patient, PlanEvent
from surveillance.reminders import outbox
from surveillance.services import access, contacts, feed_tokens
from surveillance.services import stages as stage_service


def _patient_url(patient: Patient, anchor: str) -> str:
    return url_for("coordinator.patient", patient_id=patient.id, _anchor=anchor)


# --- Care stage -------------------------------------------------------------------------------


@bp.post("/patients/<int:patient_id>/stage")
def change_stage(patient_id: int) -> Any:
    patient = access.get_patient(me(), patient_id)
    form = stage_form_for(patient, StageForm())
    if not form.validate():
        return _patient_page(patient, stage_form=form, status=422)
    before = patient.stage
    had_plan = patient.active_plan is not None

    def moved(_: Any) -> RedirectWith:
        message = f"Moved from {stages.label(before)} to {stages.label(patient.stage)}."
        if had_plan and patient.active_plan is None:
            message += " Surveillance ended: upcoming visits and the biopsy were cancelled."
        return RedirectWith(_patient_url(patient, "care-stage"), message)

    return commit_or_roll_back(
        lambda: stage_service.change_stage(
            patient, form.stage.data or "", form.reason.data or "", me()
        ),
        form=form,
        failed=lambda exc: patient_page_again(patient, exc, stage_form=form),
        done=moved,
    )


# --- Contact attempts -------------------------------------------------------------------------


@bp.post("/patients/<int:patient_id>/contact-attempts")
def log_contact_attempt(patient_id: int) -> Any:
    patient = access.get_patient(me(), patient_id)
    events = list(patient.latest_plan.events) if patient.latest_plan else []
    form = contact_form_for(events, ContactAttemptForm())
    if not form.validate():
        return _patient_page(patient, contact_form=form, status=422)
    event = next((e for e in events if str(e.id) == form.event.data), None)

    def log() -> PlanEvent:
        if event is None:
            raise ValidationFailed({"event": "Choose one of this patient's open events."})
        contacts.log_attempt(
            event, me(), form.result.data or "", form.note.data, form.call_again_on.data
        )
        return event

    def logged(about: PlanEvent) -> RedirectWith:
        message = f"Logged a contact attempt about {event_name(about).lower()}: "
        message += f"{contact_result(form.result.data or '')}."
        if about.call_again_on is not None:
            message += f" It stays off the worklists until {format_day(about.call_again_on)}."
        return RedirectWith(_patient_url(patient, "contact-attempts"), message)

    return commit_or_roll_back(
        log,
        form=form,
        failed=lambda exc: patient_page_again(patient, exc, contact_form=form),
        done=logged,
    )


# --- Failed reminders (Today's "failed-reminders" worklist) -----------------------------------


def _failed_message(message_id: int) -> OutboxMessage:
    message = db.session.get(OutboxMessage, message_id)
    if message is None or not access.can_see_clinic(me(), message.clinic_id):
        raise NotFound("Reminder not found.")
    return message


def _failed_list_url() -> str:
    clinic = request.form.get("clinic", type=int)
    return url_for("coordinator.today", list="failed-reminders", clinic=clinic)


def _who(message: OutboxMessage) -> str:
    if message.patient is not None:
        return f"{message.patient.given_name} {message.patient.family_name}"
    return "a coordinator"


@bp.post("/reminders/<int:message_id>/dismiss")
def dismiss_reminder(message_id: int) -> Any:
    message = _failed_message(message_id)
    if not ActionForm().validate():
        return redirect(_failed_list_url())
    return commit_or_roll_back(
        lambda: outbox.dismiss(message, clock.utcnow()),
        failed=lambda exc: RedirectWith(
            _failed_list_url(), f"Not dismissed: {exc.message}", "error"
        ),
        done=lambda _: RedirectWith(
            _failed_list_url(),
            f"Dismissed the failed “{rule_label(message.rule)}” email to {_who(message)}.",
        ),
    )


@bp.post("/reminders/<int:message_id>/retry")
def retry_reminder(message_id: int) -> Any:
    message = _failed_message(message_id)
    if not ActionForm().validate():
        return redirect(_failed_list_url())
    return commit_or_roll_back(
        lambda: outbox.retry(message, clock.utcnow()),
        failed=lambda exc: RedirectWith(_failed_list_url(), f"Not retried: {exc.message}", "error"),
        done=lambda _: RedirectWith(
            _failed_list_url(),
            f"The “{rule_label(message.rule)}” email to {_who(message)} is queued again; "
            "it goes out within a minute or two.",
        ),
    )


# --- The coordinator's own clinic calendar feed ----------------------------------------------


@bp.get("/calendar-feed")
def my_calendar_feed() -> Any:
    user = me()
    feed_url = urls.clinic_feed_url(user)
    return render_template(
        "coordinator/calendar_feed.html",
        feed_url=feed_url,
        webcal_url=urls.webcal(feed_url),
        form=ActionForm(formdata=None),
    )


@bp.post("/calendar-feed")
def rotate_my_calendar_feed() -> Any:
    user = me()
    if ActionForm().validate():
        had_feed = urls.clinic_feed_url(user) is not None
        feed_tokens.rotate_user_token(user)
        db.session.commit()
        flash(
            "A new calendar feed address was created; the old one no longer works."
            if had_feed
            else "Your calendar feed address was created.",
            "success",
        )
    return redirect(url_for("coordinator.my_calendar_feed"))
