"""Patients enrolled per second: through the JSON API (Flask test client, one request and one
transaction per patient) and through the CSV import (``flask patients import``, one process,
one savepoint per row). On a generated database, which it adds patients to.

    python bench/enrolment.py /tmp/watchful-bench.sqlite3
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import common
from sqlalchemy import select

from surveillance import create_app
from surveillance.extensions import db
from surveillance.models import User
from surveillance.services import accounts, enrolment_input


def payload(mrn: str, n: int) -> dict[str, Any]:
    return {
        "mrn": mrn,
        "given_name": "Enrol",
        "family_name": f"Bench{n}",
        "birth_date": "1961-03-14",
        "email": f"enrol{n}@example.org",
        "phone": "+1 303 555 0142",
        "enrolled_on": date.today().isoformat(),
        "interval_months": 6 if n % 2 else 3,
        "primary_site": "small_bowel",
        "differentiation": "well",
        "grade": "G1",
        "ki67": 1.2,
        "size_mm": 11,
        "functional": "no",
    }


def api_rate(app: Any, count: int, run: str) -> dict[str, Any]:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "coord1@bench.test"))
        assert user is not None, "run bench/generate.py first"
        secret = accounts.issue_api_token(user, "bench-enrol")
        db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    samples = []
    started = time.perf_counter()
    for n in range(count):
        begin = time.perf_counter()
        response = client.post(
            "/api/v1/patients", json=payload(f"API-{run}-{n}", n), headers=headers
        )
        samples.append(time.perf_counter() - begin)
        assert response.status_code == 201, response.get_json()
    seconds = time.perf_counter() - started
    return {
        "patients": count,
        "seconds": round(seconds, 2),
        "patients_per_second": round(count / seconds, 1),
        "latency": common.percentiles_ms(samples),
    }


def csv_rate(target: str, count: int, run: str) -> dict[str, Any]:
    path = Path(tempfile.mkdtemp(prefix="watchful-import-")) / "patients.csv"
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(enrolment_input.FIELDS))
        writer.writeheader()
        for n in range(count):
            row = {k: "" for k in enrolment_input.FIELDS}
            row.update({k: str(v) for k, v in payload(f"CSV-{run}-{n}", n).items()})
            row["clinic"] = "clinic-2"
            writer.writerow(row)
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "patients", "import", str(path)],
        cwd=common.ROOT,
        env=common.environment_for(target),
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {
        "patients": count,
        "seconds_including_process_start": round(seconds, 2),
        "patients_per_second": round(count / seconds, 1),
        "output": done.stdout.strip().splitlines()[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", nargs="?", default=common.DEFAULT_SQLITE)
    parser.add_argument("--api", type=int, default=500)
    parser.add_argument("--csv", type=int, default=2000)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:6]
    app = create_app(common.app_config(args.target))
    common.emit(
        {
            "benchmark": "enrolment",
            "database": common.engine_name(args.target),
            "api": api_rate(app, args.api, run),
            "csv_import": csv_rate(args.target, args.csv, run),
            "machine": common.machine(),
        }
    )


if __name__ == "__main__":
    main()
