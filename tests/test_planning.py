"""The planning engine: worked examples and properties of the date rules."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from dateutil.relativedelta import relativedelta
from hypothesis import assume, given
from hypothesis import strategies as st

from surveillance import planning
from surveillance.clinic_calendar import ClinicCalendar, us_federal_holidays
from surveillance.planning import EventKind, ExistingVisit, PlanningError

OPEN_EVERY_DAY = ClinicCalendar.build(range(7), observe_us_holidays=False)
WEEKDAYS = ClinicCalendar.build()

dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))
intervals = st.integers(min_value=3, max_value=6)
calendars = st.builds(
    ClinicCalendar.build,
    working_weekdays=st.sets(st.integers(0, 6), min_size=3, max_size=7),
    closures=st.sets(dates, max_size=30),
    observe_us_holidays=st.booleans(),
)


# --- Month arithmetic -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2025, 8, 31), 6, date(2026, 2, 28)),
        (date(2027, 8, 31), 6, date(2028, 2, 29)),  # leap year
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2026, 1, 31), 3, date(2026, 4, 30)),
        (date(2026, 3, 15), 3, date(2026, 6, 15)),
    ],
)
def test_add_months_clamps_month_ends(start: date, months: int, expected: date) -> None:
    assert planning.add_months(start, months) == expected


@given(dates, st.integers(min_value=-120, max_value=120))
def test_add_months_is_relativedelta_month_arithmetic(start: date, months: int) -> None:
    """The plain-arithmetic version gives what dateutil's relativedelta gives."""
    assert planning.add_months(start, months) == start + relativedelta(months=months)


def test_visits_are_computed_from_the_anchor_so_clamping_never_drifts() -> None:
    slots = planning.visit_slots(date(2025, 8, 31), 0, 6, date(2027, 9, 1), OPEN_EVERY_DAY)
    assert [s.nominal_on for s in slots] == [
        date(2026, 2, 28),
        date(2026, 8, 31),  # back to the 31st, not the 28th
        date(2027, 2, 28),
        date(2027, 8, 31),
        date(2028, 2, 29),
    ]


# --- A worked plan ----------------------------------------------------------------------------


def test_initial_plan_worked_example() -> None:
    """Enrolled Monday 5 January 2026, every 6 months, weekdays and federal holidays closed."""
    plan = planning.initial_plan(date(2026, 1, 5), 6, date(2026, 1, 5), WEEKDAYS)
    visits = [s for s in plan if s.kind == EventKind.VISIT]
    biopsies = [s for s in plan if s.kind == EventKind.BIOPSY]
    assert [(s.ordinal, s.nominal_on, s.due_on) for s in visits] == [
        (1, date(2026, 7, 5), date(2026, 7, 6)),  # Sunday → Monday (Fri 3 July is a holiday)
        (2, date(2027, 1, 5), date(2027, 1, 5)),
        (3, date(2027, 7, 5), date(2027, 7, 6)),  # Monday 5 July 2027 is Independence Day observed
        (4, date(2028, 1, 5), date(2028, 1, 5)),
    ]
    (biopsy,) = biopsies
    assert biopsy.nominal_on == date(2027, 1, 5)
    assert (biopsy.window_start, biopsy.window_end) == (date(2026, 12, 8), date(2027, 2, 16))
    assert visits[0].window_start == date(2026, 6, 14)
    assert visits[0].window_end == date(2026, 7, 26)
    assert [s.due_on for s in plan] == sorted(s.due_on for s in plan)


def test_plan_covers_at_least_24_months_from_today_for_past_enrolment() -> None:
    plan = planning.initial_plan(date(2023, 3, 1), 3, date(2026, 11, 27), OPEN_EVERY_DAY)
    visits = [s for s in plan if s.kind == EventKind.VISIT]
    assert visits[0].nominal_on == date(2023, 6, 1)  # history comes out too, to be recorded
    assert visits[-1].nominal_on >= date(2028, 11, 27)
    assert visits[-2].nominal_on < date(2028, 11, 27)


def test_weekend_moves_to_nearest_working_day_earlier_on_a_tie() -> None:
    # Saturday 7 March 2026: Friday 6 is one day back, Monday 9 two days ahead.
    friday = planning.nearest_working_day(
        date(2026, 3, 7), date(2026, 2, 1), date(2026, 4, 1), WEEKDAYS
    )
    assert friday == date(2026, 3, 6)
    # Sunday 8 March: Friday is two days back, Monday one day ahead.
    assert planning.nearest_working_day(
        date(2026, 3, 8), date(2026, 2, 1), date(2026, 4, 1), WEEKDAYS
    ) == date(2026, 3, 9)
    # Only Monday and Friday open; Wednesday is two days from each: the earlier wins.
    monday_friday = ClinicCalendar.build({0, 4}, observe_us_holidays=False)
    assert planning.nearest_working_day(
        date(2026, 3, 11), date(2026, 2, 1), date(2026, 4, 1), monday_friday
    ) == date(2026, 3, 9)


def test_no_working_day_in_window_is_an_error() -> None:
    closed = ClinicCalendar.build(
        range(7),
        closures=[date(2026, 3, 1) + timedelta(days=i) for i in range(10)],
        observe_us_holidays=False,
    )
    with pytest.raises(PlanningError, match="no working day"):
        planning.nearest_working_day(date(2026, 3, 5), date(2026, 3, 1), date(2026, 3, 10), closed)


def test_us_federal_holidays_close_the_clinic_by_default() -> None:
    assert date(2026, 11, 26) in us_federal_holidays(2026)  # Thanksgiving
    assert not WEEKDAYS.is_working_day(date(2026, 11, 26))
    assert ClinicCalendar.build(observe_us_holidays=False).is_working_day(date(2026, 11, 26))
    assert "Thanksgiving" in (WEEKDAYS.closure_reason(date(2026, 11, 26)) or "")


# --- Interval advice --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("differentiation", "grade", "ki67", "months", "justify"),
    [
        ("well", "G1", None, 6, False),
        ("well", "G1", 2.9, 6, False),
        ("well", "G1", 3.0, 3, False),
        ("well", "G2", 1.0, 3, False),
        ("well", "G3", 25.0, 3, True),
        ("poorly", "G1", None, 3, True),
    ],
)
def test_interval_suggestion(
    differentiation: str, grade: str, ki67: float | None, months: int, justify: bool
) -> None:
    advice = planning.suggest_interval(differentiation, grade, ki67)
    assert (advice.months, advice.requires_justification) == (months, justify)


@pytest.mark.parametrize("months", [0, 1, 2, 7, 12, -3])
def test_interval_outside_3_to_6_is_refused(months: int) -> None:
    with pytest.raises(PlanningError):
        planning.visit_slots(date(2026, 1, 1), 0, months, date(2027, 1, 1), OPEN_EVERY_DAY)


# --- Properties -------------------------------------------------------------------------------


@given(enrolled=dates, interval=intervals, calendar=calendars)
def test_every_due_date_is_a_working_day_inside_its_window(
    enrolled: date, interval: int, calendar: ClinicCalendar
) -> None:
    try:
        plan = planning.initial_plan(enrolled, interval, enrolled, calendar)
    except PlanningError:
        # Only possible when a whole window is closed; check that it really is.
        assume(False)
    for slot in plan:
        assert slot.window_start <= slot.due_on <= slot.window_end
        assert calendar.is_working_day(slot.due_on)
        assert abs((slot.due_on - slot.nominal_on).days) <= 21
        # The worklists bound their index reads by this (services.worklists._window_opened).
        assert slot.window_end - slot.window_start <= planning.LONGEST_WINDOW[slot.kind.value]


@given(enrolled=dates, interval=intervals)
def test_visits_are_spaced_by_the_interval(enrolled: date, interval: int) -> None:
    plan = planning.initial_plan(enrolled, interval, enrolled, OPEN_EVERY_DAY)
    visits = [s for s in plan if s.kind == EventKind.VISIT]
    assert [v.ordinal for v in visits] == list(range(1, len(visits) + 1))
    for previous, current in zip([None, *visits], visits, strict=False):
        start = enrolled if previous is None else previous.nominal_on
        gap = (current.nominal_on - start).days
        # Whole months are 28-31 days; clamping can shift by up to 3 days either way.
        assert interval * 28 - 3 <= gap <= interval * 31 + 3
        assert current.nominal_on == planning.add_months(enrolled, current.ordinal * interval)
    assert visits[-1].nominal_on >= planning.add_months(enrolled, 24)


@given(enrolled=dates, interval=intervals, calendar=calendars)
def test_biopsy_stays_one_year_after_enrolment(
    enrolled: date, interval: int, calendar: ClinicCalendar
) -> None:
    try:
        biopsy = planning.biopsy_slot(enrolled, calendar)
    except PlanningError:
        assume(False)
    assert biopsy.nominal_on == planning.add_months(enrolled, 12)
    assert biopsy.window_start <= biopsy.due_on <= biopsy.window_end


@given(enrolled=dates, interval=intervals, today=dates, calendar=calendars)
def test_planning_is_deterministic(
    enrolled: date, interval: int, today: date, calendar: ClinicCalendar
) -> None:
    try:
        first = planning.initial_plan(enrolled, interval, today, calendar)
    except PlanningError:
        assume(False)
    assert planning.initial_plan(enrolled, interval, today, calendar) == first


@given(
    enrolled=dates,
    interval=intervals,
    ordinal=st.integers(1, 6),
    shift=st.integers(-40, 40),
)
def test_reanchoring_restarts_the_clock_from_the_actual_date(
    enrolled: date, interval: int, ordinal: int, shift: int
) -> None:
    planned = planning.visit_slot(enrolled, 0, ordinal, interval, OPEN_EVERY_DAY)
    actual = planned.due_on + timedelta(days=shift)
    after = planning.visit_slots(
        actual, ordinal, interval, actual + timedelta(days=800), OPEN_EVERY_DAY
    )
    assert after[0].ordinal == ordinal + 1
    assert after[0].nominal_on == planning.add_months(actual, interval)
    # The biopsy is independent of any visit.
    assert planning.biopsy_slot(enrolled, OPEN_EVERY_DAY).nominal_on == planning.add_months(
        enrolled, 12
    )


# --- Reconciliation (re-planning keeps identities) --------------------------------------------


def _existing(slots: list[planning.EventSlot], statuses: dict[int, str]) -> list[ExistingVisit]:
    return [
        ExistingVisit(f"id{s.ordinal}", s.ordinal, statuses.get(s.ordinal, "planned"), s.due_on)
        for s in slots
    ]


def test_interval_change_moves_planned_visits_and_keeps_their_identity() -> None:
    start, today = date(2026, 1, 5), date(2026, 2, 1)
    old = planning.visit_slots(start, 0, 6, date(2028, 2, 1), OPEN_EVERY_DAY)
    new = planning.visit_slots(start, 0, 3, date(2028, 2, 1), OPEN_EVERY_DAY)
    result = planning.reconcile_visits(_existing(old, {}), new, 0, today)
    moved = dict(result.moves)
    assert set(moved) == {f"id{s.ordinal}" for s in old}  # every old visit survives, moved
    assert moved["id1"].nominal_on == date(2026, 4, 5)
    assert [s.ordinal for s in result.creates] == list(range(len(old) + 1, len(new) + 1))
    assert result.cancels == []


def test_longer_interval_cancels_surplus_visits_instead_of_deleting() -> None:
    start, today = date(2026, 1, 5), date(2026, 2, 1)
    old = planning.visit_slots(start, 0, 3, date(2028, 2, 1), OPEN_EVERY_DAY)
    new = planning.visit_slots(start, 0, 6, date(2028, 2, 1), OPEN_EVERY_DAY)
    result = planning.reconcile_visits(_existing(old, {}), new, 0, today)
    assert result.cancels == [f"id{s.ordinal}" for s in old if s.ordinal > len(new)]
    assert result.creates == []


@given(
    interval=intervals,
    new_interval=intervals,
    statuses=st.dictionaries(
        st.integers(1, 10), st.sampled_from(["booked", "completed", "missed", "cancelled"])
    ),
    today_offset=st.integers(0, 900),
)
def test_reconcile_never_touches_what_has_happened_or_is_booked(
    interval: int, new_interval: int, statuses: dict[int, str], today_offset: int
) -> None:
    start = date(2026, 1, 5)
    today = start + timedelta(days=today_offset)
    old = planning.visit_slots(start, 0, interval, date(2028, 6, 1), OPEN_EVERY_DAY)
    new = planning.visit_slots(start, 0, new_interval, date(2028, 6, 1), OPEN_EVERY_DAY)
    existing = _existing(old, statuses)
    result = planning.reconcile_visits(existing, new, 0, today)
    touchable = {e.key for e in existing if e.status == "planned" and e.due_on >= today}
    assert {key for key, _ in result.moves} <= touchable
    assert set(result.cancels) <= touchable
    existing_ordinals = {e.ordinal for e in existing}
    assert all(slot.ordinal not in existing_ordinals for slot in result.creates)
    # Applying the same desired plan again changes nothing.
    applied = [
        ExistingVisit(
            e.key,
            e.ordinal,
            "cancelled" if e.key in result.cancels else e.status,
            dict((k, s.due_on) for k, s in result.moves).get(e.key, e.due_on),
        )
        for e in existing
    ] + [ExistingVisit(f"new{s.ordinal}", s.ordinal, "planned", s.due_on) for s in result.creates]
    assert planning.reconcile_visits(applied, new, 0, today).is_empty


@given(
    last_seen=dates,
    interval=intervals,
    gap_days=st.integers(-30, 800),
)
def test_a_new_interval_never_puts_the_next_visit_in_the_past(
    last_seen: date, interval: int, gap_days: int
) -> None:
    today = last_seen + timedelta(days=gap_days)
    anchor = planning.anchor_for_new_interval(last_seen, interval, today)
    first_visit = planning.add_months(anchor, interval)
    assert anchor >= last_seen
    assert first_visit >= today
    if anchor != last_seen:
        # The latest possible start: one day earlier would already be overdue.
        assert planning.add_months(anchor - timedelta(days=1), interval) < today


def test_withdrawn_slots_come_back_instead_of_leaving_a_gap() -> None:
    start, today = date(2026, 1, 5), date(2026, 2, 1)
    three = planning.visit_slots(start, 0, 3, date(2028, 2, 1), OPEN_EVERY_DAY)
    existing = [
        ExistingVisit(
            f"id{s.ordinal}", s.ordinal, "withdrawn" if s.ordinal > 4 else "planned", s.due_on
        )
        for s in three
    ]
    result = planning.reconcile_visits(existing, three, 0, today)
    assert sorted(key for key, _ in result.moves) == sorted(
        f"id{s.ordinal}" for s in three if s.ordinal > 4
    )
    assert result.creates == [] and result.cancels == []


def test_only_a_visit_re_planning_cancelled_counts_as_withdrawn() -> None:
    from surveillance.models import EventStatus

    assert planning.CANCELLED == EventStatus.CANCELLED  # the engine's word for the model's
    assert planning.reconciliation_status("cancelled", True) == planning.WITHDRAWN
    assert planning.reconciliation_status("cancelled", False) == "cancelled"
    assert planning.reconciliation_status("completed", True) == "completed"
