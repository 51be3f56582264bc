"""Every SQLite connection gets the app's settings (``surveillance._sqlite_pragmas``)."""

from __future__ import annotations

from flask import Flask

from surveillance import SQLITE_MMAP_BYTES
from surveillance.extensions import db


def test_every_sqlite_connection_gets_the_apps_settings(app: Flask) -> None:
    engine = db.engine
    engine.dispose()  # a fresh connection: the hook runs on connect
    with engine.connect() as conn:
        driver = conn.connection.dbapi_connection
        if engine.dialect.name != "sqlite":
            # Other drivers' connections are left as they come (psycopg: not autocommit).
            assert driver is not None and driver.autocommit is False
            return
        settings = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("foreign_keys", "busy_timeout", "journal_mode", "mmap_size")
        }
    assert settings == {
        "foreign_keys": 1,
        "busy_timeout": 5000,
        "journal_mode": "wal",
        "mmap_size": SQLITE_MMAP_BYTES,
    }
