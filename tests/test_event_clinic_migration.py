"""Each plan event carries its patient's clinic: migration 0012 on a database that already
holds events of several clinics' patients, and the copy following a patient who moves."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import select

from surveillance.extensions import db
from surveillance.models import PlanEvent
from surveillance.services import worklists
from tests import factories
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


@pytest.fixture
def migrated(fresh_app: Flask) -> Flask:
    """At 0012, migrated from 0011 with events of patients of three clinics."""
    upgrade(revision=BEFORE)
    _existing_rows()
    upgrade(revision=REVISION)
    return fresh_app


def _event_clinics() -> set[tuple[int, int]]:
    with db.engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT patient_id, clinic_id FROM plan_events")).all())


def test_backfill_copies_each_patients_clinic(migrated: Flask) -> None:
    assert _event_clinics() == set(PATIENT_CLINICS.items())
    columns = {c["name"]: c for c in sa.inspect(db.engine).get_columns("plan_events")}
    assert columns["clinic_id"]["nullable"] is False
    indexes = {i["name"] for i in sa.inspect(db.engine).get_indexes("plan_events")}
    indexes |= {i["name"] for i in sa.inspect(db.engine).get_indexes("patients")}
    assert {
        "ix_plan_events_clinic_status_due_on",
        "ix_plan_events_clinic_kind_status_due_on",
        "ix_patients_id_clinic_id",
    } <= indexes


def test_an_event_without_its_patients_clinic_is_refused(migrated: Flask) -> None:
    for clinic_id in (1, 99):  # another clinic than the patient's; no clinic of that id
        with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE plan_events SET clinic_id = :c WHERE patient_id = 1"),
                {"c": clinic_id},
            )
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


def test_downgrade_drops_the_column_and_upgrade_again_fills_it(migrated: Flask) -> None:
    downgrade(revision=BEFORE)
    columns = {c["name"] for c in sa.inspect(db.engine).get_columns("plan_events")}
    assert "clinic_id" not in columns
    keys = sa.inspect(db.engine).get_foreign_keys("plan_events")
    assert {(tuple(k["constrained_columns"]), k["referred_table"]) for k in keys} == {
        (("plan_id",), "surveillance_plans"),
        (("patient_id",), "patients"),
    }
    upgrade(revision=REVISION)
    assert _event_clinics() == set(PATIENT_CLINICS.items())


def test_a_moved_patients_events_follow_to_the_new_clinics_lists(app) -> None:  # type: ignore[no-untyped-def]
    """The copy of the clinic on each event moves with the patient (ON UPDATE CASCADE), so
    the new clinic's coordinator sees the patient's open events and the old one no longer
    does."""
    old, new = factories.clinic("old-place"), factories.clinic("new-place")
    patient = factories.enrol(old, enrolled_on=date(2025, 1, 6), interval_months=3)
    bystander = factories.enrol(old, enrolled_on=date(2025, 1, 6), interval_months=3)
    at_old, at_new = factories.user(clinics=[old]), factories.user(clinics=[new])
    db.session.commit()
    today = date(2026, 1, 5)

    def overdue(user: Any) -> set[int]:
        return {e.patient_id for e in worklists.fetch("overdue", user, today, per_page=200).items}

    assert overdue(at_old) == {patient.id, bystander.id} and overdue(at_new) == set()
    patient.clinic = new
    db.session.commit()
    db.session.expire_all()
    assert overdue(at_old) == {bystander.id} and overdue(at_new) == {patient.id}
    moved = db.session.scalars(
        select(PlanEvent.clinic_id).where(PlanEvent.patient_id == patient.id)
    )
    assert set(moved) == {new.id}
