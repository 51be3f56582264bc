"""Enrolment and everything that changes a surveillance plan or its events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from surveillance import clock, planning, privacy
from surveillance.errors import Conflict, ValidationFailed
from surveillance.extensions import db
from surveillance.models import (
    Clinic,
    EventStatus,
    Outcome,
    Patient,
    PlanEvent,
    PlanStatus,
    SurveillancePlan,
    User,
)
from surveillance.planning import EventKind, EventSlot, ExistingVisit
from surveillance.reminders import outbox as reminder_outbox
from surveillance.services import feed_tokens
from surveillance.services import stages as care_stages
from surveillance.stages import Stage

MAX_ENROLMENT_AHEAD_MONTHS = 12
REPLANNED_REASON = "No longer needed after the plan changed."
MIN_DURATION_MINUTES, MAX_DURATION_MINUTES = 5, 8 * 60


@dataclass(frozen=True)
class Enrolment:
    """Validated enrolment input (the API and the form both produce one)."""

    mrn: str
    given_name: str
    family_name: str
    birth_date: date
    enrolled_on: date
    primary_site: str
    differentiation: str
    grade: str
    interval_months: int | None = None
    email: str | None = None
    phone: str | None = None
    preferred_language: str = "en"
    ki67: float | None = None
    size_mm: int | None = None
    functional: str = "unknown"
    justification: str | None = None


def check_enrolment(data: Enrolment, today: date) -> planning.IntervalAdvice:
    """Apply the clinic's rules to an enrolment; raise ``ValidationFailed`` listing them all."""
    errors: dict[str, str] = {}
    advice = planning.suggest_interval(data.differentiation, data.grade, data.ki67)
    if data.birth_date > today:
        errors["birth_date"] = "Birth date cannot be in the future."
    if data.enrolled_on < data.birth_date:
        errors["enrolled_on"] = "Enrolment cannot be before the birth date."
    elif data.enrolled_on > planning.add_months(today, MAX_ENROLMENT_AHEAD_MONTHS):
        errors["enrolled_on"] = "Enrolment cannot be more than a year ahead."
    if data.interval_months is not None:
        try:
            planning.validate_interval(data.interval_months)
        except planning.PlanningError:
            errors["interval_months"] = "Interval must be 3, 4, 5 or 6 months."
    if advice.requires_justification and not (data.justification or "").strip():
        errors["justification"] = (
            "Poorly differentiated or G3 tumours need a written clinical justification "
            "for watchful waiting."
        )
    if errors:
        raise ValidationFailed(errors)
    return advice


def enrol(data: Enrolment, clinic: Clinic) -> Patient:
    """Create the patient, their active plan and its events."""
    today = clock.today_in(clinic.timezone)
    advice = check_enrolment(data, today)
    if db.session.scalar(select(Patient.id).where(Patient.mrn == data.mrn)) is not None:
        raise Conflict("A patient with this MRN already exists.", {"mrn": "MRN already in use."})
    patient = Patient(
        clinic=clinic,
        mrn=data.mrn,
        given_name=data.given_name,
        family_name=data.family_name,
        birth_date=data.birth_date,
        email=data.email,
        phone=data.phone,
        preferred_language=data.preferred_language,
        primary_site=data.primary_site,
        differentiation=data.differentiation,
        grade=data.grade,
        ki67=data.ki67,
        size_mm=data.size_mm,
        functional=data.functional,
    )
    interval = data.interval_months or advice.months
    _insert_unique_mrn(patient)
    _start_plan(patient, data.enrolled_on, interval, data.justification, today)
    feed_tokens.rotate_patient_token(patient)
    care_stages.enrolled(patient)
    return patient


def _start_plan(
    patient: Patient, enrolled_on: date, interval: int, justification: str | None, today: date
) -> SurveillancePlan:
    """A new active plan with its visits and biopsy (the caller checked the inputs)."""
    clinic = patient.clinic
    slots = _safe_plan(
        lambda: planning.initial_plan(
            enrolled_on, interval, today, clinic.calendar(), _horizon_months()
        )
    )
    plan = SurveillancePlan(
        patient=patient,
        interval_months=interval,
        enrolled_on=enrolled_on,
        anchor_on=enrolled_on,
        anchor_ordinal=0,
        # The plan reaches as far as its last visit (see ``replan``).
        horizon_until=max(s.nominal_on for s in slots if s.kind == EventKind.VISIT),
        justification=(justification or "").strip() or None,
    )
    db.session.add(plan)
    for slot in slots:
        db.session.add(_new_event(plan, slot))
    db.session.flush()
    return plan


def restart_surveillance(patient: Patient, reason: str) -> SurveillancePlan:
    """A patient back in watchful waiting (e.g. after treatment planning decided to watch)
    gets a new plan counted from today, with the last plan's interval (or the profile's
    suggestion), so nobody sits in watchful waiting without visits. The reason stands as the
    justification when the tumour profile needs one."""
    if patient.active_plan is not None:
        raise Conflict("This patient already has an active surveillance plan.")
    today = clock.today_in(patient.clinic.timezone)
    advice = planning.suggest_interval(patient.differentiation, patient.grade, patient.ki67)
    previous = patient.latest_plan
    interval = previous.interval_months if previous else advice.months
    justification = reason if advice.requires_justification else None
    plan = _start_plan(patient, today, interval, justification, today)
    patient.feed_version += 1
    return plan


def _insert_unique_mrn(patient: Patient) -> None:
    """Insert the patient; a concurrent enrolment with the same MRN that slipped past the
    check above is a 409 too, not a database error (a savepoint keeps the transaction)."""
    try:
        with db.session.begin_nested():
            db.session.add(patient)
    except IntegrityError as exc:
        raise Conflict(
            "A patient with this MRN already exists.", {"mrn": "MRN already in use."}
        ) from exc


def _horizon_months() -> int:
    from flask import current_app, has_app_context

    if has_app_context():
        return int(current_app.config.get("PLAN_HORIZON_MONTHS", planning.DEFAULT_HORIZON_MONTHS))
    return planning.DEFAULT_HORIZON_MONTHS


def _safe_plan(build):  # type: ignore[no-untyped-def]
    try:
        return build()
    except planning.PlanningError as exc:
        raise ValidationFailed({"enrolled_on": str(exc)}) from exc


def _new_event(plan: SurveillancePlan, slot: EventSlot) -> PlanEvent:
    return PlanEvent(
        plan=plan,
        patient=plan.patient,
        clinic_id=plan.patient.clinic_id,  # the patient is in the database by now
        kind=slot.kind.value,
        ordinal=slot.ordinal,
        due_on=slot.due_on,
        window_start=slot.window_start,
        window_end=slot.window_end,
        status=EventStatus.PLANNED,
        updated_at=clock.utcnow(),
    )


def touch(event: PlanEvent) -> None:
    """Record a change a calendar would show: new SEQUENCE, new LAST-MODIFIED, new feed."""
    event.sequence += 1
    event.updated_at = clock.utcnow()
    event.patient.feed_version += 1
    # Reminders that no longer fit the event (moved, done, cancelled) stop in this transaction.
    reminder_outbox.withdraw_stale(event, event.updated_at)


# --- Re-planning ------------------------------------------------------------------------------


def _visits(plan: SurveillancePlan) -> list[PlanEvent]:
    return [e for e in plan.events if e.kind == EventKind.VISIT]


def _desired_visits(plan: SurveillancePlan, today: date) -> list[EventSlot]:
    until = planning.horizon_end(today, plan.enrolled_on, _horizon_months())
    try:
        return planning.visit_slots(
            plan.anchor_on,
            plan.anchor_ordinal,
            plan.interval_months,
            until,
            plan.patient.clinic.calendar(),
        )
    except planning.PlanningError as exc:
        raise ValidationFailed({"plan": str(exc)}) from exc


def replan(plan: SurveillancePlan, today: date) -> planning.Reconciliation:
    """Bring the plan's future visits in line with its anchor, interval and horizon."""
    desired = _desired_visits(plan, today)
    by_id = {e.id: e for e in _visits(plan)}
    existing = [
        ExistingVisit(
            e.id,
            e.ordinal,
            planning.reconciliation_status(e.status, e.cancelled_by_replan),
            e.due_on,
        )
        for e in by_id.values()
    ]
    result = planning.reconcile_visits(existing, desired, plan.anchor_ordinal, today)
    for key, slot in result.moves:
        event = by_id[key]  # type: ignore[index]
        event.due_on, event.window_start, event.window_end = (
            slot.due_on,
            slot.window_start,
            slot.window_end,
        )
        if event.status == EventStatus.CANCELLED:  # a withdrawn slot comes back
            event.status, event.cancel_reason, event.cancelled_by_replan = (
                EventStatus.PLANNED,
                None,
                False,
            )
        touch(event)
    for slot in result.creates:
        db.session.add(_new_event(plan, slot))
    if result.creates:
        plan.patient.feed_version += 1  # new visits show in the feed like any other change
    for key in result.cancels:
        _cancel(by_id[key], REPLANNED_REASON, by_replan=True)  # type: ignore[index]
    _refresh_biopsy(plan, today)
    # The plan reaches as far as its last visit, which is at least the horizon.
    plan.horizon_until = desired[-1].nominal_on
    db.session.flush()
    return result


def _refresh_biopsy(plan: SurveillancePlan, today: date) -> None:
    """Keep a still-planned biopsy on a working day (closures may have been added since)."""
    try:
        slot = planning.biopsy_slot(plan.enrolled_on, plan.patient.clinic.calendar())
    except planning.PlanningError as exc:
        raise ValidationFailed({"plan": str(exc)}) from exc
    for event in plan.events:
        if (
            event.kind == EventKind.BIOPSY
            and event.status == EventStatus.PLANNED
            and event.due_on >= today
            and event.due_on != slot.due_on
        ):
            event.due_on, event.window_start, event.window_end = (
                slot.due_on,
                slot.window_start,
                slot.window_end,
            )
            touch(event)


def refresh_clinic_plans(clinic: Clinic) -> int:
    """Re-plan every active plan of a clinic after its calendar changed (a closure added,
    working days changed), so no future planned date falls on a closed day. Returns how many
    plans changed."""
    today = clock.today_in(clinic.timezone)
    active = db.session.scalars(
        select(SurveillancePlan)
        .join(SurveillancePlan.patient)
        .where(Patient.clinic_id == clinic.id, SurveillancePlan.status == PlanStatus.ACTIVE)
        .options(selectinload(SurveillancePlan.events))
    ).all()
    changed = 0
    for plan in active:
        versions = plan.patient.feed_version
        replan(plan, today)
        changed += plan.patient.feed_version != versions
    return changed


def extend_horizon(plan: SurveillancePlan, today: date) -> int:
    """Keep the plan at least the horizon ahead; return how many visits were added."""
    if plan.status != PlanStatus.ACTIVE:
        return 0
    if plan.horizon_until >= planning.horizon_end(today, plan.enrolled_on, _horizon_months()):
        return 0
    result = replan(plan, today)
    return len(result.creates) + len(result.moves)


def change_interval(plan: SurveillancePlan, months: int) -> None:
    _require_active(plan)
    try:
        planning.validate_interval(months)
    except planning.PlanningError as exc:
        raise ValidationFailed(
            {"interval_months": "Interval must be 3, 4, 5 or 6 months."}
        ) from exc
    if months == plan.interval_months:
        return
    today = clock.today_in(plan.patient.clinic.timezone)
    seen_on, seen_ordinal = _last_seen_visit(plan)
    plan.interval_months = months
    plan.anchor_on = planning.anchor_for_new_interval(seen_on, months, today)
    plan.anchor_ordinal = seen_ordinal
    replan(plan, today)


def _last_seen_visit(plan: SurveillancePlan) -> tuple[date, int]:
    """The date and number of the latest visit that happened or is booked (the enrolment,
    number 0, when there is none): a new interval counts from there."""
    zone = ZoneInfo(plan.patient.clinic.timezone)
    seen = [
        (e.ordinal, e.completed_on)
        for e in _visits(plan)
        if e.status == EventStatus.COMPLETED and e.completed_on
    ] + [
        (e.ordinal, e.starts_at.astimezone(zone).date())
        for e in _visits(plan)
        if e.status == EventStatus.BOOKED and e.starts_at
    ]
    if not seen:
        return plan.enrolled_on, 0
    ordinal, on = max(seen)
    return on, ordinal


def end_surveillance(
    plan: SurveillancePlan,
    reason: str,
    next_stage: str = Stage.SURVEILLANCE_ENDED,
    user: User | None = None,
) -> None:
    """End the plan: every event that has not happened yet is cancelled, and the patient
    moves to ``next_stage`` (care stages; recorded as changed by ``user``)."""
    _require_active(plan)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed({"reason": "Say why surveillance ends."})
    care_stages.plan_ended(plan.patient, next_stage, reason, user)
    plan.status = PlanStatus.ENDED
    plan.ended_on = clock.today_in(plan.patient.clinic.timezone)
    plan.end_reason = reason
    for event in plan.events:
        if event.status in (EventStatus.PLANNED, EventStatus.BOOKED):
            _cancel(event, "Surveillance ended.")
    plan.patient.feed_version += 1
    db.session.flush()


def _require_active(plan: SurveillancePlan) -> None:
    if plan.status != PlanStatus.ACTIVE:
        raise Conflict("Surveillance has ended for this patient.")


# --- Event actions ----------------------------------------------------------------------------

_ALLOWED: dict[str, set[str]] = {
    "book": {EventStatus.PLANNED, EventStatus.MISSED},
    "reschedule": {EventStatus.BOOKED},
    "complete": {EventStatus.PLANNED, EventStatus.BOOKED, EventStatus.MISSED},
    "missed": {EventStatus.PLANNED, EventStatus.BOOKED},
    "cancel": {EventStatus.PLANNED, EventStatus.BOOKED, EventStatus.MISSED},
}


def _require_transition(event: PlanEvent, action: str) -> None:
    if event.status not in _ALLOWED[action]:
        raise Conflict(f"A {event.status} {event.kind} cannot be {_PAST[action]}.")
    if action != "complete":
        _require_active(event.plan)


_PAST = {
    "book": "booked (reschedule a booked one)",
    "reschedule": "rescheduled (book it first)",
    "complete": "completed",
    "missed": "marked missed",
    "cancel": "cancelled",
}


def _local_slot(
    clinic: Clinic, starts_at: datetime, duration_minutes: int
) -> tuple[datetime, datetime]:
    """Check a local clinic time and turn it into a UTC start and end."""
    errors: dict[str, str] = {}
    if starts_at.tzinfo is not None:
        errors["starts_at"] = "Give the local clinic time without a UTC offset."
    elif (reason := clinic.calendar().closure_reason(starts_at.date())) is not None:
        errors["starts_at"] = f"Cannot book on {starts_at.date().isoformat()}: {reason}."
    if not MIN_DURATION_MINUTES <= duration_minutes <= MAX_DURATION_MINUTES:
        errors["duration_minutes"] = (
            f"Duration must be {MIN_DURATION_MINUTES} to {MAX_DURATION_MINUTES} minutes."
        )
    if errors:
        raise ValidationFailed(errors)
    zone = ZoneInfo(clinic.timezone)
    local = starts_at.replace(tzinfo=zone)
    start_utc = local.astimezone(ZoneInfo("UTC"))
    if start_utc.astimezone(zone).replace(tzinfo=None) != starts_at:
        # The wall-clock time does not exist (the hour skipped when clocks go forward).
        raise ValidationFailed({"starts_at": "That time does not exist in the clinic's zone."})
    return start_utc, start_utc + timedelta(minutes=duration_minutes)


def book(
    event: PlanEvent, starts_at: datetime, duration_minutes: int, location: str | None
) -> None:
    _require_transition(event, "book")
    _set_booking(event, starts_at, duration_minutes, location)
    care_stages.biopsy_booked(event)


def reschedule(
    event: PlanEvent, starts_at: datetime, duration_minutes: int, location: str | None
) -> None:
    _require_transition(event, "reschedule")
    _set_booking(event, starts_at, duration_minutes, location)


def _set_booking(
    event: PlanEvent, starts_at: datetime, duration_minutes: int, location: str | None
) -> None:
    clinic = event.patient.clinic
    typed = (location or "").strip()
    # The place goes into the patient's calendar and emails: it must not name the condition.
    location_errors = privacy.patient_visible_errors({"location": typed})
    try:
        slot = _local_slot(clinic, starts_at, duration_minutes)
    except ValidationFailed as exc:
        raise ValidationFailed(exc.fields | location_errors) from None
    if location_errors:
        raise ValidationFailed(location_errors)
    event.starts_at, event.ends_at = slot
    event.location = typed or clinic.for_patients().place
    event.status = EventStatus.BOOKED
    touch(event)
    db.session.flush()


def complete(event: PlanEvent, completed_on: date, outcome: str) -> None:
    _require_transition(event, "complete")
    plan = event.plan
    today = clock.today_in(event.patient.clinic.timezone)
    errors = {}
    if completed_on > today:
        errors["completed_on"] = "Completion date cannot be in the future."
    elif completed_on < plan.enrolled_on:
        errors["completed_on"] = "Completion date cannot be before enrolment."
    elif event.kind == EventKind.VISIT and completed_on < plan.anchor_on:
        errors["completed_on"] = (
            f"Completion date cannot be before the last recorded visit ({plan.anchor_on})."
        )
    if outcome not in set(Outcome):
        errors["outcome"] = "Outcome must be stable, progression or inconclusive."
    if errors:
        raise ValidationFailed(errors)
    event.status = EventStatus.COMPLETED
    event.completed_on = completed_on
    event.outcome = outcome
    touch(event)
    if plan.status != PlanStatus.ACTIVE:
        db.session.flush()
        return
    care_stages.event_completed(event)
    if outcome == Outcome.PROGRESSION:
        end_surveillance(
            plan, "Progression found at a surveillance event.", Stage.TREATMENT_PLANNING
        )
        return
    if (
        event.kind == EventKind.VISIT
        and completed_on != event.due_on
        and event.ordinal >= plan.anchor_ordinal
    ):
        # A visit done early or late restarts the clock from the day it really happened.
        plan.anchor_on, plan.anchor_ordinal = completed_on, event.ordinal
        replan(plan, today)
    db.session.flush()


def mark_missed(event: PlanEvent) -> None:
    _require_transition(event, "missed")
    today = clock.today_in(event.patient.clinic.timezone)
    happens_on = (
        event.starts_at.astimezone(ZoneInfo(event.patient.clinic.timezone)).date()
        if event.starts_at
        else event.due_on
    )
    if happens_on > today:
        raise Conflict("An event cannot be marked missed before its date.")
    event.status = EventStatus.MISSED
    touch(event)
    db.session.flush()


def cancel(event: PlanEvent, reason: str | None) -> None:
    _require_transition(event, "cancel")
    _cancel(event, (reason or "").strip() or "Cancelled by the clinic.")
    db.session.flush()


def _cancel(event: PlanEvent, reason: str, by_replan: bool = False) -> None:
    event.status = EventStatus.CANCELLED
    event.cancel_reason = reason
    event.cancelled_by_replan = by_replan
    touch(event)


def allowed_actions(event: PlanEvent) -> list[str]:
    """The actions ``event`` accepts now, in the order screens offer them (the same rules the
    actions themselves enforce, so a screen never offers a button that can only fail)."""
    actions = [name for name, statuses in _ALLOWED.items() if event.status in statuses]
    if event.plan.status != PlanStatus.ACTIVE:
        actions = [name for name in actions if name == "complete"]
    if "missed" in actions:
        zone = ZoneInfo(event.patient.clinic.timezone)
        happens_on = event.starts_at.astimezone(zone).date() if event.starts_at else event.due_on
        if happens_on > clock.today_in(event.patient.clinic.timezone):
            actions.remove("missed")
    return actions
