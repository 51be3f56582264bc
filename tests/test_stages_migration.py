"""Migration 0003 (care stages) on a database that already holds patients.

Upgrading from the foundation schema gives every existing patient a stage from what their
plans say, with one history entry by the system; downgrading removes it all again; and after
the upgrade the models and the migrations agree (no pending autogenerate diff).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask_migrate import downgrade, upgrade

from surveillance import create_app
from surveillance.extensions import db
from surveillance.models import include_in_autogenerate
from tests.conftest import _postgres_database, base_config, postgres_test_database

REVISION = "0004_care_stages"


@pytest.fixture
def fresh_app(tmp_path: Path) -> Iterator[Flask]:
    """An app on a database of its own, at no revision at all."""
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        url = _postgres_database(base, postgres_test_database("stages_migration"))
    else:
        url = f"sqlite:///{tmp_path / 'migration.sqlite3'}"
    app = create_app(base_config(url, tmp_path))
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


NOW = "2026-01-05 12:00:00"


def _foundation_rows() -> None:
    """Three patients written with the foundation schema: one still watched, one whose plan
    ended with progression, one whose plan ended for another reason."""
    statements = [
        "INSERT INTO clinics (id, slug, name, timezone, address, phone, working_weekdays,"
        " observe_us_holidays, created_at, updated_at) VALUES"
        f" (1, 'c', 'C', 'America/Denver', '', '', '01234', true, '{NOW}', '{NOW}')",
    ]
    for pid, status in ((1, "active"), (2, "ended"), (3, "ended")):
        statements += [
            "INSERT INTO patients (id, clinic_id, mrn, given_name, family_name, birth_date,"
            " preferred_language, email_opt_out, primary_site, differentiation, grade,"
            " functional, feed_version, created_at, updated_at) VALUES"
            f" ({pid}, 1, 'M{pid}', 'A', 'B', '1960-01-01', 'en', false, 'lung', 'well', 'G1',"
            f" 'no', 1, '{NOW}', '{NOW}')",
            "INSERT INTO surveillance_plans (id, patient_id, interval_months, enrolled_on,"
            " anchor_on, anchor_ordinal, horizon_until, status, created_at, updated_at) VALUES"
            f" ({pid}, {pid}, 6, '2025-01-06', '2025-01-06', 0, '2027-01-06', '{status}',"
            f" '{NOW}', '{NOW}')",
            "INSERT INTO plan_events (plan_id, patient_id, kind, ordinal, due_on, window_start,"
            " window_end, status, outcome, uid, sequence, created_at, updated_at) VALUES"
            f" ({pid}, {pid}, 'visit', 1, '2025-07-07', '2025-06-16', '2025-07-28',"
            f" 'completed', '{'progression' if pid == 2 else 'stable'}', 'uid-{pid}', 1,"
            f" '{NOW}', '{NOW}')",
        ]
    with db.engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


def test_existing_patients_get_a_stage_and_a_first_history_entry(fresh_app: Flask) -> None:
    upgrade(revision="0001")
    _foundation_rows()
    upgrade(revision=REVISION)
    with db.engine.connect() as conn:
        stages = dict(conn.execute(sa.text("SELECT id, stage FROM patients ORDER BY id")).all())
        history = conn.execute(
            sa.text(
                "SELECT patient_id, from_stage, to_stage, changed_by_id FROM stage_changes"
                " ORDER BY patient_id"
            )
        ).all()
    assert stages == {1: "watchful_waiting", 2: "treatment_planning", 3: "surveillance_ended"}
    assert [tuple(row) for row in history] == [
        (1, None, "watchful_waiting", None),
        (2, None, "treatment_planning", None),
        (3, None, "surveillance_ended", None),
    ]


def test_the_stage_column_refuses_unknown_stages(fresh_app: Flask) -> None:
    upgrade(revision="0001")
    _foundation_rows()
    upgrade(revision=REVISION)
    with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE patients SET stage = 'cured' WHERE id = 1"))


def test_downgrade_and_upgrade_again_and_no_pending_diff(fresh_app: Flask) -> None:
    upgrade(revision="0001")
    _foundation_rows()
    upgrade(revision=REVISION)
    downgrade(revision="0001")
    inspector = sa.inspect(db.engine)
    assert "stage_changes" not in inspector.get_table_names()
    assert "stage" not in {c["name"] for c in inspector.get_columns("patients")}
    upgrade()
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"include_name": include_in_autogenerate}),
            db.metadata,
        )
    assert diff == []
