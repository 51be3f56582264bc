"""Booked appointments on one clinic day, for the Today screen ("who is coming tomorrow")."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import contains_eager, joinedload

from surveillance.extensions import db
from surveillance.models import Clinic, EventStatus, Patient, PlanEvent, User
from surveillance.services.access import visible_clinic_ids


def _day_bounds(clinic: Clinic, day: date) -> tuple[datetime, datetime]:
    """The clinic's local day as a UTC interval (days can be 23 or 25 hours long)."""
    zone = ZoneInfo(clinic.timezone)
    start = datetime.combine(day, time.min, zone)
    end = datetime.combine(day + timedelta(days=1), time.min, zone)
    return start, end


def booked_on(user: User, day: date, clinic_id: int | None = None) -> list[PlanEvent]:
    """Booked events starting on ``day`` in each clinic's own time zone, earliest first."""
    clinic_ids = visible_clinic_ids(user)
    query = select(Clinic)
    if clinic_ids is not None:
        query = query.where(Clinic.id.in_(clinic_ids))
    if clinic_id is not None:
        query = query.where(Clinic.id == clinic_id)
    clinics = db.session.scalars(query).all()
    if not clinics:
        return []
    windows = []
    for clinic in clinics:
        start, end = _day_bounds(clinic, day)
        windows.append(
            and_(
                Patient.clinic_id == clinic.id,
                PlanEvent.starts_at >= start,
                PlanEvent.starts_at < end,
            )
        )
    return list(
        db.session.scalars(
            select(PlanEvent)
            .join(PlanEvent.patient)
            .where(PlanEvent.status == EventStatus.BOOKED, or_(*windows))
            .options(contains_eager(PlanEvent.patient).joinedload(Patient.clinic))
            .options(joinedload(PlanEvent.plan))
            .order_by(PlanEvent.starts_at, PlanEvent.id)
        ).unique()
    )
