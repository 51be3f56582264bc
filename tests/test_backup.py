"""Backup and restore bring back every record."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

from surveillance.extensions import db


def _dump() -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    """Every row of every table, to compare before and after."""
    with db.engine.connect() as conn:
        return {
            table.name: sorted(tuple(r) for r in conn.execute(sa.select(table)).all())
            for table in db.metadata.sorted_tables
        }


def test_backup_then_restore_brings_back_everything(runner, tmp_path: Path, is_postgres) -> None:  # type: ignore[no-untyped-def]
    assert runner.invoke(args=["demo", "load"]).exit_code == 0
    target = tmp_path / "backups" / "watchful.sqlite3"
    result = runner.invoke(args=["backup", str(target)])
    if is_postgres:
        assert result.exit_code != 0 and "pg_dump" in result.output
        return
    assert result.exit_code == 0, result.output
    before = _dump()
    assert sum(len(rows) for rows in before.values()) > 50

    # Lose data after the backup: a patient's events and the patient table's rows.
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM plan_events"))
        conn.execute(sa.text("UPDATE patients SET given_name = 'changed'"))
    assert _dump() != before

    refused = runner.invoke(args=["restore", str(target)], input="n\n")
    assert refused.exit_code != 0
    restored = runner.invoke(args=["restore", str(target), "--yes"])
    assert restored.exit_code == 0, restored.output
    db.session.remove()
    assert _dump() == before


def test_backup_refuses_to_overwrite_and_restore_refuses_foreign_files(
    runner, tmp_path: Path, is_postgres
) -> None:  # type: ignore[no-untyped-def]
    existing = tmp_path / "exists.sqlite3"
    existing.write_bytes(b"")
    result = runner.invoke(args=["backup", str(existing)])
    assert result.exit_code != 0
    if not is_postgres:
        assert "already exists" in result.output
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 100)
    restored = runner.invoke(args=["restore", str(junk), "--yes"])
    assert restored.exit_code != 0


def test_backups_are_private_and_versions_must_match(runner, tmp_path: Path, is_postgres) -> None:  # type: ignore[no-untyped-def]
    if is_postgres:
        return  # pg_dump territory, checked above
    target = tmp_path / "b.sqlite3"
    assert runner.invoke(args=["backup", str(target)]).exit_code == 0
    assert target.stat().st_mode & 0o077 == 0
    with sqlite3.connect(target) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    conn.close()
    refused = runner.invoke(args=["restore", str(target), "--yes"])
    assert refused.exit_code != 0 and "schema version" in refused.output
