"""Actions on one plan event: book, reschedule, complete, mark missed, cancel.

Each action has its own small page (GET shows the form, POST does it), so it works without
JavaScript, with the keyboard, and an error shows the form again with what was typed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import redirect, render_template, request, url_for

from surveillance.coordinator import bp
from surveillance.coordinator.filters import event_name, format_day, local_time
from surveillance.coordinator.forms import ActionForm, BookingForm, CancelForm, CompletionForm
from surveillance.coordinator.support import RedirectWith, commit_or_roll_back, me, today_for
from surveillance.errors import DomainError
from surveillance.extensions import db
from surveillance.models import PlanEvent
from surveillance.services import access, plans


def _event_url(event: PlanEvent) -> str:
    return url_for("coordinator.patient", patient_id=event.patient_id, _anchor=f"event-{event.id}")


def _back(event: PlanEvent) -> Any:
    return redirect(_event_url(event))


def _page(event: PlanEvent, form: Any, action: str, title: str, status: int = 200) -> Any:
    return (
        render_template(
            "coordinator/event_action.html",
            event=event,
            patient=event.patient,
            form=form,
            action=action,
            title=title,
        ),
        status,
    )


def _again(event: PlanEvent, form: Any, action: str, title: str, exc: DomainError) -> Any:
    """The action's page again, after a failed attempt, with the event as stored."""
    db.session.refresh(event)
    return _page(event, form, action, title, exc.status_code)


@bp.route("/events/<int:event_id>/book", methods=["GET", "POST"], endpoint="book")
@bp.route("/events/<int:event_id>/reschedule", methods=["GET", "POST"], endpoint="reschedule")
def book_or_reschedule(event_id: int) -> Any:
    event = access.get_event(me(), event_id)
    action = request.endpoint.rsplit(".", 1)[-1] if request.endpoint else "book"
    title = f"{'Book' if action == 'book' else 'Reschedule'} {event_name(event).lower()}"
    form = BookingForm()
    if request.method == "GET":
        _prefill_booking(form, event)
        return _page(event, form, action, title)
    if not form.validate():
        return _page(event, form, action, title, 422)
    starts_at = datetime.combine(form.day.data, form.start_time.data)
    do = plans.book if action == "book" else plans.reschedule
    verb = "Booked" if action == "book" else "Rescheduled"
    return commit_or_roll_back(
        lambda: do(event, starts_at, form.duration_minutes.data, form.location.data),
        form=form,
        failed=lambda exc: _again(event, form, action, title, exc),
        done=lambda _: RedirectWith(
            _event_url(event),
            f"{verb} {event_name(event).lower()}: {local_time(event)} at {event.location}.",
        ),
    )


def _prefill_booking(form: BookingForm, event: PlanEvent) -> None:
    zone = ZoneInfo(event.patient.clinic.timezone)
    if event.starts_at is not None and event.ends_at is not None:
        local = event.starts_at.astimezone(zone)
        form.day.data, form.start_time.data = local.date(), local.time().replace(tzinfo=None)
        form.duration_minutes.data = int((event.ends_at - event.starts_at).total_seconds() // 60)
        form.location.data = event.location
    else:
        form.day.data = max(event.due_on, today_for(me(), event.patient.clinic))


@bp.route("/events/<int:event_id>/complete", methods=["GET", "POST"])
def complete(event_id: int) -> Any:
    event = access.get_event(me(), event_id)
    title = f"Record {event_name(event).lower()} as completed"
    form = CompletionForm()
    if request.method == "GET":
        today = today_for(me(), event.patient.clinic)
        form.completed_on.data = min(event.due_on, today)
        if event.starts_at is not None:
            zone = ZoneInfo(event.patient.clinic.timezone)
            form.completed_on.data = min(event.starts_at.astimezone(zone).date(), today)
        return _page(event, form, "complete", title)
    if not form.validate():
        return _page(event, form, "complete", title, 422)
    was_active = event.plan.status == "active"

    def completed(_: None) -> RedirectWith:
        message = (
            f"Recorded {event_name(event).lower()} as completed on "
            f"{format_day(event.completed_on)} ({event.outcome})."
        )
        if was_active and event.plan.status == "ended":
            message += " Progression ends surveillance: upcoming events were cancelled."
        return RedirectWith(_event_url(event), message)

    return commit_or_roll_back(
        lambda: plans.complete(event, form.completed_on.data, form.outcome.data),
        form=form,
        failed=lambda exc: _again(event, form, "complete", title, exc),
        done=completed,
    )


@bp.route("/events/<int:event_id>/cancel", methods=["GET", "POST"])
def cancel(event_id: int) -> Any:
    event = access.get_event(me(), event_id)
    title = f"Cancel {event_name(event).lower()}"
    form = CancelForm()
    if request.method == "GET":
        return _page(event, form, "cancel", title)
    if not form.validate():
        return _page(event, form, "cancel", title, 422)
    return commit_or_roll_back(
        lambda: plans.cancel(event, form.reason.data),
        form=form,
        failed=lambda exc: _again(event, form, "cancel", title, exc),
        done=lambda _: RedirectWith(
            _event_url(event),
            f"Cancelled {event_name(event).lower()} (due {format_day(event.due_on)}).",
        ),
    )


@bp.post("/events/<int:event_id>/missed")
def missed(event_id: int) -> Any:
    event = access.get_event(me(), event_id)
    if not ActionForm().validate():
        return _back(event)
    return commit_or_roll_back(
        lambda: plans.mark_missed(event),
        failed=lambda exc: RedirectWith(
            _event_url(event), f"Not marked missed: {exc.message}", "error"
        ),
        done=lambda _: RedirectWith(
            _event_url(event),
            f"Marked {event_name(event).lower()} as missed; it is on the Missed worklist "
            "until it is rebooked, completed or cancelled.",
        ),
    )
