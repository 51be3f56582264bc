"""The surveillance-plan engine: dates in, plan out.

Plain Python with no Flask or database imports, so every date rule can be tested directly.

Rules (from the clinic's practice for watchful waiting):

* Follow-up visits fall every ``interval_months`` (3 to 6) after an anchor date: the enrolment
  date at first, the actual date of the latest visit completed off its planned date later.
  Month arithmetic clamps month ends (31 August + 6 months = 28/29 February), and every visit
  is computed from the anchor rather than from the previous visit, so clamping never drifts.
* The biopsy is due one year after enrolment and stays anchored there.
* A due date never falls on a day the clinic is closed: it moves to the nearest working day
  inside the event's tolerance window (the earlier one on a tie).
"""

from __future__ import annotations

import calendar as _calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from surveillance.clinic_calendar import ClinicCalendar

MIN_INTERVAL_MONTHS = 3
MAX_INTERVAL_MONTHS = 6
DEFAULT_HORIZON_MONTHS = 24
BIOPSY_AFTER_MONTHS = 12

# How far from its nominal date an event may still take place. The window opening is also when
# the patient is told it is time to book, so it opens three weeks before a visit is due.
VISIT_WINDOW_BEFORE = timedelta(days=21)
VISIT_WINDOW_AFTER = timedelta(days=21)
BIOPSY_WINDOW_BEFORE = timedelta(days=28)
BIOPSY_WINDOW_AFTER = timedelta(days=42)
# A due date lies in its window, so an event is due at most this long after its window opens.
# The worklists rely on it to bound their index reads (services.worklists).
LONGEST_WINDOW = {
    "visit": VISIT_WINDOW_BEFORE + VISIT_WINDOW_AFTER,
    "biopsy": BIOPSY_WINDOW_BEFORE + BIOPSY_WINDOW_AFTER,
}

# Ki-67 at or above this index marks a G2-range tumour (WHO grading), which is watched closer.
KI67_CLOSER_WATCH_PERCENT = 3.0


class EventKind(StrEnum):
    VISIT = "visit"
    BIOPSY = "biopsy"


class PlanningError(ValueError):
    """A plan cannot be made from the given dates."""


@dataclass(frozen=True, slots=True)
class EventSlot:
    """One planned event: when it is nominally due, when it is due, and its tolerance window."""

    kind: EventKind
    ordinal: int
    nominal_on: date
    due_on: date
    window_start: date
    window_end: date


@dataclass(frozen=True, slots=True)
class IntervalAdvice:
    months: int
    requires_justification: bool
    reason: str


def add_months(day: date, months: int) -> date:
    """``day`` plus whole months, clamped to the end of a shorter month.

    The same result as ``day + dateutil.relativedelta(months=months)``, in plain arithmetic:
    the horizon job computes hundreds of thousands of these, and relativedelta costs ~50 µs."""
    zero_based = day.month - 1 + months
    year, month = day.year + zero_based // 12, zero_based % 12 + 1
    return date(year, month, min(day.day, _calendar.monthrange(year, month)[1]))


def validate_interval(months: int) -> None:
    if not MIN_INTERVAL_MONTHS <= months <= MAX_INTERVAL_MONTHS:
        raise PlanningError(
            f"interval must be between {MIN_INTERVAL_MONTHS} and {MAX_INTERVAL_MONTHS} months"
        )


def suggest_interval(differentiation: str, grade: str, ki67: float | None) -> IntervalAdvice:
    """The follow-up interval the clinic's practice suggests for a tumour profile.

    It is a suggestion only: the coordinator may choose any interval from 3 to 6 months.
    """
    if differentiation == "poorly" or grade == "G3":
        return IntervalAdvice(
            3,
            True,
            "Poorly differentiated or G3 tumours are rarely watched: "
            "a written clinical justification is required.",
        )
    if grade == "G2" or (ki67 is not None and ki67 >= KI67_CLOSER_WATCH_PERCENT):
        return IntervalAdvice(3, False, "G2 or Ki-67 of 3% or more: follow-up every 3 months.")
    return IntervalAdvice(6, False, "Well-differentiated G1: follow-up every 6 months.")


def nearest_working_day(
    nominal: date, window_start: date, window_end: date, calendar: ClinicCalendar
) -> date:
    """The working day closest to ``nominal`` within the window, preferring the earlier."""
    if window_start <= nominal <= window_end and calendar.is_working_day(nominal):
        return nominal  # most days: no search needed
    max_offset = max((nominal - window_start).days, (window_end - nominal).days)
    for offset in range(max_offset + 1):
        for candidate in (nominal - timedelta(days=offset), nominal + timedelta(days=offset)):
            if window_start <= candidate <= window_end and calendar.is_working_day(candidate):
                return candidate
    raise PlanningError(f"the clinic has no working day between {window_start} and {window_end}")


def _slot(
    kind: EventKind,
    ordinal: int,
    nominal: date,
    before: timedelta,
    after: timedelta,
    calendar: ClinicCalendar,
) -> EventSlot:
    start, end = nominal - before, nominal + after
    due = nearest_working_day(nominal, start, end, calendar)
    return EventSlot(kind, ordinal, nominal, due, start, end)


def visit_slot(
    anchor_on: date,
    anchor_ordinal: int,
    ordinal: int,
    interval_months: int,
    calendar: ClinicCalendar,
) -> EventSlot:
    """Visit number ``ordinal`` of a series anchored at visit ``anchor_ordinal``."""
    if ordinal <= anchor_ordinal:
        raise PlanningError("a visit comes after its anchor")
    nominal = add_months(anchor_on, (ordinal - anchor_ordinal) * interval_months)
    return _slot(
        EventKind.VISIT, ordinal, nominal, VISIT_WINDOW_BEFORE, VISIT_WINDOW_AFTER, calendar
    )


def visit_slots(
    anchor_on: date,
    anchor_ordinal: int,
    interval_months: int,
    until: date,
    calendar: ClinicCalendar,
) -> list[EventSlot]:
    """Every visit after the anchor up to and including the first one due on/after ``until``.

    Including that first visit past ``until`` is what guarantees a horizon of *at least* the
    requested length.
    """
    validate_interval(interval_months)
    slots: list[EventSlot] = []
    ordinal = anchor_ordinal
    while not slots or slots[-1].nominal_on < until:
        ordinal += 1
        slots.append(visit_slot(anchor_on, anchor_ordinal, ordinal, interval_months, calendar))
    return slots


def biopsy_slot(enrolled_on: date, calendar: ClinicCalendar) -> EventSlot:
    nominal = add_months(enrolled_on, BIOPSY_AFTER_MONTHS)
    return _slot(EventKind.BIOPSY, 1, nominal, BIOPSY_WINDOW_BEFORE, BIOPSY_WINDOW_AFTER, calendar)


def horizon_end(today: date, enrolled_on: date, months: int = DEFAULT_HORIZON_MONTHS) -> date:
    """The plan must reach at least this far: ``months`` after today (or after a future
    enrolment date)."""
    return add_months(max(today, enrolled_on), months)


def initial_plan(
    enrolled_on: date,
    interval_months: int,
    today: date,
    calendar: ClinicCalendar,
    horizon_months: int = DEFAULT_HORIZON_MONTHS,
) -> list[EventSlot]:
    """The visits and the biopsy of a new plan, in date order.

    Enrolment in the past is allowed (patients migrated from paper): events before today are
    produced like any other and show up as overdue until recorded.
    """
    until = horizon_end(today, enrolled_on, horizon_months)
    slots = visit_slots(enrolled_on, 0, interval_months, until, calendar)
    slots.append(biopsy_slot(enrolled_on, calendar))
    return sorted(slots, key=lambda s: (s.due_on, s.kind != EventKind.BIOPSY, s.ordinal))


def anchor_for_new_interval(last_seen_on: date, interval_months: int, today: date) -> date:
    """Where a series re-planned for a new interval starts counting.

    From the last visit the patient was seen at (or booked for), so the new interval really
    separates visits, but never so early that the next visit would already be in the past: a
    patient who is already due under the new interval becomes due today rather than overdue.
    """
    validate_interval(interval_months)
    if add_months(last_seen_on, interval_months) >= today:
        return last_seen_on
    anchor = add_months(today, -interval_months)
    # Month-end clamping can land a few days short of today; step to the first anchor that
    # reaches it.
    while add_months(anchor, interval_months) < today:
        anchor += timedelta(days=1)
    return anchor


PLANNED, WITHDRAWN = "planned", "withdrawn"
CANCELLED = "cancelled"


def reconciliation_status(status: str, cancelled_by_replan: bool) -> str:
    """An event's status as reconciliation sees it: a visit an earlier re-planning cancelled
    is ``withdrawn`` (its slot may be used again); one a person cancelled stays cancelled."""
    return WITHDRAWN if status == CANCELLED and cancelled_by_replan else status


@dataclass(frozen=True, slots=True)
class ExistingVisit:
    """What reconciliation needs to know about a visit already in a plan.

    ``status`` is the event status, or ``withdrawn`` for a visit an earlier re-planning
    cancelled (as opposed to one a person cancelled): such a slot may be used again.
    """

    key: object
    ordinal: int
    status: str
    due_on: date


@dataclass(frozen=True, slots=True)
class Reconciliation:
    moves: list[tuple[object, EventSlot]]
    creates: list[EventSlot]
    cancels: list[object]

    @property
    def is_empty(self) -> bool:
        return not (self.moves or self.creates or self.cancels)


def _movable(visit: ExistingVisit, anchor_ordinal: int, today: date) -> bool:
    if visit.ordinal <= anchor_ordinal:
        return False
    if visit.status == WITHDRAWN:
        return True
    return visit.status == PLANNED and visit.due_on >= today


def reconcile_visits(
    existing: Iterable[ExistingVisit],
    desired: Sequence[EventSlot],
    anchor_ordinal: int,
    today: date,
) -> Reconciliation:
    """Turn a plan's visits into ``desired`` while touching as little as possible.

    Only visits that have not happened yet are re-planned: those still ``planned`` after the
    anchor and not already overdue, and slots an earlier re-planning withdrew (which come back
    rather than leaving a gap). Booked, completed, missed and hand-cancelled visits keep their
    slot. A surviving visit keeps its identity (and so its calendar UID) and just moves.
    Planned visits the new schedule no longer needs are cancelled rather than deleted, so
    subscribed calendars are told to remove them.
    """
    by_ordinal = {visit.ordinal: visit for visit in existing}
    movable = {o: v for o, v in by_ordinal.items() if _movable(v, anchor_ordinal, today)}
    moves: list[tuple[object, EventSlot]] = []
    creates: list[EventSlot] = []
    wanted = set()
    for slot in desired:
        wanted.add(slot.ordinal)
        current = by_ordinal.get(slot.ordinal)
        if current is None:
            creates.append(slot)
        elif slot.ordinal in movable and (
            current.status == WITHDRAWN or current.due_on != slot.due_on
        ):
            moves.append((current.key, slot))
    cancels = [
        visit.key
        for ordinal, visit in sorted(movable.items())
        if ordinal not in wanted and visit.status == PLANNED
    ]
    return Reconciliation(moves, creates, cancels)
