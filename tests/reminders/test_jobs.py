"""The daily jobs, the ``jobs run`` CLI and the scheduler's configuration."""

from __future__ import annotations

import threading
from datetime import date

import time_machine
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask
from sqlalchemy import select

from surveillance import create_app, jobs
from surveillance.extensions import db
from surveillance.models import EventStatus, OutboxStatus, PlanEvent, SurveillancePlan
from tests.reminders.helpers import book, event, local, patient, queue, rows


def test_missed_sweep_marks_closed_windows_through_the_service(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        p = patient(clinic)
        booked_late = patient(clinic)
    visit = event(p)
    assert (str(visit.window_end), visit.sequence) == ("2026-04-26", 0)
    with time_machine.travel("2026-04-20 16:00:00+00:00", tick=False):
        queue()  # "time to book" went out long ago; nothing queued for p now
        # Booked after its window closes (the coordinator's choice): not missed yet.
        book(event(booked_late), local(2026, 4, 29, 10))
    with time_machine.travel("2026-04-26 23:00:00+00:00", tick=False):  # 17:00 on the last day
        assert jobs.run_job("mark-missed").startswith("marked 0 events")
    with time_machine.travel("2026-04-27 07:00:00+00:00", tick=False):  # 01:00 the day after
        summary = jobs.run_job("mark-missed")
        assert summary == "marked 1 events missed (1 booked later, left alone)"
        assert jobs.run_job("mark-missed").startswith("marked 0 events")
    db.session.expire_all()
    assert (event(p).status, event(p).sequence) == (EventStatus.MISSED, 1)
    assert event(booked_late).status == EventStatus.BOOKED


def test_missed_sweep_withdraws_pending_reminders(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        p = patient(clinic)
    visit = event(p)
    with time_machine.travel("2026-03-25 16:00:00+00:00", tick=False):
        book(visit, local(2026, 3, 26, 10))
        queue()
    assert [r.status for r in rows(rule="booked-visit")] == [OutboxStatus.QUEUED]
    with time_machine.travel("2026-04-27 09:00:00+00:00", tick=False):
        jobs.run_job("mark-missed")
    assert [r.status for r in rows(rule="booked-visit")] == [OutboxStatus.WITHDRAWN]


def test_horizon_job_extends_only_what_falls_short_and_is_idempotent(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        patients = [patient(clinic) for _ in range(3)]
        assert jobs.run_job("extend-horizons") == "added 0 visits to 0 plans"
    plan = patients[0].active_plan
    last_visit = max(e.due_on for e in plan.events if e.kind == "visit")
    assert plan.horizon_until == date(2028, 1, 5) and last_visit == date(2028, 1, 5)
    with time_machine.travel("2026-01-06 17:00:00+00:00", tick=False):
        # The horizon now passes the last visit: each plan gets the next one.
        assert jobs.run_job("extend-horizons") == "added 3 visits to 3 plans"
        assert jobs.run_job("extend-horizons") == "added 0 visits to 0 plans"
    with time_machine.travel("2026-02-01 17:00:00+00:00", tick=False):
        assert jobs.run_job("extend-horizons") == "added 0 visits to 0 plans"
    db.session.expire_all()
    visits = db.session.scalars(
        select(PlanEvent.due_on).where(PlanEvent.plan_id == plan.id, PlanEvent.kind == "visit")
    ).all()
    assert len(visits) == 9 and max(visits) == date(2028, 4, 5)
    # The plan reaches as far as its furthest visit.
    assert plan.horizon_until == date(2028, 4, 5)


def test_ended_plans_are_left_alone(clinic) -> None:  # type: ignore[no-untyped-def]
    from surveillance.services import plans

    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        p = patient(clinic)
        plans.end_surveillance(p.active_plan, "Moved away")
        db.session.commit()
    with time_machine.travel("2026-06-10 17:00:00+00:00", tick=False):
        assert jobs.run_job("extend-horizons") == "added 0 visits to 0 plans"
        assert jobs.run_job("mark-missed").startswith("marked 0 events")
    ended = db.session.get(SurveillancePlan, p.plans[0].id)
    assert ended.horizon_until == date(2028, 1, 5)


def test_an_exclusive_job_is_skipped_while_another_process_holds_it(app: Flask) -> None:
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with app.app_context(), jobs.only_one("mark-missed") as acquired:
            assert acquired
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        assert jobs.run_job("mark-missed") == "skipped: another process is running it"
    finally:
        release.set()
        holder.join()
    assert jobs.run_job("mark-missed").startswith("marked 0 events")


def test_jobs_run_all_from_the_cli(clinic, coordinator, runner) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        patient(clinic)
    with time_machine.travel("2026-03-15 15:00:00+00:00", tick=False):
        result = runner.invoke(args=["jobs", "run", "all"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "extend-horizons",
        "mark-missed",
        "stage-sweep",
        "queue-reminders",
        "deliver",
    ]
    assert lines[2] == "stage-sweep: moved 0 patients to biopsy review"
    assert lines[3] == "queue-reminders: scanned 1 events, queued 1 reminders and 1 digests"
    assert lines[4].startswith("deliver: sent 2,")
    result = runner.invoke(args=["jobs", "run", "nonsense"])
    assert result.exit_code == 2 and "Invalid value" in result.output


def test_scheduler_jobs_have_fixed_ids_and_safe_defaults(app: Flask) -> None:
    # The same configuration on a background scheduler, started paused so nothing runs.
    scheduler = jobs.build_scheduler(app, BackgroundScheduler)
    scheduler.start(paused=True)
    try:
        scheduled = {job.id: job for job in scheduler.get_jobs()}
        assert set(scheduled) == {
            "extend-horizons",
            "mark-missed",
            "stage-sweep",
            "queue-reminders",
            "deliver",
        }
        for job in scheduled.values():
            assert job.coalesce is True
            assert job.max_instances == 1
            assert job.misfire_grace_time == 300
        assert isinstance(scheduled["deliver"].trigger, IntervalTrigger)
        assert scheduled["deliver"].trigger.interval.total_seconds() == 60
        assert scheduled["queue-reminders"].trigger.interval.total_seconds() == 120
        daily = scheduled["extend-horizons"].trigger
        assert isinstance(daily, CronTrigger) and str(daily.timezone) == "UTC"
        assert "hour='9'" in str(daily) and "minute='0'" in str(daily)
        # Adding the jobs again (as a restart would) replaces them rather than adding copies.
        for job in jobs.JOBS.values():
            scheduler.add_job(
                lambda: None, trigger=job.trigger(app), id=job.name, replace_existing=True
            )
        sweep = scheduled["stage-sweep"].trigger
        assert isinstance(sweep, CronTrigger) and "hour='9'" in str(sweep)
        assert len(scheduler.get_jobs()) == 5
    finally:
        scheduler.shutdown(wait=False)


def test_the_app_factory_never_starts_a_scheduler(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = {t.name for t in threading.enumerate()}
    create_app({"SQLALCHEMY_DATABASE_URI": database_url, "INSTANCE_PATH": str(tmp_path)})
    started = {t.name for t in threading.enumerate()} - before
    assert not [name for name in started if "APScheduler" in name or "ThreadPool" in name]


def test_clinic_reminder_settings_from_the_cli(clinic, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(
        args=["reminders", "settings", clinic.slug, "--booked-reminder-days", "1,14", "--no-digest"]
    )
    assert result.exit_code == 0, result.output
    assert "booked_reminder_days: 14,1" in result.output
    assert "digest_enabled: False" in result.output
    shown = runner.invoke(args=["reminders", "settings", clinic.slug]).output
    assert "booked_reminder_days: 14,1" in shown and "send_hour: 9" in shown
    bad = runner.invoke(args=["reminders", "settings", clinic.slug, "--send-hour", "25"])
    assert bad.exit_code == 1 and "send_hour: Must be a whole number from 0 to 23." in bad.output
    assert "send_hour: 9" in runner.invoke(args=["reminders", "settings", clinic.slug]).output
    missing = runner.invoke(args=["reminders", "settings", "nowhere"])
    assert missing.exit_code == 1 and "No clinic" in missing.output


def test_stage_sweep_job_moves_patients_into_biopsy_review_as_the_scheduler(clinic, runner) -> None:  # type: ignore[no-untyped-def]
    from surveillance.audit import AuditEntry
    from surveillance.models import Patient, StageChange

    with time_machine.travel("2025-01-06 17:00:00+00:00", tick=False):
        due = patient(clinic, enrolled_on="2025-01-06", mrn="SWEEP-1")
        later = patient(clinic, enrolled_on="2025-06-02", mrn="SWEEP-2")
    assert jobs.JOBS["stage-sweep"].exclusive
    # The biopsy (due 6 Jan 2026) opens its window four weeks before.
    with time_machine.travel("2025-12-01 17:00:00+00:00", tick=False):
        assert jobs.run_job("stage-sweep") == "moved 0 patients to biopsy review"
    with time_machine.travel("2025-12-10 17:00:00+00:00", tick=False):
        result = runner.invoke(args=["jobs", "run", "stage-sweep"])
        assert result.exit_code == 0, result.output
        assert result.output == "stage-sweep: moved 1 patients to biopsy review\n"
        # Again the same day: nothing more to do.
        assert jobs.run_job("stage-sweep") == "moved 0 patients to biopsy review"
    db.session.expire_all()
    assert db.session.get(Patient, due.id).stage == "biopsy_review"
    assert db.session.get(Patient, later.id).stage == "watchful_waiting"
    change = db.session.scalars(
        select(StageChange).where(StageChange.patient_id == due.id).order_by(StageChange.id)
    ).all()[-1]
    assert change.reason == "The one-year biopsy window opened." and change.changed_by is None
    entries = db.session.scalars(select(AuditEntry).where(AuditEntry.patient_id == due.id)).all()
    moved = [e for e in entries if e.entity == "patients" and "stage" in e.changes]
    recorded = [e for e in entries if e.entity == "stage_changes" and e.entity_id == change.id]
    assert moved and recorded
    assert {e.actor for e in moved + recorded} == {"scheduler"}  # not the CLI's user
