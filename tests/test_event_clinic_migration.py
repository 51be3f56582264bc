"""Migration 0012 (each plan event carries its patient's clinic) on a database that already
holds events of several clinics' patients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import downgrade, upgrade

from surveillance.extensions import db
from tests.conftest import app_on_an_empty_database

BEFORE, REVISION = "0011_outbox_claim_order", "0012_event_clinic"
NOW = "2026-01-05 12:00:00"
# Patient id -> clinic id: ids that differ, so a backfill from the wrong column shows.
PATIENT_CLINICS = {1: 3, 2: 1, 3: 3, 4: 2}


@pytest.fixture
def fresh_app(tmp_path: Path) -> Iterator[Flask]:
    with app_on_an_empty_database(tmp_path, "event_clinic_migration") as app:
        yield app


def _existing_rows() -> None:
    statements = [
        "INSERT INTO clinics (id, slug, name, timezone, address, phone, working_weekdays,"
        " observe_us_holidays, calendar_name, calendar_address, created_at, updated_at) VALUES"
        f" ({c}, 'c{c}', 'Clinic {c}', 'America/Denver', '', '', '01234', true, 'Clinic',"
        f" '', '{NOW}', '{NOW}')"
        for c in (1, 2, 3)
    ]
    for pid, cid in PATIENT_CLINICS.items():
        statements += [
            "INSERT INTO patients (id, clinic_id, mrn, given_name, family_name, birth_date,"
            " preferred_language, email_opt_out, primary_site, differentiation, grade,"
            " functional, feed_version, created_at, updated_at) VALUES"
            f" ({pid}, {cid}, 'M{pid}', 'A', 'B', '1960-01-01', 'en', false, 'lung', 'well',"
            f" 'G1', 'no', 1, '{NOW}', '{NOW}')",
            "INSERT INTO surveillance_plans (id, patient_id, interval_months, enrolled_on,"
            " anchor_on, anchor_ordinal, horizon_until, status, created_at, updated_at) VALUES"
            f" ({pid}, {pid}, 6, '2025-01-06', '2025-01-06', 0, '2027-01-06', 'active',"
            f" '{NOW}', '{NOW}')",
        ]
        statements += [
            "INSERT INTO plan_events (plan_id, patient_id, kind, ordinal, due_on,"
            " window_start, window_end, status, uid, sequence, created_at, updated_at) VALUES"
            f" ({pid}, {pid}, 'visit', {ordinal}, '2026-07-07', '2026-06-16', '2026-07-28',"
            f" 'planned', 'uid-{pid}-{ordinal}', 0, '{NOW}', '{NOW}')"
            for ordinal in (1, 2)
        ]
    with db.engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


def _event_clinics() -> set[tuple[int, int]]:
    with db.engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT patient_id, clinic_id FROM plan_events")).all())


def test_backfill_copies_each_patients_clinic(fresh_app: Flask) -> None:
    upgrade(revision=BEFORE)
    _existing_rows()
    upgrade(revision=REVISION)
    assert _event_clinics() == set(PATIENT_CLINICS.items())
    columns = {c["name"]: c for c in sa.inspect(db.engine).get_columns("plan_events")}
    assert columns["clinic_id"]["nullable"] is False
    indexes = {i["name"] for i in sa.inspect(db.engine).get_indexes("plan_events")}
    assert {
        "ix_plan_events_clinic_status_due_on",
        "ix_plan_events_clinic_kind_status_due_on",
    } <= indexes


def test_an_event_without_its_clinic_is_refused(fresh_app: Flask) -> None:
    upgrade(revision=BEFORE)
    _existing_rows()
    upgrade(revision=REVISION)
    with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:  # no such clinic
        conn.execute(sa.text("UPDATE plan_events SET clinic_id = 99 WHERE patient_id = 1"))
    with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:  # none at all
        conn.execute(
            sa.text(
                "INSERT INTO plan_events (plan_id, patient_id, kind, ordinal, due_on,"
                " window_start, window_end, status, uid, sequence, created_at, updated_at)"
                " VALUES (1, 1, 'visit', 9, '2026-07-07', '2026-06-16', '2026-07-28',"
                f" 'planned', 'uid-new', 0, '{NOW}', '{NOW}')"
            )
        )
    assert _event_clinics() == set(PATIENT_CLINICS.items())


def test_downgrade_drops_the_column_and_upgrade_again_fills_it(fresh_app: Flask) -> None:
    upgrade(revision=BEFORE)
    _existing_rows()
    upgrade(revision=REVISION)
    downgrade(revision=BEFORE)
    columns = {c["name"] for c in sa.inspect(db.engine).get_columns("plan_events")}
    assert "clinic_id" not in columns
    upgrade(revision=REVISION)
    assert _event_clinics() == set(PATIENT_CLINICS.items())
