"""Request and response shapes of the JSON API.

These pydantic models validate input (unknown fields and wrong types are refused) and are the
single source of the OpenAPI document, so the document cannot drift from the code.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from surveillance.models import Differentiation, Functional, Grade, Outcome, PrimarySite
from surveillance.services.counting import COUNT_LIMIT
from surveillance.stages import Stage

Text100 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Mrn = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9\-]*$"
    ),
]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=40, pattern=r"^[0-9+()\-. ]*$")
]
# Up to 20 characters: the column's size (a BCP 47 tag this long is already unusual).
Language = Annotated[
    str, StringConstraints(max_length=20, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
]
Interval = Annotated[int, Field(ge=3, le=6)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Input(BaseModel):
    """Strict input: no unknown fields, no silent type coercion ("3" is not 3)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class EnrolmentIn(Input):
    mrn: Mrn
    given_name: Text100
    family_name: Text100
    birth_date: date
    email: EmailStr | None = None
    phone: Phone | None = None
    preferred_language: Language = "en"
    enrolled_on: date
    interval_months: Interval | None = Field(
        default=None, description="Defaults to the interval suggested by the tumour profile."
    )
    primary_site: PrimarySite
    differentiation: Differentiation
    grade: Grade
    ki67: Annotated[float, Field(ge=0, le=100)] | None = None
    size_mm: Annotated[int, Field(ge=1, le=1000)] | None = None
    functional: Functional = Functional.UNKNOWN
    clinic: str | None = Field(
        default=None, description="Clinic slug; optional when the user has one clinic."
    )
    justification: Annotated[str, StringConstraints(max_length=4000)] | None = Field(
        default=None, description="Required for poorly differentiated or G3 tumours."
    )


class PatientPatch(Input):
    given_name: Text100 | None = None
    family_name: Text100 | None = None
    email: EmailStr | None = None
    phone: Phone | None = None
    preferred_language: Language | None = None
    email_opt_out: bool | None = None
    interval_months: Interval | None = None


class BookingIn(Input):
    starts_at: datetime = Field(
        description="Local date and time in the clinic's time zone, without an offset."
    )
    duration_minutes: Annotated[int, Field(ge=5, le=480)] = 30
    location: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        default=None,
        description="Where the visit is. The patient sees it in their calendar and emails, so "
        "text naming the condition (cancer, tumour, NET, oncology, ...) is refused with 422. "
        "Empty: the clinic's patient-facing address, else its patient-facing name.",
    )


class CompletionIn(Input):
    completed_on: date
    outcome: Outcome


class CancelIn(Input):
    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None


class EmptyIn(Input):
    pass


class EndSurveillanceIn(Input):
    reason: Reason


class StageChangeIn(Input):
    stage: Stage = Field(
        description="The care stage to move to; only the moves in the care-stage table are "
        "allowed (see `next_stages` on the patient). Leaving watchful waiting or biopsy review "
        "ends the surveillance plan."
    )
    reason: Reason


# --- Responses --------------------------------------------------------------------------------


class EventOut(BaseModel):
    id: int
    uid: str
    kind: Literal["visit", "biopsy"]
    ordinal: int
    due_on: date
    window_start: date
    window_end: date
    status: Literal["planned", "booked", "completed", "missed", "cancelled"]
    starts_at: str | None = Field(description="Local ISO date-time in the clinic's zone.")
    ends_at: str | None
    location: str | None
    sequence: int
    completed_on: date | None
    outcome: Literal["stable", "progression", "inconclusive"] | None
    overdue: bool
    call_again_on: date | None = Field(
        default=None, description="Off the worklists until this day (from a contact attempt)."
    )


class PlanOut(BaseModel):
    id: int
    status: Literal["active", "ended"]
    interval_months: int
    suggested_interval_months: int
    enrolled_on: date
    anchor_on: date
    horizon_until: date
    justification: str | None
    ended_on: date | None
    end_reason: str | None


class TumourProfileOut(BaseModel):
    primary_site: str
    differentiation: str
    grade: str
    ki67: float | None
    size_mm: int | None
    functional: str


class StageChangeOut(BaseModel):
    from_stage: Stage | None = Field(description="Empty for the patient's first stage.")
    to_stage: Stage
    changed_at: datetime = Field(description="UTC.")
    changed_by: str | None = Field(description="The user's email; empty for system changes.")
    reason: str


class PatientSummaryOut(BaseModel):
    id: int
    mrn: str
    given_name: str
    family_name: str
    clinic: str
    plan_status: Literal["active", "ended"] | None
    next_event: EventOut | None


class PatientOut(BaseModel):
    id: int
    mrn: str
    given_name: str
    family_name: str
    birth_date: date
    email: str | None
    phone: str | None
    preferred_language: str
    email_opt_out: bool
    clinic: str
    tumour: TumourProfileOut
    plan: PlanOut | None
    events: list[EventOut]
    # Care stages (issue 6).
    stage: Stage
    next_stages: list[Stage] = Field(description="The stages the patient may move to next.")
    stage_history: list[StageChangeOut] = Field(description="Oldest first.")
    feed_url: str | None = Field(
        description="The patient's private calendar feed (https); null when revoked."
    )
    webcal_url: str | None = Field(
        description="The same feed with the webcal scheme; null when revoked."
    )


class FeedLinksOut(BaseModel):
    feed_url: str = Field(description="The new private calendar feed address.")
    webcal_url: str


class CappedPage(BaseModel):
    """Paging without an exact total: counting every match would cost more than the page."""

    page: int
    per_page: int
    total: int = Field(
        description=f"How many match, counted up to {COUNT_LIMIT}: when `total_is_capped` is "
        f"true there are more than {COUNT_LIMIT} (not counted further; page on while "
        "`has_more`)."
    )
    total_is_capped: bool = Field(description=f"True when `total` stopped at {COUNT_LIMIT}.")
    has_more: bool = Field(description="True when another page follows this one.")


class PatientPageOut(CappedPage):
    items: list[PatientSummaryOut]


class ErrorOut(BaseModel):
    error: str
    fields: dict[str, str] = Field(default_factory=dict)


class AuditEntryOut(BaseModel):
    id: int
    occurred_at: datetime
    actor: str
    actor_user_id: int | None
    action: Literal["create", "update", "delete"]
    entity: str
    entity_id: int | None
    patient_id: int | None
    changes: dict[str, Any]


class AuditPageOut(BaseModel):
    items: list[AuditEntryOut]
    page: int
    per_page: int
    total: int


# --- Worklists, contact attempts and reminders (issue 4) -------------------------------------

ContactResultName = Literal["called", "left_message", "no_answer", "booked"]
RuleName = Literal["book-window", "booked-visit", "biopsy-heads-up", "biopsy-unbooked", "digest"]


class ContactAttemptIn(Input):
    result: ContactResultName
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None
    call_again_on: date | None = Field(
        default=None,
        description="Keep the event off the worklists until this day (after today, "
        "within a year). Leaving it out puts the event back on the lists.",
    )


class ContactAttemptOut(BaseModel):
    id: int
    event_id: int
    attempted_at: datetime
    by: str | None = Field(description="Email of the user who logged it.")
    result: ContactResultName
    note: str | None
    call_again_on: date | None


class ContactAttemptListOut(BaseModel):
    items: list[ContactAttemptOut]


class WorklistPatientOut(BaseModel):
    """Enough to call the patient: names, MRN and contact details."""

    id: int
    mrn: str
    given_name: str
    family_name: str
    phone: str | None
    email: str | None
    preferred_language: str
    email_opt_out: bool
    clinic: str


class ReminderOut(BaseModel):
    id: int
    rule: RuleName
    audience: Literal["patient", "coordinator"]
    recipient: str
    status: Literal["queued", "sending", "sent", "failed", "withdrawn"]
    due_at: datetime
    attempts: int
    last_error: str | None
    failed_at: datetime | None
    dismissed_at: datetime | None
    event_id: int | None
    patient_id: int | None


class WorklistItemOut(BaseModel):
    """One row of a worklist: an event (``reminder`` is null) or, on ``failed-reminders``, an
    undelivered message (``event``/``patient`` are null for a coordinator's digest)."""

    event: EventOut | None
    patient: WorklistPatientOut | None
    last_contact_attempt: ContactAttemptOut | None
    reminder: ReminderOut | None


class WorklistPageOut(CappedPage):
    name: str
    title: str
    description: str
    items: list[WorklistItemOut]


class WorklistSummaryOut(BaseModel):
    name: str
    title: str
    description: str
    count: int = Field(
        description=f"Items on the list, counted up to {COUNT_LIMIT}; more if capped."
    )
    count_is_capped: bool = Field(description=f"True when `count` stopped at {COUNT_LIMIT}.")


class WorklistIndexOut(BaseModel):
    items: list[WorklistSummaryOut]


# --- API tokens (issue 7) ---------------------------------------------------------------------


class ApiTokenOut(BaseModel):
    """A token without its secret (only its hash is stored; the secret was shown once)."""

    id: int
    user_id: int
    name: str
    created_at: datetime = Field(description="UTC.")
    last_used_at: datetime | None = Field(description="UTC, to within five minutes.")
    revoked_at: datetime | None = Field(description="UTC; a revoked token no longer works.")


class ApiTokenListOut(BaseModel):
    items: list[ApiTokenOut]
