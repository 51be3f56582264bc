"""Migrations build the schema from empty, tear it down, and agree with the models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from surveillance import create_app
from surveillance.extensions import db
from surveillance.feeds import rowtable
from surveillance.models import is_database_specific
from tests.conftest import _postgres_database, postgres_test_database
from tests.schema_drift import schema_drift


@pytest.fixture
def empty_database_url(tmp_path: Path) -> str:
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        return _postgres_database(base, postgres_test_database("migrations"))
    return f"sqlite:///{tmp_path / 'migrations.sqlite3'}"


def _tables(engine: sa.Engine) -> set[str]:
    """The database's tables, without Alembic's own and the one-database search index."""
    names = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    return {name for name in names if not is_database_specific(name, "table")}


def test_upgrade_downgrade_upgrade_and_no_pending_diff(empty_database_url: str) -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database_url, "TESTING": True})
    with app.app_context():
        upgrade()
        assert _tables(db.engine) == set(db.metadata.tables)
        downgrade(revision="base")
        assert _tables(db.engine) == set()
        upgrade()
        with db.engine.connect() as conn:
            diff = schema_drift(conn)
        assert diff == [], f"models and migrations disagree: {diff}"
        if db.engine.dialect.name == "postgresql":
            assert _patients_options() == ["fillfactor=80"]
            assert _feed_row_triggers() == sorted(rowtable.TRIGGERS)
            downgrade(revision="0009_patients_fillfactor")
            assert _feed_row_triggers() == []
            downgrade(revision="0008_job_indexes")
            assert _patients_options() is None
            upgrade()
            assert _patients_options() == ["fillfactor=80"]
            assert _feed_row_triggers() == sorted(rowtable.TRIGGERS)
        db.engine.dispose()


def _patients_options() -> list[str] | None:
    """The patients table's storage parameters (PostgreSQL; ``0009_patients_fillfactor``)."""
    with db.engine.connect() as conn:
        return conn.scalar(sa.text("SELECT reloptions FROM pg_class WHERE relname = 'patients'"))


def _feed_row_triggers() -> list[str]:
    """The triggers that feed the fast path's row tables (``0010_feed_row_signals``)."""
    with db.engine.connect() as conn:
        names = conn.scalars(
            sa.text("SELECT tgname FROM pg_trigger WHERE tgname LIKE '%feed_rows%'")
        )
        return sorted(names)


def test_downgrading_and_upgrading_keeps_related_rows(tmp_path: Path) -> None:
    """Batch migrations rebuild SQLite tables; foreign keys must not cascade-delete rows."""
    from surveillance.services import accounts

    url = f"sqlite:///{tmp_path / 'data.sqlite3'}"
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "TESTING": True, "INSTANCE_PATH": str(tmp_path)}
    )
    with app.app_context():
        upgrade()
        clinic = accounts.create_clinic("keep", "Keep Clinic")
        user = accounts.create_user("keep@example.org", "coordinator", "long enough pw", [clinic])
        accounts.issue_api_token(user)
        db.session.commit()
        downgrade(revision="0001")
        upgrade()
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM api_tokens").scalar() == 1
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM user_clinics").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        db.engine.dispose()
