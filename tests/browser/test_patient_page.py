"""The patient's own page in a real browser, on a phone-sized screen (390 px wide).

Checks what a patient on a phone gets: everything fits the width, nothing is loaded from
another site, nothing breaks the Content-Security-Policy, axe-core finds no accessibility
violation, and the QR code as Chromium draws it scans back to the calendar feed URL.
"""

from __future__ import annotations

from datetime import datetime, time
from io import BytesIO

import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from surveillance import clock
from surveillance.extensions import db
from surveillance.models import Patient
from surveillance.planning import add_months
from surveillance.services import feed_tokens, plans
from tests import factories
from tests.browser.conftest import assert_accessible, screenshot

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def patient(app) -> Patient:  # type: ignore[no-untyped-def]
    """Enrolled about five months ago, 3-monthly, with the next visit booked."""
    clinic = factories.clinic(
        name="Riverbend Clinic",
        address="200 River Road\nSuite 4\nDenver, CO 80202",
        phone="+1 303 555 0142",
    )
    today = clock.today_in(clinic.timezone)
    patient = factories.enrol(
        clinic,
        given_name="Robin",
        enrolled_on=(add_months(today, -5)).isoformat(),
        interval_months=3,
    )
    upcoming = next(e for e in patient.latest_plan.events if e.kind == "visit" and e.due_on > today)
    plans.book(upcoming, datetime.combine(upcoming.due_on, time(9, 30)), 45, "Clinic B, room 12")
    db.session.commit()
    return patient


def page_path(patient: Patient) -> str:
    return f"/p/{feed_tokens.patient_secret(patient)}"


def feed_url(patient: Patient) -> str:
    return f"https://watchful.test/calendar/{feed_tokens.patient_secret(patient)}.ics"


def test_patient_page_on_a_phone(page: Page, patient: Patient) -> None:
    page.set_viewport_size(PHONE)
    page.goto(page_path(patient))
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Robin")
    expect(page.get_by_text("Your current stage: Watchful waiting")).to_be_visible()
    expect(page.get_by_role("heading", name="Your upcoming visits")).to_be_visible()
    expect(page.get_by_text("Clinic B, room 12")).to_be_visible()
    # Nothing wider than the phone: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # The QR code is loaded and fits the screen.
    qr = page.get_by_role("img", name="QR code of your calendar link")
    qr.scroll_into_view_if_needed()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")
    box = qr.bounding_box()
    assert box is not None and box["width"] >= 150 and box["x"] + box["width"] <= PHONE["width"]
    # The subscribe button opens the calendar app with the webcal link.
    subscribe = page.get_by_role("link", name="Subscribe in my calendar app")
    expect(subscribe).to_have_attribute("href", feed_url(patient).replace("https", "webcal", 1))
    # "What to expect" folds open with the keyboard.
    summary = page.locator("summary").first
    summary.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("A check-up with your care team.").first).to_be_visible()
    screenshot(page, "patient-page-phone")
    assert_accessible(page)


def test_the_qr_code_chromium_draws_scans_to_the_feed_url(page: Page, patient: Patient) -> None:
    page.set_viewport_size(PHONE)
    page.goto(page_path(patient))
    qr = page.get_by_role("img", name="QR code of your calendar link")
    qr.scroll_into_view_if_needed()
    image = Image.open(BytesIO(qr.screenshot())).convert("L")
    assert [r.text for r in zxingcpp.read_barcodes(image)] == [feed_url(patient)]


def test_only_this_site_and_no_csp_violations(
    browser: Browser, live_server: str, patient: Patient
) -> None:
    """Without the fixture's CSP bypass: the page as a patient's browser enforces it."""
    context = browser.new_context(base_url=live_server, viewport=PHONE)
    page = context.new_page()
    requests: list[str] = []
    console: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: console.append(message.text))
    response = page.goto(page_path(patient))
    assert response is not None and response.status == 200
    assert "noindex" in response.headers["x-robots-tag"]
    page.wait_for_load_state("networkidle")
    context.close()
    assert len(requests) >= 4  # the page, its stylesheets and scripts, the QR image
    assert all(url.startswith(live_server + "/") for url in requests), requests
    assert not [line for line in console if "Content Security Policy" in line], console


def test_a_rotated_link_shows_not_found(page: Page, patient: Patient) -> None:
    old = page_path(patient)
    feed_tokens.rotate_patient_token(patient)
    db.session.commit()
    response = page.goto(old)
    assert response is not None and response.status == 404
    assert "Robin" not in page.content()
