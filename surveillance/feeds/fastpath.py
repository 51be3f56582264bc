"""The patient feed answered before Flask: a WSGI middleware for polling calendar apps.

Calendar apps poll every patient's feed every few hours, and almost every answer is a ``304``
or bytes already rendered. For those, Flask's request machinery (request and app contexts,
the session, the extensions' before- and after-request hooks, the ORM and its statement
cache) costs many times the work itself. This middleware answers ``GET`` and ``HEAD
/calendar/<token>.ics`` when it can do so cheaply and exactly as the view does: one statement
on the worker's own driver connection finds the patient's row by the hash of the secret, the entity
tag follows from that row (``validators``), and the answer is a ``304`` or the cached bytes,
with the same headers as the view's.

Everything else goes on to Flask, whose view stays the reference behaviour: an unknown or
revoked secret (the ``404``), a ``200`` or an If-Modified-Since whose feed is not in this
worker's cache (rendering), a request with cookies (the session may be refreshed), other
methods and paths, a configured host check or app-wide rate limit, and any error, so a
database outage is answered ``503`` by the app's handler as before. Each worker thread also
remembers the rows it read, forgetting them as soon as the database says they may have
changed (``rowtable``; ``FEED_ROW_TABLE = False`` reads them on every poll).

``FEED_FAST_PATH = False`` turns it off (tests compare both paths answer by answer).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from flask import Flask
from sqlalchemy import bindparam, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection
from werkzeug.http import parse_date, parse_etags

from surveillance import clock
from surveillance.extensions import db
from surveillance.feeds import validators
from surveillance.feeds.cache import CachedFeed, FeedCache, feed_cache
from surveillance.feeds.rowtable import (
    DEFAULT_RECHECK_SECONDS,
    DEFAULT_ROWS,
    Row,
    RowTable,
    WalIndexWatch,
    catch_up,
    listen,
    wal_index_watch,
)
from surveillance.feeds.views import CALENDAR_TYPE, PRIVATE_HEADERS
from surveillance.http import HSTS, SECURITY_HEADERS
from surveillance.models import Clinic, Patient
from surveillance.secrets_store import token_hash

log = logging.getLogger(__name__)

EXTENSION = "watchful_feed_fast_path"
# The view's own route and token rule (``views._TOKEN``); anything else goes to Flask.
_PATH = re.compile(r"^/calendar/([A-Za-z0-9_-]{16,128})\.ics$")

# Status lines as Werkzeug writes them.
OK, NOT_MODIFIED = "200 OK", "304 NOT MODIFIED"

StartResponse = Callable[..., Any]


class _Process:
    """This process's id, renewed in a forked child. ``os.getpid()`` is a system call each
    time (glibc no longer caches it), and every poll asked it, for a value that changes only
    at a fork: one of the four system calls the fast path added to gunicorn's 17 or so for a
    ``304`` (the other three were SQLite's, for ``PRAGMA data_version``, which a poll now
    asks only when ``WalIndexWatch`` has seen a commit)."""

    pid = os.getpid()

    @classmethod
    def renew(cls) -> None:
        cls.pid = os.getpid()


os.register_at_fork(after_in_child=_Process.renew)


def _tail(secure: bool) -> tuple[tuple[str, str], ...]:
    """What follows the representation headers, in the order the Flask path sends them: the
    feed's privacy headers (``views.PRIVATE_HEADERS``), the app's security headers that those
    did not set already (``http._secure_headers``), and the ``Vary: Cookie`` Flask's session
    machinery adds (an after-request hook of Flask-Login reads the session)."""
    headers = list(PRIVATE_HEADERS)
    present = {name for name, _ in headers}
    headers += [(name, value) for name, value in SECURITY_HEADERS if name not in present]
    if secure:
        headers.append(("Strict-Transport-Security", HSTS))
    headers.append(("Vary", "Cookie"))
    return tuple(headers)


class PatientLookup:
    """The patient's row for a secret's hash: one statement on a driver connection of its own.

    The statement is compiled once from the models; values go through the columns' own
    result processors, so timestamps are the same aware UTC datetimes the ORM returns. The
    statement runs outside any transaction (a single statement reads a consistent snapshot):
    SQLite connections are in autocommit mode already (``surveillance._sqlite_pragmas``), and
    psycopg's is switched to it once, so neither a ``BEGIN`` nor a ``ROLLBACK`` travels.

    Each thread (a sync worker has one) holds its own connection, opened through the engine
    (so its connect hooks run) and then detached from the pool. Why not the pool: a poll's
    own work is a few microseconds of SQL, and the pool's checkout and return (the connection
    wrapper, its finaliser, the events, the reset, and on PostgreSQL ``pool_pre_ping``'s extra
    round trip) cost more than the statement; under load, with the CPU caches cold, that
    overhead was most of the gap to the benchmark's baseline (``bench/HISTORY.md``). A broken
    connection is closed on its first error and the request goes on to Flask (whose pooled,
    pre-pinged connection answers or gives the ``503``); the next poll opens a new one.
    ``Engine.dispose()`` closes them all (tests drop databases; deployments rotate
    credentials), and a forked child never uses its parent's.

    The connection also keeps the rows it read in a ``RowTable`` (``row_table`` is its
    capacity and recheck interval), valid while the database reports no change: on
    PostgreSQL it ``LISTEN``s for the triggers' notifications, so that most polls need no
    round trip at all; on SQLite ``PRAGMA data_version`` (cheaper than the lookup) says
    whether anyone has committed since, asked only when the wal-index header in shared memory
    has moved (``rowtable.WalIndexWatch``), so that most polls run no statement at all.
    The table lives and dies with its connection."""

    def __init__(self, engine: Engine, row_table: tuple[int, float] | None = None) -> None:
        dialect = engine.dialect
        statement = (
            select(
                Patient.id,
                Patient.feed_version,
                Patient.updated_at,
                Clinic.id,
                Clinic.updated_at,
                Clinic.timezone,
            )
            .join(Patient.clinic)
            .where(Patient.feed_token_hash == bindparam("token_hash"))
        )
        self.engine = engine
        self.sql = str(statement.compile(dialect=dialect))
        self.positional = dialect.positional
        stamp_type = Patient.__table__.c.updated_at.type
        processor = stamp_type.dialect_impl(dialect).result_processor(dialect, None)
        self.to_datetime: Callable[[Any], datetime] = processor or (lambda value: value)
        self.needs_autocommit = dialect.driver == "psycopg"
        # (capacity, recheck seconds) of each connection's ``RowTable``, kept exact by
        # notifications (psycopg) or by SQLite's ``data_version`` (pysqlite).
        self.row_table = row_table if dialect.driver in ("psycopg", "pysqlite") else None
        self.notified = dialect.driver == "psycopg"
        self._local = threading.local()
        self._lock = threading.Lock()
        # Each open connection with the process that opened it.
        self._open: dict[PoolProxiedConnection, int] = {}
        self._generation = 0
        self.connections_opened = 0  # for tests and operators
        event.listen(engine, "engine_disposed", self._close_all)

    def row(self, hashed: str) -> Row | None:
        connection, table, watch = self._connection()
        driver: Any = connection.dbapi_connection  # a detached wrapper has no driver_connection
        try:
            if table is not None:
                if self.notified:
                    catch_up(driver)
                elif watch is None or watch.changed():
                    table.observe(_data_version(driver))
                else:
                    table.unchanged()
                remembered = table.get(hashed)
                if remembered is not None:
                    return remembered
                signals = table.signals
            cursor = driver.cursor()
            try:
                cursor.execute(self.sql, self._params(hashed))
                found = cursor.fetchone()
            finally:
                cursor.close()
        except Exception:
            self._discard(connection)
            raise
        row = None if found is None else self._row_of(found)
        if table is not None:
            table.read(hashed, row, signals)
        return row

    def _params(self, hashed: str) -> Any:
        return (hashed,) if self.positional else {"token_hash": hashed}

    def _row_of(self, found: Any) -> Row:
        patient_id, version, patient_changed, clinic_id, clinic_changed, timezone = found
        return (
            patient_id,
            version,
            self.stamp(patient_changed),
            clinic_id,
            self.stamp(clinic_changed),
            timezone,
        )

    def stamp(self, value: Any) -> str:
        """``validators.stamp`` of the value the ORM would read, from the driver's value.

        SQLite keeps a timestamp as text in one fixed form (``YYYY-MM-DD HH:MM:SS.ffffff``,
        UTC, as SQLAlchemy writes it), which rearranges into the stamp without a datetime;
        anything else (text in another form, PostgreSQL's datetimes) takes the column's own
        result processing. ``tests/test_feed_fast_path.py`` holds both ways equal."""
        if type(value) is str and len(value) == 26 and value[10] == " " and value[19] == ".":
            return f"{value[:10]}T{value[11:]}+00:00"
        return validators.stamp(self.to_datetime(value))

    def _connection(
        self,
    ) -> tuple[PoolProxiedConnection, RowTable | None, WalIndexWatch | None]:
        held = getattr(self._local, "held", None)
        if held is not None:
            generation, pid, connection, table, watch = held
            if generation == self._generation and pid == _Process.pid:
                return connection, table, watch
            self._discard(connection)  # after a fork: forgotten, left open for the parent
        connection = self.engine.raw_connection()
        try:
            # Detached: the pool forgets it, and ``close()`` really closes it.
            connection.detach()
            if self.needs_autocommit:
                connection.dbapi_connection.autocommit = True  # type: ignore[union-attr]
            table, watch = self._listening_table(connection.dbapi_connection)
        except Exception:
            connection.close()
            raise
        with self._lock:
            self._open[connection] = _Process.pid
            generation = self._generation
            self.connections_opened += 1
        self._local.held = (generation, _Process.pid, connection, table, watch)
        return connection, table, watch

    def _listening_table(self, driver: Any) -> tuple[RowTable | None, WalIndexWatch | None]:
        """A row table for this connection (when enabled): fed by its notifications on
        PostgreSQL, checked against ``PRAGMA data_version`` on SQLite whenever the watch on
        the wal-index (if there can be one) has seen a change."""
        if self.row_table is None:
            return None, None
        capacity, recheck_seconds = self.row_table
        table = RowTable(capacity, recheck_seconds)
        if self.notified:
            return (table if listen(driver, table) else None), None
        return table, wal_index_watch(driver)

    def table(self) -> RowTable | None:
        """This thread's row table, if its connection is open and keeps one (for tests)."""
        held = getattr(self._local, "held", None)
        return None if held is None else held[3]

    def _discard(self, connection: PoolProxiedConnection) -> None:
        held = getattr(self._local, "held", None)
        self._local.held = None
        if held is not None and held[4] is not None:
            held[4].close()  # before its connection: see ``WalIndexWatch``
        with self._lock:
            opener = self._open.pop(connection, None)
        self._close_if_ours(connection, opener)

    def _close_all(self, _engine: Engine) -> None:
        with self._lock:
            self._generation += 1
            connections, self._open = self._open, {}
        for connection, opener in connections.items():
            self._close_if_ours(connection, opener)

    @staticmethod
    def _close_if_ours(connection: PoolProxiedConnection, opener: int | None) -> None:
        # A forked child shares its parent's socket: closing it there would end the parent's
        # session (psycopg sends Terminate), so the child only forgets it (as SQLAlchemy's
        # pool does after a fork).
        if opener == _Process.pid:
            _close_quietly(connection)


def _data_version(driver: Any) -> int:
    """SQLite's count of commits by other connections, as this connection has seen them."""
    cursor = driver.cursor()
    try:
        cursor.execute("PRAGMA data_version")
        return int(cursor.fetchone()[0])
    finally:
        cursor.close()


def _close_quietly(connection: PoolProxiedConnection) -> None:
    try:
        connection.close()
    except Exception:  # already broken, or closed from under a thread using it
        log.debug("feed fast path: closing a driver connection failed", exc_info=True)


class PatientFeedFastPath:
    """WSGI middleware in front of ``app.wsgi_app`` (see the module's docstring)."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.config = app.config
        row_table = None
        if app.config.get("FEED_ROW_TABLE", True):
            row_table = (
                int(app.config.get("FEED_ROW_TABLE_ROWS", DEFAULT_ROWS)),
                float(app.config.get("FEED_ROW_TABLE_RECHECK_SECONDS", DEFAULT_RECHECK_SECONDS)),
            )
        with app.app_context():
            self.lookup = PatientLookup(db.engine, row_table)
        self.tails = {False: _tail(False), True: _tail(True)}
        self._cache: FeedCache | None = None
        # Counters for tests and operators: answers given here, requests handed to Flask.
        self.answered = 0
        self.handed_on = 0

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        match = self._applies(environ)
        if match is not None:
            try:
                answer = self._answer(environ, match.group(1))
            except Exception as exc:  # the view is the reference: it decides
                if not isinstance(exc, (DBAPIError, self.lookup.engine.dialect.loaded_dbapi.Error)):
                    # The type only: a message may quote data.
                    log.warning("feed fast path handed on after %s", type(exc).__name__)
                answer = None
            if answer is not None:
                self.answered += 1
                status, headers, body = answer
                start_response(status, headers)
                return body
            self.handed_on += 1
        return self.wsgi_app(environ, start_response)

    def _applies(self, environ: dict[str, Any]) -> re.Match[str] | None:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return None
        match = _PATH.match(environ.get("PATH_INFO", ""))
        if match is None:
            return None
        config = self.config
        if not config.get("FEED_FAST_PATH", True):
            return None
        # Cookies: Flask may refresh a session cookie. A host check: Flask may refuse the host.
        # App-wide rate limits: Flask-Limiter counts them in a before-request hook.
        if (
            "HTTP_COOKIE" in environ
            or config.get("SERVER_NAME")
            or config.get("TRUSTED_HOSTS")
            or config.get("RATELIMIT_DEFAULT")
            or config.get("RATELIMIT_APPLICATION")
        ):
            return None
        return match

    def _answer(
        self, environ: dict[str, Any], token: str
    ) -> tuple[str, list[tuple[str, str]], list[bytes]] | None:
        row = self.lookup.row(token_hash(token))
        if row is None:
            return None  # not found: the view's 404
        patient_id, version, patient_stamp, clinic_id, clinic_stamp, timezone = row
        etag = validators.patient_feed_etag_of_stamps(
            validators.rendering_epoch(self.config),
            patient_id,
            version,
            patient_stamp,
            clinic_id,
            clinic_stamp,
            timezone,
            clock.today_in(timezone),
        )
        tail = self.tails[environ.get("wsgi.url_scheme") in ("https", "wss")]
        if_none_match = environ.get("HTTP_IF_NONE_MATCH")
        if if_none_match is not None and _matches(if_none_match, etag):
            return NOT_MODIFIED, [("ETag", f'"{etag}"'), *tail], []
        feed = self.cache.get(etag)
        if feed is None:
            return None  # to be rendered: the view's work
        if if_none_match is None and _unmodified_since(environ, feed):
            return NOT_MODIFIED, [("ETag", feed.quoted_etag), *tail], []
        headers = [
            ("Content-Type", CALENDAR_TYPE),
            ("Content-Length", feed.content_length),
            ("ETag", feed.quoted_etag),
            ("Last-Modified", feed.http_last_modified),
            *tail,
        ]
        return OK, headers, [] if environ["REQUEST_METHOD"] == "HEAD" else [feed.body]

    @property
    def cache(self) -> FeedCache:
        if self._cache is None:
            self._cache = feed_cache(self.app)
        return self._cache


def _matches(if_none_match: str, etag: str) -> bool:
    """Werkzeug's parsing and weak comparison, as ``request.if_none_match`` in the view."""
    if if_none_match == f'"{etag}"':
        return True
    tags = parse_etags(if_none_match)
    return bool(tags.star_tag or tags.contains_weak(etag))


def _unmodified_since(environ: dict[str, Any], feed: CachedFeed) -> bool:
    """If-Modified-Since as the view reads it: ignored when absent, invalid or in the future."""
    since = parse_date(environ.get("HTTP_IF_MODIFIED_SINCE"))
    if since is None or since > clock.utcnow():
        return False
    return feed.last_modified <= since


def install(app: Flask) -> None:
    """Put the fast path in front of the app's WSGI callable (inside any ProxyFix)."""
    fast_path = PatientFeedFastPath(app, app.wsgi_app)
    app.extensions[EXTENSION] = fast_path
    app.wsgi_app = fast_path  # type: ignore[method-assign]
