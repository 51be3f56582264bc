"""Worklist first pages, worklist counts and the patient search on a generated database.

    python bench/worklists.py /tmp/watchful-bench.sqlite3
    python bench/worklists.py postgresql://postgres@127.0.0.1:5432/watchful_bench

Times the services the screens and the API call (``services.worklists.fetch`` and ``counts``,
``services.patient_search.search``) for an admin (all clinics) and a coordinator (one clinic),
then the API endpoints through the Flask test client. Prints p50/p99 in milliseconds.
``--only services`` or ``--only api`` times one part (the other's key is left out).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

import common
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from surveillance import clock, create_app
from surveillance.extensions import db
from surveillance.models import User
from surveillance.services import accounts, patient_search, worklists

SLOW_SECONDS = 2.0
# A statement still running after this long is interrupted and reported as such.
LIMIT_SECONDS = 30
_deadline: list[float | None] = [None]


def _interrupt_slow_statements(engine: Any) -> None:
    """SQLite: a progress handler aborts a statement past the deadline (PostgreSQL uses
    statement_timeout, set in the connection options)."""

    @event.listens_for(engine, "connect")
    def _handler(dbapi_connection: Any, _record: Any) -> None:
        if hasattr(dbapi_connection, "set_progress_handler"):
            dbapi_connection.set_progress_handler(
                lambda: int(_deadline[0] is not None and time.perf_counter() > _deadline[0]),
                100_000,
            )

    engine.dispose()


SEARCH_TERMS = ("", "ha", "zoe", "hale, ada", "b03-00012")


def timed(call: Callable[[], Any], repeats: int) -> dict[str, Any]:
    started = time.perf_counter()
    _deadline[0] = started + LIMIT_SECONDS
    try:
        call()  # warm the statement cache and the database's pages
    except OperationalError:  # interrupted: far too slow to time
        db.session.rollback()
        return {"n": 0, "p50_ms": None, "p99_ms": None, "over_seconds": LIMIT_SECONDS}
    _deadline[0] = None
    if time.perf_counter() - started > SLOW_SECONDS:
        # Far over target: one more sample says enough, and the run stays short.
        repeats = 1
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
        db.session.rollback()  # a new transaction each time, as a request would have
    return common.percentiles_ms(samples)


def service_timings(user: User, repeats: int) -> dict[str, Any]:
    today = clock.today_in("America/Denver")
    result: dict[str, Any] = {}
    for name in worklists.WORKLISTS:
        result[f"fetch:{name}"] = timed(lambda n=name: worklists.fetch(n, user, today), repeats)
    result["counts"] = timed(lambda: worklists.counts(user, today), repeats)
    for term in SEARCH_TERMS:
        for sort in patient_search.SortOrder:
            result[f"search:{sort.value}:{term or '(all)'}"] = timed(
                lambda t=term, s=sort: patient_search.search(user, t, sort=s), repeats
            )
    return result


def api_timings(app: Any, user: User, repeats: int) -> dict[str, Any]:
    secret = accounts.issue_api_token(user, "bench")
    db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}

    def get(path: str) -> Callable[[], Any]:
        def call() -> None:
            response = client.get(path, headers=headers)
            assert response.status_code == 200, (path, response.status_code)

        return call

    paths = ["/api/v1/worklists", "/api/v1/patients", "/api/v1/patients?q=ha"]
    paths += [f"/api/v1/worklists/{name}" for name in worklists.WORKLISTS]
    return {path: timed(get(path), repeats) for path in paths}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", nargs="?", default=common.DEFAULT_SQLITE)
    # 200: with fewer samples the 99th percentile is simply the slowest one, so a single
    # hiccup of the machine (a checkpoint, another process) decides the figure.
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--only", choices=("services", "api"), help="time only this part")
    args = parser.parse_args()
    options = {"connect_args": {"options": f"-c statement_timeout={LIMIT_SECONDS * 1000}"}}
    extra = {"SQLALCHEMY_ENGINE_OPTIONS": options} if "postgresql" in args.target else {}
    app = create_app(common.app_config(args.target, **extra))
    # As a gunicorn worker does once it has started (surveillance/gunicorn_conf.py).
    gc.freeze()
    with app.app_context():
        _interrupt_slow_statements(db.engine)
        admin = db.session.scalar(select(User).where(User.email == "admin@bench.test"))
        coordinator = db.session.scalar(select(User).where(User.email == "coord3@bench.test"))
        assert admin is not None and coordinator is not None, "run bench/generate.py first"
        patients = db.session.scalar(select(db.func.count()).select_from(db.text("patients")))
        events = db.session.scalar(select(db.func.count()).select_from(db.text("plan_events")))
        result = {
            "benchmark": "worklists",
            "database": common.engine_name(args.target),
            "patients": patients,
            "events": events,
            "repeats": args.repeats,
        }
        if args.only != "api":
            result["admin"] = service_timings(admin, args.repeats)
            result["coordinator"] = service_timings(coordinator, args.repeats)
        if args.only != "services":
            result["api_admin"] = api_timings(app, admin, args.repeats)
    slowest = max(
        (t["p99_ms"] if t["p99_ms"] is not None else LIMIT_SECONDS * 1000, f"{who}:{name}")
        for who in ("admin", "coordinator", "api_admin")
        for name, t in result.get(who, {}).items()
    )
    result["slowest_p99"] = {"ms": slowest[0], "what": slowest[1]}
    result["target_p99_ms"] = 50
    result["machine"] = common.machine()
    common.emit(result)


if __name__ == "__main__":
    main()
