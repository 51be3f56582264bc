"""Several real processes at once: two sweeps and two deliveries against the test database
(PostgreSQL in the PostgreSQL pass, the SQLite file otherwise), one real SMTP server. Each
reminder must arrive exactly once. Also the scheduler process itself, started and stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import time_machine
from flask import Flask

from surveillance.models import OutboxStatus
from tests.reminders.conftest import MailServer
from tests.reminders.helpers import patient, rows

ROOT = Path(__file__).resolve().parents[2]
RUN_AT = Path(__file__).with_name("run_at.py")
PATIENTS = 30


def environment(app: Flask, database_url: str, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MAIL_", "DATABASE_URL", "PYTEST"))
    }
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY=app.config["SECRET_KEY"],
        WATCHFUL_INSTANCE_PATH=app.instance_path,
        PUBLIC_BASE_URL=app.config["PUBLIC_BASE_URL"],
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def flask_at(moment: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(RUN_AT), moment, "--app", "surveillance", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def test_two_processes_sweep_and_deliver_at_once_each_reminder_arrives_once(
    app: Flask,
    database_url: str,
    clinic,
    coordinator,
    smtp: MailServer,  # type: ignore[no-untyped-def]
) -> None:
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        for _ in range(PATIENTS):
            patient(clinic)
    original = smtp.recorder.handle_DATA

    async def slow_data(server, session, envelope):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.05)  # a server that takes its time: the two workers overlap
        return await original(server, session, envelope)

    smtp.recorder.handle_DATA = slow_data  # type: ignore[method-assign]
    env = environment(app, database_url, MAIL_SERVER="127.0.0.1", MAIL_PORT=str(smtp.port))
    moment = "2026-03-15 15:00:00+00:00"
    workers = [flask_at(moment, env, "jobs", "run", "queue-reminders", "deliver") for _ in range(2)]
    outputs = [finish(w) for w in workers]
    # Two more sweeps afterwards: nothing new is queued or sent.
    again = [flask_at(moment, env, "jobs", "run", "queue-reminders", "deliver") for _ in range(2)]
    outputs += [finish(w) for w in again]

    messages = rows()
    assert len(messages) == PATIENTS + 1  # every "time to book" and the coordinator's digest
    assert {m.status for m in messages} == {OutboxStatus.SENT}
    assert {m.attempts for m in messages} == {1}, outputs
    received = smtp.message_ids()
    assert sorted(received) == sorted(m.message_id for m in messages), outputs
    assert len(received) == len(set(received)) == PATIENTS + 1
    sent = [
        int(line.split("sent ")[1].split(",")[0])
        for o in outputs
        for line in o.splitlines()
        if line.startswith("deliver:")
    ]
    assert sum(sent) == PATIENTS + 1, outputs


def test_the_scheduler_process_runs_the_jobs_and_stops_on_sigterm(
    app: Flask,
    database_url: str,
    clinic,  # type: ignore[no-untyped-def]
) -> None:
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        p = patient(clinic)
    env = environment(app, database_url)  # no MAIL_SERVER: messages become files
    scheduler = flask_at("2026-03-15 15:00:00+00:00", env, "scheduler", "run")
    folder = Path(app.instance_path) / "outbox-mail"
    deadline = time.monotonic() + 60
    # The first queue and deliver runs start a second after launch; poll for their result.
    while not list(folder.glob("*.eml")) and time.monotonic() < deadline:
        assert scheduler.poll() is None, scheduler.communicate()[0]
        time.sleep(0.2)
    scheduler.send_signal(signal.SIGTERM)
    output = finish(scheduler, timeout=60)
    mails = list(folder.glob("*.eml"))
    assert len(mails) == 1, output
    mail = mails[0]
    assert f"To: {p.email}" in mail.read_text()
    assert (
        "Scheduler running jobs: extend-horizons, mark-missed, stage-sweep, queue-reminders, "
        "deliver" in output
    )
    assert "Scheduler stopped." in output
