"""Shared fixtures, in the style of the Flask tutorial (``app``, ``client``, ``runner``).

The suite runs on SQLite by default and on PostgreSQL when ``TEST_DATABASE_URL`` is set. The
schema is built once per test process by the real Alembic migrations; each test then starts
from empty tables.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade
from hypothesis import HealthCheck, settings

from surveillance import create_app, throttle
from surveillance.extensions import db
from tests import factories

# Property tests check what is generated, not how fast: on a busy 2-core machine one example
# can take seconds, which must not fail a run (benchmarks in bench/ measure speed).
settings.register_profile("watchful", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("watchful")


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def postgres_test_database(purpose: str) -> str:
    """A PostgreSQL database name of this test process's own. ``WATCHFUL_TEST_DB_PREFIX``
    separates test runs that share one server (two checkouts testing at once)."""
    prefix = os.environ.get("WATCHFUL_TEST_DB_PREFIX", "watchful")
    return f"{prefix}_{purpose}_{_worker()}"


def _postgres_database(base_url: str, name: str) -> str:
    """A fresh database per test process, so parallel workers never share tables."""
    url = sa.make_url(base_url).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def migrated_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database migrated once per test process: the PostgreSQL test database, or a SQLite
    template file that each test copies."""
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        url = _postgres_database(base, postgres_test_database("test"))
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'template.sqlite3'}"
    app = create_app(base_config(url, tmp_path_factory.mktemp("instance")))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


@pytest.fixture
def database_url(migrated_url: str, tmp_path: Path) -> str:
    """An empty, migrated database for one test. SQLite: a fresh copy of the template (the
    audit log's append-only triggers forbid emptying it row by row). PostgreSQL: the shared
    database, truncated after the test."""
    if migrated_url.startswith("sqlite"):
        copy = tmp_path / "test.sqlite3"
        shutil.copyfile(migrated_url.removeprefix("sqlite:///"), copy)
        return f"sqlite:///{copy}"
    return migrated_url


@pytest.fixture(scope="session")
def is_postgres(migrated_url: str) -> bool:
    return migrated_url.startswith("postgresql")


def base_config(database_url: str, instance: Path) -> dict[str, object]:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "WTF_CSRF_ENABLED": False,
        "PUBLIC_BASE_URL": "https://watchful.test",
        "INSTANCE_PATH": str(instance),
        # Never a shared Redis from the environment: tests reset the counters.
        "RATELIMIT_STORAGE_URI": "memory://",
        # PostgreSQL's change notifications reach the feed fast path's row table a moment
        # after a commit; tests that write and poll at once would race them. The table's own
        # tests (test_feed_row_table.py) turn it on and wait for the notifications.
        "FEED_ROW_TABLE": False,
    }


@contextmanager
def app_on_an_empty_database(tmp_path: Path, purpose: str) -> Iterator[Flask]:
    """An app in its context on a database of its own at no revision at all, for tests that
    migrate it themselves."""
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        url = _postgres_database(base, postgres_test_database(purpose))
    else:
        url = f"sqlite:///{tmp_path / f'{purpose}.sqlite3'}"
    app = create_app(base_config(url, tmp_path))
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    app = create_app(base_config(database_url, tmp_path))
    with app.app_context():
        throttle.limiter.reset()  # counters live in process memory in tests
        yield app
        db.session.remove()
        _empty_all_tables()
        db.engine.dispose()


def _empty_all_tables() -> None:
    if db.engine.dialect.name != "postgresql":
        return  # each SQLite test has its own copy
    quoted = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
    with db.engine.begin() as conn:
        # "replica" mode skips triggers, including the audit log's refusal to be truncated.
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(sa.text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def clinic(app: Flask):  # type: ignore[no-untyped-def]
    return factories.clinic()


@pytest.fixture
def coordinator(clinic):  # type: ignore[no-untyped-def]
    return factories.user(clinics=[clinic])


@pytest.fixture
def api(client: FlaskClient, coordinator) -> factories.ApiClient:  # type: ignore[no-untyped-def]
    return factories.ApiClient(client, factories.token_for(coordinator))
