"""Two scheduler processes on PostgreSQL share the delivery work without duplicates.

    python bench/two_schedulers.py postgresql://postgres@127.0.0.1:5432/watchful_bench

Queues the due reminders, makes N of them due now, starts a local aiosmtpd server that counts
Message-IDs, then runs two processes at once, each looping ``flask jobs run queue-reminders
deliver`` until nothing is left. Reports how many messages each process sent (from the
outbox's ``claimed_by``), how many the SMTP server received and how many Message-IDs it saw
twice (must be 0). Changes the database: regenerate to start again.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from jobs import make_due
from sqlalchemy import text

from surveillance import create_app
from surveillance import jobs as app_jobs
from surveillance.extensions import db

BENCH = Path(__file__).resolve().parent

LOOP = """
set -e
while true; do
  flask jobs run queue-reminders deliver >> "$OUT"
  left=$(python - <<'PY'
import os, sqlalchemy as sa
e = sa.create_engine(os.environ["DATABASE_URL"])
with e.connect() as c:
    print(c.execute(sa.text("SELECT COUNT(*) FROM outbox_messages WHERE status IN ('queued', "
        "'sending') AND next_attempt_at <= CURRENT_TIMESTAMP")).scalar())
PY
)
  [ "$left" = "0" ] && break
done
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", nargs="?", default=common.DEFAULT_POSTGRES)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--smtp-port", type=int, default=8026)
    args = parser.parse_args()
    if common.engine_name(args.target) != "postgresql":
        raise SystemExit("two schedulers are for PostgreSQL: pass a postgresql:// URL")
    app = create_app(common.app_config(args.target))
    with app.app_context():
        app_jobs.run_job("queue-reminders")
        due = make_due(args.messages)
        db.session.execute(
            text("UPDATE outbox_messages SET claimed_by = NULL WHERE status = 'queued'")
        )
        db.session.commit()
    report = Path(tempfile.mkdtemp(prefix="watchful-smtp-")) / "report.json"
    sink = subprocess.Popen(
        [sys.executable, str(BENCH / "smtp_sink.py"), str(args.smtp_port), str(report)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    env = {
        **common.environment_for(args.target),
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(args.smtp_port),
        # The loop's ``flask`` and ``python`` are this interpreter's (the project's venv).
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    outputs = [report.parent / f"scheduler-{n}.log" for n in (1, 2)]
    started = time.perf_counter()
    try:
        schedulers = [
            subprocess.Popen(["bash", "-c", LOOP], cwd=common.ROOT, env={**env, "OUT": str(out)})
            for out in outputs
        ]
        codes = [p.wait(timeout=1800) for p in schedulers]
    finally:
        sink.terminate()
        sink.wait(timeout=30)
    seconds = time.perf_counter() - started
    received = json.loads(report.read_text())
    sent_by_scheduler = [
        sum(int(n) for n in re.findall(r"sent (\d+)", out.read_text())) for out in outputs
    ]
    common.emit(
        {
            "benchmark": "two_schedulers",
            "database": "postgresql",
            "due_messages": due,
            "exit_codes": codes,
            "seconds": round(seconds, 1),
            "sent_by_scheduler": sent_by_scheduler,
            "smtp_server_received": received,
            "zero_duplicates": received["duplicates"] == 0,
            # Zero duplicates means something only when both ran and everything arrived.
            "all_delivered_once": codes == [0, 0]
            and received["unique_message_ids"] == due
            and received["duplicates"] == 0,
            "machine": common.machine(),
        }
    )


if __name__ == "__main__":
    main()
