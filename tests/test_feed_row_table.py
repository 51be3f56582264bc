"""The feed fast path's row table: remembered rows answer polls without a statement, and
the database's word makes the table forget what may have changed.

The table's rules are tested on their own (with an injected clock, and against a model under
hypothesis); then the whole path, its answers compared with the view's: on PostgreSQL with
the real triggers and ``LISTEN`` (where a test needs a notification to have arrived, it waits
on the connection's socket for it: an event, never a sleep), on SQLite with ``PRAGMA
data_version``, asked when the wal-index watch (tested on real database files, and against a
model under hypothesis) has seen the header move.
"""

from __future__ import annotations

import select
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


def test_a_new_data_version_forgets_everything() -> None:
    table = RowTable(monotonic=Clock())
    table.observe(7)
    table.read("a", row_of(1), table.signals)
    table.observe(7)
    assert table.get("a") == row_of(1)
    table.observe(8)  # someone committed something
    assert table.get("a") is None and len(table) == 0


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


# --- The wal-index watch (SQLite) -------------------------------------------------------------


def wal_database(path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """A reader and a writer on a new WAL database file, as the app opens them."""
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("CREATE TABLE t (n INTEGER)")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("SELECT COUNT(*) FROM t").fetchone()
    return reader, writer


def test_the_watch_sees_a_commit_and_nothing_else(tmp_path: Path) -> None:
    reader, writer = wal_database(tmp_path / "watched.sqlite3")
    watch = rowtable.wal_index_watch(reader)
    assert watch is not None
    assert watch.changed()  # the first look has nothing to compare with
    assert not watch.changed()
    writer.execute("SELECT COUNT(*) FROM t").fetchone()  # reading changes nothing
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("ROLLBACK")  # nor does a write transaction that commits nothing
    assert not watch.changed()
    writer.execute("INSERT INTO t VALUES (1)")
    assert watch.changed()
    assert not watch.changed()
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    watch.changed()  # a checkpoint may move the header: a statement, never a missed commit
    writer.execute("INSERT INTO t VALUES (2)")  # into a WAL started afresh
    assert watch.changed()
    watch.close()


@given(st.lists(st.sampled_from(["commit", "read", "checkpoint", "restart", "look"]), max_size=30))
def test_the_watch_reports_every_commit_since_the_last_look(ops: list[str]) -> None:
    """Against a model: a look after a commit says changed; a look after nothing but reads
    says unchanged (checkpoints may go either way)."""
    with tempfile.TemporaryDirectory() as directory:
        reader, writer = wal_database(Path(directory) / "watched.sqlite3")
        watch = rowtable.wal_index_watch(reader)
        assert watch is not None
        watch.changed()
        committed = checkpointed = False
        for op in [*ops, "look"]:
            if op == "commit":
                writer.execute("INSERT INTO t VALUES (1)")
                committed = True
            elif op == "read":
                reader.execute("SELECT COUNT(*) FROM t").fetchone()
            elif op in ("checkpoint", "restart"):
                mode = "PASSIVE" if op == "checkpoint" else "RESTART"
                writer.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
                checkpointed = True
            else:
                changed = watch.changed()
                if committed:
                    assert changed
                elif not checkpointed:
                    assert not changed
                committed = checkpointed = False
        watch.close()
        reader.close()
        writer.close()


def test_no_watch_where_the_wal_index_is_not_a_shared_file(tmp_path: Path) -> None:
    memory = sqlite3.connect(":memory:")
    assert rowtable.wal_index_watch(memory) is None
    rollback = sqlite3.connect(tmp_path / "rollback.sqlite3")
    rollback.execute("CREATE TABLE t (n INTEGER)")
    assert rowtable.wal_index_watch(rollback) is None  # journal_mode=delete: no -shm file
    reader, _ = wal_database(tmp_path / "exclusive.sqlite3")
    reader.execute("PRAGMA locking_mode = EXCLUSIVE")
    reader.execute("SELECT COUNT(*) FROM t").fetchone()
    assert rowtable.wal_index_watch(reader) is None  # its wal-index lives in the heap


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


def the_table(fast: fastpath.PatientFeedFastPath) -> RowTable:
    table = fast.lookup.table()
    assert table is not None
    return table


def driver_of(fast: fastpath.PatientFeedFastPath) -> Any:
    return fast.lookup._connection()[0].dbapi_connection


@contextmanager
def committed(fast: fastpath.PatientFeedFastPath, signals: int = 1) -> Iterator[None]:
    """Run a change; on PostgreSQL, then block until the table has taken in ``signals`` more
    notifications (an event on the connection's socket, never a sleep). SQLite needs no
    waiting: the next lookup reads ``data_version``."""
    table = the_table(fast)
    wanted = table.signals + signals
    yield
    if not fast.lookup.notified:
        return
    driver = driver_of(fast)
    while table.signals < wanted:
        readable, _, _ = select.select([driver.pgconn.socket], [], [], 10)
        assert readable, f"no notification within 10 s ({table.signals} of {wanted})"
        rowtable.catch_up(driver)


def hashed(path: str) -> str:
    return token_hash(path.removeprefix("/calendar/").removesuffix(".ics"))


def patient_row(path: str) -> Patient:
    patient = db.session.scalar(sa.select(Patient).where(Patient.feed_token_hash == hashed(path)))
    assert patient is not None
    return patient


def poll(both: Both, path: str, tag: str) -> tuple[Any, bool]:
    return both.send(path, headers={"If-None-Match": tag})


def test_repeated_polls_are_answered_from_the_table(both: Both, api, fast) -> None:  # type: ignore[no-untyped-def]
    path = path_of(enrol(api))
    tag = both.send(path)[0].headers["ETag"]
    table = the_table(fast)
    assert table.get(hashed(path)) is not None
    hits = table.hits
    for _ in range(3):
        answer, by_fast_path = poll(both, path, tag)
        assert answer.status_code == 304 and by_fast_path  # and identical to the view's
    assert table.hits == hits + 3


def test_a_change_is_served_once_the_database_says_so(both: Both, api, fast) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    path = path_of(patient)
    tag = both.send(path)[0].headers["ETag"]
    visit = next(e for e in patient["events"] if e["kind"] == "visit")
    with committed(fast):
        booked = api.post(
            f"/events/{visit['id']}/book",
            json={"starts_at": "2026-03-02T10:00", "duration_minutes": 30},
        )
        assert booked.status_code == 200, booked.json
    answer, _ = poll(both, path, tag)
    assert answer.status_code == 200 and answer.headers["ETag"] != tag
    assert b"BEGIN:VEVENT" in answer.data


def test_a_replaced_secret_stops_working(both: Both, api, fast) -> None:  # type: ignore[no-untyped-def]
    path = path_of(enrol(api))
    tag = both.send(path)[0].headers["ETag"]
    with committed(fast):
        feed_tokens.rotate_patient_token(patient_row(path))
        db.session.commit()
    answer, by_fast_path = poll(both, path, tag)
    assert answer.status_code == 404 and not by_fast_path
    assert the_table(fast).get(hashed(path)) is None


def test_a_clinic_change_reaches_every_feed(both: Both, api, fast, clinic) -> None:  # type: ignore[no-untyped-def]
    paths = [path_of(enrol(api)) for _ in range(2)]
    tags = [both.send(path)[0].headers["ETag"] for path in paths]
    with committed(fast):
        db.session.get(Clinic, clinic.id).phone = "+1 303 555 0199"
        db.session.commit()
    for path, tag in zip(paths, tags, strict=True):
        answer, _ = poll(both, path, tag)
        assert answer.status_code == 200 and answer.headers["ETag"] != tag


def test_sqlite_forgets_everything_on_any_commit(both: Both, api, fast, is_postgres) -> None:  # type: ignore[no-untyped-def]
    if is_postgres:
        return  # PostgreSQL forgets only the patients named: the next test
    kept, other = path_of(enrol(api)), path_of(enrol(api))
    both.send(kept)
    tag = both.send(other)[0].headers["ETag"]
    table = the_table(fast)
    patient_row(kept).feed_version += 1
    db.session.commit()
    hits = table.hits
    answer, by_fast_path = poll(both, other, tag)  # unchanged, but read again to know it
    assert answer.status_code == 304 and by_fast_path and table.hits == hits
    assert table.get(hashed(kept)) is None and table.get(hashed(other)) is not None


def test_sqlite_quiet_polls_run_no_statement(both: Both, api, fast, is_postgres) -> None:  # type: ignore[no-untyped-def]
    """The wal-index watch stands in for ``data_version`` until someone commits."""
    if is_postgres:
        return  # PostgreSQL's quiet polls read the socket for notifications instead
    path = path_of(enrol(api))
    tag = both.send(path)[0].headers["ETag"]
    driver = driver_of(fast)
    statements: list[str] = []
    driver.set_trace_callback(statements.append)
    try:
        for _ in range(3):
            answer, by_fast_path = poll(both, path, tag)
            assert answer.status_code == 304 and by_fast_path
        assert statements == []
        patient_row(path).feed_version += 1
        db.session.commit()
        answer, by_fast_path = poll(both, path, tag)
        assert answer.status_code == 200 and answer.headers["ETag"] != tag
        assert statements[0] == "PRAGMA data_version"
    finally:
        driver.set_trace_callback(None)


def test_sqlite_a_change_after_every_connection_closed_is_seen(
    both: Both, api, fast, is_postgres
) -> None:  # type: ignore[no-untyped-def]
    """With every connection closed SQLite deletes the ``-shm`` file, and the next one makes a
    new file: a watch still mapping the old one would never see another commit."""
    if is_postgres:
        return
    path = path_of(enrol(api))
    tag = both.send(path)[0].headers["ETag"]
    assert poll(both, path, tag)[0].status_code == 304
    db.session.remove()
    db.engine.dispose()
    assert not Path(f"{db.engine.url.database}-shm").exists()
    patient_row(path).feed_version += 1
    db.session.commit()
    answer, _ = poll(both, path, tag)
    assert answer.status_code == 200 and answer.headers["ETag"] != tag


def test_postgresql_forgets_only_what_a_commit_changed(both: Both, api, fast, is_postgres) -> None:  # type: ignore[no-untyped-def]
    if not is_postgres:
        return  # SQLite forgets everything: the test above
    kept, other = path_of(enrol(api)), path_of(enrol(api))
    both.send(kept)
    both.send(other)
    table = the_table(fast)
    signals = table.signals
    with committed(fast):
        patient_row(kept).feed_version += 1
        db.session.flush()
        db.session.rollback()  # sends nothing
        patient_row(other).feed_version += 1
        db.session.commit()
    assert table.signals == signals + 1  # notifications arrive in commit order
    assert table.get(hashed(kept)) is not None
    assert table.get(hashed(other)) is None


def test_a_broken_connection_is_dropped_with_its_table(both: Both, api, fast, is_postgres) -> None:  # type: ignore[no-untyped-def]
    if not is_postgres:
        return  # SQLite's connection is a file handle: nothing ends it from outside
    path = path_of(enrol(api))
    tag = both.send(path)[0].headers["ETag"]
    driver = driver_of(fast)
    opened = fast.lookup.connections_opened
    # Every poll sends its statement: libpq learns of a closed connection only from a read
    # that finds its end, which a table lookup does not always make.
    the_table(fast).recheck_seconds = 0
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
        return  # SQLite needs no triggers
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
        return  # SQLite has no notifications
    first, second = (patient_row(path_of(enrol(api))) for _ in range(2))
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {rowtable.CHANNEL}")
        listener.execute("LISTEN marker")  # sent after each statement: the end of its signals

        def sent(statement: str) -> list[str]:
            with db.engine.begin() as conn:
                conn.execute(sa.text(statement))
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
        # Over 500 rows in one statement: "forget everything" rather than a long list.
        table = Patient.__table__
        with db.engine.begin() as conn:
            model = conn.execute(sa.select(table).where(table.c.id == first.id)).mappings().one()
            copies = [
                {**model, "mrn": f"copy-{n}", "feed_token_salt": None, "feed_token_hash": None}
                for n in range(500)
            ]
            for copy in copies:
                del copy["id"]
            conn.execute(sa.insert(table), copies)  # inserts send nothing
        assert sent("UPDATE patients SET feed_version = feed_version + 1") == ["*"]
        with db.engine.connect() as conn:
            deleted = conn.scalar(sa.select(table.c.id).where(table.c.mrn == "copy-7"))
        assert sent(f"DELETE FROM patients WHERE id = {deleted}") == [str(deleted)]
