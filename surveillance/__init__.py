"""Watchful: scheduling for patients with neuroendocrine tumours under watchful waiting."""

from __future__ import annotations

import os
import secrets
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

import config as config_module
from surveillance import http, throttle
from surveillance.extensions import (
    bootstrap,
    csrf,
    db,
    immediate_transactions,
    login_manager,
    migrate,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Application factory. ``config`` overrides the environment and every default."""
    settings = {k: v for k, v in config_module.from_environment().items() if v is not None}
    settings.update(config or {})
    app = Flask(
        __name__,
        instance_path=settings.get("INSTANCE_PATH"),
        instance_relative_config=True,
        template_folder=str(PROJECT_ROOT / "templates"),
    )
    app.config.update(_session_defaults(settings))
    app.config.update(settings)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.setdefault(
        "SQLALCHEMY_DATABASE_URI", f"sqlite:///{Path(app.instance_path) / 'watchful.sqlite3'}"
    )
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(Path(app.instance_path))

    # Bootstrap's CSS and JS come from the installed package, never from a CDN.
    app.config.setdefault("BOOTSTRAP_SERVE_LOCAL", True)

    http.init_app(app)
    throttle.init_app(app)
    db.init_app(app)
    csrf.init_app(app)
    bootstrap.init_app(app)
    login_manager.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True)

    from surveillance import api, auth, cli, coordinator, learn, patient, web

    # Registers the session listeners that keep patients.next_due_on right (issue 8).
    from surveillance.services import next_due  # noqa: F401

    web.init_app(app)  # before any blueprint adds its rules

    app.register_blueprint(api.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(coordinator.bp)
    csrf.exempt(api.bp)  # bearer tokens, not cookies: no CSRF exposure
    app.register_blueprint(learn.bp)  # public patient education pages
    app.register_blueprint(patient.bp)  # the patient's own page at /p/<token>
    # Calendar feeds (issue 3): capability URLs, GET/HEAD only.
    from surveillance import feeds
    from surveillance.feeds import fastpath

    app.register_blueprint(feeds.bp)
    cli.register(app)
    cli.attribute_commands(app.cli)
    # WSGI middleware, innermost first: the patient feed's fast path answers polling calendar
    # apps before Flask's request machinery; ProxyFix, outermost, fixes the environment for
    # both.
    fastpath.install(app)
    http.install_proxy_fix(app)
    return app


def _session_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """Session cookies: HttpOnly, SameSite=Lax, Secure behind https, and a 30-minute idle
    timeout (the cookie's lifetime restarts with each request). Flask's own defaults are
    laxer, so these replace them unless the configuration says otherwise."""
    https = str(settings.get("PUBLIC_BASE_URL", "")).startswith("https://")
    return {
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": https,
        "REMEMBER_COOKIE_SECURE": https,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "PERMANENT_SESSION_LIFETIME": timedelta(minutes=30),
        "SESSION_REFRESH_EACH_REQUEST": True,
    }


def _instance_secret(instance: Path) -> str:
    """A secret generated once and kept in the instance folder, so sessions survive restarts
    and every local worker agrees. Deployments set SECRET_KEY instead."""
    path = instance / "secret_key"
    try:
        # O_EXCL: when several workers start at once, exactly one creates the key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    for _ in range(100):
        if value := path.read_text().strip():
            return value
        time.sleep(0.01)  # the worker that created it is still writing
    raise RuntimeError(f"{path} is empty; delete it or set SECRET_KEY")


# At most this much of the database file is read through the memory map (SQLite caps it at its
# compile-time limit); beyond it, reads copy pages as usual.
SQLITE_MMAP_BYTES = 1 << 30


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Foreign keys on, WAL for concurrent readers, and a busy timeout instead of instant
    "database is locked" errors when the scheduler and the web server write at once."""
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    # pysqlite's own transaction handling starts transactions late and lets RELEASE SAVEPOINT
    # commit; SQLAlchemy's documented recipe takes it over (see ``_sqlite_begin``) so that
    # savepoints (one per imported CSV row) and rollbacks really work.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA busy_timeout = 5000")
    cursor.execute("PRAGMA journal_mode = WAL")
    # Reads through a memory map of the file instead of copying each page into this
    # connection's own 2 MiB page cache: a worklist count on 100,000 patients touches more
    # pages than that, and re-reading them made its time swing (p50 30 ms, p99 65-95 ms; mapped,
    # 16 ms and 50 ms; bench/HISTORY.md). The mapped pages are the operating system's file
    # cache, shared by every process, not private memory. Writes still go through SQLite.
    cursor.execute(f"PRAGMA mmap_size = {SQLITE_MMAP_BYTES}")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(connection: Any) -> None:
    """Start SQLite transactions explicitly (the other half of the recipe above).

    Transactions of requests that change things (POST and the like) and of background
    processes (CLI commands, the scheduler) take the write lock at once (``BEGIN IMMEDIATE``),
    so a concurrent writer waits for it (busy_timeout) instead of failing when it upgrades a
    stale read snapshot ("database is locked"). Everything else begins deferred, so feed and
    page views never queue behind a writer. A connection in AUTOCOMMIT mode manages its own
    transactions (the outbox claim).
    """
    if connection.dialect.name != "sqlite":
        return
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    connection.exec_driver_sql("BEGIN IMMEDIATE" if _may_write() else "BEGIN")


def _may_write() -> bool:
    from flask import has_request_context, request

    if has_request_context():
        return request.method not in ("GET", "HEAD", "OPTIONS")
    return immediate_transactions.get()
