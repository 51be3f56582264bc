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


def _sqlite_connection(engine: Engine) -> sqlite3.Connection:
    if engine.dialect.name != "sqlite":
        raise BackupError(
            "backup/restore here is for SQLite; on PostgreSQL use pg_dump and pg_restore "
            "(see the README)."
        )
    raw = engine.raw_connection()
    connection = raw.driver_connection
    assert isinstance(connection, sqlite3.Connection)
    return connection


def backup(engine: Engine, target: Path) -> int:
    """Copy the live database into ``target`` page by page while the app keeps running.
    Returns the size in bytes."""
    if target.exists():
        raise BackupError(f"{target} already exists; choose a new file.")
    target.parent.mkdir(parents=True, exist_ok=True)
    source = _sqlite_connection(engine)
    with sqlite3.connect(target) as destination:
        source.backup(destination)
    destination.close()
    return target.stat().st_size


def restore(engine: Engine, source_file: Path) -> None:
    """Replace the live database with a backup made by :func:`backup`."""
    if not source_file.is_file():
        raise BackupError(f"{source_file} is not a file.")
    with sqlite3.connect(f"file:{source_file}?mode=ro", uri=True) as source:
        try:
            version = source.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{source_file} is not a Watchful backup ({exc}).") from exc
        if version is None:
            raise BackupError(f"{source_file} has no schema version; not a Watchful backup.")
        engine.dispose()  # no pooled connection may keep reading the old pages
        live = _sqlite_connection(engine)
        source.backup(live)
        live.commit()
    source.close()
    engine.dispose()
