"""A coordinator in a real browser: move a patient's care stage, log a call with a "call
again on" date (the item leaves Today's list), hand out the calendar link, deal with a failed
reminder, create their own calendar feed; an admin tunes the clinic's reminders.

Each changed screen is checked with axe-core and saved under test-output/screenshots/.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from surveillance import clock
from surveillance.extensions import db
from surveillance.models import OutboxMessage, OutboxStatus, Patient
from surveillance.planning import add_months
from surveillance.services import feed_tokens
from tests import factories
from tests.browser.conftest import assert_accessible, screenshot
from tests.browser.test_coordinator_flows import sign_in

pytestmark = pytest.mark.browser


def _failed_reminder(patient: Patient) -> OutboxMessage:
    now = clock.utcnow()
    event = patient.active_plan.events[0]
    message = OutboxMessage(
        dedupe_key=f"browser:{uuid.uuid4().hex}",
        rule="book-window",
        audience="patient",
        clinic_id=patient.clinic_id,
        event_id=event.id,
        patient_id=patient.id,
        recipient=patient.email or "",
        due_at=now - timedelta(hours=3),
        expires_at=now + timedelta(days=5),
        status=OutboxStatus.FAILED,
        attempts=10,
        next_attempt_at=now,
        message_id=f"<browser-{uuid.uuid4().hex}@watchful.test>",
        last_error="The mail server refused the recipient (550).",
        failed_at=now - timedelta(hours=1),
    )
    db.session.add(message)
    return message


def test_stage_contact_attempt_calendar_link_and_failed_reminder(page: Page, coordinator) -> None:  # type: ignore[no-untyped-def]
    clinic = coordinator.clinics[0]
    today = clock.today_in(clinic.timezone)
    patient = factories.enrol(
        clinic,
        mrn="BRW-0101",
        given_name="Rowan",
        family_name="Stageworth",
        enrolled_on=add_months(today, -7).isoformat(),
        interval_months=3,
    )
    overdue = [e for e in patient.active_plan.events if e.kind == "visit" and e.due_on < today]
    first_id, second_id = overdue[0].id, overdue[1].id
    secret = feed_tokens.rotate_patient_token(patient)
    message = _failed_reminder(patient)
    db.session.commit()
    message_id = message.id

    sign_in(page, coordinator.email)
    # Today: the failed reminder has its own row with Retry and Dismiss.
    page.get_by_role("link", name="Failed reminders").click()
    row = page.locator(f"#reminder-{message_id}")
    expect(row).to_contain_text("Stageworth, Rowan")
    expect(row).to_contain_text("Time to book")
    expect(row).to_contain_text("The mail server refused the recipient (550).")
    screenshot(page, "20-today-failed-reminders")
    assert_accessible(page)
    row.get_by_role("button", name="Dismiss").click()
    expect(page.get_by_text("Dismissed the failed “Time to book” email")).to_be_visible()
    expect(page.locator(f"#reminder-{message_id}")).to_have_count(0)

    # Both overdue visits are on the list; open the patient from it.
    page.get_by_role("link", name="Overdue").click()
    table = page.locator("#worklist-table")
    expect(table.locator(f'a[href$="#event-{first_id}"]')).to_have_count(1)
    table.locator(f'a[href$="#event-{first_id}"]').click()
    expect(page.get_by_role("heading", name="Rowan Stageworth")).to_be_visible()

    # Care stage: its guide, and a move with a reason.
    stage = page.locator("#care-stage")
    expect(stage.locator("#current-stage")).to_have_text("Watchful waiting")
    expect(stage.get_by_role("link", name="Watchful waiting")).to_have_attribute(
        "href", "/learn/watchful-waiting"
    )
    page.get_by_label("Move to").select_option("biopsy_review")
    page.get_by_role("button", name="Change stage").click()
    expect(page.locator("#reason-error")).to_have_text("Say why the stage changes.")
    expect(page.get_by_label("Move to")).to_have_value("biopsy_review")  # kept
    page.get_by_label("Reason", exact=True).fill("Biopsy planned early after the last scan.")
    page.get_by_role("button", name="Change stage").click()
    expect(page.get_by_text("Moved from Watchful waiting to Biopsy review.")).to_be_visible()
    expect(stage.locator("#current-stage")).to_have_text("Biopsy review")
    expect(page.locator("#stage-history")).to_contain_text(
        "Biopsy planned early after the last scan."
    )

    # Log a call about the first overdue visit, with a date to call again.
    page.locator(f"#event-{first_id}").get_by_role("link", name="Log call").click()
    form = page.locator("#contact-form")
    expect(form.get_by_label("About")).to_have_value(str(first_id))
    form.get_by_label("Left a message").check()
    form.get_by_label("Note (optional)").fill("Asked them to call back to book.")
    call_again = today + timedelta(days=7)
    form.get_by_label("Call again on (optional)").fill(call_again.isoformat())
    form.get_by_role("button", name="Log contact attempt").click()
    expect(page.get_by_text("It stays off the worklists until")).to_be_visible()
    expect(page.locator("#contact-table")).to_contain_text("Asked them to call back to book.")

    # The calendar link: the addresses a coordinator hands out.
    expect(page.locator("#feed-url")).to_have_value(f"https://watchful.test/calendar/{secret}.ics")
    expect(page.locator("#webcal-url")).to_have_value(
        f"webcal://watchful.test/calendar/{secret}.ics"
    )
    expect(page.locator("#page-url")).to_have_value(f"https://watchful.test/p/{secret}")
    screenshot(page, "21-patient-stage-contacts-calendar")
    assert_accessible(page)

    # Today: the snoozed visit has left the list; the other overdue visit is still there.
    page.get_by_role("link", name="Today", exact=True).click()
    page.get_by_role("link", name="Overdue").click()
    expect(table.locator(f'a[href$="#event-{second_id}"]')).to_have_count(1)
    expect(table.locator(f'a[href$="#event-{first_id}"]')).to_have_count(0)

    # The coordinator's own clinic feed.
    page.get_by_role("link", name="My calendar feed").click()
    page.get_by_role("button", name="Create my calendar feed address").click()
    expect(page.get_by_text("Your calendar feed address was created.")).to_be_visible()
    expect(page.locator("#clinic-feed-url")).to_have_value(
        re.compile(r"^https://watchful\.test/calendar/clinic/[\w-]+\.ics$")
    )
    screenshot(page, "22-my-calendar-feed")
    assert_accessible(page)


def test_admin_tunes_reminder_settings(page: Page, clinic) -> None:  # type: ignore[no-untyped-def]
    admin = factories.user(clinics=[clinic], role="admin")
    sign_in(page, admin.email)
    page.goto(f"/coordinator/settings/clinics/{clinic.id}")
    form = page.locator("#reminder-form")
    expect(form.get_by_label("Before a booked visit: days ahead")).to_have_value("7,1")
    form.get_by_label("Hour reminders go out (clinic time)").fill("24")
    form.get_by_label("Before a booked visit: days ahead").fill("10, 2")
    form.get_by_role("button", name="Save reminder settings").click()
    expect(page.locator("#send_hour-error")).to_have_text("Must be a whole number from 0 to 23.")
    expect(form.get_by_label("Before a booked visit: days ahead")).to_have_value("10, 2")
    screenshot(page, "23-clinic-reminders-error")
    assert_accessible(page)
    form.get_by_label("Hour reminders go out (clinic time)").fill("8")
    form.get_by_role("button", name="Save reminder settings").click()
    expect(page.get_by_text("booked-visit reminders 10,2 days ahead")).to_be_visible()
    expect(form.get_by_label("Before a booked visit: days ahead")).to_have_value("10,2")
    screenshot(page, "24-clinic-reminders-saved")
    assert_accessible(page)
