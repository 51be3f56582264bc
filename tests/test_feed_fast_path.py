"""The patient feed's WSGI fast path answers exactly as the Flask view, and its entity tags
follow every input of the bytes.

Every request here is sent twice through the same test client: once with ``FEED_FAST_PATH``
off (the view, the reference behaviour) and once with it on; status, headers (all of them)
and body must be identical, and the fast path's counters show which requests it answered
itself. Real SQLite or PostgreSQL throughout; statements are counted at the driver.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event as sa_event
from werkzeug.test import TestResponse

from surveillance import create_app
from surveillance.extensions import UTCDateTime, db
from surveillance.feeds import fastpath, validators
from surveillance.feeds.cache import feed_cache
from tests import factories
from tests.conftest import base_config

START = "2026-01-05 17:00:00+00:00"


@pytest.fixture(autouse=True)
def _now() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def clinic(app: Flask):  # type: ignore[no-untyped-def]
    return factories.clinic(name="Northside Clinic", phone="+1 303 555 0100")


@pytest.fixture
def fast(app: Flask) -> fastpath.PatientFeedFastPath:
    return app.extensions[fastpath.EXTENSION]


def enrol(api: factories.ApiClient, **overrides: Any) -> dict[str, Any]:
    response = api.post("/patients", json=factories.enrolment_payload(**overrides))
    assert response.status_code == 201, response.json
    return response.json


def path_of(patient: dict[str, Any]) -> str:
    return urlsplit(patient["feed_url"]).path


def book(api: factories.ApiClient, patient: dict[str, Any], starts_at: str) -> None:
    visit = next(e for e in patient["events"] if e["kind"] == "visit")
    payload = {"starts_at": starts_at, "duration_minutes": 45}
    response = api.post(f"/events/{visit['id']}/book", json=payload)
    assert response.status_code == 200, response.json


def headers_of(response: TestResponse) -> list[tuple[str, str]]:
    return sorted((name, value) for name, value in response.headers if name != "Date")


class Both:
    """Sends each request through the view, then through the fast path, and checks that the
    answers are the same."""

    def __init__(self, app: Flask, client: FlaskClient, fast: fastpath.PatientFeedFastPath):
        self.app, self.client, self.fast = app, client, fast

    def send(self, path: str, method: str = "GET", **kwargs: Any) -> tuple[TestResponse, bool]:
        """The (identical) answer, and whether the fast path gave it itself."""
        self.app.config["FEED_FAST_PATH"] = False
        answered = self.fast.answered
        slow = self.client.open(path, method=method, **kwargs)
        assert self.fast.answered == answered  # switched off: never answers
        self.app.config["FEED_FAST_PATH"] = True
        quick = self.client.open(path, method=method, **kwargs)
        assert quick.status == slow.status  # the whole status line
        assert headers_of(quick) == headers_of(slow)
        assert quick.data == slow.data
        return quick, self.fast.answered == answered + 1


@pytest.fixture
def both(app: Flask, client: FlaskClient, fast: fastpath.PatientFeedFastPath) -> Both:
    return Both(app, client, fast)


# --- The same answers -------------------------------------------------------------------------


def test_full_answers_and_head_are_identical(both, api) -> None:  # type: ignore[no-untyped-def]
    path = path_of(enrol(api))
    first, by_fast_path = both.send(path)  # the view rendered it, so the fast path has it
    assert first.status_code == 200 and by_fast_path
    assert first.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert int(first.headers["Content-Length"]) == len(first.data) > 0
    assert first.headers["Content-Security-Policy"]  # the app-wide headers too
    head, by_fast_path = both.send(path, method="HEAD")
    assert head.status_code == 200 and head.data == b"" and by_fast_path
    assert head.headers["Content-Length"] == first.headers["Content-Length"]
    secure, by_fast_path = both.send(path, base_url="https://watchful.test")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=") and by_fast_path
    plain_headers = dict(first.headers)
    assert "Strict-Transport-Security" not in plain_headers


def test_conditional_answers_are_identical(both, api, _now) -> None:  # type: ignore[no-untyped-def]
    path = path_of(enrol(api))
    full, _ = both.send(path)
    etag, modified = full.headers["ETag"], full.headers["Last-Modified"]
    _now.shift(timedelta(minutes=10))
    later = format_datetime(datetime(2026, 1, 5, 17, 0, 1, tzinfo=UTC), usegmt=True)
    earlier = format_datetime(datetime(2026, 1, 5, 16, 59, 59, tzinfo=UTC), usegmt=True)
    future = format_datetime(datetime(2027, 1, 1, tzinfo=UTC), usegmt=True)
    cases = [
        ({"If-None-Match": etag}, 304),
        ({"If-None-Match": f'"other", {etag}'}, 304),
        ({"If-None-Match": f"W/{etag}"}, 304),
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"something-else"'}, 200),
        ({"If-None-Match": ""}, 200),
        ({"If-Modified-Since": modified}, 304),
        ({"If-Modified-Since": later}, 304),
        ({"If-Modified-Since": earlier}, 200),
        ({"If-Modified-Since": "not a date"}, 200),
        ({"If-Modified-Since": future}, 200),
        ({"If-None-Match": '"something-else"', "If-Modified-Since": later}, 200),
        ({"If-None-Match": etag, "If-Modified-Since": earlier}, 304),
        ({"Range": "bytes=0-9"}, 200),  # neither path serves ranges
    ]
    for headers, status in cases:
        for method in ("GET", "HEAD"):
            response, by_fast_path = both.send(path, method=method, headers=headers)
            assert response.status_code == status, headers
            assert by_fast_path, headers
            if status == 304:
                assert response.data == b""
                assert response.headers["ETag"] == etag
                assert response.headers["Cache-Control"] == "private"
                assert "Last-Modified" not in response.headers  # RFC 9110 §15.4.5


def test_a_304_needs_no_rendering_even_when_the_feed_is_not_cached(  # type: ignore[no-untyped-def]
    app, both, api
) -> None:
    path = path_of(enrol(api))
    etag = both.client.get(path).headers["ETag"]
    cache = feed_cache(app)
    cache.clear()  # a restarted worker, or another one
    renders = cache.renders
    response, by_fast_path = both.send(path, headers={"If-None-Match": etag})
    assert response.status_code == 304 and by_fast_path
    assert cache.renders == renders  # neither path rendered
    # If-Modified-Since alone needs the feed's last change, known by rendering: the fast path
    # hands it on, and the view renders.
    modified = both.client.get(path).headers["Last-Modified"]
    cache.clear()
    handed_on = both.fast.handed_on
    response = both.client.get(path, headers={"If-Modified-Since": modified})
    assert response.status_code == 304
    assert both.fast.handed_on == handed_on + 1 and cache.renders == renders + 2


def test_changes_are_served_at_once(both, api, clinic, _now) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    path = path_of(patient)
    before, _ = both.send(path)
    _now.shift(timedelta(minutes=1))
    book(api, patient, "2026-07-06T09:30:00")
    # With the fast path on, the new version is in no cache yet: handed on and rendered.
    handed_on = both.fast.handed_on
    fresh = both.client.get(path)
    assert both.fast.handed_on == handed_on + 1
    changed, by_fast_path = both.send(path)  # now from the cache, by both paths
    assert by_fast_path and changed.data == fresh.data
    assert changed.data != before.data and changed.headers["ETag"] != before.headers["ETag"]
    assert changed.headers["Last-Modified"] == "Mon, 05 Jan 2026 17:01:00 GMT"
    again, by_fast_path = both.send(path, headers={"If-None-Match": before.headers["ETag"]})
    assert again.status_code == 200 and by_fast_path and again.data == changed.data
    _now.shift(timedelta(minutes=1))
    clinic.phone = "+1 303 555 0111"
    db.session.commit()
    renamed, _ = both.send(path, headers={"If-None-Match": changed.headers["ETag"]})
    assert renamed.status_code == 200 and b"+1 303 555 0111" in renamed.data


def test_what_the_fast_path_hands_on(both, api, fast) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    path = path_of(patient)
    both.send(path)
    for unknown in ("/calendar/" + "A" * 43 + ".ics", "/calendar/short.ics"):
        response, by_fast_path = both.send(unknown)
        assert response.status_code == 404 and not by_fast_path
        assert response.headers["Cache-Control"] == "private"
    answered = fast.answered
    both.client.set_cookie("session", "anything")
    response, by_fast_path = both.send(path)
    assert response.status_code == 200 and not by_fast_path
    both.client.delete_cookie("session")
    response, by_fast_path = both.send(path, method="POST")
    assert response.status_code == 405 and not by_fast_path
    assert fast.answered == answered
    assert both.send(path)[1]


# (App-wide rate limits, RATELIMIT_DEFAULT and RATELIMIT_APPLICATION, are handed on the same
# way; an app made with them here would leave them in the process-wide limiter for later tests.)
HOST_CHECKS = [{"TRUSTED_HOSTS": ["localhost"]}, {"SERVER_NAME": "localhost"}]


@pytest.mark.parametrize("setting", HOST_CHECKS)
def test_host_checks_stay_with_flask(  # type: ignore[no-untyped-def]
    api, database_url, tmp_path, setting
) -> None:
    path = path_of(enrol(api))
    other = create_app({**base_config(database_url, tmp_path / "other"), **setting})
    try:
        fast = other.extensions[fastpath.EXTENSION]
        client = other.test_client()
        for _ in range(2):  # the second would be a cache hit
            client.get(path)
        assert fast.answered == 0
    finally:
        with other.app_context():
            db.engine.dispose()


def test_rotated_and_revoked_secrets(both, api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    old = path_of(patient)
    etag = both.send(old)[0].headers["ETag"]
    rotated = api.post(f"/patients/{patient['id']}/feed-token").json
    response, _ = both.send(old, headers={"If-None-Match": etag})
    assert response.status_code == 404
    new = path_of(rotated)
    fresh, _ = both.send(new, headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.headers["ETag"] != etag
    assert api.delete(f"/patients/{patient['id']}/feed-token").status_code == 204
    assert both.send(new)[0].status_code == 404


# --- Entity tags follow the bytes -------------------------------------------------------------


def test_every_input_of_the_bytes_changes_the_entity_tag(  # type: ignore[no-untyped-def]
    app, client, api, clinic, _now
) -> None:
    """Each change below changes the bytes; each must change the tag, and no tag ever stands
    for two different bodies."""
    patient = enrol(api)
    path = path_of(patient)
    seen: dict[str, bytes] = {}

    def fetch() -> tuple[str, bytes]:
        response = client.get(path)
        assert response.status_code == 200
        etag = response.headers["ETag"]
        assert seen.setdefault(etag, response.data) == response.data
        return etag, response.data

    def changes(step: str) -> None:
        before_tag, before_body = current
        after_tag, after_body = fetch()
        assert after_body != before_body, f"{step} did not change the bytes"
        assert after_tag != before_tag, f"{step} changed the bytes but not the tag"
        current[:] = [after_tag, after_body]

    current = list(fetch())
    _now.shift(timedelta(minutes=1))
    book(api, patient, "2026-07-06T09:30:00")  # raises the feed version
    changes("booking")
    clinic.calendar_name = "Northside Clinic East"  # the name patients see
    db.session.commit()
    changes("renaming the clinic for patients")
    app.config["CALENDAR_UID_DOMAIN"] = "calendar.northside.test"
    changes("the UID domain")
    app.config["PUBLIC_BASE_URL"] = "https://other.watchful.test"
    changes("the public address")
    app.config["SECRET_KEY"] = "another-secret"  # the page link is no longer valid: dropped
    changes("the secret key")
    app.config["SECRET_KEY"] = "test-secret"
    changes("the secret key back")
    cancel = next(e for e in patient["events"] if e["kind"] == "biopsy")
    assert api.post(f"/events/{cancel['id']}/cancel", json={}).status_code == 200
    changes("a cancellation")
    _now.move_to("2026-04-06 17:00:00+00:00")  # day 91: the cancelled biopsy drops
    changes("the date")
    # And the other way round: nothing changes, nothing renders anew, the same tag.
    feed_cache(app).clear()
    assert fetch() == tuple(current)


def test_two_app_instances_give_the_same_tags(app, client, api, database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    path = path_of(patient)
    first = client.get(path)
    other = create_app(base_config(database_url, tmp_path / "other"))
    try:
        second = other.test_client().get(path)
        assert second.headers["ETag"] == first.headers["ETag"]
        assert second.data == first.data
        other.config["FEED_FAST_PATH"] = False
        revalidated = other.test_client().get(
            path, headers={"If-None-Match": first.headers["ETag"]}
        )
        assert revalidated.status_code == 304
    finally:
        with other.app_context():
            db.engine.dispose()


def test_tag_inputs_are_all_used() -> None:
    """The tag function itself: each argument alone changes the result."""
    now = datetime(2026, 1, 5, 17, tzinfo=UTC)
    day = now.date()
    args: list[Any] = ["epoch", 1, 1, now, 1, now, "America/Denver", day]
    variants: list[Any] = [
        "epoch2",
        2,
        2,
        now + timedelta(microseconds=1),
        2,
        now + timedelta(seconds=1),
        "America/New_York",
        day + timedelta(days=1),
    ]
    base = validators.patient_feed_etag(*args)
    for index, variant in enumerate(variants):
        changed = [*args]
        changed[index] = variant
        assert validators.patient_feed_etag(*changed) != base, index
    config = {"PUBLIC_BASE_URL": "a", "CALENDAR_UID_DOMAIN": "b", "SECRET_KEY": "c"}
    epoch = validators.rendering_epoch(config)
    for name in config:
        assert validators.rendering_epoch({**config, name: "x"}) != epoch, name
    # The same instant in another zone is the same input.
    denver = now.astimezone(ZoneInfo("America/Denver"))
    assert validators.patient_feed_etag(*args[:3], denver, *args[4:]) == base


# --- Statements at the driver -----------------------------------------------------------------


class DriverStatements:
    """Every statement the database driver sends, on connections opened from now on (the
    pool is emptied first): SQLite's trace callback, libpq's protocol trace for psycopg."""

    def __init__(self, app: Flask) -> None:
        self.engine = db.engine
        self.sqlite: list[str] = []
        self.traces: list[Any] = []
        self.traced: list[Any] = []
        self.engine.dispose()
        sa_event.listen(self.engine, "connect", self._on_connect)

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        if self.engine.dialect.name == "sqlite":
            dbapi_connection.set_trace_callback(self.sqlite.append)
            return
        from psycopg import pq

        dbapi_connection.prepare_threshold = None  # every statement's text in the trace
        trace = tempfile.TemporaryFile()  # noqa: SIM115 - open until close()
        self.traces.append(trace)
        self.traced.append(dbapi_connection)
        dbapi_connection.pgconn.trace(trace.fileno())
        dbapi_connection.pgconn.set_trace_flags(
            pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE
        )

    def take(self) -> list[str]:
        """The statements since the last call."""
        if self.engine.dialect.name == "sqlite":
            taken, self.sqlite[:] = list(self.sqlite), []
            return taken
        statements = []
        for trace in self.traces:
            trace.seek(0)
            messages: list[str] = []
            for line in trace.read().decode().splitlines():
                if line.startswith(("F\t", "B\t")) or not messages:
                    messages.append(line)
                else:  # a statement's text goes on over several lines
                    messages[-1] += "\n" + line
            for message in messages:
                parts = message.split("\t")
                # Frontend messages carrying a statement: Query (simple), Parse (extended).
                if parts[0] == "F" and parts[2] in ("Query", "Parse"):
                    statements.append(parts[3].strip())
            trace.seek(0)
            trace.truncate()
        return statements

    def close(self) -> None:
        sa_event.remove(self.engine, "connect", self._on_connect)
        # Stop libpq's tracing before its files close: a connection still open (the test's
        # session) would otherwise write its trace into whatever reuses the descriptor next.
        for connection in self.traced:
            if not connection.closed:
                connection.pgconn.untrace()
        self.engine.dispose()
        for trace in self.traces:
            trace.close()


@pytest.fixture
def driver_statements(app: Flask) -> Iterator[DriverStatements]:
    recorder = DriverStatements(app)
    yield recorder
    recorder.close()


def test_the_fast_path_sends_one_statement_and_no_transaction(  # type: ignore[no-untyped-def]
    app, client, api, fast, driver_statements, is_postgres
) -> None:
    patient = enrol(api)
    path = path_of(patient)
    etag = client.get(path).headers["ETag"]
    for headers in ({}, {"If-None-Match": etag}):
        driver_statements.take()
        answered = fast.answered
        assert client.get(path, headers=headers).status_code in (200, 304)
        assert fast.answered == answered + 1
        statements = driver_statements.take()
        # Exactly one: no BEGIN/ROLLBACK, and on PostgreSQL no pool_pre_ping round trip (the
        # fast path's connection is its own, outside the pool).
        assert len(statements) == 1, statements
        assert "feed_token_hash" in statements[0] and "patients" in statements[0]


def test_each_thread_keeps_one_connection_until_the_engine_is_disposed(  # type: ignore[no-untyped-def]
    app, client, api, fast
) -> None:
    path = path_of(enrol(api))
    etag = client.get(path).headers["ETag"]
    lookup = fast.lookup
    opened = lookup.connections_opened
    for _ in range(5):
        assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    assert lookup.connections_opened == opened  # the same connection for every poll
    (held,) = lookup._open
    driver = held.dbapi_connection
    db.engine.dispose()  # e.g. a test dropping its database, or new credentials
    assert lookup._open == {}
    with pytest.raises(Exception, match=r"(?i)closed"):  # closed, not merely forgotten
        driver.cursor()
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    assert lookup.connections_opened == opened + 1
    assert lookup._open and held not in lookup._open


def test_a_forked_child_leaves_its_parents_connection_open(  # type: ignore[no-untyped-def]
    client, api, fast
) -> None:
    path = path_of(enrol(api))
    etag = client.get(path).headers["ETag"]
    lookup = fast.lookup
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    opened, answered = lookup.connections_opened, fast.answered
    child = os.fork()
    if child == 0:  # the child disposes of what it inherited, as a fresh worker would
        try:
            lookup._close_all(db.engine)
        finally:
            os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    # The parent's connection still works (on PostgreSQL a close in the child would have
    # ended the parent's session): the poll is answered here, on the same connection.
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    assert (lookup.connections_opened, fast.answered) == (opened, answered + 1)


def test_a_forked_child_polls_on_a_connection_of_its_own(  # type: ignore[no-untyped-def]
    client, api, fast
) -> None:
    """The child never sends a statement on the connection it inherited (on PostgreSQL two
    processes would talk over one socket): its first poll opens its own."""
    path = path_of(enrol(api))
    etag = client.get(path).headers["ETag"]
    lookup = fast.lookup
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    (inherited,) = lookup._open
    opened = lookup.connections_opened
    child = os.fork()
    if child == 0:
        status = 1
        try:
            answered = client.get(path, headers={"If-None-Match": etag}).status_code == 304
            own = [connection for connection in lookup._open if connection is not inherited]
            if answered and lookup.connections_opened == opened + 1 and len(own) == 1:
                status = 0
        finally:
            os._exit(status)
    assert os.waitpid(child, 0)[1] == 0
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    assert lookup.connections_opened == opened and set(lookup._open) == {inherited}


def test_a_broken_connection_is_replaced_and_the_poll_still_answered(  # type: ignore[no-untyped-def]
    client, api, fast
) -> None:
    path = path_of(enrol(api))
    etag = client.get(path).headers["ETag"]
    lookup = fast.lookup
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    (held,) = lookup._open
    held.dbapi_connection.close()  # the server went away under the worker's connection
    answered, handed_on = fast.answered, fast.handed_on
    response = client.get(path, headers={"If-None-Match": etag})
    # The view answered this one (through the pool), exactly as it would have anyway.
    assert response.status_code == 304 and response.headers["ETag"] == etag
    assert (fast.answered, fast.handed_on) == (answered, handed_on + 1)
    assert held not in lookup._open
    # The next poll opens a fresh connection and is answered here again.
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    assert fast.answered == answered + 1


# --- Timestamps from the driver's values -----------------------------------------------------

_STAMPED = sa.Table(
    "fast_path_stamps",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    moments=st.lists(
        st.datetimes(
            min_value=datetime(1000, 1, 1),
            max_value=datetime(9998, 12, 31),
            timezones=st.sampled_from([UTC, ZoneInfo("America/Denver"), ZoneInfo("Asia/Kolkata")]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_stamps_from_driver_values_equal_the_orms(app, fast, moments) -> None:  # type: ignore[no-untyped-def]
    """The fast path's stamp of the raw value is the view's stamp of the ORM's datetime, for
    text SQLAlchemy wrote and for text in another form (a value written by plain SQL)."""
    engine = db.engine
    _STAMPED.create(engine, checkfirst=True)
    try:
        with engine.begin() as conn:
            conn.execute(_STAMPED.insert(), [{"id": i, "at": m} for i, m in enumerate(moments)])
            if engine.dialect.name == "sqlite":  # without microseconds, as CURRENT_TIMESTAMP
                plain = "INSERT INTO fast_path_stamps VALUES (-1, '2026-01-05 17:00:00')"
                conn.execute(sa.text(plain))
        with engine.connect() as conn:
            typed = dict(conn.execute(sa.select(_STAMPED.c.id, _STAMPED.c.at)).all())
            raw = dict(conn.exec_driver_sql("SELECT id, at FROM fast_path_stamps").all())
        assert typed.keys() == raw.keys()
        for key, value in typed.items():
            assert fast.lookup.stamp(raw[key]) == validators.stamp(value), raw[key]
    finally:
        _STAMPED.drop(engine)
