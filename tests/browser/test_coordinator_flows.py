"""A coordinator's day in a real browser: sign in, enrol, timeline, book, complete, import.

Each main screen is saved as a screenshot under test-output/screenshots/ and checked with
axe-core for accessibility violations.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from surveillance import clock
from surveillance.extensions import db
from surveillance.models import EventStatus, Patient, PlanStatus
from surveillance.planning import add_months
from tests import factories
from tests.browser.conftest import assert_accessible, screenshot
from tests.screens import PASSWORD

pytestmark = pytest.mark.browser


def sign_in(page: Page, email: str) -> None:
    page.goto("/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Today", exact=True)).to_be_visible()


def next_working_day(clinic, after: date) -> date:  # type: ignore[no-untyped-def]
    calendar = clinic.calendar()
    day = after + timedelta(days=1)
    while not calendar.is_working_day(day):
        day += timedelta(days=1)
    return day


def test_sign_in_shows_today(page: Page, coordinator) -> None:  # type: ignore[no-untyped-def]
    page.goto("/")
    expect(page).to_have_url(page.url.split("/sign-in")[0] + "/sign-in")
    screenshot(page, "01-sign-in")
    assert_accessible(page)
    page.get_by_label("Email").fill(coordinator.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Email or password is incorrect.")).to_be_visible()
    expect(page.get_by_label("Email")).to_have_value(coordinator.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Today", exact=True)).to_be_visible()


def test_enrol_with_an_error_then_fixed_and_see_the_timeline(page: Page, coordinator) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, coordinator.email)
    page.get_by_role("link", name="Enrol", exact=True).click()
    expect(page.get_by_role("heading", name="Enrol a patient")).to_be_visible()
    justification = page.get_by_label("Clinical justification")
    expect(justification).to_be_hidden()

    page.get_by_label("MRN").fill("BRW-0001")
    page.get_by_label("Given name").fill("Morgan")
    page.get_by_label("Family name").fill("Browserton")
    page.get_by_label("Birth date").fill("1959-08-31")
    page.get_by_label("Email").fill("morgan@example.org")
    page.get_by_label("Phone").fill("+1 303 555 0177")
    page.get_by_label("Primary site").select_option("pancreas")
    page.get_by_label("Differentiation").select_option("well")
    page.get_by_label("Grade").select_option("G1")
    expect(page.locator("#interval-advice")).to_contain_text("6 months")
    # A G3 profile: the advice changes and the justification field appears.
    page.get_by_label("Grade").select_option("G3")
    expect(page.locator("#interval-advice")).to_contain_text("justification is required")
    expect(justification).to_be_visible()
    assert_accessible(page)

    page.get_by_role("button", name="Enrol patient").click()
    expect(page.locator("#justification-error")).to_have_text(
        "Poorly differentiated or G3 tumours need a written clinical justification for "
        "watchful waiting."
    )
    expect(page.get_by_label("MRN")).to_have_value("BRW-0001")  # nothing typed is lost
    screenshot(page, "03-enrol-with-error")
    assert_accessible(page)
    assert db.session.query(Patient).count() == 0

    justification.fill("Frail; surveillance agreed at the tumour board.")
    page.get_by_role("button", name="Preview plan").click()
    expect(page.get_by_role("heading", name="Plan preview (not saved yet)")).to_be_visible()
    screenshot(page, "04-enrol-preview")
    page.get_by_role("button", name="Enrol patient").click()

    expect(page.get_by_role("heading", name="Morgan Browserton")).to_be_visible()
    expect(page.get_by_text("Enrolled Morgan Browserton (MRN BRW-0001)")).to_be_visible()
    timeline = page.locator("#timeline svg.timeline-svg")
    expect(timeline).to_be_visible()
    db.session.rollback()
    patient = db.session.query(Patient).one()
    expect(page.locator("#timeline g.tl-event")).to_have_count(len(patient.active_plan.events))
    expect(page.locator("#timeline g.tl-biopsy")).to_have_count(1)
    expect(page.locator("#timeline svg.timeline-svg .tl-today")).to_have_count(1)
    screenshot(page, "05-patient-new")
    assert_accessible(page)


def test_book_find_on_that_days_list_complete_stable_then_progression(
    page: Page, coordinator
) -> None:  # type: ignore[no-untyped-def]
    clinic = coordinator.clinics[0]
    today = clock.today_in(clinic.timezone)
    # Enrolled seven months ago on a 3-month plan: two visits are overdue, more are coming.
    patient = factories.enrol(
        clinic,
        mrn="BRW-0002",
        given_name="Quinn",
        family_name="Clicksworth",
        enrolled_on=add_months(today, -7).isoformat(),
        interval_months=3,
    )
    events = patient.active_plan.events
    upcoming = next(e for e in events if e.kind == "visit" and e.due_on >= today)
    overdue = [e for e in events if e.kind == "visit" and e.due_on < today]
    upcoming_id, first_overdue_id, second_overdue_id = upcoming.id, overdue[0].id, overdue[1].id
    booking_day = next_working_day(clinic, today)

    sign_in(page, coordinator.email)
    # Today lists the overdue visits; one click opens the patient.
    page.get_by_role("link", name="Overdue").click()
    expect(page.locator("#worklist-table")).to_contain_text("Clicksworth, Quinn")
    screenshot(page, "02-today")
    assert_accessible(page)
    page.locator("#worklist-table").get_by_role("link", name="Clicksworth, Quinn").first.click()
    expect(page.get_by_role("heading", name="Quinn Clicksworth")).to_be_visible()

    # Book the next visit for the next working day.
    page.locator(f"#event-{upcoming_id}").get_by_role("link", name="Book").click()
    page.get_by_label("Date").fill(booking_day.isoformat())
    page.get_by_label("Start time").fill("09:30")
    page.get_by_label("Duration (minutes)").fill("45")
    page.get_by_label("Location").fill("Suite 200, room 4")
    screenshot(page, "06-book")
    assert_accessible(page)
    page.get_by_role("button", name="Save booking").click()
    expect(page.get_by_text("Booked visit")).to_contain_text("09:30 to 10:15 at Suite 200, room 4")
    expect(page.locator(f"#event-{upcoming_id}")).to_contain_text("Booked")

    # ...and find them again on that day's list.
    page.get_by_role("link", name="Today").click()
    page.get_by_label("Day", exact=True).fill(booking_day.isoformat())
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#booked-table")).to_contain_text("Clicksworth, Quinn")
    expect(page.locator("#booked-table")).to_contain_text("09:30")
    page.locator("#booked-table").get_by_role("link", name="Clicksworth, Quinn").click()

    # Complete the first overdue visit as stable.
    page.locator(f"#event-{first_overdue_id}").get_by_role("link", name="Complete").click()
    page.get_by_label("Stable").check()
    screenshot(page, "07-complete")
    assert_accessible(page)
    page.get_by_role("button", name="Record completion").click()
    expect(page.get_by_text("Recorded visit 1 as completed")).to_contain_text("(stable)")
    expect(page.locator("#plan-status")).to_have_text("Under surveillance")

    # The second one shows progression: surveillance ends, upcoming events are cancelled.
    page.locator(f"#event-{second_overdue_id}").get_by_role("link", name="Complete").click()
    page.get_by_label("Progression (ends surveillance)").check()
    page.get_by_role("button", name="Record completion").click()
    expect(page.get_by_text("Progression ends surveillance")).to_be_visible()
    expect(page.locator("#plan-status")).to_have_text("Surveillance ended")
    expect(page.locator(f"#event-{upcoming_id}")).to_contain_text("Cancelled")
    expect(page.locator("#timeline g.tl-cancelled").first).to_be_visible()
    screenshot(page, "08-patient-after-progression")
    assert_accessible(page)

    db.session.rollback()
    plan = db.session.get(Patient, patient.id).latest_plan
    assert plan.status == PlanStatus.ENDED
    assert {e.status for e in plan.events} <= {EventStatus.COMPLETED, EventStatus.CANCELLED}


def test_bulk_import_with_one_bad_row(page: Page, coordinator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv_file = tmp_path / "patients.csv"
    csv_file.write_text(
        "mrn,given_name,family_name,birth_date,enrolled_on,primary_site,differentiation,grade,ki67\n"
        "IMP-1,Ari,Importer,1960-01-02,2026-01-05,pancreas,well,G1,1.0\n"
        "IMP-2,Bo,Importer,1970-13-40,2026-01-05,lung,well,G2,\n"
        "IMP-3,Cy,Importer,1955-05-05,2026-01-05,rectum,well,G2,4\n"
    )
    sign_in(page, coordinator.email)
    page.get_by_role("link", name="Bulk enrolment").click()
    page.get_by_label("CSV file").set_input_files(str(csv_file))
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-summary")).to_have_text("2 enrolled, 1 rejected.")
    rejected = page.locator("#import-rows tr.row-rejected")
    expect(rejected).to_have_count(1)
    expect(rejected).to_contain_text("IMP-2")
    expect(rejected).to_contain_text("birth_date: Enter a real date as YYYY-MM-DD.")
    screenshot(page, "09-bulk-import")
    assert_accessible(page)
    db.session.rollback()
    assert sorted(p.mrn for p in db.session.query(Patient)) == ["IMP-1", "IMP-3"]

    page.get_by_role("link", name="Patients").click()
    page.get_by_label("Name or MRN").fill("importer")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#patients-table tbody tr")).to_have_count(2)
    screenshot(page, "10-patients")
    assert_accessible(page)


def test_clinic_settings_for_an_admin(page: Page, clinic) -> None:  # type: ignore[no-untyped-def]
    admin = factories.user(clinics=[clinic], role="admin")
    sign_in(page, admin.email)
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("link", name=clinic.name).click()
    expect(page.get_by_role("heading", name=clinic.name, level=1)).to_be_visible()
    page.get_by_label("Closed on", exact=True).fill("2026-12-24")
    page.get_by_label("Reason").fill("Winter break")
    page.get_by_role("button", name="Add closure").click()
    expect(page.get_by_text("Added a closure on Thu 24 Dec 2026.")).to_be_visible()
    screenshot(page, "11-clinic-settings")
    assert_accessible(page)


def test_patient_page_fits_a_tablet(page: Page, coordinator) -> None:  # type: ignore[no-untyped-def]
    patient = factories.enrol(coordinator.clinics[0], mrn="TAB-1")
    page.set_viewport_size({"width": 820, "height": 1180})
    sign_in(page, coordinator.email)
    page.goto(f"/coordinator/patients/{patient.id}")
    expect(page.locator("#timeline svg.timeline-svg")).to_be_visible()
    # Nothing sticks out sideways except inside the scrollable table and timeline boxes.
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    screenshot(page, "12-patient-tablet")
