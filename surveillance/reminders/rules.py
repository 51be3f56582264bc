"""Which reminders an event should have, and when: plain Python, no Flask, no database.

Every reminder has a moment it becomes due (``due_at``) and a moment after which it would be
wrong or useless to send it (``expires_at``). The outbox queues a reminder while
``due_at <= now < expires_at`` and checks the same again just before sending, so a reminder
for a visit that moved, was cancelled or already happened can never go out.

Rules (defaults; each clinic can tune them, see ``ReminderPolicy``):

* **Time to book** (patient): when a planned, unbooked visit's booking window opens, at the
  clinic's send hour. It stops being sent on the visit's due date: after that the visit is
  overdue and on the coordinator's worklist.
* **Booked visit** (patient): 7 and 1 days before a booked visit or biopsy, at the same wall
  clock time as the appointment in the clinic's time zone (so daylight-saving changes in
  between do not shift it). Each one gives way to the next: a visit booked 3 days ahead gets
  the 7-day reminder at once (it doubles as the booking confirmation) and the 1-day one later,
  never both at the same moment. Nothing is sent once the appointment has started.
* **Biopsy heads-up** (patient and coordinators): 28 days before an unbooked biopsy is due.
* **Biopsy still unbooked** (coordinators): on the due date of a biopsy still not booked, until
  its window closes.
* **Digest** (coordinators): once a day at the clinic's digest hour.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

OPEN_STATUSES = frozenset({"planned", "booked"})


class Rule(StrEnum):
    BOOK_WINDOW = "book-window"
    BOOKED = "booked-visit"
    BIOPSY_HEADS_UP = "biopsy-heads-up"
    BIOPSY_UNBOOKED = "biopsy-unbooked"
    DIGEST = "digest"


class Audience(StrEnum):
    PATIENT = "patient"
    COORDINATOR = "coordinator"


class PolicyError(ValueError):
    """A reminder setting is out of range; ``field`` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


# Ranges a clinic may choose from (inclusive).
LIMITS: dict[str, tuple[int, int]] = {
    "book_window_lead_days": (0, 60),
    "booked_reminder_days": (1, 60),
    "biopsy_heads_up_days": (1, 120),
    "send_hour": (0, 23),
    "digest_hour": (0, 23),
}
MAX_BOOKED_REMINDERS = 5
DIGEST_VALID_FOR = timedelta(hours=12)


@dataclass(frozen=True)
class ReminderPolicy:
    """A clinic's reminder settings."""

    enabled: bool = True
    # Days before a visit's booking window opens to send "time to book" (0: the day it opens).
    book_window_lead_days: int = 0
    # Days before a booked appointment to remind the patient, e.g. (7, 1).
    booked_reminder_days: tuple[int, ...] = (7, 1)
    biopsy_heads_up_days: int = 28
    # Local hour at which date-based reminders go out.
    send_hour: int = 9
    digest_enabled: bool = True
    digest_hour: int = 7

    def __post_init__(self) -> None:
        for name in ("book_window_lead_days", "biopsy_heads_up_days", "send_hour", "digest_hour"):
            _check_range(name, getattr(self, name))
        days = self.booked_reminder_days
        if len(days) > MAX_BOOKED_REMINDERS:
            raise PolicyError(
                "booked_reminder_days", f"At most {MAX_BOOKED_REMINDERS} booked-visit reminders."
            )
        for day in days:
            _check_range("booked_reminder_days", day)
        # Normalised: distinct, furthest first, so equal policies compare equal.
        object.__setattr__(self, "booked_reminder_days", tuple(sorted(set(days), reverse=True)))


def _check_range(name: str, value: int) -> None:
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PolicyError(name, f"Must be a whole number from {low} to {high}.")


def parse_days(text: str) -> tuple[int, ...]:
    """``"7,1"`` → ``(7, 1)``; an empty text means no booked-visit reminders."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not all(part.isdigit() for part in parts):
        raise PolicyError("booked_reminder_days", "Give whole numbers of days, e.g. 7,1.")
    return tuple(int(part) for part in parts)


def format_days(days: Iterable[int]) -> str:
    return ",".join(str(day) for day in days)


@dataclass(frozen=True)
class EventSnapshot:
    """What the rules need to know about one plan event."""

    kind: str  # "visit" or "biopsy"
    status: str  # planned, booked, completed, missed, cancelled
    due_on: date
    window_start: date
    window_end: date
    timezone: str  # the clinic's IANA zone
    plan_active: bool
    starts_at: datetime | None = None  # timezone-aware, when booked


@dataclass(frozen=True, order=True)
class Reminder:
    due_at: datetime  # UTC
    expires_at: datetime  # UTC, exclusive
    rule: Rule
    audience: Audience

    def is_due(self, now: datetime) -> bool:
        return self.due_at <= now < self.expires_at

    @property
    def identity(self) -> tuple[str, str, datetime]:
        """What makes two reminders the same one: rule, audience and due time."""
        return (self.rule.value, self.audience.value, self.due_at)


def local_moment(day: date, hour: int, timezone: str) -> datetime:
    """``hour`` o'clock on ``day`` in the zone, as UTC. A wall time skipped by a daylight-saving
    jump resolves to the instant just after the jump (zoneinfo's ``fold=0`` rule)."""
    return _wall_to_utc(datetime.combine(day, time(hour)), ZoneInfo(timezone))


def _wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    return wall.replace(tzinfo=zone).astimezone(UTC)


def reminders_for(event: EventSnapshot, policy: ReminderPolicy) -> list[Reminder]:
    """Every reminder the event should have, sorted by due time (independent of "now")."""
    if not (policy.enabled and event.plan_active and event.status in OPEN_STATUSES):
        return []
    if event.status == "booked":
        return _booked(event, policy)
    if event.kind == "visit":
        return _book_window(event, policy)
    if event.kind == "biopsy":
        return _biopsy(event, policy)
    return []


def due_reminders(event: EventSnapshot, policy: ReminderPolicy, now: datetime) -> list[Reminder]:
    """The reminders that should be in the outbox at ``now``."""
    return [r for r in reminders_for(event, policy) if r.is_due(now)]


def _booked(event: EventSnapshot, policy: ReminderPolicy) -> list[Reminder]:
    if event.starts_at is None:
        return []
    zone = ZoneInfo(event.timezone)
    local_start = event.starts_at.astimezone(zone).replace(tzinfo=None)
    start = event.starts_at.astimezone(UTC)
    moments = [
        _wall_to_utc(local_start - timedelta(days=days), zone)
        for days in policy.booked_reminder_days
    ]
    reminders = []
    # Each reminder gives way to the next one (and the last to the appointment itself).
    for due_at, expires_at in zip(moments, [*moments[1:], start], strict=False):
        if due_at < expires_at:
            reminders.append(Reminder(due_at, expires_at, Rule.BOOKED, Audience.PATIENT))
    return reminders


def _book_window(event: EventSnapshot, policy: ReminderPolicy) -> list[Reminder]:
    opens = event.window_start - timedelta(days=policy.book_window_lead_days)
    due_at = local_moment(opens, policy.send_hour, event.timezone)
    expires_at = local_moment(event.due_on, policy.send_hour, event.timezone)
    if due_at >= expires_at:
        return []
    return [Reminder(due_at, expires_at, Rule.BOOK_WINDOW, Audience.PATIENT)]


def _biopsy(event: EventSnapshot, policy: ReminderPolicy) -> list[Reminder]:
    tz, hour = event.timezone, policy.send_hour
    heads_up = local_moment(event.due_on - timedelta(days=policy.biopsy_heads_up_days), hour, tz)
    due = local_moment(event.due_on, hour, tz)
    window_closes = local_moment(event.window_end + timedelta(days=1), hour, tz)
    return sorted(
        [
            Reminder(heads_up, due, Rule.BIOPSY_HEADS_UP, Audience.PATIENT),
            Reminder(heads_up, due, Rule.BIOPSY_HEADS_UP, Audience.COORDINATOR),
            Reminder(due, window_closes, Rule.BIOPSY_UNBOOKED, Audience.COORDINATOR),
        ]
    )


def digest_for(day: date, policy: ReminderPolicy, timezone: str) -> Reminder | None:
    """The coordinators' digest of a local day, if the clinic sends one."""
    if not (policy.enabled and policy.digest_enabled):
        return None
    due_at = local_moment(day, policy.digest_hour, timezone)
    return Reminder(due_at, due_at + DIGEST_VALID_FOR, Rule.DIGEST, Audience.COORDINATOR)


def due_digests(
    policy: ReminderPolicy, timezone: str, now: datetime
) -> list[tuple[date, Reminder]]:
    """Digests due at ``now``: today's (local) and, while still valid, yesterday's."""
    today = now.astimezone(ZoneInfo(timezone)).date()
    found = []
    for day in (today - timedelta(days=1), today):
        digest = digest_for(day, policy, timezone)
        if digest is not None and digest.is_due(now):
            found.append((day, digest))
    return found
