"""What the patient screen shows about care stage, contact attempts and the calendar link.

Kept apart from the views so the patient page and the actions that re-show it with errors
build the same context. Nothing here decides anything: the services and the stage table do.
"""

from __future__ import annotations

from typing import Any

from flask import request

from surveillance import education, stages
from surveillance.coordinator.filters import event_name
from surveillance.coordinator.forms import ContactAttemptForm, StageForm, options
from surveillance.feeds import urls
from surveillance.models import Patient, PlanEvent
from surveillance.services import contacts


def stage_form_for(patient: Patient, form: StageForm | None = None) -> StageForm:
    form = form or StageForm(formdata=None)
    allowed = [(stage.value, stages.label(stage)) for stage in stages.allowed_next(patient.stage)]
    form.stage.choices = options([("", "Choose…"), *allowed])
    return form


def stage_context(patient: Patient, form: StageForm | None) -> dict[str, Any]:
    return {
        "stage_label": stages.label(patient.stage),
        "stage_article": education.for_stage(patient.stage),
        "stage_history": list(reversed(patient.stage_history)),
        "stage_form": stage_form_for(patient, form),
        "open_stage_form": form is not None,
    }


def loggable_events(events: list[PlanEvent]) -> list[PlanEvent]:
    return [e for e in events if contacts.can_log_attempt(e)]


def contact_form_for(
    events: list[PlanEvent], form: ContactAttemptForm | None = None
) -> ContactAttemptForm:
    """The form with the open events to choose from; ``?log_for=<event id>`` (the events
    table's "Log call" link) picks one, else the first open event."""
    open_events = loggable_events(events)
    if form is None:
        form = ContactAttemptForm(formdata=None)
        wanted = request.args.get("log_for", "")
        ids = {str(e.id) for e in open_events}
        form.event.data = (
            wanted if wanted in ids else (str(open_events[0].id) if open_events else "")
        )
    form.event.choices = options(
        (e.id, f"{event_name(e)}, due {e.due_on:%a %-d %b %Y} ({e.status})") for e in open_events
    )
    return form


def contact_context(
    patient: Patient, events: list[PlanEvent], form: ContactAttemptForm | None
) -> dict[str, Any]:
    return {
        "contact_attempts": contacts.attempts_for_events([e.id for e in events]),
        "contact_form": contact_form_for(events, form),
        "can_log_contact": bool(loggable_events(events)),
        "loggable_event_ids": {e.id for e in loggable_events(events)},
        "open_contact_form": form is not None,
    }


def calendar_context(patient: Patient) -> dict[str, Any]:
    return {
        "feed_url": urls.patient_feed_url(patient),
        "webcal_url": urls.patient_webcal_url(patient),
        "page_url": urls.patient_page_url(patient),
    }
