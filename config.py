"""Configuration read from the environment.

Every setting has a safe default for the embedded demo (SQLite in the instance folder). The
dict passed to ``surveillance.create_app`` overrides anything here, using Flask's and the
extensions' own key names.
"""

from __future__ import annotations

import os
from typing import Any


def _bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _database_url(url: str | None) -> str | None:
    """Use psycopg 3 for plain ``postgresql://`` URLs (SQLAlchemy's default is psycopg2)."""
    if url and url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def from_environment() -> dict[str, Any]:
    """Settings taken from environment variables; ``None`` means "use the built-in default"."""
    return {
        # Without SECRET_KEY the app keeps a generated one in its instance folder.
        "SECRET_KEY": os.environ.get("SECRET_KEY"),
        # Where the SQLite database, demo mail and backups live (Flask's instance folder).
        "INSTANCE_PATH": os.environ.get("WATCHFUL_INSTANCE_PATH"),
        "SQLALCHEMY_DATABASE_URI": _database_url(os.environ.get("DATABASE_URL")),
        "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000"),
        "CALENDAR_UID_DOMAIN": os.environ.get("CALENDAR_UID_DOMAIN", "watchful.example.org"),
        "PLAN_HORIZON_MONTHS": _int("PLAN_HORIZON_MONTHS", 24),
        "MAIL_SERVER": os.environ.get("MAIL_SERVER"),
        "MAIL_PORT": _int("MAIL_PORT", 25),
        "MAIL_USE_TLS": _bool("MAIL_USE_TLS"),
        "MAIL_USERNAME": os.environ.get("MAIL_USERNAME"),
        "MAIL_PASSWORD": os.environ.get("MAIL_PASSWORD"),
        "MAIL_DEFAULT_SENDER": os.environ.get("MAIL_DEFAULT_SENDER", "watchful@localhost"),
        # Reminder delivery (issue 4): retries with exponential backoff, then "failed".
        "REMINDER_MAX_ATTEMPTS": _int("REMINDER_MAX_ATTEMPTS", 10),
        "REMINDER_RETRY_BASE_SECONDS": _int("REMINDER_RETRY_BASE_SECONDS", 60),
        "REMINDER_RETRY_MAX_SECONDS": _int("REMINDER_RETRY_MAX_SECONDS", 2 * 60 * 60),
        "REMINDER_LEASE_SECONDS": _int("REMINDER_LEASE_SECONDS", 10 * 60),
        # Scheduler (issue 4): the daily jobs run at this hour, in this zone.
        "SCHEDULER_TIMEZONE": os.environ.get("SCHEDULER_TIMEZONE", "UTC"),
        "SCHEDULER_DAILY_HOUR": _int("SCHEDULER_DAILY_HOUR", 9),
        "REDIS_URL": os.environ.get("REDIS_URL"),
        # How many reverse proxies in front of the app set X-Forwarded-* (0 = none).
        "TRUST_PROXY_HOPS": _int("TRUST_PROXY_HOPS", 0),
        # Answer patient feed polls before Flask (surveillance/feeds/fastpath.py).
        "FEED_FAST_PATH": _bool("FEED_FAST_PATH", True),
        # PostgreSQL: remember feed rows per worker thread, kept exact by notifications
        # (surveillance/feeds/rowtable.py).
        "FEED_ROW_TABLE": _bool("FEED_ROW_TABLE", True),
        "FEED_ROW_TABLE_ROWS": _int("FEED_ROW_TABLE_ROWS", 20_000),
        "FEED_ROW_TABLE_RECHECK_SECONDS": float(
            os.environ.get("FEED_ROW_TABLE_RECHECK_SECONDS") or 1.0
        ),
        "API_PAGE_SIZE": _int("API_PAGE_SIZE", 50),
        "MAX_CONTENT_LENGTH": _int("MAX_CONTENT_LENGTH", 2 * 1024 * 1024),
    }
