"""Online backup and restore of the embedded SQLite database.

PostgreSQL deployments use ``pg_dump``/``pg_restore`` instead (see the README): they are the
right tools there and need no help from the app.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine


class BackupError(Exception):
    pass


def _raw_connection(engine: Engine):  # type: ignore[no-untyped-def]
    if engine.dialect.name != "sqlite":
        raise BackupError(
            "backup/restore here is for SQLite; on PostgreSQL use pg_dump and pg_restore "
            "(see the README)."
        )
    return engine.raw_connection()


def schema_version(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return row[0] if row else None


def backup(engine: Engine, target: Path) -> int:
    """Copy the live database into ``target`` page by page while the app keeps running.
    Returns the size in bytes. The file is readable by its owner only: it is health data."""
    if target.exists():
        raise BackupError(f"{target} already exists; choose a new file.")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch(mode=0o600)
    target.chmod(0o600)
    raw = _raw_connection(engine)
    try:
        destination = sqlite3.connect(target)
        try:
            raw.driver_connection.backup(destination)
        finally:
            destination.close()
    finally:
        raw.close()
    return target.stat().st_size


def restore(engine: Engine, source_file: Path) -> None:
    """Replace the live database with a backup made by :func:`backup` of the same schema
    version (restore older backups into an older release, then upgrade)."""
    if not source_file.is_file():
        raise BackupError(f"{source_file} is not a file.")
    source = sqlite3.connect(f"file:{source_file}?mode=ro", uri=True)
    try:
        backup_version = schema_version(source)
        if backup_version is None:
            raise BackupError(f"{source_file} is not a Watchful backup.")
        engine.dispose()  # no pooled connection may keep reading the old pages
        raw = _raw_connection(engine)
        try:
            live_version = schema_version(raw.driver_connection)
            if backup_version != live_version:
                raise BackupError(
                    f"The backup has schema version {backup_version}, this database "
                    f"{live_version}: restore it with the matching release."
                )
            source.backup(raw.driver_connection)
        finally:
            raw.close()
    finally:
        source.close()
    engine.dispose()
