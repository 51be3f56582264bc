"""Today: the worklists with their counts, and who is booked on a given day."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import render_template, request

from surveillance.coordinator import bp
from surveillance.coordinator.support import (
    chosen_clinic,
    me,
    page_number,
    today_for,
    visible_clinics,
)
from surveillance.services import appointments, worklists

PER_PAGE = 25


def _day_arg(default: date) -> date:
    try:
        return date.fromisoformat(request.args.get("day", ""))
    except ValueError:
        return default


@bp.get("/")
def today() -> Any:
    user = me()
    clinic = chosen_clinic(user, request.args.get("clinic", type=int))
    clinic_id = clinic.id if clinic else None
    today_date = today_for(user, clinic)
    counts = worklists.counts(user, today_date, clinic_id)
    name = request.args.get("list", "")
    if name not in worklists.WORKLISTS:
        name = next((n for n, count in counts.items() if count), next(iter(worklists.WORKLISTS)))
    page = page_number()
    selected = worklists.fetch(name, user, today_date, page, PER_PAGE, clinic_id)
    day = _day_arg(today_date)
    return render_template(
        "coordinator/today.html",
        clinics=visible_clinics(user),
        clinic=clinic,
        today=today_date,
        counts=counts,
        worklists=worklists.WORKLISTS,
        current=worklists.WORKLISTS[name],
        selected=selected,
        day=day,
        day_before=day - timedelta(days=1),
        day_after=day + timedelta(days=1),
        tomorrow=today_date + timedelta(days=1),
        booked=appointments.booked_on(user, day, clinic_id),
    )
