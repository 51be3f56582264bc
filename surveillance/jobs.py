"""Background jobs and the scheduler process that runs them.

The scheduler is its own process (``flask --app surveillance scheduler run``), never started by
``create_app`` or a web worker. It keeps no state of its own: every job reads and writes the
app's tables and takes "now" from ``surveillance.clock``, so a restart, a second scheduler on
another host or a job run by hand from cron (``flask --app surveillance jobs run NAME``) all
do the right thing. Each job commits in bounded batches.
"""

from __future__ import annotations

import fcntl
import logging
import signal
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import and_, select, text
from sqlalchemy.orm import joinedload

from surveillance import audit, clock
from surveillance.errors import Conflict
from surveillance.extensions import db
from surveillance.models import (
    Clinic,
    EventStatus,
    Patient,
    PlanEvent,
    PlanStatus,
    SurveillancePlan,
)
from surveillance.reminders import delivery, outbox
from surveillance.services import horizons, plans
from surveillance.services import stages as care_stages

log = logging.getLogger(__name__)

PLAN_BATCH = 200
EVENT_BATCH = 500
MISFIRE_GRACE_SECONDS = 5 * 60

# Set when the scheduler is asked to stop: long jobs finish their current batch and return.
stopping = threading.Event()


def _clinic_zones() -> list[tuple[int, str]]:
    return list(db.session.execute(select(Clinic.id, Clinic.timezone).order_by(Clinic.id)).all())


# --- Extend horizons --------------------------------------------------------------------------


def extend_horizons() -> str:
    """Keep every active plan at least the horizon ahead (daily), set-based: see
    ``services.horizons``. Only plans whose horizon falls short are read."""
    result = horizons.extend_all(
        clock.today_in, plans._horizon_months(), should_continue=lambda: not stopping.is_set()
    )
    return str(result)


# --- Missed sweep -----------------------------------------------------------------------------


def mark_missed() -> str:
    """Events whose window has closed without being completed become ``missed`` (daily), through
    the service, so SEQUENCE rises, feeds update and reminders are withdrawn. What happens next
    is the coordinator's decision (the ``missed`` worklist)."""
    marked = skipped = 0
    for clinic_id, timezone in _clinic_zones():
        today = clock.today_in(timezone)
        closed = and_(
            PlanEvent.status.in_([EventStatus.PLANNED, EventStatus.BOOKED]),
            PlanEvent.window_end < today,
            SurveillancePlan.status == PlanStatus.ACTIVE,
            Patient.clinic_id == clinic_id,
        )
        after_id = 0
        while batch := _events_batch(closed, after_id):
            for event in batch:
                try:
                    plans.mark_missed(event)
                    marked += 1
                except Conflict:
                    skipped += 1  # booked for a later date, outside its window: not missed yet
            db.session.commit()
            after_id = batch[-1].id
            if stopping.is_set():
                break
    return f"marked {marked} events missed ({skipped} booked later, left alone)"


def _events_batch(condition: Any, after_id: int) -> list[PlanEvent]:
    return list(
        db.session.scalars(
            select(PlanEvent)
            .join(PlanEvent.plan)
            .join(PlanEvent.patient)
            .where(condition, PlanEvent.id > after_id)
            .options(joinedload(PlanEvent.patient).joinedload(Patient.clinic))
            .order_by(PlanEvent.id)
            .limit(EVENT_BATCH)
        )
        .unique()
        .all()
    )


# --- Care stages ------------------------------------------------------------------------------


def stage_sweep() -> str:
    """Move watched patients whose one-year biopsy window opened to biopsy review (daily).

    The audit log names the scheduler as the actor (also when run from the CLI): the move is
    the system's rule, not the person who happened to start the job.
    """
    with audit.acting_as("scheduler"):
        moved = care_stages.advance_biopsy_reviews()
        db.session.commit()
    return f"moved {len(moved)} patients to biopsy review"


# --- Reminders --------------------------------------------------------------------------------


def queue_reminders() -> str:
    return str(outbox.queue_due(clock.utcnow()))


def deliver() -> str:
    return str(delivery.deliver_due(should_continue=lambda: not stopping.is_set()))


# --- Registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    name: str
    help: str
    run: Callable[[], str]
    trigger: Callable[[Flask], BaseTrigger]
    # Seconds after the scheduler starts for the first run (``None``: wait for the trigger).
    first_run_after: float | None = None
    # Run by one process at a time (the daily plan jobs). Queueing and delivery need no such
    # lock: their unique keys and row claims make concurrent runs safe and share the work.
    exclusive: bool = False


@contextmanager
def only_one(name: str) -> Iterator[bool]:
    """Hold a lock named ``name`` across processes for the duration, yielding whether it was
    acquired. PostgreSQL: a session advisory lock; SQLite: a file lock next to the database.
    Both are released by the system if the process dies, so a crash never leaves it stuck."""
    engine = db.engine
    if engine.dialect.name == "postgresql":
        key = zlib.crc32(f"watchful-job:{name}".encode())
        with engine.connect() as conn:
            acquired = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            )
            conn.commit()
            try:
                yield acquired
            finally:
                if acquired:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield True
        return
    with open(f"{database}.{name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _daily(minute: int) -> Callable[[Flask], BaseTrigger]:
    def trigger(app: Flask) -> BaseTrigger:
        return CronTrigger(
            hour=int(app.config.get("SCHEDULER_DAILY_HOUR", 9)),
            minute=minute,
            timezone=app.config.get("SCHEDULER_TIMEZONE", "UTC"),
        )

    return trigger


def _every(minutes: int) -> Callable[[Flask], BaseTrigger]:
    return lambda app: IntervalTrigger(minutes=minutes)


# In the order ``jobs run all`` runs them: plans first, then what the reminders read.
JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        Job(
            "extend-horizons",
            "Keep every active plan the horizon ahead.",
            extend_horizons,
            _daily(0),
            exclusive=True,
        ),
        Job(
            "mark-missed",
            "Mark events missed once their window has closed.",
            mark_missed,
            _daily(15),
            exclusive=True,
        ),
        Job(
            "stage-sweep",
            "Move patients whose biopsy window opened to biopsy review.",
            stage_sweep,
            _daily(30),
            exclusive=True,
        ),
        Job(
            "queue-reminders",
            "Queue the reminders and digests that are due.",
            queue_reminders,
            _every(2),
            first_run_after=1,
        ),
        Job(
            "deliver",
            "Send queued messages (SMTP, or files without MAIL_SERVER).",
            deliver,
            _every(1),
            first_run_after=5,  # after the first queue run
        ),
    )
}


def run_job(name: str) -> str:
    """Run one job now, in the current app context."""
    job = JOBS[name]
    try:
        if not job.exclusive:
            return job.run()
        with only_one(name) as acquired:
            return job.run() if acquired else "skipped: another process is running it"
    except BaseException:
        db.session.rollback()
        raise


def _in_app_context(app: Flask, name: str) -> Callable[[], None]:
    def run() -> None:
        with app.app_context():
            try:
                log.info("%s: %s", name, run_job(name))
            except Exception:
                log.exception("Job %s failed; it runs again at its next time", name)
            finally:
                db.session.remove()

    return run


def build_scheduler(
    app: Flask, scheduler_class: type[BaseScheduler] = BlockingScheduler
) -> BaseScheduler:
    """The scheduler with every job added (not started). Job state lives in memory only: the
    work itself is in the database, so nothing is lost when the process restarts."""
    scheduler = scheduler_class(
        timezone=app.config.get("SCHEDULER_TIMEZONE", "UTC"),
        executors={"default": ThreadPoolExecutor(max_workers=len(JOBS))},
        job_defaults={
            "coalesce": True,  # after downtime, one catch-up run, not one per missed slot
            "max_instances": 1,  # a slow run is never overlapped by the next one
            "misfire_grace_time": MISFIRE_GRACE_SECONDS,
        },
    )
    for job in JOBS.values():
        options: dict[str, Any] = {}
        if job.first_run_after is not None:
            options["next_run_time"] = datetime.now(UTC) + timedelta(seconds=job.first_run_after)
        scheduler.add_job(
            _in_app_context(app, job.name),
            trigger=job.trigger(app),
            id=job.name,
            name=job.help,
            replace_existing=True,
            **options,
        )
    return scheduler


# --- CLI --------------------------------------------------------------------------------------

jobs_cli = AppGroup("jobs", help="Run background jobs once (for cron and tests).")
scheduler_cli = AppGroup("scheduler", help="The process that runs the background jobs.")


@jobs_cli.command("run")
@click.argument("names", nargs=-1, required=True, type=click.Choice([*JOBS, "all"]))
def run_command(names: tuple[str, ...]) -> None:
    """Run jobs once, in the order given ("all": every job, in order) and print what each did."""
    for job_name in JOBS if "all" in names else names:
        click.echo(f"{job_name}: {run_job(job_name)}")


@jobs_cli.command("list")
def list_command() -> None:
    """List the jobs and when the scheduler runs them."""
    for job in JOBS.values():
        click.echo(f"{job.name:16} {job.trigger(current_app._get_current_object())}  {job.help}")  # type: ignore[attr-defined]


@scheduler_cli.command("run")
def scheduler_run() -> None:
    """Run the scheduler in the foreground until Ctrl-C or SIGTERM."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    logging.getLogger("surveillance").setLevel(logging.INFO)
    scheduler = build_scheduler(app)

    def stop(signum: int, _frame: Any) -> None:
        if stopping.is_set():
            return
        log.info("Stopping the scheduler (signal %s); running jobs finish their batch", signum)
        stopping.set()
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"Scheduler running jobs: {', '.join(JOBS)} (Ctrl-C stops it)")
    stopping.clear()
    scheduler.start()
    # A job still running ends after its current batch; the interpreter waits for its thread.
    click.echo("Scheduler stopped.")
