"""The scheduler's jobs at scale, on a generated database (which they change: regenerate to
start again).

    python bench/jobs.py /tmp/watchful-bench.sqlite3
    python bench/jobs.py --only horizons /tmp/copy.sqlite3   # just the extend-horizons part

It first migrates the database to the head revision (the jobs' indexes).

* ``queue-reminders`` over every event (seconds), then again (nothing new: seconds);
* ``extend-horizons`` a month from now, when every plan whose furthest visit falls inside the
  horizon needs a visit added (seconds);
* delivery of 10,000 queued messages to a local aiosmtpd server (messages per second), and the
  same messages again through a transport that sends nothing, to see whether SMTP is the limit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import common
import time_machine
from flask_migrate import upgrade
from sqlalchemy import text

from surveillance import clock, create_app, jobs
from surveillance.extensions import db
from surveillance.reminders import delivery

BENCH = Path(__file__).resolve().parent


class NullTransport:
    """Accepts every message and sends nothing: the app's own cost of a delivery."""

    def send(self, message: Any, sender: str, recipient: str) -> None:
        return None

    def close(self) -> None:
        return None


def timed_job(name: str) -> dict[str, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    outcome = jobs.run_job(name)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "outcome": str(outcome),
        # This process only (not PostgreSQL's): less skewed than seconds on a shared machine.
        "cpu_seconds": round(time.process_time() - cpu, 2),
    }


def make_due(count: int) -> int:
    """Exactly ``count`` queued messages due now (the rest wait until tomorrow)."""
    now = clock.utcnow()
    later = now + timedelta(days=1)
    db.session.execute(
        text("UPDATE outbox_messages SET next_attempt_at = :later WHERE status = 'queued'"),
        {"later": later.replace(tzinfo=None) if _sqlite() else later},
    )
    ids = db.session.scalars(
        text("SELECT id FROM outbox_messages WHERE status = 'queued' ORDER BY id LIMIT :n"),
        {"n": count},
    ).all()
    _reset(list(ids))
    db.session.commit()
    return len(ids)


def _sqlite() -> bool:
    return db.engine.dialect.name == "sqlite"


def _reset(ids: list[int]) -> None:
    now = clock.utcnow() - timedelta(seconds=1)
    value = now.replace(tzinfo=None) if _sqlite() else now
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        db.session.execute(
            text(
                "UPDATE outbox_messages SET status = 'queued', attempts = 0, claimed_by = NULL, "
                "lease_until = NULL, sent_at = NULL, next_attempt_at = :now "
                f"WHERE id IN ({', '.join(str(i) for i in chunk)})"
            ),
            {"now": value},
        )


def deliver(transport: Any = None) -> dict[str, Any]:
    started = time.perf_counter()
    result = delivery.deliver_due(transport=transport)
    seconds = time.perf_counter() - started
    sent = result.sent
    return {
        "sent": sent,
        "result": str(result),
        "seconds": round(seconds, 2),
        "messages_per_second": round(sent / seconds, 1) if seconds else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", nargs="?", default=common.DEFAULT_SQLITE)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument(
        "--only",
        choices=["horizons"],
        help="run only extend-horizons (twice, a month ahead): same JSON, the other keys left out",
    )
    args = parser.parse_args()
    config = common.app_config(args.target, MAIL_SERVER="127.0.0.1", MAIL_PORT=args.smtp_port)
    app = create_app(config)
    result: dict[str, Any] = {"benchmark": "jobs", "database": common.engine_name(args.target)}
    with app.app_context():
        upgrade()  # the jobs' indexes (a no-op on a database already at the head revision)
        result["events"] = db.session.scalar(text("SELECT COUNT(*) FROM plan_events"))
        if args.only is None:
            result["queue_reminders"] = timed_job("queue-reminders")
            result["queue_reminders_again"] = timed_job("queue-reminders")
            result["queued_messages"] = db.session.scalar(
                text("SELECT COUNT(*) FROM outbox_messages WHERE status = 'queued'")
            )
        result["load_average_before_horizons"] = common.load_average()
        with time_machine.travel(clock.utcnow() + timedelta(days=31), tick=True):
            result["extend_horizons_in_a_month"] = timed_job("extend-horizons")
            result["extend_horizons_again"] = timed_job("extend-horizons")
        result["load_average_after_horizons"] = common.load_average()
        if args.only is None:
            _delivery(args, result)
    result["targets"] = {
        **(
            {"queue_reminders<10s": result["queue_reminders"]["seconds"] < 10}
            if args.only is None
            else {}
        ),
        "extend_horizons<10s": result["extend_horizons_in_a_month"]["seconds"] < 10,
    }
    result["machine"] = common.machine()
    common.emit(result)


def _delivery(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """10,000 queued messages to a local aiosmtpd server, then again through nothing."""
    report = Path(tempfile.mkdtemp(prefix="watchful-smtp-")) / "report.json"
    due = make_due(args.messages)
    ids = db.session.scalars(
        text(
            "SELECT id FROM outbox_messages WHERE status = 'queued' "
            "AND next_attempt_at <= CURRENT_TIMESTAMP ORDER BY id"
        )
    ).all()
    sink = subprocess.Popen(
        [sys.executable, str(BENCH / "smtp_sink.py"), str(args.smtp_port), str(report)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    try:
        result["deliver_smtp"] = {"due": due, **deliver()}
    finally:
        sink.terminate()
        sink.wait(timeout=30)
    result["smtp_server_received"] = json.loads(report.read_text())
    _reset(list(ids))
    db.session.commit()
    result["deliver_null_transport"] = deliver(NullTransport())


if __name__ == "__main__":
    main()
