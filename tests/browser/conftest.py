"""Browser-test fixtures: the real app served over HTTP, and Debian's Chromium via Playwright.

``live_server`` (the base URL) serves a second instance of the app, built from the ``app``
fixture's configuration, so it uses the same test database; data the test creates through
``factories`` and commits is what the browser sees. ``page`` is a fresh browser context and
tab per test from one Chromium per session. Never ``playwright install``: the browser is
Debian's (``tests/install-chromium.sh``).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from werkzeug.serving import WSGIRequestHandler, make_server

from surveillance import create_app
from surveillance.extensions import db

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
# Wide enough for a laptop; the tablet check sets its own size.
VIEWPORT = {"width": 1280, "height": 900}


class _QuietHandler(WSGIRequestHandler):
    """No access log: failures are reported by the assertions, not by request lines."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app on a real port in a thread; yields its base URL (no trailing slash)."""
    served = create_app({key: app.config[key] for key in _CONFIG_KEYS if key in app.config})
    server = make_server(
        "127.0.0.1", _free_port(), served, threaded=True, request_handler=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        with served.app_context():
            db.session.remove()
            db.engine.dispose()
        # The test's own session may hold a snapshot from before the browser's changes.
        db.session.rollback()


# What the served copy needs from the test app's configuration.
_CONFIG_KEYS = (
    "TESTING",
    "SECRET_KEY",
    "SQLALCHEMY_DATABASE_URI",
    "WTF_CSRF_ENABLED",
    "PUBLIC_BASE_URL",
    "INSTANCE_PATH",
    "PLAN_HORIZON_MONTHS",
)


@pytest.fixture(scope="session")
def _playwright() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(_playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `sh tests/install-chromium.sh`.")
    browser = _playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser, live_server: str) -> Iterator[Page]:
    # bypass_csp lets the axe-core script be injected once the app sends a strict CSP.
    context = browser.new_context(base_url=live_server, viewport=VIEWPORT, bypass_csp=True)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot for reviewers under test-output/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Run axe-core (WCAG 2.x A/AA and best practices) on the page as it is now."""
    if not AXE.exists():
        pytest.fail("axe-core is missing: run `npm install` at the project root.")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document)")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
    ]


def assert_accessible(page: Page) -> None:
    violations = axe_violations(page)
    assert not violations, json.dumps(violations, indent=2)
