"""The database going away answers 503 with a plain page; the app recovers when it returns."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask_migrate import upgrade

from surveillance import create_app
from surveillance.extensions import db
from tests import factories
from tests.conftest import _postgres_database, base_config, postgres_test_database
from tests.tcp_proxy import TcpProxy


def _token_for_new_coordinator(app) -> str:  # type: ignore[no-untyped-def]
    with app.app_context():
        upgrade()
        return factories.token_for(factories.user(clinics=[factories.clinic()]))


def _assert_outage_then_recovery(app, cut, restore) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    token = _token_for_new_coordinator(app)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/patients", headers=headers).status_code == 200
    enrolled = client.post("/api/v1/patients", json=factories.enrolment_payload(), headers=headers)
    assert enrolled.status_code == 201, enrolled.json
    feed = urlsplit(enrolled.json["feed_url"]).path
    etag = client.get(feed).headers["ETag"]
    revalidate = {"If-None-Match": etag}
    assert client.get(feed, headers=revalidate).status_code == 304  # by the feed fast path

    cut()
    api_down = client.get("/api/v1/patients", headers=headers)
    assert api_down.status_code == 503
    assert api_down.headers["Retry-After"] == "30"
    assert api_down.json["error"]
    page_down = client.get("/anything-that-touches-nothing")
    assert page_down.status_code == 404  # no database needed, unaffected
    # The feed's fast path hands the request on, and the view answers as everywhere else.
    for feed_headers in ({}, revalidate):
        feed_down = client.get(feed, headers=feed_headers)
        assert feed_down.status_code == 503
        assert feed_down.headers["Retry-After"] == "30"

    restore()
    assert client.get("/api/v1/patients", headers=headers).status_code == 200
    assert client.get(feed, headers=revalidate).status_code == 304


def test_database_outage(tmp_path: Path, is_postgres: bool) -> None:
    if is_postgres:
        _postgres_connection_cut(tmp_path)
    else:
        _sqlite_file_unreachable(tmp_path)


def _sqlite_file_unreachable(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    away = tmp_path / "away"
    app = create_app(base_config(f"sqlite:///{folder / 'db.sqlite3'}", tmp_path / "instance"))

    def cut() -> None:
        with app.app_context():
            db.engine.dispose()
        folder.rename(away)

    def restore() -> None:
        away.rename(folder)

    _assert_outage_then_recovery(app, cut, restore)


def _postgres_connection_cut(tmp_path: Path) -> None:
    """The test database, reached through a proxy the test can cut."""
    base = os.environ["TEST_DATABASE_URL"]
    direct = sa.make_url(_postgres_database(base, postgres_test_database("outage")))
    proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432)
    proxy.start()
    via_proxy = direct.set(port=proxy.port).render_as_string(hide_password=False)
    app = create_app(base_config(via_proxy, tmp_path))

    def restore() -> None:
        proxy.start()  # same port again

    try:
        _assert_outage_then_recovery(app, proxy.stop, restore)
    finally:
        proxy.stop()
        with app.app_context():
            db.engine.dispose()
