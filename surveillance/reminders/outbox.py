"""The outbox: queueing due reminders (idempotently, in set-based batches) and withdrawing
the ones an event change made wrong.

Queueing is stateless: every run asks the rules which reminders are due *now* for the events
that could have one, and inserts them with ``ON CONFLICT DO NOTHING`` on a unique
``dedupe_key``, so running it twice, or in two processes at once, queues each reminder once.
A reminder withdrawn earlier comes back if the rules want it again (a visit moved away and back).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Row, and_, not_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from surveillance.errors import Conflict
from surveillance.extensions import db
from surveillance.models import (
    EventStatus,
    OutboxMessage,
    OutboxStatus,
    Patient,
    PlanEvent,
    PlanStatus,
    Role,
    SurveillancePlan,
    User,
    user_clinics,
)
from surveillance.planning import VISIT_WINDOW_AFTER, VISIT_WINDOW_BEFORE
from surveillance.reminders import settings
from surveillance.reminders.rules import (
    Audience,
    EventSnapshot,
    Reminder,
    ReminderPolicy,
    Rule,
    due_digests,
    due_reminders,
    reminders_for,
)

EVENT_BATCH = 1000
INSERT_CHUNK = 500  # rows per INSERT: well under SQLite's bound-parameter limit


@dataclass
class QueueResult:
    events_scanned: int = 0
    queued: int = 0
    digests: int = 0

    def __str__(self) -> str:
        return (
            f"scanned {self.events_scanned} events, queued {self.queued} reminders "
            f"and {self.digests} digests"
        )


@dataclass(frozen=True)
class Recipient:
    user_id: int
    email: str


def snapshot(event: PlanEvent) -> EventSnapshot:
    return EventSnapshot(
        kind=event.kind,
        status=event.status,
        due_on=event.due_on,
        window_start=event.window_start,
        window_end=event.window_end,
        timezone=event.patient.clinic.timezone,
        plan_active=event.plan.status == PlanStatus.ACTIVE,
        starts_at=event.starts_at,
    )


def _matches(reminders: Iterable[Reminder]) -> Any:
    """SQL condition: the outbox row is one of these reminders."""
    return or_(
        *(
            and_(
                OutboxMessage.rule == r.rule.value,
                OutboxMessage.audience == r.audience.value,
                OutboxMessage.due_at == r.due_at,
            )
            for r in reminders
        )
    )


def withdraw_stale(event: PlanEvent, now: datetime) -> None:
    """Withdraw the event's queued reminders that its current state no longer calls for.

    Called (through ``services.plans.touch``) in the same transaction as every change to an
    event, so a moved, completed, missed or cancelled event's reminders stop at once. The
    re-timed ones are queued by the next queue run when they fall due.
    """
    if event.id is None:
        return
    wanted = reminders_for(snapshot(event), settings.policy_for(event.patient.clinic_id))
    stale = and_(OutboxMessage.event_id == event.id, OutboxMessage.status == OutboxStatus.QUEUED)
    if wanted:
        stale = and_(stale, not_(_matches(wanted)))
    db.session.execute(
        update(OutboxMessage)
        .where(stale)
        .values(
            status=OutboxStatus.WITHDRAWN,
            last_error="Withdrawn: the event changed.",
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


# --- Queueing ---------------------------------------------------------------------------------


def coordinators_by_clinic() -> dict[int, list[Recipient]]:
    rows = db.session.execute(
        select(user_clinics.c.clinic_id, User.id, User.email)
        .join(User, User.id == user_clinics.c.user_id)
        .where(User.role == Role.COORDINATOR, User.is_active.is_(True))
        .order_by(User.id)
    )
    found: dict[int, list[Recipient]] = defaultdict(list)
    for clinic_id, user_id, email in rows:
        found[clinic_id].append(Recipient(user_id, email))
    return found


def new_message_id() -> str:
    domain = current_app.config.get("CALENDAR_UID_DOMAIN", "watchful.example.org")
    return f"<reminder-{uuid.uuid4().hex}@{domain}>"


def dedupe_key(rule: str, audience: str, subject: str, recipient: str, due_at: datetime) -> str:
    return f"{rule}:{audience}:{subject}:{recipient}:{due_at:%Y%m%dT%H%MZ}"


def _row(
    reminder: Reminder,
    *,
    key: str,
    clinic_id: int,
    recipient: str,
    now: datetime,
    event_id: int | None = None,
    patient_id: int | None = None,
    user_id: int | None = None,
) -> dict[str, Any]:
    return {
        "dedupe_key": key,
        "rule": reminder.rule.value,
        "audience": reminder.audience.value,
        "clinic_id": clinic_id,
        "event_id": event_id,
        "patient_id": patient_id,
        "user_id": user_id,
        "recipient": recipient,
        "due_at": reminder.due_at,
        "expires_at": reminder.expires_at,
        "status": OutboxStatus.QUEUED.value,
        "attempts": 0,
        "next_attempt_at": reminder.due_at,
        "message_id": new_message_id(),
        "created_at": now,
        "updated_at": now,
    }


def insert_rows(rows: Sequence[dict[str, Any]]) -> int:
    """Insert outbox rows, skipping the ones already there; a withdrawn row comes back to the
    queue if it is wanted again. Returns how many rows were added or brought back."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    added = 0
    for start in range(0, len(rows), INSERT_CHUNK):
        statement = insert(OutboxMessage).values(list(rows[start : start + INSERT_CHUNK]))
        statement = statement.on_conflict_do_update(
            index_elements=[OutboxMessage.dedupe_key],
            set_={
                "status": OutboxStatus.QUEUED.value,
                "attempts": 0,
                "next_attempt_at": statement.excluded.next_attempt_at,
                "expires_at": statement.excluded.expires_at,
                "recipient": statement.excluded.recipient,
                "lease_until": None,
                "claimed_by": None,
                "last_error": None,
                "updated_at": statement.excluded.updated_at,
            },
            where=OutboxMessage.status == OutboxStatus.WITHDRAWN.value,
        ).returning(OutboxMessage.id)
        added += len(db.session.execute(statement).all())
    return added


def _candidates(now: datetime, policies: dict[int, tuple[ReminderPolicy, str]]) -> Any:
    """Events that could have a reminder due now: a cheap, indexed, generous pre-filter; the
    rules decide exactly."""
    today = now.date()
    furthest_lead = max((p.book_window_lead_days for p, _ in policies.values()), default=0)
    furthest_heads_up = max((p.biopsy_heads_up_days for p, _ in policies.values()), default=0)
    furthest_booked = max(
        (max(p.booked_reminder_days, default=0) for p, _ in policies.values()), default=0
    )
    # A planned event's reminders fall between (window opening - lead) or (due - heads-up)
    # and the day after its window closes; ±2 days cover every clinic's time zone.
    window_span = (VISIT_WINDOW_BEFORE + VISIT_WINDOW_AFTER).days
    planned = and_(
        PlanEvent.status == EventStatus.PLANNED,
        PlanEvent.due_on
        <= today + timedelta(days=max(window_span + furthest_lead, furthest_heads_up) + 2),
        PlanEvent.window_end >= today - timedelta(days=2),
    )
    booked = and_(
        PlanEvent.status == EventStatus.BOOKED,
        PlanEvent.starts_at > now,
        PlanEvent.starts_at <= now + timedelta(days=furthest_booked + 1),
    )
    return or_(planned, booked)


def _event_rows(now: datetime, after_id: int, limit: int, condition: Any) -> Sequence[Row[Any]]:
    return db.session.execute(
        select(
            PlanEvent.id,
            PlanEvent.kind,
            PlanEvent.status,
            PlanEvent.due_on,
            PlanEvent.window_start,
            PlanEvent.window_end,
            PlanEvent.starts_at,
            Patient.id.label("patient_id"),
            Patient.clinic_id,
            Patient.email,
            Patient.email_opt_out,
        )
        .join(SurveillancePlan, SurveillancePlan.id == PlanEvent.plan_id)
        .join(Patient, Patient.id == PlanEvent.patient_id)
        .where(SurveillancePlan.status == PlanStatus.ACTIVE, condition, PlanEvent.id > after_id)
        .order_by(PlanEvent.id)
        .limit(limit)
    ).all()


def _rows_for_event(
    row: Row[Any],
    now: datetime,
    policies: dict[int, tuple[ReminderPolicy, str]],
    coordinators: dict[int, list[Recipient]],
) -> list[dict[str, Any]]:
    policy, timezone = policies[row.clinic_id]
    event = EventSnapshot(
        kind=row.kind,
        status=row.status,
        due_on=row.due_on,
        window_start=row.window_start,
        window_end=row.window_end,
        timezone=timezone,
        plan_active=True,
        starts_at=row.starts_at,
    )
    rows = []
    common = {"clinic_id": row.clinic_id, "event_id": row.id, "patient_id": row.patient_id}
    for reminder in due_reminders(event, policy, now):
        subject = f"e{row.id}"
        if reminder.audience == Audience.PATIENT:
            if row.email and not row.email_opt_out:
                key = dedupe_key(reminder.rule, reminder.audience, subject, "p", reminder.due_at)
                rows.append(_row(reminder, key=key, recipient=row.email, now=now, **common))
            continue
        for person in coordinators.get(row.clinic_id, []):
            key = dedupe_key(
                reminder.rule, reminder.audience, subject, f"u{person.user_id}", reminder.due_at
            )
            rows.append(
                _row(
                    reminder,
                    key=key,
                    recipient=person.email,
                    now=now,
                    user_id=person.user_id,
                    **common,
                )
            )
    return rows


def queue_event_reminders(
    now: datetime, batch_size: int = EVENT_BATCH, event_ids: Iterable[int] | None = None
) -> QueueResult:
    """Queue every event reminder due at ``now``; commits after each batch of events."""
    policies = settings.all_policies()
    coordinators = coordinators_by_clinic()
    condition = _candidates(now, policies)
    if event_ids is not None:
        condition = and_(condition, PlanEvent.id.in_(list(event_ids)))
    result = QueueResult()
    after_id = 0
    while rows := _event_rows(now, after_id, batch_size, condition):
        values = [v for row in rows for v in _rows_for_event(row, now, policies, coordinators)]
        result.events_scanned += len(rows)
        result.queued += insert_rows(values) if values else 0
        db.session.commit()
        after_id = rows[-1].id
    return result


def queue_digests(now: datetime) -> int:
    """Queue each coordinator's daily digest for every clinic where one is due."""
    coordinators = coordinators_by_clinic()
    rows = []
    for clinic_id, (policy, timezone) in settings.all_policies().items():
        for day, digest in due_digests(policy, timezone, now):
            for person in coordinators.get(clinic_id, []):
                key = digest_key(clinic_id, person.user_id, day)
                rows.append(
                    _row(
                        digest,
                        key=key,
                        clinic_id=clinic_id,
                        recipient=person.email,
                        now=now,
                        user_id=person.user_id,
                    )
                )
    added = insert_rows(rows) if rows else 0
    db.session.commit()
    return added


def digest_key(clinic_id: int, user_id: int, day: date) -> str:
    return f"{Rule.DIGEST}:{Audience.COORDINATOR}:c{clinic_id}:u{user_id}:{day.isoformat()}"


def queue_due(now: datetime) -> QueueResult:
    result = queue_event_reminders(now)
    result.digests = queue_digests(now)
    return result


# --- A coordinator deals with a failure -------------------------------------------------------


def dismiss(message: OutboxMessage, now: datetime) -> None:
    """Take a failed message off the worklist (the coordinator reached the person otherwise)."""
    if message.status != OutboxStatus.FAILED:
        raise Conflict(f"Only a failed message can be dismissed; this one is {message.status}.")
    message.dismissed_at = now
    message.updated_at = now
    db.session.flush()


def retry(message: OutboxMessage, now: datetime) -> None:
    """Queue a failed message again, e.g. after the address was corrected."""
    if message.status != OutboxStatus.FAILED:
        raise Conflict(f"Only a failed message can be retried; this one is {message.status}.")
    if now >= message.expires_at:
        raise Conflict("This reminder is out of date: reach the person another way.")
    message.status = OutboxStatus.QUEUED
    message.attempts = 0
    message.next_attempt_at = now
    message.failed_at = message.dismissed_at = None
    message.last_error = None
    message.updated_at = now
    db.session.flush()
