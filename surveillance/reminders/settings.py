"""Each clinic's reminder settings, as a pure ``ReminderPolicy`` the rules understand."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveillance.errors import ValidationFailed
from surveillance.extensions import db
from surveillance.models import Clinic, ReminderSettings
from surveillance.reminders.rules import PolicyError, ReminderPolicy, format_days, parse_days

FIELDS = (
    "enabled",
    "book_window_lead_days",
    "booked_reminder_days",
    "biopsy_heads_up_days",
    "send_hour",
    "digest_enabled",
    "digest_hour",
)


def _policy(row: ReminderSettings | None) -> ReminderPolicy:
    if row is None:
        return ReminderPolicy()
    return ReminderPolicy(
        enabled=row.enabled,
        book_window_lead_days=row.book_window_lead_days,
        booked_reminder_days=parse_days(row.booked_reminder_days),
        biopsy_heads_up_days=row.biopsy_heads_up_days,
        send_hour=row.send_hour,
        digest_enabled=row.digest_enabled,
        digest_hour=row.digest_hour,
    )


def policy_for(clinic_id: int, session: Session | None = None) -> ReminderPolicy:
    return _policy((session or db.session).get(ReminderSettings, clinic_id))


def all_policies(session: Session | None = None) -> dict[int, tuple[ReminderPolicy, str]]:
    """Every clinic's policy and time zone, keyed by clinic id (one query per table).
    ``session``: another session than ``db.session`` (delivery reads each batch in its own)."""
    session = session or db.session
    rows = {r.clinic_id: r for r in session.scalars(select(ReminderSettings))}
    return {
        clinic_id: (_policy(rows.get(clinic_id)), timezone)
        for clinic_id, timezone in session.execute(select(Clinic.id, Clinic.timezone))
    }


def update(clinic: Clinic, **changes: Any) -> ReminderPolicy:
    """Change some settings; a bad value raises ``ValidationFailed`` and changes nothing."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise ValidationFailed({name: "Unknown setting." for name in sorted(unknown)})
    current = policy_for(clinic.id)
    values = {name: getattr(current, name) for name in FIELDS}
    values.update(changes)
    try:
        if isinstance(values["booked_reminder_days"], str):
            values["booked_reminder_days"] = parse_days(values["booked_reminder_days"])
        for flag in ("enabled", "digest_enabled"):
            if not isinstance(values[flag], bool):
                raise PolicyError(flag, "Must be true or false.")
        policy = ReminderPolicy(**values)
    except PolicyError as exc:
        raise ValidationFailed({exc.field: exc.message}) from exc
    row = db.session.get(ReminderSettings, clinic.id) or ReminderSettings(clinic_id=clinic.id)
    for name in FIELDS:
        value = getattr(policy, name)
        setattr(row, name, format_days(value) if name == "booked_reminder_days" else value)
    db.session.add(row)
    db.session.flush()
    return policy
