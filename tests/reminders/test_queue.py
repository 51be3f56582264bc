"""Queueing reminders into the outbox: idempotent, and withdrawn the moment an event changes."""

from __future__ import annotations

from datetime import UTC, datetime

import time_machine
from sqlalchemy import update

from surveillance.extensions import db
from surveillance.models import OutboxMessage, OutboxStatus, PlanEvent
from surveillance.reminders import settings
from surveillance.services import plans
from tests import factories
from tests.reminders.helpers import book, event, local, patient, queue, rows

# Visit 1 of a patient enrolled on 2026-01-05 (every 3 months) is due on Monday 2026-04-06;
# its booking window opens on 2026-03-15, so "time to book" is due at 09:00 MDT = 15:00 UTC.
WINDOW_OPENS = "2026-03-15 15:00:00+00:00"


def test_nothing_is_queued_before_its_time(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        patient(clinic)
    with time_machine.travel("2026-03-15 14:59:00+00:00", tick=False):
        assert queue().queued == 0
    with time_machine.travel(WINDOW_OPENS, tick=False):
        assert queue().queued == 1
    (row,) = rows()
    assert (row.rule, row.audience, row.status) == ("book-window", "patient", "queued")
    assert row.due_at == datetime(2026, 3, 15, 15, tzinfo=UTC)
    assert row.message_id.startswith("<reminder-") and row.message_id.endswith(">")


def test_running_the_sweep_twice_queues_each_reminder_once(clinic, coordinator) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        patients = [patient(clinic) for _ in range(3)]
    with time_machine.travel(WINDOW_OPENS, tick=False):
        first = queue()
        second = queue()
    # Three "time to book" reminders and the coordinator's digest (07:00 local, still valid).
    assert (first.queued, first.digests) == (3, 1)
    assert (second.queued, second.digests) == (0, 0)
    assert sorted(r.patient_id for r in rows(rule="book-window")) == sorted(p.id for p in patients)
    (digest,) = rows(rule="digest")
    assert digest.user_id == coordinator.id and digest.recipient == coordinator.email


def test_opted_out_or_emailless_patients_get_no_email(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        opted_out = patient(clinic)
        opted_out.email_opt_out = True
        no_email = patient(clinic, email=None)
        db.session.commit()
    with time_machine.travel(WINDOW_OPENS, tick=False):
        assert queue().queued == 0
    assert no_email.email is None and rows() == []


def test_biopsy_heads_up_goes_to_patient_and_every_coordinator(clinic) -> None:  # type: ignore[no-untyped-def]
    ana = factories.user(clinics=[clinic])
    ben = factories.user(clinics=[clinic])
    factories.user(clinics=[factories.clinic()])  # another clinic's coordinator
    factories.user(role="admin")
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        p = patient(clinic)
    biopsy = event(p, "biopsy")
    assert str(biopsy.due_on) == "2027-01-05"
    with time_machine.travel("2026-12-08 16:00:00+00:00", tick=False):  # 28 days before, 09:00
        queue()
    heads_up = rows(rule="biopsy-heads-up")
    assert sorted(r.recipient for r in heads_up) == sorted([p.email, ana.email, ben.email])
    with time_machine.travel("2027-01-05 16:00:00+00:00", tick=False):
        queue()
    assert sorted(r.recipient for r in rows(rule="biopsy-unbooked")) == sorted(
        [ana.email, ben.email]
    )


def test_booking_withdraws_time_to_book_and_queues_the_booked_reminder(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        p = patient(clinic)
    visit = event(p)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        queue()
        book(visit, local(2026, 3, 26, 10))
        (window,) = rows(rule="book-window")
        assert window.status == OutboxStatus.WITHDRAWN  # in the booking's own transaction
        queue()
        # The 7-day reminder is due on 19 March; booked on 15 March it is not due yet.
        assert rows(rule="booked-visit") == []
    with time_machine.travel("2026-03-19 16:00:00+00:00", tick=False):
        queue()
    (seven,) = rows(rule="booked-visit")
    assert seven.due_at == datetime(2026, 3, 19, 16, tzinfo=UTC)  # 10:00 MDT
    assert seven.expires_at == datetime(2026, 3, 25, 16, tzinfo=UTC)


def test_rescheduling_completing_cancelling_and_ending_withdraw_at_once(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        moved, done, cancelled, ended = (patient(clinic) for _ in range(4))
    with time_machine.travel("2026-03-20 16:00:00+00:00", tick=False):
        for p in (moved, done, cancelled, ended):
            book(event(p), local(2026, 3, 26, 10))
        queue()
        assert len(rows(rule="booked-visit", status=OutboxStatus.QUEUED)) == 4
        plans.reschedule(event(moved), local(2026, 4, 2, 10), 30, None)
        plans.cancel(event(cancelled), "Patient asked")
        plans.end_surveillance(ended.active_plan, "Moved away")
        db.session.commit()
    with time_machine.travel("2026-03-26 18:00:00+00:00", tick=False):
        plans.complete(event(done), event(done).starts_at.date(), "stable")
        db.session.commit()
    by_patient = {r.patient_id: r for r in rows(rule="booked-visit")}
    assert {r.status for r in by_patient.values()} == {OutboxStatus.WITHDRAWN}
    assert all(r.last_error == "Withdrawn: the event changed." for r in by_patient.values())


def test_a_visit_moved_away_and_back_gets_its_reminder_again(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        p = patient(clinic)
    visit = event(p)
    with time_machine.travel("2026-03-20 16:00:00+00:00", tick=False):
        book(visit, local(2026, 3, 26, 10))
        queue()
        plans.reschedule(visit, local(2026, 3, 27, 10), 30, None)
        db.session.commit()
        queue()
        plans.reschedule(visit, local(2026, 3, 26, 10), 30, None)
        db.session.commit()
        assert [r.status for r in rows(rule="booked-visit")] == [OutboxStatus.WITHDRAWN] * 2
        queue()
    statuses = sorted((r.due_at.day, r.status) for r in rows(rule="booked-visit"))
    assert statuses == [(19, OutboxStatus.QUEUED), (20, OutboxStatus.WITHDRAWN)]


def test_clinic_settings_change_the_reminders(clinic) -> None:  # type: ignore[no-untyped-def]
    settings.update(clinic, booked_reminder_days="3", send_hour=8, digest_enabled=False)
    db.session.commit()
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        p = patient(clinic)
    with time_machine.travel("2026-03-15 14:00:00+00:00", tick=False):  # 08:00 MDT
        queue()
        book(event(p), local(2026, 3, 26, 10))
    with time_machine.travel("2026-03-23 16:00:00+00:00", tick=False):
        queue()
    assert [r.due_at for r in rows(rule="booked-visit")] == [datetime(2026, 3, 23, 16, tzinfo=UTC)]
    assert rows(rule="digest") == []
    settings.update(clinic, enabled=False)
    db.session.commit()
    with time_machine.travel("2026-06-20 16:00:00+00:00", tick=False):
        assert queue().queued == 0


def test_queueing_is_set_based(clinic, app) -> None:  # type: ignore[no-untyped-def]
    """The number of statements does not grow with the number of events."""
    from sqlalchemy import event as sa_event

    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        for _ in range(12):
            patient(clinic)
    statements: list[str] = []

    def count(*args: object) -> None:
        if not str(args[2]).startswith("BEGIN"):  # SQLite's explicit transaction starts
            statements.append(str(args[2]))

    sa_event.listen(db.engine, "before_cursor_execute", count)
    try:
        with time_machine.travel(WINDOW_OPENS, tick=False):
            result = queue()
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", count)
    assert result.queued == 12
    assert len(statements) <= 10, statements


def test_events_changed_behind_the_services_back_keep_their_row_until_delivery(clinic) -> None:  # type: ignore[no-untyped-def]
    """Only the services withdraw at once; delivery re-checks everything else (see
    test_delivery)."""
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        p = patient(clinic)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        queue()
        db.session.execute(
            update(PlanEvent).where(PlanEvent.id == event(p).id).values(status="cancelled")
        )
        db.session.commit()
    assert [r.status for r in rows()] == [OutboxStatus.QUEUED]
    assert isinstance(rows()[0], OutboxMessage)
