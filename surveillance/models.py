"""Database models (SQLAlchemy 2.0 typed declarative)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from surveillance.clinic_calendar import ClinicCalendar
from surveillance.extensions import db
from surveillance.planning import EventKind
from surveillance.privacy import NEUTRAL_CLINIC_NAME, PatientFacingClinic
from surveillance.stages import Stage


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uid() -> str:
    return str(uuid.uuid4())


class Role(StrEnum):
    COORDINATOR = "coordinator"
    ADMIN = "admin"


class PrimarySite(StrEnum):
    PANCREAS = "pancreas"
    SMALL_BOWEL = "small_bowel"
    STOMACH = "stomach"
    RECTUM = "rectum"
    APPENDIX = "appendix"
    LUNG = "lung"
    OTHER = "other"


class Differentiation(StrEnum):
    WELL = "well"
    POORLY = "poorly"


class Grade(StrEnum):
    G1 = "G1"
    G2 = "G2"
    G3 = "G3"


class Functional(StrEnum):
    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


class PlanStatus(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class EventStatus(StrEnum):
    PLANNED = "planned"
    BOOKED = "booked"
    COMPLETED = "completed"
    MISSED = "missed"
    CANCELLED = "cancelled"


class Outcome(StrEnum):
    STABLE = "stable"
    PROGRESSION = "progression"
    INCONCLUSIVE = "inconclusive"


def _in(values: type[StrEnum]) -> str:
    return "(" + ", ".join(f"'{v.value}'" for v in values) + ")"


user_clinics = Table(
    "user_clinics",
    db.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("clinic_id", ForeignKey("clinics.id", ondelete="CASCADE"), primary_key=True),
)


class Clinic(db.Model):
    __tablename__ = "clinics"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="America/Denver")
    address: Mapped[str] = mapped_column(Text, default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    # What patients see (calendar feed, emails, their page). ``name`` and ``address`` are for
    # staff and may name the condition ("Neuroendocrine Tumour Clinic"); see privacy.py.
    calendar_name: Mapped[str] = mapped_column(
        String(200), default=NEUTRAL_CLINIC_NAME, server_default=NEUTRAL_CLINIC_NAME
    )
    calendar_address: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Python weekday numbers, Monday = 0, as a string of digits: "01234" is Monday to Friday.
    working_weekdays: Mapped[str] = mapped_column(String(7), default="01234")
    observe_us_holidays: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    closures: Mapped[list[ClinicClosure]] = relationship(
        back_populates="clinic", cascade="all, delete-orphan", order_by="ClinicClosure.closed_on"
    )

    def for_patients(self) -> PatientFacingClinic:
        """The clinic as patients see it: the only clinic details patient surfaces read."""
        return PatientFacingClinic(
            name=self.calendar_name.strip() or NEUTRAL_CLINIC_NAME,
            address=self.calendar_address.strip(),
            phone=self.phone,
        )

    @property
    def weekdays(self) -> frozenset[int]:
        return frozenset(int(ch) for ch in self.working_weekdays)

    def calendar(self) -> ClinicCalendar:
        return ClinicCalendar.build(
            self.weekdays, (c.closed_on for c in self.closures), self.observe_us_holidays
        )


class ClinicClosure(db.Model):
    __tablename__ = "clinic_closures"
    __table_args__ = (UniqueConstraint("clinic_id", "closed_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"))
    closed_on: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(200), default="")

    clinic: Mapped[Clinic] = relationship(back_populates="closures")


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(f"role IN {_in(Role)}", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(20), default=Role.COORDINATOR)
    is_active: Mapped[bool] = mapped_column(default=True)
    session_generation: Mapped[int] = mapped_column(default=0, server_default="0")
    # The coordinator's own clinic calendar feed (see services.feed_tokens): a salt and a hash.
    feed_token_salt: Mapped[str | None] = mapped_column(String(64))
    feed_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    clinics: Mapped[list[Clinic]] = relationship(secondary=user_clinics, order_by=Clinic.name)
    api_tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    # Flask-Login's user protocol.
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        # The session cookie names the user *and* their current session generation, so that
        # signing out (which starts a new generation) invalidates every copy of the cookie.
        return f"{self.id}:{self.session_generation}"


class ApiToken(db.Model):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="api_tokens")


class Patient(db.Model):
    __tablename__ = "patients"
    __table_args__ = (
        CheckConstraint(f"primary_site IN {_in(PrimarySite)}", name="primary_site"),
        CheckConstraint(f"differentiation IN {_in(Differentiation)}", name="differentiation"),
        CheckConstraint(f"grade IN {_in(Grade)}", name="grade"),
        CheckConstraint(f"functional IN {_in(Functional)}", name="functional"),
        Index("ix_patients_clinic_family_given", "clinic_id", "family_name", "given_name"),
        # --- Performance (issue 8): the Patients list's two orders, all clinics or one ---
        Index("ix_patients_family_given", "family_name", "given_name", "id"),
        Index("ix_patients_next_due", "next_due_on", "family_name", "given_name", "id"),
        Index(
            "ix_patients_clinic_next_due",
            "clinic_id",
            "next_due_on",
            "family_name",
            "given_name",
            "id",
        ),
        # What plan events' (patient, clinic) refer to, so an event's copy of the clinic can
        # only be its patient's (migration 0012).
        Index("ix_patients_id_clinic_id", "id", "clinic_id", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    mrn: Mapped[str] = mapped_column(String(40), unique=True)
    given_name: Mapped[str] = mapped_column(String(100))
    family_name: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[date] = mapped_column(Date)
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    preferred_language: Mapped[str] = mapped_column(String(20), default="en")
    email_opt_out: Mapped[bool] = mapped_column(default=False)

    primary_site: Mapped[str] = mapped_column(String(20))
    differentiation: Mapped[str] = mapped_column(String(10))
    grade: Mapped[str] = mapped_column(String(2))
    ki67: Mapped[float | None]
    size_mm: Mapped[int | None]
    functional: Mapped[str] = mapped_column(String(10), default=Functional.UNKNOWN)

    # The private calendar feed and patient page share one secret (see services.feed_tokens):
    # only a salt and a hash are kept, never the secret.
    feed_token_salt: Mapped[str | None] = mapped_column(String(64))
    feed_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Rises with every change a calendar or the patient page would show; feeds are cached by it.
    feed_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Derived, for the Patients list's "next due" order: the earliest due date of an open
    # (planned or booked) event of the active plan; NULL without one. Never set it by hand:
    # ``services.next_due`` keeps it right after every flush that touches events or plans.
    next_due_on: Mapped[date | None] = mapped_column(Date)

    clinic: Mapped[Clinic] = relationship()
    plans: Mapped[list[SurveillancePlan]] = relationship(
        back_populates="patient", order_by="SurveillancePlan.id"
    )

    # --- Care stages (issue 6; see surveillance/stages.py) ---------------------------------
    # Exactly one current stage; every change is kept in ``stage_history``. The server default
    # exists for rows created before stages did; enrolment always records the stage itself.
    stage: Mapped[str] = mapped_column(
        String(30),
        CheckConstraint(f"stage IN {_in(Stage)}", name="stage"),
        default=Stage.WATCHFUL_WAITING,
        server_default=Stage.WATCHFUL_WAITING.value,
    )
    stage_history: Mapped[list[StageChange]] = relationship(
        back_populates="patient", order_by="(StageChange.changed_at, StageChange.id)"
    )
    # --- end care stages ---------------------------------------------------------------------

    @property
    def active_plan(self) -> SurveillancePlan | None:
        return next((p for p in self.plans if p.status == PlanStatus.ACTIVE), None)

    @property
    def latest_plan(self) -> SurveillancePlan | None:
        return self.plans[-1] if self.plans else None


class SurveillancePlan(db.Model):
    __tablename__ = "surveillance_plans"
    __table_args__ = (
        CheckConstraint("interval_months BETWEEN 3 AND 6", name="interval_months"),
        CheckConstraint(f"status IN {_in(PlanStatus)}", name="status"),
        # One active plan per patient, enforced by the database itself.
        Index(
            "uq_surveillance_plans_one_active",
            "patient_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    interval_months: Mapped[int]
    enrolled_on: Mapped[date] = mapped_column(Date)
    # Visits are planned from the anchor: the enrolment date (ordinal 0) at first, the actual
    # date of the latest visit completed off its due date afterwards.
    anchor_on: Mapped[date] = mapped_column(Date)
    anchor_ordinal: Mapped[int] = mapped_column(default=0)
    horizon_until: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10), default=PlanStatus.ACTIVE)
    justification: Mapped[str | None] = mapped_column(Text)
    ended_on: Mapped[date | None] = mapped_column(Date)
    end_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    patient: Mapped[Patient] = relationship(back_populates="plans")
    events: Mapped[list[PlanEvent]] = relationship(
        back_populates="plan", order_by="(PlanEvent.due_on, PlanEvent.kind, PlanEvent.ordinal)"
    )


class PlanEvent(db.Model):
    __tablename__ = "plan_events"
    __table_args__ = (
        UniqueConstraint("plan_id", "kind", "ordinal"),
        CheckConstraint(f"kind IN {_in(EventKind)}", name="kind"),
        CheckConstraint(f"status IN {_in(EventStatus)}", name="status"),
        CheckConstraint(f"outcome IS NULL OR outcome IN {_in(Outcome)}", name="outcome"),
        CheckConstraint("window_start <= due_on AND due_on <= window_end", name="window"),
        Index("ix_plan_events_status_due_on", "status", "due_on"),
        # The events follow a patient moved to another clinic (see ``clinic_id``).
        ForeignKeyConstraint(
            ["patient_id", "clinic_id"], ["patients.id", "patients.clinic_id"], onupdate="CASCADE"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("surveillance_plans.id"), index=True)
    patient_id: Mapped[int] = mapped_column(index=True)
    # The patient's clinic, copied so that a coordinator's worklists read their clinics' part
    # of an index instead of every clinic's events, each one looked up on its patient. The
    # foreign key is (patient_id, clinic_id), so the copy can only be the patient's, and the
    # database updates it when the patient moves (ON UPDATE CASCADE; migration 0012).
    clinic_id: Mapped[int]
    kind: Mapped[str] = mapped_column(String(10))
    ordinal: Mapped[int]
    due_on: Mapped[date] = mapped_column(Date)
    window_start: Mapped[date] = mapped_column(Date)
    window_end: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10), default=EventStatus.PLANNED)
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    location: Mapped[str | None] = mapped_column(Text)
    completed_on: Mapped[date | None] = mapped_column(Date)
    outcome: Mapped[str | None] = mapped_column(String(15))
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    # Cancelled by re-planning (not by a person): the slot may be used again later.
    cancelled_by_replan: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The calendar identity: the UID never changes; SEQUENCE rises with each visible change.
    uid: Mapped[str] = mapped_column(String(36), unique=True, default=new_uid)
    sequence: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set explicitly on each visible change (not ``onupdate``): feeds use it as LAST-MODIFIED.
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # --- Reminders and worklists (issue 4) ---
    # "Call again on": the latest contact attempt hides the event from the worklists until
    # that day. Not calendar-visible, so it does not raise SEQUENCE.
    call_again_on: Mapped[date | None] = mapped_column(Date)
    # --- end issue 4 ---

    # Optimistic locking: two people acting on the same event at once cannot both win.
    row_version: Mapped[int] = mapped_column(default=1, server_default="1")

    plan: Mapped[SurveillancePlan] = relationship(back_populates="events")
    # Joined on the patient's id alone (not the whole key): a loaded patient then comes from
    # the identity map, with no query per event.
    patient: Mapped[Patient] = relationship(
        primaryjoin="PlanEvent.patient_id == Patient.id", foreign_keys=[patient_id]
    )

    __mapper_args__ = {"version_id_col": row_version}


# --- Care stages (issue 6) --------------------------------------------------------------------


class StageChange(db.Model):
    """One move of a patient from one care stage to another (``from_stage`` is empty for the
    first stage a patient gets; ``changed_by`` is empty for changes the system made)."""

    __tablename__ = "stage_changes"
    __table_args__ = (
        CheckConstraint(f"from_stage IS NULL OR from_stage IN {_in(Stage)}", name="from_stage"),
        CheckConstraint(f"to_stage IN {_in(Stage)}", name="to_stage"),
        CheckConstraint("from_stage IS NULL OR from_stage <> to_stage", name="real_change"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    from_stage: Mapped[str | None] = mapped_column(String(30))
    to_stage: Mapped[str] = mapped_column(String(30))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    reason: Mapped[str] = mapped_column(Text)

    patient: Mapped[Patient] = relationship(back_populates="stage_history")
    changed_by: Mapped[User | None] = relationship()


# The audit log's model lives with its listeners; importing it here puts it in the metadata.
from surveillance.audit import AuditEntry  # noqa: E402

__all__ = ["AuditEntry"]

# --- Reminders, the outbox and contact attempts (issue 4) -------------------------------------


class OutboxStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    WITHDRAWN = "withdrawn"


class ContactResult(StrEnum):
    CALLED = "called"
    LEFT_MESSAGE = "left_message"
    NO_ANSWER = "no_answer"
    BOOKED = "booked"


class ReminderSettings(db.Model):
    """A clinic's reminder settings; a clinic without a row uses the defaults
    (``surveillance.reminders.rules.ReminderPolicy``)."""

    __tablename__ = "reminder_settings"
    __table_args__ = (
        CheckConstraint("book_window_lead_days BETWEEN 0 AND 60", name="book_window_lead_days"),
        CheckConstraint("biopsy_heads_up_days BETWEEN 1 AND 120", name="biopsy_heads_up_days"),
        CheckConstraint("send_hour BETWEEN 0 AND 23", name="send_hour"),
        CheckConstraint("digest_hour BETWEEN 0 AND 23", name="digest_hour"),
    )

    clinic_id: Mapped[int] = mapped_column(
        ForeignKey("clinics.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(default=True)
    book_window_lead_days: Mapped[int] = mapped_column(default=0)
    # Days before a booked appointment, furthest first, e.g. "7,1".
    booked_reminder_days: Mapped[str] = mapped_column(String(40), default="7,1")
    biopsy_heads_up_days: Mapped[int] = mapped_column(default=28)
    send_hour: Mapped[int] = mapped_column(default=9)
    digest_enabled: Mapped[bool] = mapped_column(default=True)
    digest_hour: Mapped[int] = mapped_column(default=7)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    clinic: Mapped[Clinic] = relationship()


class OutboxMessage(db.Model):
    """One email to send: a reminder about an event, or a coordinator's daily digest.

    ``dedupe_key`` (rule, audience, event or day, recipient, due time) makes queueing
    idempotent. Rows are claimed with a lease (``claimed_by``/``lease_until``) so that several
    scheduler processes never send the same row at once and a crash mid-send is retried.
    ``last_error`` holds our own words and an SMTP code only, never a server's text (which can
    quote the address).
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (
        CheckConstraint(f"status IN {_in(OutboxStatus)}", name="status"),
        CheckConstraint("audience IN ('patient', 'coordinator')", name="audience"),
        Index("ix_outbox_messages_status_next_attempt_at_id", "status", "next_attempt_at", "id"),
        Index("ix_outbox_messages_event_id_status", "event_id", "status"),
        Index("ix_outbox_messages_clinic_id_status", "clinic_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    rule: Mapped[str] = mapped_column(String(20))
    audience: Mapped[str] = mapped_column(String(12))
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("plan_events.id", ondelete="CASCADE"))
    patient_id: Mapped[int | None] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    recipient: Mapped[str] = mapped_column(String(254))
    due_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10), default=OutboxStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(String(300))
    # Generated when queued and reused on every attempt, so a re-send after a crash is
    # recognisably the same message.
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    subject: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    # A coordinator has seen a failure and dealt with it: it leaves the worklist.
    dismissed_at: Mapped[datetime | None]

    clinic: Mapped[Clinic] = relationship()
    event: Mapped[PlanEvent | None] = relationship()
    patient: Mapped[Patient | None] = relationship()
    user: Mapped[User | None] = relationship()


class ContactAttempt(db.Model):
    """A coordinator tried to reach a patient about an event."""

    __tablename__ = "contact_attempts"
    __table_args__ = (CheckConstraint(f"result IN {_in(ContactResult)}", name="result"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("plan_events.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    result: Mapped[str] = mapped_column(String(15))
    note: Mapped[str | None] = mapped_column(Text)
    call_again_on: Mapped[date | None] = mapped_column(Date)

    event: Mapped[PlanEvent] = relationship()
    user: Mapped[User | None] = relationship()


# Booked events by start time: the reminder sweep reads only the next few days' bookings.
Index("ix_plan_events_status_starts_at", PlanEvent.status, PlanEvent.starts_at)

# --- Performance (issue 8) ---
# Planned events whose window has opened: the overdue, to-book and biopsy-due worklists.
Index("ix_plan_events_status_window_start", PlanEvent.status, PlanEvent.window_start)
# The biopsy-due and to-book lists in due order, without walking the other kind's events.
Index("ix_plan_events_kind_status_due_on", PlanEvent.kind, PlanEvent.status, PlanEvent.due_on)
# The same lists for a coordinator: one clinic's events in due order.
Index(
    "ix_plan_events_clinic_status_due_on", PlanEvent.clinic_id, PlanEvent.status, PlanEvent.due_on
)
Index(
    "ix_plan_events_clinic_kind_status_due_on",
    PlanEvent.clinic_id,
    PlanEvent.kind,
    PlanEvent.status,
    PlanEvent.due_on,
)
# Active plans whose horizon falls short: what the daily extend-horizons job reads.
# (horizon_until alone: with status first, SQLite would also take it for every join on
# "status = 'active'" and read all active plans.)
Index("ix_surveillance_plans_horizon_until", SurveillancePlan.horizon_until)
# --- end issue 8 ---

# --- Substring search (issue 8) ---------------------------------------------------------------
# Database-specific objects made by migration 0007_worklist_performance (see
# services.patient_search), with no portable form, so not in the metadata: SQLite's FTS5 table
# (with its shadow tables ``patients_search_*`` and the triggers that fill it) and
# PostgreSQL's pg_trgm index. Autogenerate and the migration test leave them alone.
# Note: a later SQLite batch migration that rebuilds ``patients`` drops the triggers; it must
# create them again (see the 0006 migration).
SEARCH_INDEX_TABLE = "patients_search"
SEARCH_INDEX_TRGM = "ix_patients_search_trgm"


def is_database_specific(name: str | None, type_: str) -> bool:
    """The search objects above (by name and Alembic's object type)."""
    if name is None:
        return False
    if type_ == "table":
        return name == SEARCH_INDEX_TABLE or name.startswith(SEARCH_INDEX_TABLE + "_")
    return type_ == "index" and name == SEARCH_INDEX_TRGM


def include_in_autogenerate(name: str | None, type_: str, _parent_names: object) -> bool:
    """Alembic's ``include_name`` hook (migrations/env.py and the migration tests)."""
    return not is_database_specific(name, type_)
