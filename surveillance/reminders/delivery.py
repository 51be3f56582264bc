"""Delivering queued messages: claim, check, render, send, record.

Guarantee: **at least once**, with a stable Message-ID. A row is claimed atomically (``FOR
UPDATE SKIP LOCKED`` on PostgreSQL, a ``BEGIN IMMEDIATE`` transaction on SQLite) with a lease,
so two scheduler processes never work on the same row at the same time. If a process dies
after the SMTP server accepted a message but before the row says ``sent``, the lease runs out
and the message is sent again, with the same Message-ID: a late duplicate of a reminder is a
nuisance, a lost one can be a missed appointment. (At-most-once would mean marking rows
``sent`` before sending and losing every message a crash interrupts.)

Just before sending, the message is checked against the event as it is now: the rules must
still want exactly this reminder (same rule, same due time, so a moved visit's old reminder is
withdrawn) and it must not have expired. On PostgreSQL the event row is held with ``FOR SHARE``
while the message goes out, so a reschedule committed at that moment waits for the send
rather than racing it.

Messages go in batches, and one thread sends a batch while the main thread prepares the next
and records the one before (see "The run" below); the sending never runs more than one
batch's worth of messages ahead of the recording, so a crash leaves at most that many sent
and not recorded.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.message import Message
from queue import Queue
from typing import Any, cast
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import joinedload

from surveillance import clock
from surveillance.extensions import db
from surveillance.models import OutboxMessage, OutboxStatus, PlanEvent, Role, User
from surveillance.reminders import messages, settings
from surveillance.reminders.outbox import snapshot
from surveillance.reminders.rules import Audience, ReminderPolicy, Rule, reminders_for
from surveillance.reminders.sending import SendingProcess
from surveillance.reminders.transport import (
    DeliveryError,
    PermanentFailure,
    SmtpTransport,
    TemporaryFailure,
    Transport,
    WireTransport,
    ascii_envelope,
    from_config,
)
from surveillance.services import worklists

log = logging.getLogger(__name__)

CLAIM_BATCH = 50
DIGEST_ITEMS = 10


@dataclass
class DeliveryResult:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    withdrawn: int = 0
    lost_lease: int = 0
    # Seconds the main thread waited, with the next batch handed over, for the batch before
    # to be sent and recorded: how far the mail server (not the app) set the pace.
    waited_for_sending: float = 0.0

    def add(self, other: DeliveryResult) -> None:
        for name in ("sent", "retrying", "failed", "withdrawn", "lost_lease"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def __str__(self) -> str:
        return (
            f"sent {self.sent}, retrying {self.retrying}, failed {self.failed}, "
            f"withdrawn {self.withdrawn}"
        )


@dataclass(frozen=True)
class Limits:
    max_attempts: int
    retry_base: timedelta
    retry_max: timedelta
    lease: timedelta

    @classmethod
    def from_config(cls) -> Limits:
        config = current_app.config
        return cls(
            max_attempts=int(config.get("REMINDER_MAX_ATTEMPTS", 10)),
            retry_base=timedelta(seconds=int(config.get("REMINDER_RETRY_BASE_SECONDS", 60))),
            retry_max=timedelta(seconds=int(config.get("REMINDER_RETRY_MAX_SECONDS", 7200))),
            lease=timedelta(seconds=int(config.get("REMINDER_LEASE_SECONDS", 600))),
        )

    def backoff(self, attempts: int) -> timedelta:
        """Wait before the next attempt: doubling from ``retry_base``, at most ``retry_max``."""
        return min(self.retry_base * (2 ** max(attempts - 1, 0)), self.retry_max)


def worker_name() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# --- Claiming ---------------------------------------------------------------------------------


def _abandoned(now: datetime, limit: int) -> Any:
    """Claims whose lease ran out (their process died or hung mid-send), oldest first."""
    return (
        select(OutboxMessage.id)
        .where(OutboxMessage.status == OutboxStatus.SENDING, OutboxMessage.lease_until < now)
        .order_by(OutboxMessage.lease_until, OutboxMessage.id)
        .limit(limit)
    )


def _due(now: datetime, limit: int) -> Any:
    """Queued rows whose time has come, in the order they were due. Read in the order of
    the (status, next_attempt_at, id) index, so a claim stops after ``limit`` rows however
    long the queue (one ordered by two ``OR``-ed conditions read and sorted every queued row:
    a claim per 50 messages made a backlog quadratic)."""
    return (
        select(OutboxMessage.id)
        .where(OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )


def _claim_values(now: datetime, worker: str, lease: timedelta) -> dict[str, Any]:
    return {
        "status": OutboxStatus.SENDING,
        "claimed_by": worker,
        "lease_until": now + lease,
        "attempts": OutboxMessage.attempts + 1,
        "updated_at": now,
    }


def claim(now: datetime, worker: str, limit: int, lease: timedelta) -> list[int]:
    """Atomically take up to ``limit`` rows for ``worker``: abandoned claims first, then due
    rows. Returns their ids."""
    if db.session.get_bind().dialect.name == "postgresql":
        ids = _claim_postgresql(now, worker, limit, lease)
    else:
        ids = _claim_sqlite(now, worker, limit, lease)
    return sorted(ids)


def _claim_postgresql(now: datetime, worker: str, limit: int, lease: timedelta) -> list[int]:
    ids: list[int] = []
    for candidates in (_abandoned, _due):
        if len(ids) == limit:
            break
        # Rows another process holds are skipped, not waited for, so no two workers share a
        # row. The pick is a MATERIALIZED CTE: run once. (As an ``IN (subquery)`` PostgreSQL
        # may re-run it while updating and claim more than ``limit`` rows.)
        picked = (
            candidates(now, limit - len(ids))
            .with_for_update(skip_locked=True)
            .cte("picked")
            .prefix_with("MATERIALIZED")
        )
        statement = (
            update(OutboxMessage)
            .where(OutboxMessage.id == picked.c.id)
            .values(**_claim_values(now, worker, lease))
            .returning(OutboxMessage.id)
            .execution_options(synchronize_session=False)
        )
        ids += db.session.execute(statement).scalars()
    db.session.commit()
    return ids


def _claim_sqlite(now: datetime, worker: str, limit: int, lease: timedelta) -> list[int]:
    db.session.commit()
    # Take the write lock before reading, so the rows read are the rows updated and a second
    # process waits for this claim to commit (busy_timeout) and then sees it.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            ids = list(conn.execute(_abandoned(now, limit)).scalars())
            if len(ids) < limit:
                ids += conn.execute(_due(now, limit - len(ids))).scalars()
            if ids:
                conn.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(ids))
                    .values(**_claim_values(now, worker, lease))
                    .execution_options(synchronize_session=False)
                )
        except BaseException:
            conn.exec_driver_sql("ROLLBACK")
            raise
        conn.exec_driver_sql("COMMIT")
    return ids


def fail_exhausted(now: datetime, max_attempts: int) -> int:
    """Claims abandoned after the last attempt (the process died every time) become failures."""
    result = db.session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.SENDING,
            OutboxMessage.lease_until < now,
            OutboxMessage.attempts >= max_attempts,
        )
        .values(
            status=OutboxStatus.FAILED,
            failed_at=now,
            updated_at=now,
            lease_until=None,
            claimed_by=None,
            last_error="No delivery was confirmed after the last attempt.",
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount or 0


# --- Checking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    action: str  # "send", "withdraw" or "expire"
    reason: str = ""
    recipient: str = ""


def _lock_event(event_id: int) -> PlanEvent | None:
    return db.session.scalars(
        select(PlanEvent)
        .where(PlanEvent.id == event_id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    ).one_or_none()


def check(message: OutboxMessage, now: datetime) -> Verdict:
    """Does this message still apply, and to which address does it go?"""
    event = _lock_event(message.event_id) if message.event_id is not None else None
    return verdict(message, event, settings.policy_for(message.clinic_id), now)


def verdict(
    message: OutboxMessage, event: PlanEvent | None, policy: ReminderPolicy, now: datetime
) -> Verdict:
    """``check`` on rows already read (and, on PostgreSQL, the event locked): ``event`` is the
    message's event as it is now, ``None`` if it no longer exists."""
    if message.event_id is not None:
        if event is None:
            return Verdict("withdraw", "Withdrawn: the event no longer exists.")
        wanted = reminders_for(snapshot(event), policy)
        identity = (message.rule, message.audience, message.due_at)
        if not any(r.identity == identity for r in wanted):
            return Verdict("withdraw", "Withdrawn: the event changed.")
    if message.rule == Rule.DIGEST and not policy.digest_enabled:
        return Verdict("withdraw", "Withdrawn: the clinic turned the digest off.")
    if message.audience == Audience.PATIENT:
        patient = message.patient
        if patient is None or not patient.email or patient.email_opt_out:
            return Verdict("withdraw", "Withdrawn: the patient has no email or opted out.")
        recipient = patient.email
    else:
        user = message.user
        if not _is_clinic_coordinator(user, message.clinic_id):
            return Verdict("withdraw", "Withdrawn: the recipient no longer coordinates here.")
        assert user is not None
        recipient = user.email
    if now >= message.expires_at:
        return Verdict("expire", "Not delivered before it stopped being useful.")
    return Verdict("send", recipient=recipient)


def _is_clinic_coordinator(user: User | None, clinic_id: int) -> bool:
    return (
        user is not None
        and user.is_active
        and user.role == Role.COORDINATOR
        and any(c.id == clinic_id for c in user.clinics)
    )


# --- Digest content ---------------------------------------------------------------------------


def _item_label(name: str, item: Any) -> str:
    if name == worklists.FAILED_REMINDERS:
        who = (
            f"patient {messages.initials(item.patient)} ({messages.reference(item.patient)})"
            if item.patient is not None
            else f"coordinator {item.recipient}"
        )
        return f"{item.rule.replace('-', ' ')} to {who}: {item.last_error or 'failed'}"
    patient = item.patient
    kind = messages.KIND_LABELS.get(item.kind, item.kind)
    due = messages.short_date(item.due_on)
    return f"{messages.initials(patient)} ({messages.reference(patient)}), {kind} due {due}"


def digest_context(user: User, clinic_id: int, today: date) -> dict[str, Any]:
    sections = []
    counts = worklists.counts(user, today, clinic_id)
    for name, worklist in worklists.WORKLISTS.items():
        page = worklists.fetch(name, user, today, per_page=DIGEST_ITEMS, clinic_id=clinic_id)
        total = counts[name]
        sections.append(
            {
                "name": name,
                "title": worklist.title,
                "total": total,  # shows as "100+" past the count limit
                # How many more than listed: just "more" when the count stopped at its limit.
                "more": "more" if total.capped else total.value - len(page.items),
                "items": [{"label": _item_label(name, item)} for item in page.items],
            }
        )
    return {"sections": sections}


# --- Sending ----------------------------------------------------------------------------------


def _finish(message_id: int, worker: str, **values: Any) -> bool:
    """Record the outcome, only if this worker still holds the claim."""
    result = db.session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.claimed_by == worker,
            OutboxMessage.status == OutboxStatus.SENDING,
        )
        .values(lease_until=None, claimed_by=None, **values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return bool(result.rowcount)


def deliver_one(
    message_id: int, worker: str, transport: Transport, limits: Limits, result: DeliveryResult
) -> None:
    message = db.session.get(OutboxMessage, message_id, populate_existing=True)
    now = clock.utcnow()
    if (
        message is None
        or message.claimed_by != worker
        or message.status != OutboxStatus.SENDING
        or message.lease_until is None
        or message.lease_until <= now
    ):
        db.session.rollback()
        result.lost_lease += 1
        return
    try:
        verdict = check(message, now)
        if verdict.action == "withdraw":
            _finish(
                message_id,
                worker,
                status=OutboxStatus.WITHDRAWN,
                last_error=verdict.reason,
                updated_at=now,
            )
            result.withdrawn += 1
            return
        if verdict.action == "expire":
            _finish(
                message_id,
                worker,
                status=OutboxStatus.FAILED,
                last_error=verdict.reason,
                failed_at=now,
                updated_at=now,
            )
            result.failed += 1
            return
        today = now.astimezone(ZoneInfo(message.clinic.timezone)).date()
        digest = None
        if message.rule == Rule.DIGEST:
            assert message.user is not None
            digest = digest_context(message.user, message.clinic_id, today)
        rendered = messages.render(message, today, digest)
        email = messages.build_email(message, rendered, verdict.recipient, now)
        sender = str(current_app.config.get("MAIL_DEFAULT_SENDER") or "watchful@localhost")
    except Exception:
        log.exception("Could not prepare outbox message %s", message_id)
        db.session.rollback()
        _retry_or_fail(
            message_id,
            worker,
            message.attempts,
            limits,
            now,
            result,
            "Could not prepare the message.",
        )
        return
    try:
        transport.send(email, sender, verdict.recipient)
    except PermanentFailure as exc:
        db.session.rollback()
        _finish(
            message_id,
            worker,
            status=OutboxStatus.FAILED,
            last_error=exc.reason,
            failed_at=now,
            updated_at=now,
        )
        result.failed += 1
        return
    except TemporaryFailure as exc:
        db.session.rollback()
        _retry_or_fail(message_id, worker, message.attempts, limits, now, result, exc.reason)
        return
    sent_at = clock.utcnow()
    if _finish(
        message_id,
        worker,
        status=OutboxStatus.SENT,
        sent_at=sent_at,
        updated_at=sent_at,
        subject=rendered.subject[:200],
        recipient=verdict.recipient,
        last_error=None,
    ):
        result.sent += 1
    else:
        result.lost_lease += 1
    log.info("Sent outbox message %s (%s)", message_id, message.rule)


def _retry_or_fail(
    message_id: int,
    worker: str,
    attempts: int,
    limits: Limits,
    now: datetime,
    result: DeliveryResult,
    reason: str,
) -> None:
    if attempts >= limits.max_attempts:
        _finish(
            message_id,
            worker,
            status=OutboxStatus.FAILED,
            failed_at=now,
            updated_at=now,
            last_error=f"{reason} Gave up after {attempts} attempts.",
        )
        result.failed += 1
        return
    _finish(
        message_id,
        worker,
        status=OutboxStatus.QUEUED,
        updated_at=now,
        last_error=reason,
        next_attempt_at=now + limits.backoff(attempts),
    )
    result.retrying += 1


# --- Sending a batch -----------------------------------------------------------------------
# The usual case, reminders about events, goes batch by batch: the claimed rows, their events,
# patients, clinics and settings are read in a few queries, each message is checked and
# rendered, the batch is sent, and the outcomes are recorded together in one transaction after
# the batch. A crash before that transaction leaves the batch's rows claimed: their leases run
# out and they go again with the same Message-IDs (at least once, as for a single message).
# On PostgreSQL the batch's events are held ``FOR SHARE`` from before they are read until the
# outcomes are recorded, by a connection of the batch's own (see ``_lock_events``). Digests,
# rare and heavy (they read the worklists), go one by one.


@dataclass
class _Outcome:
    message_id: int
    counter: str  # the DeliveryResult field it counts towards once recorded
    values: dict[str, Any]


def _held(message: OutboxMessage, worker: str, now: datetime) -> bool:
    return (
        message.claimed_by == worker
        and message.status == OutboxStatus.SENDING
        and message.lease_until is not None
        and message.lease_until > now
    )


def _load_messages(ids: list[int]) -> list[OutboxMessage]:
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .options(
                joinedload(OutboxMessage.clinic),
                joinedload(OutboxMessage.patient),
                joinedload(OutboxMessage.user).selectinload(User.clinics),
            )
            .order_by(OutboxMessage.id)
            .execution_options(populate_existing=True)
        ).unique()
    )


def _lock_events(event_ids: list[int]) -> Connection | None:
    """PostgreSQL: hold the events ``FOR SHARE`` on a connection of their own, whose
    transaction stays open until the batch's outcomes are recorded, so that a reschedule
    committed meanwhile waits for the sends. Its own connection, because the session's
    transactions end meanwhile: the read before sending, the next claim, the previous batch's
    recording. Taken before the session reads the events: at read committed (PostgreSQL's
    default, the app's) the session then reads them as they stay until the lock ends. SQLite
    has no row locks: ``None``."""
    if not event_ids or db.session.get_bind().dialect.name != "postgresql":
        return None
    locks = db.engine.connect()
    try:
        locks.execute(
            select(PlanEvent.id)
            .where(PlanEvent.id.in_(event_ids))
            .order_by(PlanEvent.id)
            .with_for_update(read=True)
        )
    except BaseException:
        locks.close()
        raise
    return locks


def _load_events(event_ids: list[int]) -> dict[int, PlanEvent]:
    """The events as they are now, with what the rules and the messages read of them."""
    if not event_ids:
        return {}
    events = db.session.scalars(
        select(PlanEvent)
        .where(PlanEvent.id.in_(event_ids))
        .options(joinedload(PlanEvent.plan))  # patients and clinics: loaded with the messages
        .execution_options(populate_existing=True)
    ).unique()
    return {event.id: event for event in events}


@dataclass
class _Prepared:
    """A message ready to go, detached from the session (nothing here reads the database)."""

    message_id: int
    attempts: int
    recipient: str
    subject: str
    # The email, as the bytes SMTP sends when the run's transport takes them (see
    # ``deliver_due``), else as a ``Message``.
    outgoing: Message | bytes


def _prepare(
    message: OutboxMessage,
    event: PlanEvent | None,
    policy: ReminderPolicy,
    limits: Limits,
    now: datetime,
    wire_sender: str | None = None,
) -> _Prepared | _Outcome:
    """Check and render one message from the loaded rows: what to send, or the outcome.
    With ``wire_sender`` (the envelope sender of a run whose transport takes the bytes SMTP
    sends) the email is made as those bytes, directly: neither this process nor the sending
    process then builds or flattens a ``Message``."""
    try:
        ruling = verdict(message, event, policy, now)
        if ruling.action == "withdraw":
            return _Outcome(
                message.id,
                "withdrawn",
                {"status": OutboxStatus.WITHDRAWN, "last_error": ruling.reason, "updated_at": now},
            )
        if ruling.action == "expire":
            return _failed(message.id, ruling.reason, now)
        today = now.astimezone(ZoneInfo(message.clinic.timezone)).date()
        rendered = messages.render(message, today)
        outgoing: Message | bytes
        if wire_sender is not None and ascii_envelope(wire_sender, ruling.recipient):
            outgoing = messages.email_bytes(message, rendered, ruling.recipient, now)
        else:
            outgoing = messages.build_email(message, rendered, ruling.recipient, now)
    except Exception:
        log.exception("Could not prepare outbox message %s", message.id)
        return _retry_or_fail_outcome(
            message.id, message.attempts, limits, now, "Could not prepare the message."
        )
    return _Prepared(message.id, message.attempts, ruling.recipient, rendered.subject, outgoing)


def _send(
    prepared: _Prepared, sender: str, transport: Transport, limits: Limits, now: datetime
) -> _Outcome:
    try:
        if isinstance(prepared.outgoing, bytes):
            # Made only for a transport that takes them (``deliver_due``), or for the
            # sending process, whose replies stand in for one (``_Replied``).
            cast(WireTransport, transport).send_wire(prepared.outgoing, sender, prepared.recipient)
        else:
            transport.send(prepared.outgoing, sender, prepared.recipient)
    except PermanentFailure as exc:
        return _failed(prepared.message_id, exc.reason, now)
    except TemporaryFailure as exc:
        return _retry_or_fail_outcome(
            prepared.message_id, prepared.attempts, limits, now, exc.reason
        )
    sent_at = clock.utcnow()
    return _Outcome(
        prepared.message_id,
        "sent",
        {
            "status": OutboxStatus.SENT,
            "sent_at": sent_at,
            "updated_at": sent_at,
            "subject": prepared.subject[:200],
            "recipient": prepared.recipient,
            "last_error": None,
        },
    )


def _failed(message_id: int, reason: str, now: datetime) -> _Outcome:
    return _Outcome(
        message_id,
        "failed",
        {"status": OutboxStatus.FAILED, "last_error": reason, "failed_at": now, "updated_at": now},
    )


def _retry_or_fail_outcome(
    message_id: int, attempts: int, limits: Limits, now: datetime, reason: str
) -> _Outcome:
    if attempts >= limits.max_attempts:
        return _failed(message_id, f"{reason} Gave up after {attempts} attempts.", now)
    return _Outcome(
        message_id,
        "retrying",
        {
            "status": OutboxStatus.QUEUED,
            "updated_at": now,
            "last_error": reason,
            "next_attempt_at": now + limits.backoff(attempts),
        },
    )


def _record(outcomes: list[_Outcome], worker: str, result: DeliveryResult) -> None:
    """Outcomes recorded in the session's transaction (the main thread), then committed."""
    _record_on(db.session.connection(), outcomes, worker, result)
    db.session.commit()


def _record_on(
    conn: Connection, outcomes: list[_Outcome], worker: str, result: DeliveryResult
) -> None:
    """One executemany UPDATE per kind of outcome, each row only while this worker still
    holds its claim, on ``conn`` (whose transaction the caller ends)."""
    table = OutboxMessage.__table__
    groups: dict[tuple[str, tuple[str, ...]], list[_Outcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[(outcome.counter, tuple(sorted(outcome.values)))].append(outcome)
    for (counter, columns), members in groups.items():
        statement = (
            update(table)
            .where(
                table.c.id == bindparam("outbox_id"),
                table.c.claimed_by == worker,
                table.c.status == OutboxStatus.SENDING,
            )
            .values(
                lease_until=None,
                claimed_by=None,
                **{name: bindparam(f"new_{name}", type_=table.c[name].type) for name in columns},
            )
        )
        params = [
            {"outbox_id": o.message_id, **{f"new_{k}": v for k, v in o.values.items()}}
            for o in members
        ]
        recorded = conn.execute(statement, params).rowcount
        setattr(result, counter, getattr(result, counter) + recorded)
        result.lost_lease += len(members) - recorded


@dataclass
class _Batch:
    """Claimed rows, checked and rendered: what to send, and what was decided without
    sending. Nothing here reads the database; ``locks`` holds the events (PostgreSQL)."""

    ready: list[_Prepared]
    outcomes: list[_Outcome]  # withdrawn, expired, could not be prepared
    digests: list[int]
    now: datetime
    locks: Connection | None
    # Filled by the sending thread: each chunk's counts once it is sent and recorded, then
    # ``None`` once the whole batch is, or the exception that ended the sending.
    recorded: Queue[DeliveryResult | BaseException | None] = field(default_factory=Queue)

    def release(self) -> None:
        if self.locks is not None:
            self.locks.close()  # rolls back: the events are free again
            self.locks = None


def _prepare_batch(
    ids: list[int],
    worker: str,
    limits: Limits,
    result: DeliveryResult,
    wire_sender: str | None = None,
) -> _Batch:
    """Read, check and render the claimed rows ``ids`` (``wire_sender``: see ``_prepare``).
    The session's transaction is over on return: nothing holds the database while the batch
    is sent (on SQLite a writer in between would otherwise make the recording fail)."""
    now = clock.utcnow()
    loaded = _load_messages(ids)
    held = [m for m in loaded if _held(m, worker, now)]
    result.lost_lease += len(ids) - len(held)
    reminders = [m for m in held if m.rule != Rule.DIGEST]
    event_ids = sorted({m.event_id for m in reminders if m.event_id is not None})
    batch = _Batch([], [], [m.id for m in held if m.rule == Rule.DIGEST], now, None)
    batch.locks = _lock_events(event_ids)
    try:
        events = _load_events(event_ids)
        policies = {clinic_id: policy for clinic_id, (policy, _) in settings.all_policies().items()}
        for message in reminders:
            event = events.get(message.event_id) if message.event_id is not None else None
            policy = policies.get(message.clinic_id) or settings.policy_for(message.clinic_id)
            prepared = _prepare(message, event, policy, limits, now, wire_sender)
            if isinstance(prepared, _Prepared):
                batch.ready.append(prepared)
            else:
                batch.outcomes.append(prepared)
        db.session.commit()
    except BaseException:
        batch.release()
        raise
    return batch


def _finish_batch(
    batch: _Batch,
    worker: str,
    sending: _SendingThread,
    limits: Limits,
    result: DeliveryResult,
) -> None:
    """Record what was decided without sending, wait until the sending thread has sent and
    recorded the rest, release the batch's events, then send its digests (``deliver_due``
    makes sure the sending thread has nothing in hand by then)."""
    try:
        if batch.outcomes:
            _record(batch.outcomes, worker, result)
        while True:
            waiting_since = time.perf_counter()
            recorded = batch.recorded.get()
            result.waited_for_sending += time.perf_counter() - waiting_since
            if recorded is None:
                break
            if isinstance(recorded, BaseException):
                raise recorded  # what the sending (or its recording) raised
            result.add(recorded)
    finally:
        batch.release()
    for message_id in batch.digests:
        deliver_one(message_id, worker, sending.transport, limits, result)


# --- The run: sending one batch while preparing the next --------------------------------------
# Sending is an SMTP conversation: much of it is waiting for the server's replies, during which
# the main thread can claim, check and render the next batch. So one thread sends the batches
# while the main thread prepares them. Over SMTP the conversation itself happens in a child
# process (``sending``), and the thread waits on its pipe: smtplib needs the interpreter
# after each of the server's four replies a message, and in a thread each of those moments
# waited for the preparing thread to let go of the GIL (on the 2-core bench machine that made
# a sending thread only 0-10 % faster than one step after the other; the process keeps pace
# with SMTP alone). Other transports (the mail folder, tests') send from the thread itself.
#
# * At most two chunks of a batch (one batch's worth of messages) are sent and not yet
#   recorded, whatever the timing: a batch goes in ``CHUNKS`` chunks, and the sending thread
#   records each chunk's outcomes (on a database connection of its own) while the child
#   sends the next chunk, the next batch's first chunk included. A crash leaves no more to
#   go out twice than one batch. Recording there, rather than on the main thread between
#   batches, keeps both the mail server and the main thread busy: recorded whole by the main
#   thread, a batch kept the sending idle for a tenth of a run against a relay that takes
#   2 ms a message, and the recording's round trips held up the preparing. Rows of a batch
#   claimed and not yet sent only wait for their lease.
# * The sending thread uses no Flask state and no session: it hands chunks to the child (or
#   calls ``transport.send``), turns the replies into outcomes (``_send``) and records them
#   with ``_record_on``. It tells the main thread each chunk's counts through the batch's
#   queue, and ``None`` once the batch is recorded; the main thread then releases the
#   batch's events. Digests go out from the main thread, over the run's own transport, once
#   the batches before are recorded and before the next is handed over.
# * An exception in the sending thread reaches the main thread through the queue of the
#   batch it waits for, and ends the run; an exception in the main thread stops the sending
#   thread (and the child) after the message it is sending, without recording more. Either
#   way the transport is closed after the thread has stopped and the child has ended. A
#   child that dies ends the run like an exception in the sending thread.

CHUNKS = 2


@dataclass
class _Sent:
    """A chunk of ``batch`` sent and not yet recorded; ``last``: the batch's last chunk."""

    batch: _Batch
    outcomes: list[_Outcome]
    last: bool


class _SendingThread:
    """One thread that sends the batches it is handed, in order, over the run's transport,
    and records what it sent. In a run with many batches an SMTP transport's conversation
    happens in a child process (``sending``): the thread then waits on its pipe or records,
    and preparing the next batch does not compete with smtplib for the interpreter."""

    def __init__(self, transport: Transport, sender: str, limits: Limits, worker: str) -> None:
        self.transport, self.sender, self.limits, self.worker = transport, sender, limits, worker
        self.engine = db.engine  # read here, in the app context: the thread has none
        # The exact class: a subclass's overrides (tests') must run here, in the thread.
        self.may_use_process = type(transport) is SmtpTransport
        self._batches: Queue[_Batch | None] = Queue()
        self._stopping = threading.Event()
        self._process: SendingProcess | None = None
        self._thread: threading.Thread | None = None

    def send(self, batch: _Batch, full: bool) -> _Batch:
        """Hand ``batch`` over: it is sent once the batches before it are. ``full``: it was
        as large as a claim may be, so more are likely to follow; only then is a child
        process worth its start (about half a second of CPU): the usual run, a few messages
        a minute, sends from the thread."""
        if full and self._process is None and self.may_use_process:
            assert isinstance(self.transport, SmtpTransport)
            self._process = SendingProcess(self.transport)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="outbox-send", daemon=True)
            self._thread.start()
        self._batches.put(batch)
        return batch

    def _run(self) -> None:
        pending: _Sent | None = None
        batch: _Batch | None = None
        try:
            while True:
                if pending is not None and self._batches.empty():
                    self._record(pending)  # nothing to send meanwhile
                    pending = None
                batch = self._batches.get()
                if batch is None or self._stopping.is_set():
                    return
                if not batch.ready:
                    self._record(pending)
                    pending = None
                    batch.recorded.put(None)
                    continue
                size = -(-len(batch.ready) // CHUNKS)  # rounded up
                for start in range(0, len(batch.ready), size):
                    if self._stopping.is_set():
                        return  # the run failed: the rest keep their claim
                    chunk = batch.ready[start : start + size]
                    outcomes = self._send_chunk(chunk, batch.now, pending)
                    pending = _Sent(batch, outcomes, last=start + size >= len(batch.ready))
        except BaseException as exc:
            self._stopping.set()  # the run ends: no more is sent
            # To whichever batch the main thread waits for: the oldest not yet recorded.
            if pending is not None:
                pending.batch.recorded.put(exc)
            if batch is not None and (pending is None or batch is not pending.batch):
                batch.recorded.put(exc)

    def _send_chunk(
        self, chunk: list[_Prepared], now: datetime, pending: _Sent | None
    ) -> list[_Outcome]:
        """Send ``chunk``, recording ``pending`` meanwhile if a child process sends."""
        process = self._process
        if process is None or not process.ready():
            self._record(pending)
            return self._send_here(chunk, now)
        process.hand([(p.outgoing, self.sender, p.recipient) for p in chunk])
        self._record(pending)
        replies = process.replies()
        # Fewer replies than messages: the child was told to stop; the rest keep their claim.
        return [
            _send(prepared, self.sender, _Replied(reply), self.limits, now)
            for prepared, reply in zip(chunk, replies, strict=False)
        ]

    def _send_here(self, chunk: list[_Prepared], now: datetime) -> list[_Outcome]:
        outcomes = []
        for prepared in chunk:
            if self._stopping.is_set():
                break  # the run failed: the rest of the batch keep their claim
            outcomes.append(_send(prepared, self.sender, self.transport, self.limits, now))
        return outcomes

    def _record(self, sent: _Sent | None) -> None:
        """Record a sent chunk, and tell the main thread (``None`` after a batch's last)."""
        if sent is None:
            return
        counts = DeliveryResult()
        with self.engine.begin() as conn:
            _record_on(conn, sent.outcomes, self.worker, counts)
        sent.batch.recorded.put(counts)
        if sent.last:
            sent.batch.recorded.put(None)

    def stop(self) -> None:
        """Stop after the message being sent, wait for the thread, and end the child."""
        self._stopping.set()
        if self._process is not None:
            self._process.stop()
        if self._thread is not None:
            self._batches.put(None)
            self._thread.join()
        if self._process is not None:
            self._process.close()


class _Replied:
    """The child's reply to one message, as a transport for ``_send``."""

    def __init__(self, reply: DeliveryError | None) -> None:
        self.reply = reply

    def send(self, message: Message, sender: str, recipient: str) -> None:
        self._replay()

    def send_wire(self, data: bytes, sender: str, recipient: str) -> None:
        self._replay()

    def _replay(self) -> None:
        if self.reply is not None:
            raise self.reply

    def close(self) -> None:
        return None


def deliver_due(
    worker: str | None = None,
    transport: Transport | None = None,
    batch_size: int = CLAIM_BATCH,
    should_continue: Callable[[], bool] = lambda: True,
) -> DeliveryResult:
    """Send everything due, batch by batch, until nothing is left to claim (or until
    ``should_continue`` says stop, checked between batches)."""
    limits = Limits.from_config()
    worker = worker or worker_name()
    result = DeliveryResult()
    fail_exhausted(clock.utcnow(), limits.max_attempts)
    transport = transport or from_config(current_app.config, current_app.instance_path)
    sender = str(current_app.config.get("MAIL_DEFAULT_SENDER") or "watchful@localhost")
    sending = _SendingThread(transport, sender, limits, worker)
    # Over SMTP each email is made as the bytes SMTP sends, while the previous batch is
    # sent: the sending process (or thread) then only talks SMTP.
    wire_sender = sender if isinstance(transport, WireTransport) else None
    in_flight: _Batch | None = None  # with the sending thread, or sent and not yet recorded
    handed: _Batch | None = None  # handed over after it, while it is being recorded
    ready: _Batch | None = None  # prepared, not yet handed over
    try:
        while should_continue() and (
            ids := claim(clock.utcnow(), worker, batch_size, limits.lease)
        ):
            ready = _prepare_batch(ids, worker, limits, result, wire_sender)
            if in_flight is not None and in_flight.digests:
                # Its digests go over the run's transport: not while the next batch is sent.
                _finish_batch(in_flight, worker, sending, limits, result)
                in_flight = None
            handed, ready = sending.send(ready, full=len(ids) == batch_size), None
            if in_flight is not None:
                _finish_batch(in_flight, worker, sending, limits, result)
            in_flight, handed = handed, None
        if in_flight is not None:
            _finish_batch(in_flight, worker, sending, limits, result)
            in_flight = None
    finally:
        sending.stop()
        for batch in (in_flight, handed, ready):
            if batch is not None:
                batch.release()  # if it was not recorded, its rows wait for their leases
        transport.close()
    return result
