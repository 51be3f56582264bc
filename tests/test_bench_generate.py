"""The benchmark data generator (``bench/generate.py``) leaves the schema the migrations made.

It drops the secondary indexes for the bulk load and builds them again afterwards, and on
SQLite it loads without a journal: a small run must end with every index of the migrated schema
back in place, the app's WAL mode on, and the data the benchmarks rely on.
"""

from __future__ import annotations

import os
import sys
import uuid
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import postgres_test_database

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import generate  # bench/ is not a package: found through the path above


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_uuid4_text_is_the_uuid_modules_text(bits: int) -> None:
    assert generate.uuid4_text(bits) == str(uuid.UUID(int=bits, version=4))


def _indexes(url: str) -> set[tuple[str, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                query = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            else:
                query = "SELECT name, COALESCE(sql, '') FROM sqlite_master WHERE type = 'index'"
            return {(name, definition) for name, definition in conn.execute(sa.text(query))}
    finally:
        engine.dispose()


def _target(tmp_path: Path) -> str:
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        return str(tmp_path / "bench.sqlite3")
    url = sa.make_url(base).set(database=postgres_test_database("bench"))
    return url.render_as_string(hide_password=False)


def test_a_small_generation_keeps_the_migrated_schema_and_fills_every_table(
    tmp_path: Path, migrated_url: str
) -> None:
    target = _target(tmp_path)
    result = generate.generate(
        target, clinics=2, patients=300, outbox=40, seed=7, today=date(2026, 11, 27)
    )
    url = generate.common.database_url(target)

    assert _indexes(url) == _indexes(migrated_url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                assert conn.execute(sa.text("PRAGMA journal_mode")).scalar_one() == "wal"
                assert conn.execute(sa.text("PRAGMA integrity_check")).scalar_one() == "ok"
            patients = conn.execute(sa.text("SELECT COUNT(*) FROM patients")).scalar_one()
            events = conn.execute(sa.text("SELECT COUNT(*) FROM plan_events")).scalar_one()
            outbox = conn.execute(sa.text("SELECT COUNT(*) FROM outbox_messages")).scalar_one()
            # The stored next-due dates were computed after the load, as any bulk writer must.
            without_next_due = conn.execute(
                sa.text(
                    "SELECT COUNT(*) FROM patients p JOIN surveillance_plans s "
                    "ON s.patient_id = p.id AND s.status = 'active' "
                    "WHERE p.next_due_on IS NULL AND EXISTS (SELECT 1 FROM plan_events e "
                    "WHERE e.plan_id = s.id AND e.status IN ('planned', 'booked'))"
                )
            ).scalar_one()
            # The load may skip the foreign-key checks (bench/generate.py): none is broken.
            orphans = conn.execute(
                sa.text(
                    "SELECT (SELECT COUNT(*) FROM plan_events e WHERE NOT EXISTS "
                    "(SELECT 1 FROM surveillance_plans s WHERE s.id = e.plan_id "
                    "AND s.patient_id = e.patient_id)) "
                    "+ (SELECT COUNT(*) FROM surveillance_plans s WHERE NOT EXISTS "
                    "(SELECT 1 FROM patients p WHERE p.id = s.patient_id)) "
                    "+ (SELECT COUNT(*) FROM patients p WHERE NOT EXISTS "
                    "(SELECT 1 FROM clinics c WHERE c.id = p.clinic_id)) "
                    "+ (SELECT COUNT(*) FROM outbox_messages o WHERE NOT EXISTS "
                    "(SELECT 1 FROM patients p WHERE p.id = o.patient_id))"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert orphans == 0
    assert (patients, events, outbox) == (300, result["events"], 40)
    assert events > 300 * 5
    assert without_next_due == 0
