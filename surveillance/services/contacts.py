"""The contact-attempt log: who tried to reach a patient about an event, how it went, and
when to try again ("call again on" keeps the event off the worklists until that day)."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from surveillance import clock
from surveillance.errors import Conflict, ValidationFailed
from surveillance.extensions import db
from surveillance.models import ContactAttempt, ContactResult, EventStatus, PlanEvent, User

MAX_SNOOZE = timedelta(days=365)
MAX_NOTE_LENGTH = 2000


def log_attempt(
    event: PlanEvent,
    user: User | None,
    result: str,
    note: str | None = None,
    call_again_on: date | None = None,
) -> ContactAttempt:
    """Record an attempt; its "call again on" (or its absence) becomes the event's snooze."""
    today = clock.today_in(event.patient.clinic.timezone)
    errors = {}
    if result not in set(ContactResult):
        errors["result"] = "Must be called, left_message, no_answer or booked."
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE_LENGTH:
        errors["note"] = f"At most {MAX_NOTE_LENGTH} characters."
    if call_again_on is not None:
        if call_again_on <= today:
            errors["call_again_on"] = "Pick a day after today."
        elif call_again_on > today + MAX_SNOOZE:
            errors["call_again_on"] = "Pick a day within a year."
    if errors:
        raise ValidationFailed(errors)
    if not can_log_attempt(event):
        raise Conflict(f"A {event.status} {event.kind} needs no more calls.")
    attempt = ContactAttempt(
        event=event,
        user=user,
        attempted_at=clock.utcnow(),
        result=result,
        note=note,
        call_again_on=call_again_on,
    )
    db.session.add(attempt)
    # The latest attempt decides: a new attempt without a date puts the event back on the lists.
    event.call_again_on = call_again_on
    db.session.flush()
    return attempt


def attempts_for(event: PlanEvent) -> list[ContactAttempt]:
    """Newest first."""
    return list(
        db.session.scalars(
            select(ContactAttempt)
            .where(ContactAttempt.event_id == event.id)
            .order_by(ContactAttempt.attempted_at.desc(), ContactAttempt.id.desc())
        )
    )


def attempts_for_events(event_ids: list[int]) -> list[ContactAttempt]:
    """Every attempt about these events (e.g. one patient's plan), newest first, one query."""
    if not event_ids:
        return []
    return list(
        db.session.scalars(
            select(ContactAttempt)
            .where(ContactAttempt.event_id.in_(event_ids))
            .options(joinedload(ContactAttempt.user), joinedload(ContactAttempt.event))
            .order_by(ContactAttempt.attempted_at.desc(), ContactAttempt.id.desc())
        )
    )


def can_log_attempt(event: PlanEvent) -> bool:
    """Whether ``log_attempt`` would accept an attempt about ``event`` (it is still open)."""
    return event.status not in (EventStatus.COMPLETED, EventStatus.CANCELLED)
