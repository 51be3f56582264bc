"""Model → JSON, matching the response models in ``schemas``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from surveillance import clock, planning
from surveillance.feeds import urls as feed_urls
from surveillance.models import EventStatus, Patient, PlanEvent, StageChange, SurveillancePlan
from surveillance.stages import allowed_next


def _local(moment: datetime | None, timezone: str) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(ZoneInfo(timezone)).replace(tzinfo=None).isoformat(timespec="minutes")


def event_json(event: PlanEvent, today: date, timezone: str | None = None) -> dict[str, Any]:
    """``timezone`` is the patient's clinic's, when the caller has it at hand: looking it up
    through ``event.patient`` costs more than the rest of this function for a list of events."""
    if timezone is None:
        timezone = event.patient.clinic.timezone
    return {
        "id": event.id,
        "uid": event.uid,
        "kind": event.kind,
        "ordinal": event.ordinal,
        "due_on": event.due_on.isoformat(),
        "window_start": event.window_start.isoformat(),
        "window_end": event.window_end.isoformat(),
        "status": event.status,
        "starts_at": _local(event.starts_at, timezone),
        "ends_at": _local(event.ends_at, timezone),
        "location": event.location,
        "sequence": event.sequence,
        "completed_on": event.completed_on.isoformat() if event.completed_on else None,
        "outcome": event.outcome,
        "overdue": event.status == EventStatus.PLANNED and event.due_on < today,
        "call_again_on": event.call_again_on.isoformat() if event.call_again_on else None,
    }


def plan_json(plan: SurveillancePlan) -> dict[str, Any]:
    patient = plan.patient
    advice = planning.suggest_interval(patient.differentiation, patient.grade, patient.ki67)
    return {
        "id": plan.id,
        "status": plan.status,
        "interval_months": plan.interval_months,
        "suggested_interval_months": advice.months,
        "enrolled_on": plan.enrolled_on.isoformat(),
        "anchor_on": plan.anchor_on.isoformat(),
        "horizon_until": plan.horizon_until.isoformat(),
        "justification": plan.justification,
        "ended_on": plan.ended_on.isoformat() if plan.ended_on else None,
        "end_reason": plan.end_reason,
    }


def patient_summary_json(
    patient: Patient, upcoming: PlanEvent | None, today: date
) -> dict[str, Any]:
    """A list item: ``upcoming`` is the next open event of the patient's latest plan, found for
    the whole page at once (``patient_search.next_open_events``)."""
    plan = patient.latest_plan
    return {
        "id": patient.id,
        "mrn": patient.mrn,
        "given_name": patient.given_name,
        "family_name": patient.family_name,
        "clinic": patient.clinic.slug,
        "plan_status": plan.status if plan else None,
        "next_event": event_json(upcoming, today, patient.clinic.timezone) if upcoming else None,
    }


def patient_json(patient: Patient) -> dict[str, Any]:
    timezone = patient.clinic.timezone
    today = clock.today_in(timezone)
    plan = patient.latest_plan
    return {
        "id": patient.id,
        "mrn": patient.mrn,
        "given_name": patient.given_name,
        "family_name": patient.family_name,
        "birth_date": patient.birth_date.isoformat(),
        "email": patient.email,
        "phone": patient.phone,
        "preferred_language": patient.preferred_language,
        "email_opt_out": patient.email_opt_out,
        "clinic": patient.clinic.slug,
        "tumour": {
            "primary_site": patient.primary_site,
            "differentiation": patient.differentiation,
            "grade": patient.grade,
            "ki67": patient.ki67,
            "size_mm": patient.size_mm,
            "functional": patient.functional,
        },
        "plan": plan_json(plan) if plan else None,
        "events": [event_json(e, today, timezone) for e in plan.events] if plan else [],
        "stage": patient.stage,
        "next_stages": [s.value for s in allowed_next(patient.stage)],
        "stage_history": [stage_change_json(c) for c in patient.stage_history],
        **feed_links_json(patient),
    }


def stage_change_json(change: StageChange) -> dict[str, Any]:
    return {
        "from_stage": change.from_stage,
        "to_stage": change.to_stage,
        "changed_at": change.changed_at.isoformat(),
        "changed_by": change.changed_by.email if change.changed_by else None,
        "reason": change.reason,
    }


def feed_links_json(patient: Patient) -> dict[str, Any]:
    """The patient's private calendar addresses (both ``None`` once revoked)."""
    return {
        "feed_url": feed_urls.patient_feed_url(patient),
        "webcal_url": feed_urls.patient_webcal_url(patient),
    }
