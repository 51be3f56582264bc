"""The application factory and its configuration."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from surveillance import create_app
from surveillance.extensions import db
from surveillance.models import Clinic


def test_config_dict_overrides_environment(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://from-env.example")
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone@db.example/prod")
    app = create_app(
        {
            "PUBLIC_BASE_URL": "https://override.example",
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
            "INSTANCE_PATH": str(tmp_path),
        }
    )
    assert app.config["PUBLIC_BASE_URL"] == "https://override.example"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "sqlite://"


def test_environment_is_read_and_postgres_urls_use_psycopg3(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone@db.example/prod")
    monkeypatch.setenv("SECRET_KEY", "from-env")
    app = create_app({"INSTANCE_PATH": str(tmp_path)})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://someone@db.example/prod"
    assert app.config["SECRET_KEY"] == "from-env"


def test_default_is_sqlite_in_the_instance_folder_with_a_kept_secret(
    monkeypatch, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("WATCHFUL_INSTANCE_PATH", str(tmp_path))
    first = create_app()
    assert first.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'watchful.sqlite3'}"
    second = create_app()
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert len(first.config["SECRET_KEY"]) == 64
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_naive_datetimes_are_refused(app) -> None:  # type: ignore[no-untyped-def]
    clinic = Clinic(slug="x", name="X", created_at=datetime(2026, 1, 1, 9, 0))
    db.session.add(clinic)
    with pytest.raises(Exception, match="naive datetime"):
        db.session.flush()
    db.session.rollback()


def test_readme_shows_exactly_two_setup_commands() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    setup = readme.split("## Set-up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("\n", 1)[1].strip() for b in setup.split("```sh")[1:]]
    blocks = [b.split("```")[0].strip() for b in blocks]
    assert blocks == ["make run", "make test"]
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def test_proxy_headers_are_trusted_only_when_configured(tmp_path: Path) -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    direct = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "INSTANCE_PATH": str(tmp_path)})
    response = direct.test_client().get("/api/v1/openapi.json", headers=headers)
    assert "Strict-Transport-Security" not in response.headers
    proxied = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
            "INSTANCE_PATH": str(tmp_path),
            "TRUST_PROXY_HOPS": 1,
        }
    )
    response = proxied.test_client().get("/api/v1/openapi.json", headers=headers)
    assert "Strict-Transport-Security" in response.headers


def test_redis_backs_the_rate_limits_when_configured(tmp_path: Path) -> None:
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
            "INSTANCE_PATH": str(tmp_path),
            "REDIS_URL": "redis://127.0.0.1:6379/0",
        }
    )
    assert app.config["RATELIMIT_STORAGE_URI"] == "redis://127.0.0.1:6379/0"
