"""Clinic settings and user management (admins only; the screens check the role).

Changing a clinic's calendar (working days, closures, federal holidays) keeps the plan rule
"no due date on a day the clinic is closed" true: planned future events are re-planned onto
working days, and booked appointments that now fall on a closed day are reported for the
coordinator to rebook (a booked time was agreed with the patient, so it is never moved
silently). Changing the time zone keeps booked appointments at the same local wall-clock time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from surveillance import clock, planning, privacy
from surveillance.errors import Conflict, NotFound, ValidationFailed
from surveillance.extensions import db
from surveillance.models import (
    Clinic,
    ClinicClosure,
    EventStatus,
    PlanEvent,
    PlanStatus,
    Role,
    SurveillancePlan,
    User,
)
from surveillance.planning import EventKind
from surveillance.services import plans

PHONE = re.compile(r"^[0-9+()\-. ]*$")


@dataclass
class CalendarChange:
    """What a calendar change did to the clinic's plans."""

    moved: int = 0
    booked_on_closed_days: list[PlanEvent] = field(default_factory=list)


def update_clinic(
    clinic: Clinic,
    *,
    name: str,
    timezone: str,
    address: str,
    phone: str,
    working_weekdays: Iterable[int],
    observe_us_holidays: bool,
    calendar_name: str,
    calendar_address: str,
) -> CalendarChange:
    weekdays = sorted(set(working_weekdays))
    errors: dict[str, str] = {}
    if not name.strip():
        errors["name"] = "A clinic needs a name."
    errors |= privacy.patient_facing_clinic_errors(calendar_name, calendar_address)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors["timezone"] = "Choose a time zone from the list."
    if not PHONE.match(phone.strip()) or len(phone.strip()) > 40:
        errors["phone"] = "Use digits, spaces and + ( ) - . only."
    if not weekdays or any(day not in range(7) for day in weekdays):
        errors["working_weekdays"] = "Choose at least one working day."
    if errors:
        raise ValidationFailed(errors)
    if timezone != clinic.timezone:
        _keep_wall_clock_times(clinic, ZoneInfo(clinic.timezone), ZoneInfo(timezone))
    calendar_changed = (
        "".join(map(str, weekdays)) != clinic.working_weekdays
        or observe_us_holidays != clinic.observe_us_holidays
    )
    clinic.name = name.strip()
    clinic.timezone = timezone
    clinic.address = address.strip()
    clinic.calendar_name = calendar_name.strip()
    clinic.calendar_address = calendar_address.strip()
    clinic.phone = phone.strip()
    clinic.working_weekdays = "".join(map(str, weekdays))
    clinic.observe_us_holidays = observe_us_holidays
    db.session.flush()
    return follow_calendar(clinic) if calendar_changed else CalendarChange()


def add_closure(clinic: Clinic, day: date, reason: str) -> CalendarChange:
    if any(c.closed_on == day for c in clinic.closures):
        raise Conflict("That day is already a closure.", {"closed_on": "Already listed as closed."})
    if len(reason.strip()) > 200:
        raise ValidationFailed({"reason": "Keep the reason under 200 characters."})
    clinic.closures.append(ClinicClosure(closed_on=day, reason=reason.strip()))
    db.session.flush()
    return follow_calendar(clinic)


def remove_closure(clinic: Clinic, closure_id: int) -> tuple[date, CalendarChange]:
    closure = next((c for c in clinic.closures if c.id == closure_id), None)
    if closure is None:
        raise NotFound("Closure not found.")
    clinic.closures.remove(closure)
    db.session.flush()
    return closure.closed_on, follow_calendar(clinic)


def follow_calendar(clinic: Clinic) -> CalendarChange:
    """Re-plan the clinic's active plans onto its current calendar."""
    db.session.expire(clinic, ["closures"])
    calendar = clinic.calendar()
    today = clock.today_in(clinic.timezone)
    change = CalendarChange()
    active = db.session.scalars(
        select(SurveillancePlan)
        .where(SurveillancePlan.status == PlanStatus.ACTIVE)
        .where(SurveillancePlan.patient.has(clinic_id=clinic.id))
    ).all()
    for plan in active:
        change.moved += len(plans.replan(plan, today).moves)
        change.moved += _move_biopsy(plan, calendar, today)
        zone = ZoneInfo(clinic.timezone)
        for event in plan.events:
            if event.status != EventStatus.BOOKED or event.starts_at is None:
                continue
            local_day = event.starts_at.astimezone(zone).date()
            if local_day >= today and not calendar.is_working_day(local_day):
                change.booked_on_closed_days.append(event)
    db.session.flush()
    return change


def _move_biopsy(plan: SurveillancePlan, calendar, today: date) -> int:  # type: ignore[no-untyped-def]
    moved = 0
    for event in plan.events:
        if event.kind != EventKind.BIOPSY or event.status != EventStatus.PLANNED:
            continue
        if event.due_on < today:
            continue  # overdue: left for the coordinator to record
        slot = planning.biopsy_slot(plan.enrolled_on, calendar)
        if slot.due_on != event.due_on:
            event.due_on, event.window_start, event.window_end = (
                slot.due_on,
                slot.window_start,
                slot.window_end,
            )
            plans.touch(event)
            moved += 1
    return moved


def _keep_wall_clock_times(clinic: Clinic, old: ZoneInfo, new: ZoneInfo) -> None:
    now = clock.utcnow()
    events = db.session.scalars(
        select(PlanEvent).where(
            PlanEvent.patient.has(clinic_id=clinic.id),
            PlanEvent.status == EventStatus.BOOKED,
            PlanEvent.starts_at >= now,
        )
    ).all()
    for event in events:
        assert event.starts_at is not None and event.ends_at is not None
        length = event.ends_at - event.starts_at
        wall = event.starts_at.astimezone(old).replace(tzinfo=None)
        event.starts_at = wall.replace(tzinfo=new).astimezone(ZoneInfo("UTC"))
        event.ends_at = event.starts_at + length
        plans.touch(event)


# --- Users ------------------------------------------------------------------------------------


def update_user(
    actor: User,
    user: User,
    *,
    full_name: str,
    role: str,
    clinics: list[Clinic],
    is_active: bool,
) -> None:
    errors: dict[str, str] = {}
    if role not in set(Role):
        errors["role"] = "Role must be coordinator or admin."
    if user.id == actor.id and role != Role.ADMIN:
        errors["role"] = "You cannot remove your own admin role."
    if user.id == actor.id and not is_active:
        errors["is_active"] = "You cannot deactivate your own account."
    if role == Role.COORDINATOR and not clinics:
        errors["clinics"] = "A coordinator needs at least one clinic."
    if errors:
        raise ValidationFailed(errors)
    user.full_name = full_name.strip()
    user.role = role
    user.clinics = list(clinics)
    user.is_active = is_active
    db.session.flush()


def clinics_by_ids(ids: Iterable[int]) -> list[Clinic]:
    wanted = set(ids)
    if not wanted:
        return []
    found = list(db.session.scalars(select(Clinic).where(Clinic.id.in_(wanted))).all())
    if len(found) != len(wanted):
        raise ValidationFailed({"clinics": "Unknown clinic."})
    return found
