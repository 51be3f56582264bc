"""The scheduler's jobs at scale, on a generated database (which they change: regenerate to
start again).

    python bench/jobs.py /tmp/watchful-bench.sqlite3

It first migrates the database to the head revision (the jobs' indexes).

* ``queue-reminders`` over every event (seconds), then again (nothing new: seconds);
* ``extend-horizons`` a month from now, when every plan whose furthest visit falls inside the
  horizon needs a visit added (seconds);
* delivery of 10,000 queued messages to a local aiosmtpd server (messages per second), and the
  same messages again through a transport that sends nothing, to see whether SMTP is the limit;
* the SMTP-only ceiling: the messages the null transport was given, sent again to a fresh
  aiosmtpd server by ``SmtpTransport`` alone (one connection, one message after the other, as a
  delivery run does), with no database and no rendering: the messages are the bytes the run
  made (as it does over SMTP, while preparing a batch), so this times the SMTP conversation
  alone;
* the delivery and the SMTP-only ceiling again against a relay-like server, one that takes
  ``--relay-delay-ms`` (default 2) to accept each message, as a relay that queues it on disk or
  forwards it does (0 skips this part). The local server above is a best case for SMTP that
  no real relay matches, and it shares the two cores with the app and its database.

Each delivery reports ``waited_for_sending_share``: the part of the run the app spent with its
next batch prepared, waiting for the mail server to take the previous one.

``--only horizons`` runs only the two extend-horizons runs. ``--only delivery`` (or
``--delivery-only``) skips the timed queue-reminders and extend-horizons runs (it queues
reminders untimed if fewer than ``--messages`` are queued) and reports the delivery part only.
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
from surveillance.reminders.transport import SmtpTransport, wire_format

BENCH = Path(__file__).resolve().parent


class NullTransport:
    """Accepts every message and sends nothing: the app's own cost of a delivery. Takes the
    messages as the bytes SMTP sends, as ``SmtpTransport`` does (so the run prepares them as
    a run over SMTP does), and keeps them, for the SMTP-only ceiling."""

    def __init__(self) -> None:
        self.kept: list[tuple[bytes, str, str]] = []

    def send(self, message: Any, sender: str, recipient: str) -> None:
        data = wire_format(message, sender, recipient)
        assert data is not None  # the bench's addresses are ASCII
        self.kept.append((data, sender, recipient))

    def send_wire(self, data: bytes, sender: str, recipient: str) -> None:
        self.kept.append((data, sender, recipient))

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
    started, cpu = time.perf_counter(), time.process_time()
    result = delivery.deliver_due(transport=transport)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    sent = result.sent
    return {
        "sent": sent,
        "result": str(result),
        "seconds": round(seconds, 2),
        "waited_for_sending_seconds": round(result.waited_for_sending, 2),
        "waited_for_sending_share": round(result.waited_for_sending / seconds, 2)
        if seconds
        else None,
        "messages_per_second": round(sent / seconds, 1) if seconds else None,
        # This process's CPU time (all its threads) a message: less sensitive to the load of
        # other processes than the wall-clock rate.
        "app_cpu_ms_per_message": round(cpu / sent * 1000, 3) if sent else None,
    }


def start_sink(port: int, report: Path, data_delay_ms: float = 0) -> subprocess.Popen[str]:
    sink = subprocess.Popen(
        [sys.executable, str(BENCH / "smtp_sink.py"), str(port), str(report), str(data_delay_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    return sink


def stop_sink(sink: subprocess.Popen[str], report: Path) -> dict[str, Any]:
    sink.terminate()
    sink.wait(timeout=30)
    return dict(json.loads(report.read_text()))


def smtp_only(
    kept: list[tuple[bytes, str, str]], port: int, report: Path, data_delay_ms: float = 0
) -> dict[str, Any]:
    """The same messages through the app's SMTP transport alone: what SMTP allows."""
    sink = start_sink(port, report, data_delay_ms)
    try:
        transport = SmtpTransport("127.0.0.1", port)
        started, cpu = time.perf_counter(), time.process_time()
        for data, sender, recipient in kept:
            transport.send_wire(data, sender, recipient)
        transport.close()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        received = stop_sink(sink, report)
    return {
        "sent": len(kept),
        "seconds": round(seconds, 2),
        "messages_per_second": round(len(kept) / seconds, 1) if seconds else None,
        "client_cpu_ms_per_message": round(cpu / len(kept) * 1000, 3) if kept else None,
        "server_received": received,
    }


def delivery_part(args: argparse.Namespace, report: Path, result: dict[str, Any]) -> None:
    due = make_due(args.messages)
    ids = db.session.scalars(
        text(
            "SELECT id FROM outbox_messages WHERE status = 'queued' "
            "AND next_attempt_at <= CURRENT_TIMESTAMP ORDER BY id"
        )
    ).all()
    result["load_average_before_delivery"] = common.load_average()
    result["deliver_smtp"] = {"due": due, **deliver_to_sink(args.smtp_port, report)}
    result["smtp_server_received"] = result["deliver_smtp"].pop("server_received")
    _reset(list(ids))
    db.session.commit()
    null = NullTransport()
    result["deliver_null_transport"] = deliver(null)
    result["smtp_only_ceiling"] = smtp_only(null.kept, args.smtp_port, report)
    ratios = {"local_server": _ratio(result["deliver_smtp"], result["smtp_only_ceiling"])}
    if args.relay_delay_ms:
        _reset(list(ids))
        db.session.commit()
        delay = args.relay_delay_ms
        result["relay_delay_ms"] = delay
        result["deliver_smtp_relay"] = deliver_to_sink(args.smtp_port, report, delay)
        result["smtp_only_relay"] = smtp_only(null.kept, args.smtp_port, report, delay)
        ratios["relay"] = _ratio(result["deliver_smtp_relay"], result["smtp_only_relay"])
    result["delivery_vs_smtp_alone"] = ratios
    result["load_average_after_delivery"] = common.load_average()


def deliver_to_sink(port: int, report: Path, data_delay_ms: float = 0) -> dict[str, Any]:
    sink = start_sink(port, report, data_delay_ms)
    try:
        delivered = deliver()
    except BaseException:
        stop_sink(sink, report)
        raise
    delivered["server_received"] = stop_sink(sink, report)
    return delivered


def _ratio(delivered: dict[str, Any], alone: dict[str, Any]) -> float | None:
    if not delivered["messages_per_second"] or not alone["messages_per_second"]:
        return None
    return round(delivered["messages_per_second"] / alone["messages_per_second"], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", nargs="?", default=common.DEFAULT_SQLITE)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument(
        "--relay-delay-ms",
        type=float,
        default=2.0,
        help="the relay-like server's time to accept a message (0: no relay-like runs)",
    )
    parser.add_argument(
        "--only",
        choices=["horizons", "delivery"],
        help="run only extend-horizons (twice, a month ahead) or only the delivery: same JSON, "
        "the other keys left out",
    )
    parser.add_argument("--delivery-only", action="store_true", help="the same as --only delivery")
    args = parser.parse_args()
    report = Path(tempfile.mkdtemp(prefix="watchful-smtp-")) / "report.json"
    config = common.app_config(args.target, MAIL_SERVER="127.0.0.1", MAIL_PORT=args.smtp_port)
    app = create_app(config)
    result: dict[str, Any] = {"benchmark": "jobs", "database": common.engine_name(args.target)}
    with app.app_context():
        upgrade()  # the jobs' indexes (a no-op on a database already at the head revision)
        if args.delivery_only or args.only == "delivery":
            result["benchmark"] = "jobs-delivery"
            if queued() < args.messages:
                jobs.run_job("queue-reminders")
            result["queued_messages"] = queued()
            delivery_part(args, report, result)
            result["machine"] = common.machine()
            common.emit(result)
            return
        result["events"] = db.session.scalar(text("SELECT COUNT(*) FROM plan_events"))
        if args.only is None:
            result["queue_reminders"] = timed_job("queue-reminders")
            result["queue_reminders_again"] = timed_job("queue-reminders")
            result["queued_messages"] = queued()
        result["load_average_before_horizons"] = common.load_average()
        with time_machine.travel(clock.utcnow() + timedelta(days=31), tick=True):
            result["extend_horizons_in_a_month"] = timed_job("extend-horizons")
            result["extend_horizons_again"] = timed_job("extend-horizons")
        result["load_average_after_horizons"] = common.load_average()
        if args.only is None:
            delivery_part(args, report, result)
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


def queued() -> int:
    return int(
        db.session.scalar(text("SELECT COUNT(*) FROM outbox_messages WHERE status = 'queued'")) or 0
    )


if __name__ == "__main__":
    main()
