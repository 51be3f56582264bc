"""The feed fast path's row table: remembered rows answer polls without a statement, and
PostgreSQL's change notifications make the table forget exactly what changed.

The table's rules are tested on their own (with an injected clock, and against a model under
hypothesis); then, on PostgreSQL, the whole path: real triggers, real ``LISTEN``, the answers
compared with the view's. Where a test needs a notification to have arrived, it waits on the
connection's socket for it (an event, never a sleep). On SQLite the same requests show that
no table is kept and every poll reads the database.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from surveillance import create_app, throttle
from surveillance.extensions import db
from surveillance.feeds import fastpath, rowtable
from surveillance.feeds.rowtable import RowTable
from surveillance.models import Clinic, Patient
from surveillance.secrets_store import token_hash
from surveillance.services import feed_tokens
from tests.conftest import _empty_all_tables, base_config
from tests.test_feed_fast_path import Both, enrol, path_of

# --- The table's own rules ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def row_of(patient_id: int, version: int = 1) -> rowtable.Row:
    return (patient_id, version, "2026-01-05T17:00:00.000000+00:00", 1, "stamp", "UTC")


def test_a_row_read_is_answered_until_its_patient_changes() -> None:
    table = RowTable(monotonic=Clock())
    table.read("a", row_of(1), table.signals)
    table.read("b", row_of(2), table.signals)
    assert table.get("a") == row_of(1) and table.get("b") == row_of(2)
    table.apply("1")
    assert table.get("a") is None and table.get("b") == row_of(2)
    table.apply("3,2")
    assert table.get("b") is None and len(table) == 0


def test_forget_all_and_unreadable_payloads_empty_the_table() -> None:
    table = RowTable(monotonic=Clock())
    for payload in ("*", "12,x", ""):
        table.read("a", row_of(1), table.signals)
        table.apply(payload)
        assert table.get("a") is None, payload


def test_a_row_read_while_a_notification_came_in_is_not_remembered() -> None:
    table = RowTable(monotonic=Clock())
    before = table.signals
    table.apply("99")  # arrived during the statement: the row read may predate that change
    table.read("a", row_of(1), before)
    assert table.get("a") is None
    table.read("a", row_of(1), table.signals)
    assert table.get("a") == row_of(1)


def test_rows_are_trusted_only_shortly_after_a_round_trip() -> None:
    clock = Clock()
    table = RowTable(recheck_seconds=1.0, monotonic=clock)
    table.read("a", row_of(1), table.signals)
    clock.now += 0.999
    assert table.get("a") == row_of(1)
    clock.now += 0.001
    assert table.get("a") is None  # the connection must prove itself alive again
    table.read("b", None, table.signals)  # any statement's answer, even "no such secret"
    assert table.get("a") == row_of(1)


def test_a_replaced_secret_forgets_the_old_one() -> None:
    table = RowTable(monotonic=Clock())
    table.read("old", row_of(1), table.signals)
    table.read("new", row_of(1, version=2), table.signals)
    assert table.get("old") is None and table.get("new") == row_of(1, version=2)
    table.apply("1")
    assert len(table) == 0


def test_the_table_never_holds_more_than_its_capacity() -> None:
    table = RowTable(capacity=3, monotonic=Clock())
    for patient_id in range(10):
        table.read(f"k{patient_id}", row_of(patient_id), table.signals)
        assert len(table) <= 3
    assert table.get("k9") == row_of(9)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("apply"), st.lists(st.integers(0, 5), min_size=1, max_size=3)),
        st.tuples(st.just("apply_all")),
    ),
    max_size=40,
)


@given(operations)
def test_the_table_answers_only_rows_no_later_notification_named(ops: list[Any]) -> None:
    """Against a model: a patient's row is answered only if it was read (with no notification
    during the read) after the last notification naming that patient."""
    table = RowTable(capacity=4, monotonic=Clock())
    version = 0
    valid: dict[int, rowtable.Row] = {}
    for op in ops:
        if op[0] == "read":
            _, patient_id, raced = op
            version += 1
            before = table.signals
            if raced:
                table.apply("1000")  # someone else's change arrived during the statement
            table.read(f"k{patient_id}", row_of(patient_id, version), before)
            if not raced:
                valid[patient_id] = row_of(patient_id, version)
        elif op[0] == "apply":
            table.apply(",".join(map(str, op[1])))
            for patient_id in op[1]:
                valid.pop(patient_id, None)
        else:
            table.apply("*")
            valid.clear()
        for patient_id in range(6):
            answered = table.get(f"k{patient_id}")
            assert answered is None or answered == valid.get(patient_id)


# --- The whole path ------------------------------------------------------------------------------


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    """The conftest's app, with the row table on (as deployed)."""
    config = {**base_config(database_url, tmp_path), "FEED_ROW_TABLE": True}
    app = create_app(config)
    with app.app_context():
        throttle.limiter.reset()
        yield app
        db.session.remove()
        _empty_all_tables()
        db.engine.dispose()


@pytest.fixture
def fast(app: Flask) -> fastpath.PatientFeedFastPath:
    return app.extensions[fastpath.EXTENSION]


@pytest.fixture
def both(app: Flask, client, fast: fastpath.PatientFeedFastPath) -> Both:  # type: ignore[no-untyped-def]
    return Both(app, client, fast)


def wait_for_signals(fast: fastpath.PatientFeedFastPath, count: int) -> None:
    """Block until this thread's table has taken in ``count`` notifications in all."""
    table = fast.lookup.table()
    assert table is not None
    driver: Any = fast.lookup._connection()[0].dbapi_connection
    while table.signals < count:
        readable, _, _ = select.select([driver.pgconn.socket], [], [], 10)
        assert readable, f"no notification within 10 s ({table.signals} of {count})"
        rowtable.catch_up(driver)


def test_sqlite_keeps_no_table(app: Flask, both: Both, api, is_postgres: bool) -> None:  # type: ignore[no-untyped-def]
    if is_postgres:
        return  # the PostgreSQL side is every other test below
    path = path_of(enrol(api))
    first, _ = both.send(path)
    tag = first.headers["ETag"]
    for _ in range(3):
        answer, by_fast_path = both.send(path, headers={"If-None-Match": tag})
        assert answer.status_code == 304 and by_fast_path
    assert both.fast.lookup.table() is None


def hashed(path: str) -> str:
    return token_hash(path.removeprefix("/calendar/").removesuffix(".ics"))


def patient_row(path: str) -> Patient:
    patient = db.session.scalar(sa.select(Patient).where(Patient.feed_token_hash == hashed(path)))
    assert patient is not None
    return patient


def poll(both: Both, path: str, tag: str) -> tuple[Any, bool]:
    return both.send(path, headers={"If-None-Match": tag})


def test_repeated_polls_are_answered_from_the_table(both: Both, api, fast, is_postgres) -> None:  # type: ignore[no-untyped-def]
    if not is_postgres:
        return  # SQLite keeps no table: test_sqlite_keeps_no_table
    path = path_of(enrol(api))
    first, _ = both.send(path)
    tag = first.headers["ETag"]
    table = fast.lookup.table()
    assert table is not None and table.get(hashed(path)) is not None
    hits = table.hits
    for _ in range(3):
        answer, by_fast_path = poll(both, path, tag)
        assert answer.status_code == 304 and by_fast_path  # and identical to the view's
    assert table.hits == hits + 3


def test_a_change_is_served_once_its_notification_is_in(both: Both, api, fast, is_postgres) -> None:  # type: ignore[no-untyped-def]
    if not is_postgres:
        return  # SQLite keeps no table: test_sqlite_keeps_no_table
    patient = enrol(api)
    path = path_of(patient)
    tag = both.send(path)[0].headers["ETag"]
    signals = fast.lookup.table().signals
    visit = next(e for e in patient["events"] if e["kind"] == "visit")
    booked = api.post(
        f"/events/{visit['id']}/book",
        json={"starts_at": "2026-03-02T10:00", "duration_minutes": 30},
    )
    assert booked.status_code == 200, booked.json
    wait_for_signals(fast, signals + 1)
    answer, _ = poll(both, path, tag)
    assert answer.status_code == 200 and answer.headers["ETag"] != tag
    assert b"BEGIN:VEVENT" in answer.data


def test_a_replaced_secret_stops_working(both: Both, api, fast, is_postgres) -> None:  # type: ignore[no-untyped-def]
    if not is_postgres:
        return  # SQLite keeps no table: test_sqlite_keeps_no_table
    path = path_of(enrol(api))
    tag = both.send(path)[0].headers["ETag"]
    signals = fast.lookup.table().signals
    feed_tokens.rotate_patient_token(patient_row(path))
    db.session.commit()
    wait_for_signals(fast, signals + 1)
    answer, by_fast_path = poll(both, path, tag)
    assert answer.status_code == 404 and not by_fast_path
    assert len(fast.lookup.table()) == 0


def test_a_clinic_change_forgets_every_row(both: Both, api, fast, clinic, is_postgres) -> None:  # type: ignore[no-untyped-def]
    if not is_postgres:
        return  # SQLite keeps no table: test_sqlite_keeps_no_table
    paths = [path_of(enrol(api)) for _ in range(2)]
    for path in paths:
        both.send(path)
    table = fast.lookup.table()
    assert len(table) == 2
    signals = table.signals
    db.session.get(Clinic, clinic.id).phone = "+1 303 555 0199"
    db.session.commit()
    wait_for_signals(fast, signals + 1)
    assert len(table) == 0


def test_a_rolled_back_change_sends_nothing(both: Both, api, fast, is_postgres) -> None:  # type: ignore[no-untyped-def]
    if not is_postgres:
        return  # SQLite keeps no table: test_sqlite_keeps_no_table
    kept, other = path_of(enrol(api)), path_of(enrol(api))
    both.send(kept)
    both.send(other)
    table = fast.lookup.table()
    signals = table.signals
    patient_row(kept).feed_version += 1
    db.session.flush()
    db.session.rollback()
    patient_row(other).feed_version += 1
    db.session.commit()
    wait_for_signals(fast, signals + 1)  # notifications arrive in commit order
    assert table.signals == signals + 1
    assert table.get(hashed(kept)) is not None
    assert table.get(hashed(other)) is None


def test_a_broken_connection_is_dropped_with_its_table(both: Both, api, fast, is_postgres) -> None:  # type: ignore[no-untyped-def]
    if not is_postgres:
        return  # SQLite keeps no table: test_sqlite_keeps_no_table
    path = path_of(enrol(api))
    tag = both.send(path)[0].headers["ETag"]
    driver: Any = fast.lookup._connection()[0].dbapi_connection
    opened = fast.lookup.connections_opened
    # Every poll sends its statement: libpq learns of a closed connection only from a read
    # that finds its end, which a table lookup does not always make.
    fast.lookup.table().recheck_seconds = 0
    with db.engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": driver.info.backend_pid})
        conn.commit()
    select.select([driver.pgconn.socket], [], [], 10)  # the server's goodbye has arrived
    answer, by_fast_path = poll(both, path, tag)  # the statement fails: the view answers
    assert answer.status_code == 304 and not by_fast_path
    answer, by_fast_path = poll(both, path, tag)
    assert answer.status_code == 304 and by_fast_path
    assert fast.lookup.connections_opened == opened + 1
    assert fast.lookup.table() is not None


def test_no_table_without_the_triggers(app: Flask, api, fast, is_postgres) -> None:  # type: ignore[no-untyped-def]
    if not is_postgres:
        return  # SQLite keeps no table: test_sqlite_keeps_no_table
    enrol(api)
    with db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE clinics DISABLE TRIGGER clinics_feed_rows"))
    try:
        db.engine.dispose()  # new connections: each checks the triggers as it opens
        fast.lookup._connection()
        assert fast.lookup.table() is None
    finally:
        with db.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE clinics ENABLE TRIGGER clinics_feed_rows"))
    db.engine.dispose()
    fast.lookup._connection()
    assert fast.lookup.table() is not None


def test_what_the_triggers_send(app: Flask, api, clinic, is_postgres) -> None:  # type: ignore[no-untyped-def]
    if not is_postgres:
        return  # SQLite keeps no table: test_sqlite_keeps_no_table
    first, second = (patient_row(path_of(enrol(api))) for _ in range(2))
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {rowtable.CHANNEL}")
        listener.execute("LISTEN marker")  # sent after each statement: the end of its signals

        def sent(statement: str, **params: Any) -> list[str]:
            with db.engine.begin() as conn:
                conn.execute(sa.text(statement), params)
                conn.execute(sa.text("SELECT pg_notify('marker', '')"))
            payloads = []
            for notify in listener.notifies(timeout=10):
                if notify.channel == "marker":
                    return payloads
                payloads.append(notify.payload)
            raise AssertionError("no marker within 10 s")

        bump = "UPDATE patients SET feed_version = feed_version + 1 WHERE id IN ({})"
        assert sent(bump.format(first.id)) == [str(first.id)]
        (both,) = sent(bump.format(f"{first.id}, {second.id}"))
        assert sorted(both.split(",")) == sorted([str(first.id), str(second.id)])
        assert sent(bump.format(-1)) == []  # no row changed: nothing to forget
        assert sent(f"UPDATE clinics SET phone = phone WHERE id = {clinic.id}") == ["*"]
