"""The 0003_reminders migration: up, down to 0002, up again, and it matches the models."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from surveillance import create_app
from surveillance.extensions import db
from surveillance.models import include_in_autogenerate
from tests.conftest import postgres_test_database

NEW_TABLES = {"outbox_messages", "reminder_settings", "contact_attempts"}


def _fresh_database(database_url: str, tmp_path: Path) -> str:
    if not database_url.startswith("postgresql"):
        return f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
    name = postgres_test_database("reminders_migration")
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.make_url(database_url).set(database=name).render_as_string(hide_password=False)


def _tables() -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(db.engine).get_columns(table)}


def test_upgrade_downgrade_upgrade_and_no_pending_changes(
    database_url: str, tmp_path: Path
) -> None:
    url = _fresh_database(database_url, tmp_path)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": str(tmp_path)})
    with app.app_context():
        upgrade()
        assert _tables() >= NEW_TABLES and "call_again_on" in _columns("plan_events")
        with db.engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"include_name": include_in_autogenerate}),
                db.metadata,
            )
        assert diff == []
        downgrade(revision="0002_audit_log")
        assert not NEW_TABLES & _tables() and "call_again_on" not in _columns("plan_events")
        upgrade()
        assert _tables() >= NEW_TABLES
        downgrade(revision="base")
        upgrade()
        assert _tables() >= NEW_TABLES
        db.engine.dispose()
