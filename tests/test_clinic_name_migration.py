"""Migration 0006 (patient-facing clinic name) on a database that already holds clinics.

A clinic whose internal name and address give nothing away keeps showing them to patients; one
whose name or address names the condition gets the neutral name and no address, and bookings
that had that name or address copied in as their place get the new patient-facing place.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import downgrade, upgrade

from surveillance.extensions import db
from tests.conftest import app_on_an_empty_database

BEFORE, REVISION = "0005_performance_indexes", "0006_patient_facing_clinic_name"
NOW = "2026-01-05 12:00:00"
CLINICS = {
    1: ("Northside Clinic", "1 Main St"),
    2: ("Neuroendocrine Tumour Clinic", "1 Main St"),
    3: ("Riverbend NET Clinic", "Cancer Center, 2 River Rd"),
}


@pytest.fixture
def fresh_app(tmp_path: Path) -> Iterator[Flask]:
    """An app on a database of its own, at no revision at all."""
    with app_on_an_empty_database(tmp_path, "clinic_name_migration") as app:
        yield app


def _existing_rows() -> None:
    """Three clinics, each with a patient whose events were booked at the copied address, at
    the copied name, and at a place typed by staff."""
    statements = []
    for cid, (name, address) in CLINICS.items():
        statements += [
            "INSERT INTO clinics (id, slug, name, timezone, address, phone, working_weekdays,"
            " observe_us_holidays, created_at, updated_at) VALUES"
            f" ({cid}, 'c{cid}', '{name}', 'America/Denver', '{address}', '', '01234', true,"
            f" '{NOW}', '{NOW}')",
            "INSERT INTO patients (id, clinic_id, mrn, given_name, family_name, birth_date,"
            " preferred_language, email_opt_out, primary_site, differentiation, grade,"
            " functional, feed_version, created_at, updated_at) VALUES"
            f" ({cid}, {cid}, 'M{cid}', 'A', 'B', '1960-01-01', 'en', false, 'lung', 'well',"
            f" 'G1', 'no', 1, '{NOW}', '{NOW}')",
            "INSERT INTO surveillance_plans (id, patient_id, interval_months, enrolled_on,"
            " anchor_on, anchor_ordinal, horizon_until, status, created_at, updated_at) VALUES"
            f" ({cid}, {cid}, 6, '2025-01-06', '2025-01-06', 0, '2027-01-06', 'active',"
            f" '{NOW}', '{NOW}')",
        ]
        for ordinal, location in enumerate((address, name, "Room 4"), start=1):
            statements.append(
                "INSERT INTO plan_events (plan_id, patient_id, kind, ordinal, due_on,"
                " window_start, window_end, status, location, uid, sequence, created_at,"
                " updated_at) VALUES"
                f" ({cid}, {cid}, 'visit', {ordinal}, '2026-07-07', '2026-06-16', '2026-07-28',"
                f" 'booked', '{location}', 'uid-{cid}-{ordinal}', 1, '{NOW}', '{NOW}')"
            )
    with db.engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


def _clinics() -> dict[int, tuple[str, str]]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, calendar_name, calendar_address FROM clinics ORDER BY id")
        ).all()
    return {row[0]: (row[1], row[2]) for row in rows}


def _locations() -> dict[int, list[str]]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT patient_id, location FROM plan_events ORDER BY patient_id, ordinal")
        ).all()
    found: dict[int, list[str]] = {}
    for patient_id, location in rows:
        found.setdefault(patient_id, []).append(location)
    return found


def test_backfill_shows_only_what_gives_nothing_away(fresh_app: Flask) -> None:
    upgrade(revision=BEFORE)
    _existing_rows()
    upgrade(revision=REVISION)
    assert _clinics() == {
        1: ("Northside Clinic", "1 Main St"),
        2: ("Outpatient clinic", "1 Main St"),
        3: ("Outpatient clinic", ""),
    }
    assert _locations() == {
        1: ["1 Main St", "Northside Clinic", "Room 4"],  # safe: unchanged
        2: ["1 Main St", "1 Main St", "Room 4"],  # the copied name becomes the address
        3: ["Outpatient clinic", "Outpatient clinic", "Room 4"],
    }


def test_downgrade_drops_the_columns_and_upgrade_again_works(fresh_app: Flask) -> None:
    upgrade(revision=BEFORE)
    _existing_rows()
    upgrade(revision=REVISION)
    downgrade(revision=BEFORE)
    columns = {c["name"] for c in sa.inspect(db.engine).get_columns("clinics")}
    assert not {"calendar_name", "calendar_address"} & columns
    upgrade(revision=REVISION)
    assert _clinics()[3] == ("Outpatient clinic", "")
