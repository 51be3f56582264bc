"""The outbox: queueing due reminders (idempotently, in set-based batches) and withdrawing
the ones an event change made wrong.

Queueing is stateless: every run asks the rules which reminders are due *now* for the events
that could have one (read through index range scans around today, in batches), skips the ones
already in the outbox, and inserts the rest with ``ON CONFLICT (dedupe_key)``, so running it
twice, or in two processes at once, queues each reminder once. A reminder withdrawn earlier
comes back if the rules want it again (a visit moved away and back).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Row, and_, not_, null, or_, select, union, update
from sqlalchemy.dialects import postgresql, sqlite

from surveillance import planning
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
from surveillance.planning import EventKind
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
INSERT_CHUNK = 500  # rows per execute (SQLAlchemy sends them as multi-row INSERTs)


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
        "created_at": now,
        "updated_at": now,
    }


def insert_rows(rows: Sequence[dict[str, Any]]) -> int:
    """Insert outbox rows, skipping the ones already there; a withdrawn row comes back to the
    queue if it is wanted again. Returns how many rows were added or brought back.

    One statement, executed for many parameter sets: SQLAlchemy compiles it once and sends the
    rows in multi-row batches ("insertmanyvalues")."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(OutboxMessage.__table__)
    statement = statement.on_conflict_do_update(
        index_elements=[OutboxMessage.dedupe_key],
        set_={
            "status": OutboxStatus.QUEUED.value,
            "attempts": 0,
            "next_attempt_at": statement.excluded.next_attempt_at,
            "expires_at": statement.excluded.expires_at,
            "recipient": statement.excluded.recipient,
            # SQL NULLs, not Python None: a None parameter here makes SQLAlchemy send the
            # rows one statement each instead of in multi-row batches.
            "lease_until": null(),
            "claimed_by": null(),
            "last_error": null(),
            "updated_at": statement.excluded.updated_at,
        },
        where=OutboxMessage.__table__.c.status == OutboxStatus.WITHDRAWN.value,
    ).returning(OutboxMessage.__table__.c.id)
    connection = db.session.connection()
    rows = [{**row, "message_id": new_message_id()} for row in rows]
    added = 0
    for start in range(0, len(rows), INSERT_CHUNK):
        added += len(connection.execute(statement, list(rows[start : start + INSERT_CHUNK])).all())
    return added


def _candidates(now: datetime, policies: dict[int, tuple[ReminderPolicy, str]]) -> list[Any]:
    """Conditions for the events that could have a reminder due now: index range scans a
    little wider than the rules (±1 day covers every clinic's time zone); the rules then
    decide exactly. Each has a bounded ``due_on`` or ``starts_at`` range so that it reads only
    the events around today, however many there are."""
    today = now.date()
    furthest_lead = max((p.book_window_lead_days for p, _ in policies.values()), default=0)
    furthest_heads_up = max((p.biopsy_heads_up_days for p, _ in policies.values()), default=0)
    furthest_booked = max(
        (max(p.booked_reminder_days, default=0) for p, _ in policies.values()), default=0
    )
    visit_span = (planning.VISIT_WINDOW_BEFORE + planning.VISIT_WINDOW_AFTER).days
    biopsy_span = (planning.BIOPSY_WINDOW_BEFORE + planning.BIOPSY_WINDOW_AFTER).days
    day = timedelta(days=1)
    # "Time to book": from (window opens - lead) until the due date.
    visit = and_(
        PlanEvent.status == EventStatus.PLANNED,
        PlanEvent.due_on.between(today - day, today + (furthest_lead + visit_span + 1) * day),
        PlanEvent.kind == EventKind.VISIT,
        PlanEvent.window_start <= today + (furthest_lead + 1) * day,
    )
    # Biopsy: from (due - heads-up) until the day after its window closes.
    biopsy = and_(
        PlanEvent.status == EventStatus.PLANNED,
        PlanEvent.due_on.between(
            today - (biopsy_span + 1) * day, today + (furthest_heads_up + 1) * day
        ),
        PlanEvent.kind == EventKind.BIOPSY,
        PlanEvent.window_end >= today - day,
    )
    # Booked: from (start - furthest reminder) until the start.
    booked = and_(
        PlanEvent.status == EventStatus.BOOKED,
        PlanEvent.starts_at > now,
        PlanEvent.starts_at <= now + (furthest_booked + 1) * day,
    )
    return [visit, biopsy, booked]


def _candidate_ids(now: datetime, policies: dict[int, tuple[ReminderPolicy, str]]) -> list[int]:
    parts = [select(PlanEvent.id).where(condition) for condition in _candidates(now, policies)]
    return sorted(db.session.scalars(union(*parts)))


def _not_yet_queued(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the rows already in the outbox (unless withdrawn, which may come back), so a
    repeated sweep costs one lookup per batch instead of one insert per reminder."""
    if not rows:
        return rows
    present = set(
        db.session.scalars(
            select(OutboxMessage.dedupe_key).where(
                OutboxMessage.dedupe_key.in_([row["dedupe_key"] for row in rows]),
                OutboxMessage.status != OutboxStatus.WITHDRAWN,
            )
        )
    )
    return [row for row in rows if row["dedupe_key"] not in present]


def _event_rows(ids: Sequence[int]) -> Sequence[Row[Any]]:
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
        .where(PlanEvent.id.in_(list(ids)), SurveillancePlan.status == PlanStatus.ACTIVE)
        .order_by(PlanEvent.id)
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


def queue_event_reminders(now: datetime, batch_size: int = EVENT_BATCH) -> QueueResult:
    """Queue every event reminder due at ``now``; commits after each batch of events."""
    policies = settings.all_policies()
    coordinators = coordinators_by_clinic()
    ids = _candidate_ids(now, policies)
    result = QueueResult()
    for start in range(0, len(ids), batch_size):
        rows = _event_rows(ids[start : start + batch_size])
        values = [v for row in rows for v in _rows_for_event(row, now, policies, coordinators)]
        values = _not_yet_queued(values)
        result.events_scanned += len(rows)
        result.queued += insert_rows(values) if values else 0
        db.session.commit()
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
