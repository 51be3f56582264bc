"""The printed handout of a /learn guide, in Debian's Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, ConsoleMessage

from surveillance import education


def console_error(message: ConsoleMessage) -> bool:
    # Failed loads are checked through responses below; Chromium's own favicon request (the
    # base layout declares none) is logged here as a 404 without a response event.
    return message.type == "error" and not message.text.startswith("Failed to load resource")


@pytest.mark.browser
def test_printed_handout_shows_the_guide_and_no_navigation(
    browser: Browser, live_server: str
) -> None:
    # No bypass_csp here: a Content-Security-Policy refusal must show up as a problem.
    context = browser.new_context(base_url=live_server)
    try:
        page = context.new_page()
        problems: list[str] = []  # e.g. a Content-Security-Policy refusal, a missing file
        page.on("console", lambda m: problems.append(m.text) if console_error(m) else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("response", lambda r: problems.append(r.url) if r.status >= 400 else None)
        page.goto("/learn/biopsy-review")
        button = page.get_by_role("button", name="Print this page")
        assert button.is_visible()  # learn.js revealed it
        assert not page.locator(".print-only").is_visible()

        page.emulate_media(media="print")
        for hidden in ("nav.navbar", "nav[aria-label=Breadcrumb]", ".learn-related"):
            assert not page.locator(hidden).is_visible(), hidden
        assert not button.is_visible()
        assert page.get_by_role("heading", level=1, name="Biopsy review").is_visible()
        assert page.get_by_text(education.DISCLAIMER).is_visible()
        assert page.locator(".learn-reviewed").is_visible()
        assert page.locator(".print-only").is_visible()
        pdf = page.pdf(format="Letter")
        assert pdf.startswith(b"%PDF")
        assert problems == []
    finally:
        context.close()
