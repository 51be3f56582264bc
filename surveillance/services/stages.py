"""Moving patients between care stages, by hand and by the plan's own rules.

The table of allowed moves lives in ``surveillance.stages``; this module applies it to the
database and keeps one invariant: a surveillance plan is active only while the patient is in
a surveillance stage (watchful waiting or biopsy review). Leaving those stages ends the plan,
so a patient in treatment never gets surveillance reminders.

The rules the plan applies on its own (``services.plans`` calls them):

* enrolment puts the patient into watchful waiting;
* the one-year biopsy moves a watched patient to biopsy review: when its window opens (the
  daily sweep, :func:`advance_biopsy_reviews`), or when it is booked or completed earlier;
* a completed biopsy that is stable moves them back to watchful waiting (an inconclusive one
  leaves them in review for the team to decide);
* a progression outcome at any event ends the plan and moves them to treatment planning;
* surveillance ended for any other reason moves them to surveillance ended.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import contains_eager

from surveillance import clock
from surveillance.errors import ValidationFailed
from surveillance.extensions import db
from surveillance.models import (
    Clinic,
    EventStatus,
    Outcome,
    Patient,
    PlanEvent,
    PlanStatus,
    StageChange,
    SurveillancePlan,
    User,
)
from surveillance.planning import EventKind
from surveillance.stages import (
    SURVEILLANCE_STAGES,
    Stage,
    TransitionRefused,
    UnknownStage,
    check_transition,
    is_allowed,
    parse,
)

MAX_REASON_LENGTH = 2000
ENROLLED = "Enrolled in watchful waiting."
BIOPSY_WINDOW_OPEN = "The one-year biopsy window opened."
BIOPSY_BOOKED = "The one-year biopsy was booked."
BIOPSY_DONE = "The one-year biopsy was done."
BIOPSY_STABLE = "Biopsy result stable: back to watchful waiting."
# Biopsies not yet done, whose opening window puts the patient in review.
_PENDING_BIOPSY = (EventStatus.PLANNED, EventStatus.BOOKED, EventStatus.MISSED)


def change_stage(patient: Patient, to: str, reason: str, user: User | None) -> StageChange:
    """Move ``patient`` to stage ``to`` by hand; ``ValidationFailed`` (422) names what is wrong.

    Leaving watchful waiting or biopsy review ends the active surveillance plan (its future
    events are cancelled) with the same reason; coming back to watchful waiting without a plan
    starts a new one from today.
    """
    errors: dict[str, str] = {}
    target: Stage | None = None
    try:
        target = check_transition(patient.stage, parse(to))
    except (UnknownStage, TransitionRefused) as exc:
        errors["stage"] = str(exc)
    reason = (reason or "").strip()
    if not reason:
        errors["reason"] = "Say why the stage changes."
    elif len(reason) > MAX_REASON_LENGTH:
        errors["reason"] = f"Keep the reason under {MAX_REASON_LENGTH} characters."
    if errors or target is None:
        raise ValidationFailed(errors)
    plan = patient.active_plan
    if plan is not None and target not in SURVEILLANCE_STAGES:
        # Imported here: services.plans calls back into this module for its rules.
        from surveillance.services import plans

        plans.end_surveillance(plan, reason, next_stage=target, user=user)
        return patient.stage_history[-1]
    change = _record(patient, target, reason, user)
    if target is Stage.WATCHFUL_WAITING and patient.active_plan is None:
        from surveillance.services import plans

        plans.restart_surveillance(patient, reason)
    return change


def _record(patient: Patient, to: Stage, reason: str, user: User | None) -> StageChange:
    """Write the move (already checked) and what follows from it."""
    change = StageChange(
        patient=patient,
        from_stage=patient.stage if patient.stage_history else None,
        to_stage=to.value,
        changed_at=clock.utcnow(),
        changed_by=user,
        reason=reason,
    )
    db.session.add(change)
    patient.stage = to.value
    patient.feed_version += 1  # the patient page shows the stage
    db.session.flush()
    return change


def _move_if_allowed(patient: Patient, to: Stage, reason: str) -> StageChange | None:
    """A move the system makes: only from where it makes sense, never an error for the
    coordinator's action that triggered it."""
    if not is_allowed(patient.stage, to):
        return None
    return _record(patient, to, reason, None)


# --- Rules the surveillance plan applies ------------------------------------------------------


def enrolled(patient: Patient) -> StageChange:
    """A newly enrolled patient starts in watchful waiting (their first stage)."""
    return _record(patient, Stage.WATCHFUL_WAITING, ENROLLED, None)


def plan_ended(patient: Patient, next_stage: str, reason: str, user: User | None) -> None:
    """The plan ends: check and record the stage it ends into (raises ``ValidationFailed``
    before anything is written when the move is not allowed)."""
    try:
        target = check_transition(patient.stage, parse(next_stage))
    except (UnknownStage, TransitionRefused) as exc:
        raise ValidationFailed({"stage": str(exc)}) from exc
    _record(patient, target, reason, user)


def biopsy_booked(event: PlanEvent) -> None:
    if event.kind == EventKind.BIOPSY and event.plan.status == PlanStatus.ACTIVE:
        _start_review(event.patient, BIOPSY_BOOKED)


def event_completed(event: PlanEvent) -> None:
    """A biopsy done moves a watched patient into review; a stable result back out of it.
    (Progression is handled where the plan ends: see ``services.plans.complete``.)"""
    if event.kind != EventKind.BIOPSY or event.plan.status != PlanStatus.ACTIVE:
        return
    _start_review(event.patient, BIOPSY_DONE)
    if event.outcome == Outcome.STABLE:
        _move_if_allowed(event.patient, Stage.WATCHFUL_WAITING, BIOPSY_STABLE)


def _start_review(patient: Patient, reason: str) -> None:
    if patient.stage == Stage.WATCHFUL_WAITING:
        _record(patient, Stage.BIOPSY_REVIEW, reason, None)


def advance_biopsy_reviews(today: date | None = None) -> list[Patient]:
    """The daily sweep: move every watched patient whose one-year biopsy window has opened to
    biopsy review, once per plan (a coordinator who moves them back is not overruled the
    next morning). ``today`` defaults to each clinic's own date. Returns who moved."""
    # Candidates with a generous bound; the exact day is each clinic's own "today".
    latest_today = today or (clock.utcnow().date() + timedelta(days=1))
    already_reviewed = exists().where(
        StageChange.patient_id == Patient.id,
        StageChange.to_stage == Stage.BIOPSY_REVIEW,
        StageChange.changed_at >= SurveillancePlan.created_at,
    )
    events = db.session.scalars(
        select(PlanEvent)
        .join(PlanEvent.plan)
        .join(PlanEvent.patient)
        .join(Patient.clinic)
        .where(
            PlanEvent.kind == EventKind.BIOPSY,
            PlanEvent.status.in_(_PENDING_BIOPSY),
            PlanEvent.window_start <= latest_today,
            SurveillancePlan.status == PlanStatus.ACTIVE,
            Patient.stage == Stage.WATCHFUL_WAITING,
            ~already_reviewed,
        )
        .options(contains_eager(PlanEvent.patient).contains_eager(Patient.clinic))
        .order_by(PlanEvent.patient_id)
    ).all()
    moved: list[Patient] = []
    for event in events:
        patient = event.patient
        if event.window_start <= (today or _clinic_today(patient.clinic)) and (
            patient.stage == Stage.WATCHFUL_WAITING
        ):
            _record(patient, Stage.BIOPSY_REVIEW, BIOPSY_WINDOW_OPEN, None)
            moved.append(patient)
    return moved


def _clinic_today(clinic: Clinic) -> date:
    return clock.today_in(clinic.timezone)
