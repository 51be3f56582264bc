"""Small helpers shared by the reminder tests."""

from __future__ import annotations

from datetime import date, datetime
from email.message import Message
from zoneinfo import ZoneInfo

from flask import Flask
from sqlalchemy import select

from surveillance import clock
from surveillance.extensions import db
from surveillance.models import Clinic, OutboxMessage, Patient, PlanEvent
from surveillance.reminders import delivery, messages, outbox
from surveillance.services import plans
from tests import factories

DENVER = ZoneInfo("America/Denver")


def queue() -> outbox.QueueResult:
    return outbox.queue_due(clock.utcnow())


def deliver() -> delivery.DeliveryResult:
    return delivery.deliver_due()


def rows(**filters: object) -> list[OutboxMessage]:
    db.session.expire_all()
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    for name, value in filters.items():
        query = query.where(getattr(OutboxMessage, name) == value)
    return list(db.session.scalars(query))


def event(patient: Patient, kind: str = "visit", ordinal: int = 1) -> PlanEvent:
    return next(e for e in patient.active_plan.events if e.kind == kind and e.ordinal == ordinal)


def book(ev: PlanEvent, when: datetime, minutes: int = 30, location: str | None = None) -> None:
    """Book at a local (naive) clinic time and commit."""
    plans.book(ev, when, minutes, location)
    db.session.commit()


def patient(clinic: Clinic, enrolled_on: str = "2026-01-05", **fields: object) -> Patient:
    return factories.enrol(clinic, enrolled_on=enrolled_on, interval_months=3, **fields)


def local(year: int, month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute)


def day(text: str) -> date:
    return date.fromisoformat(text)


class SampleRow:
    """What ``messages.build_email`` reads of an outbox row, for tests of the MIME alone."""

    message_id = "<reminder-0123@watchful.example.org>"


def sample_email(rendered: messages.Rendered, recipient: str = "robin@example.org") -> Message:
    """``rendered`` built into its MIME message, outside any app (the default sender)."""
    with Flask(__name__).app_context():
        return messages.build_email(SampleRow(), rendered, recipient, datetime(2026, 3, 1))  # type: ignore[arg-type]
