"""The pure reminder rules: worked examples and properties (hypothesis)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from surveillance.reminders.rules import (
    Audience,
    EventSnapshot,
    PolicyError,
    ReminderPolicy,
    Rule,
    digest_for,
    due_digests,
    due_reminders,
    local_moment,
    parse_days,
    reminders_for,
)

DENVER = "America/Denver"
ZONES = [
    "America/Denver",
    "America/New_York",
    "America/St_Johns",  # half-hour offset
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # half-hour daylight saving
    "Pacific/Auckland",
    "Asia/Kolkata",
    "UTC",
]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def booked(starts_at: datetime, zone: str = DENVER, **fields: object) -> EventSnapshot:
    day = starts_at.astimezone(ZoneInfo(zone)).date()
    values: dict[str, object] = {
        "kind": "visit",
        "status": "booked",
        "due_on": day,
        "window_start": day - timedelta(days=21),
        "window_end": day + timedelta(days=21),
        "timezone": zone,
        "plan_active": True,
        "starts_at": starts_at,
    }
    values.update(fields)
    return EventSnapshot(**values)  # type: ignore[arg-type]


def planned(kind: str, due_on: date, zone: str = DENVER, **fields: object) -> EventSnapshot:
    before, after = (21, 21) if kind == "visit" else (28, 42)
    values: dict[str, object] = {
        "kind": kind,
        "status": "planned",
        "due_on": due_on,
        "window_start": due_on - timedelta(days=before),
        "window_end": due_on + timedelta(days=after),
        "timezone": zone,
        "plan_active": True,
    }
    values.update(fields)
    return EventSnapshot(**values)  # type: ignore[arg-type]


# --- Worked examples --------------------------------------------------------------------------


def test_booked_reminders_keep_the_wall_clock_time_across_daylight_saving() -> None:
    # Denver moves to daylight time on 8 March 2026: a 09:30 visit on 10 March is 15:30 UTC,
    # and its 7-day reminder is 09:30 *standard* time on 3 March, 16:30 UTC.
    start = datetime(2026, 3, 10, 9, 30, tzinfo=ZoneInfo(DENVER))
    seven, one = reminders_for(booked(start), ReminderPolicy())
    assert (seven.rule, seven.audience) == (Rule.BOOKED, Audience.PATIENT)
    assert seven.due_at == utc(2026, 3, 3, 16, 30)
    assert seven.expires_at == one.due_at == utc(2026, 3, 9, 15, 30)
    assert one.expires_at == start.astimezone(UTC) == utc(2026, 3, 10, 15, 30)


def test_book_window_reminder_at_the_send_hour_when_the_window_opens() -> None:
    event = planned("visit", date(2026, 4, 6))
    (reminder,) = reminders_for(event, ReminderPolicy(send_hour=9))
    assert reminder.rule == Rule.BOOK_WINDOW
    assert reminder.due_at == utc(2026, 3, 16, 15, 0)  # 09:00 MDT
    assert reminder.expires_at == utc(2026, 4, 6, 15, 0)
    (early,) = reminders_for(event, ReminderPolicy(book_window_lead_days=7))
    assert early.due_at == utc(2026, 3, 9, 15, 0)


def test_biopsy_heads_up_for_patient_and_coordinator_then_unbooked_on_the_due_date() -> None:
    event = planned("biopsy", date(2027, 1, 5))
    reminders = reminders_for(event, ReminderPolicy())
    assert [(r.rule, r.audience, r.due_at) for r in reminders] == [
        (Rule.BIOPSY_HEADS_UP, Audience.COORDINATOR, utc(2026, 12, 8, 16)),
        (Rule.BIOPSY_HEADS_UP, Audience.PATIENT, utc(2026, 12, 8, 16)),
        (Rule.BIOPSY_UNBOOKED, Audience.COORDINATOR, utc(2027, 1, 5, 16)),
    ]
    assert reminders[-1].expires_at == utc(2027, 2, 17, 16)  # the day after the window closes


@pytest.mark.parametrize("status", ["completed", "missed", "cancelled"])
def test_closed_events_have_no_reminders(status: str) -> None:
    start = datetime(2026, 3, 10, 9, 30, tzinfo=ZoneInfo(DENVER))
    assert reminders_for(booked(start, status=status), ReminderPolicy()) == []


def test_ended_plan_or_disabled_clinic_has_no_reminders() -> None:
    event = planned("visit", date(2026, 4, 6))
    assert (
        reminders_for(planned("visit", date(2026, 4, 6), plan_active=False), ReminderPolicy()) == []
    )
    assert reminders_for(event, ReminderPolicy(enabled=False)) == []


def test_a_visit_booked_inside_seven_days_gets_one_reminder_at_a_time() -> None:
    start = datetime(2026, 3, 10, 9, 30, tzinfo=ZoneInfo(DENVER))
    booked_at = start - timedelta(days=3)
    due = due_reminders(booked(start), ReminderPolicy(), booked_at)
    assert len(due) == 1 and due[0].expires_at == start - timedelta(days=1)
    assert due_reminders(booked(start), ReminderPolicy(), start) == []


def test_policy_validation_names_the_setting() -> None:
    with pytest.raises(PolicyError) as error:
        ReminderPolicy(send_hour=24)
    assert error.value.field == "send_hour"
    with pytest.raises(PolicyError) as error:
        ReminderPolicy(booked_reminder_days=(0,))
    assert error.value.field == "booked_reminder_days"
    with pytest.raises(PolicyError):
        parse_days("7,one")
    assert ReminderPolicy(booked_reminder_days=(1, 7, 7)).booked_reminder_days == (7, 1)
    assert parse_days(" 14, 2 ,") == (14, 2)


def test_digest_once_a_day_at_the_digest_hour() -> None:
    policy = ReminderPolicy(digest_hour=7)
    digest = digest_for(date(2026, 3, 9), policy, DENVER)
    assert digest is not None and digest.due_at == utc(2026, 3, 9, 13)
    assert due_digests(policy, DENVER, utc(2026, 3, 9, 12, 59)) == []
    assert due_digests(policy, DENVER, utc(2026, 3, 9, 13)) == [(date(2026, 3, 9), digest)]
    assert digest_for(date(2026, 3, 9), ReminderPolicy(digest_enabled=False), DENVER) is None


# --- Properties -------------------------------------------------------------------------------

zones = st.sampled_from(ZONES)
days = st.dates(min_value=date(2024, 1, 1), max_value=date(2031, 12, 31))
policies = st.builds(
    ReminderPolicy,
    book_window_lead_days=st.integers(0, 60),
    booked_reminder_days=st.lists(st.integers(1, 60), max_size=5).map(tuple),
    biopsy_heads_up_days=st.integers(1, 120),
    send_hour=st.integers(0, 23),
    digest_hour=st.integers(0, 23),
)


@st.composite
def local_starts(draw: st.DrawFn) -> tuple[datetime, str]:
    zone = draw(zones)
    wall = datetime.combine(draw(days), time(draw(st.integers(0, 23)), draw(st.integers(0, 59))))
    return wall.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC), zone


def wall_exists(wall: datetime, zone: str) -> bool:
    aware = wall.replace(tzinfo=ZoneInfo(zone))
    return aware.astimezone(UTC).astimezone(ZoneInfo(zone)).replace(tzinfo=None) == wall


@given(local_starts(), policies)
def test_booked_reminders_are_exactly_n_local_days_before(
    start_zone: tuple[datetime, str], policy: ReminderPolicy
) -> None:
    start, zone = start_zone
    reminders = reminders_for(booked(start, zone), policy)
    assert len(reminders) == len(policy.booked_reminder_days)
    local_start = start.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    for reminder, days_before in zip(reminders, policy.booked_reminder_days, strict=True):
        expected = local_start - timedelta(days=days_before)
        if wall_exists(expected, zone):
            assert reminder.due_at.astimezone(ZoneInfo(zone)).replace(tzinfo=None) == expected
        assert reminder.due_at.tzinfo == UTC


@given(local_starts(), policies)
def test_booked_reminders_hand_over_and_stop_at_the_appointment(
    start_zone: tuple[datetime, str], policy: ReminderPolicy
) -> None:
    start, zone = start_zone
    reminders = reminders_for(booked(start, zone), policy)
    for earlier, later in itertools.pairwise(reminders):
        assert earlier.expires_at == later.due_at  # never two due at once, no gap
    assert all(r.due_at < r.expires_at <= start for r in reminders)
    if reminders:
        assert reminders[-1].expires_at == start


@given(
    st.sampled_from(["visit", "biopsy"]),
    st.sampled_from(["planned", "booked", "completed", "missed", "cancelled"]),
    st.booleans(),
    local_starts(),
    policies,
    st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2032, 1, 1)),
)
def test_rules_are_deterministic_and_due_means_inside_the_validity(
    kind: str,
    status: str,
    plan_active: bool,
    start_zone: tuple[datetime, str],
    policy: ReminderPolicy,
    naive_now: datetime,
) -> None:
    start, zone = start_zone
    event = booked(start, zone, kind=kind, status=status, plan_active=plan_active)
    if status != "booked":
        event = planned(kind, event.due_on, zone, status=status, plan_active=plan_active)
    now = naive_now.replace(tzinfo=UTC)
    first, second = reminders_for(event, policy), reminders_for(event, policy)
    assert first == second
    assert len({r.identity for r in first}) == len(first)  # one outbox row each
    due = due_reminders(event, policy, now)
    assert set(due) <= set(first)
    assert all(r.due_at <= now < r.expires_at for r in due)
    if status not in ("planned", "booked") or not plan_active:
        assert first == []


@given(days, zones, policies)
def test_planned_events_get_their_reminders_at_the_send_hour(
    due_on: date, zone: str, policy: ReminderPolicy
) -> None:
    assume(wall_exists(datetime.combine(due_on, time(policy.send_hour)), zone))
    (window,) = reminders_for(planned("visit", due_on, zone), policy)
    local = window.due_at.astimezone(ZoneInfo(zone))
    assert local.date() == due_on - timedelta(days=21 + policy.book_window_lead_days)
    if wall_exists(datetime.combine(local.date(), time(policy.send_hour)), zone):
        assert local.hour == policy.send_hour
    assert window.expires_at == local_moment(due_on, policy.send_hour, zone)
    biopsy = reminders_for(planned("biopsy", due_on, zone), policy)
    heads_up = [r for r in biopsy if r.rule == Rule.BIOPSY_HEADS_UP]
    assert {r.audience for r in heads_up} == {Audience.PATIENT, Audience.COORDINATOR}
    assert all(
        r.due_at.astimezone(ZoneInfo(zone)).date()
        == due_on - timedelta(days=policy.biopsy_heads_up_days)
        for r in heads_up
    )


@given(
    zones, policies, st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2032, 1, 1))
)
def test_at_most_one_digest_is_due_at_any_moment(
    zone: str, policy: ReminderPolicy, naive_now: datetime
) -> None:
    now = naive_now.replace(tzinfo=UTC)
    due = due_digests(policy, zone, now)
    assert len(due) <= 1
    for _day, digest in due:
        assert digest.due_at <= now < digest.expires_at
