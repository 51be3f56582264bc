"""Headers and error pages that apply to every response."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("path", ["/api/v1/openapi.json", "/api/v1/patients", "/no-such-page"])
def test_security_headers_on_every_response(client, path: str) -> None:  # type: ignore[no-untyped-def]
    response = client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in response.headers  # plain http here


def test_hsts_only_over_https(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/api/v1/openapi.json", base_url="https://watchful.test")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_oversized_body_is_413(api) -> None:  # type: ignore[no-untyped-def]
    big = {"mrn": "X" * (3 * 1024 * 1024)}
    response = api.client.post(
        "/api/v1/patients", json=big, headers={"Authorization": f"Bearer {api.token}"}
    )
    assert response.status_code == 413
    assert response.json["error"]


def test_server_errors_show_a_plain_page_without_details(app, client) -> None:  # type: ignore[no-untyped-def]
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom")
    def boom():  # type: ignore[no-untyped-def]
        raise RuntimeError("Jamie Sample MRN12345 secret detail")

    response = client.get("/boom")
    assert response.status_code == 500
    assert b"MRN12345" not in response.data and b"Jamie" not in response.data
