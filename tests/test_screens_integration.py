"""Pieces built separately, wired into the coordinator screens (HTTP, Flask test client):
the failed-reminders worklist, care stages, contact attempts, calendar links, the clinic's
reminder settings and the coordinator's own calendar feed."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
import time_machine
from sqlalchemy import func, select

from surveillance.extensions import db
from surveillance.models import (
    ContactAttempt,
    OutboxMessage,
    OutboxStatus,
    PlanStatus,
    ReminderSettings,
    StageChange,
)
from surveillance.reminders import settings as reminder_settings
from surveillance.services import feed_tokens
from tests import factories
from tests.screens import field_error, input_value, sign_in

NOW = datetime(2026, 1, 5, 17, tzinfo=UTC)  # Monday 5 January 2026, 10:00 in Denver


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def signed_in(client, coordinator):  # type: ignore[no-untyped-def]
    sign_in(client, coordinator.email)
    return client


@pytest.fixture
def patient(clinic):  # type: ignore[no-untyped-def]
    """Enrolled June 2025 every 3 months: the September and December visits are overdue."""
    return factories.enrol(
        clinic, mrn="INT-1", given_name="Quinn", family_name="Wirefield",
        enrolled_on="2025-06-02", interval_months=3,
    )  # fmt: skip


def overdue_visit(patient):  # type: ignore[no-untyped-def]
    return next(e for e in patient.active_plan.events if e.kind == "visit")


def failed_message(clinic, patient=None, **fields) -> OutboxMessage:  # type: ignore[no-untyped-def]
    values = {
        "dedupe_key": f"test:{uuid.uuid4().hex}",
        "rule": "book-window",
        "audience": "patient",
        "clinic_id": clinic.id,
        "event_id": overdue_visit(patient).id if patient else None,
        "patient_id": patient.id if patient else None,
        "recipient": patient.email if patient else "coordinator@example.org",
        "due_at": NOW - timedelta(hours=3),
        "expires_at": NOW + timedelta(days=10),
        "status": OutboxStatus.FAILED,
        "attempts": 10,
        "next_attempt_at": NOW,
        "message_id": f"<test-{uuid.uuid4().hex}@watchful.test>",
        "last_error": "The mail server refused the recipient (550).",
        "failed_at": NOW - timedelta(hours=1),
    }
    values.update(fields)
    message = OutboxMessage(**values)
    db.session.add(message)
    db.session.commit()
    return message


def flashes(html: str) -> list[str]:
    return re.findall(r'<div class="alert alert-\w+" role="status">([^<]*)</div>', html)


# --- Today: failed reminders ------------------------------------------------------------------


def test_failed_reminders_have_their_own_rows(signed_in, clinic, patient) -> None:  # type: ignore[no-untyped-def]
    mine = failed_message(clinic, patient)
    digest = failed_message(clinic, rule="digest", audience="coordinator")
    response = signed_in.get("/coordinator/?list=failed-reminders")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    row = re.search(rf'<tr id="reminder-{mine.id}">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = row.group(1)
    assert f"/coordinator/patients/{patient.id}#event-{overdue_visit(patient).id}" in cells
    assert ">Wirefield, Quinn</a>" in cells and "MRN INT-1" in cells
    assert "Time to book" in cells and "Visit 1" in cells
    assert ">Patient<" in cells
    assert "Mon 5 Jan 2026, 09:00" in cells  # 16:00 UTC in Denver
    assert "The mail server refused the recipient (550)." in cells
    assert f"/coordinator/reminders/{mine.id}/retry" in cells
    assert f"/coordinator/reminders/{mine.id}/dismiss" in cells
    # A digest has no patient: it says so instead of linking nowhere.
    digest_row = re.search(rf'<tr id="reminder-{digest.id}">(.*?)</tr>', html, re.S)
    assert digest_row is not None
    assert "No patient (daily digest)" in digest_row.group(1)
    assert "Daily digest" in digest_row.group(1) and ">Coordinator<" in digest_row.group(1)
    assert 'data-count="2"' in html  # the card's count


def test_dismiss_and_retry_call_the_outbox_and_say_so(signed_in, clinic, patient) -> None:  # type: ignore[no-untyped-def]
    dismissed = failed_message(clinic, patient)
    retried = failed_message(clinic, patient, rule="booked-visit")
    response = signed_in.post(
        f"/coordinator/reminders/{dismissed.id}/dismiss", follow_redirects=True
    )
    html = response.get_data(as_text=True)
    assert "Dismissed the failed “Time to book” email to Quinn Wirefield." in flashes(html)
    assert f'id="reminder-{dismissed.id}"' not in html
    db.session.refresh(dismissed)
    assert dismissed.dismissed_at == NOW and dismissed.status == OutboxStatus.FAILED

    html = signed_in.post(
        f"/coordinator/reminders/{retried.id}/retry", follow_redirects=True
    ).get_data(as_text=True)
    assert any("is queued again" in m for m in flashes(html))
    db.session.refresh(retried)
    assert retried.status == OutboxStatus.QUEUED and retried.attempts == 0
    assert "Nothing here." in html  # the list is empty now

    # Retrying twice is refused with the outbox's reason, and changes nothing.
    html = signed_in.post(
        f"/coordinator/reminders/{retried.id}/retry", follow_redirects=True
    ).get_data(as_text=True)
    assert "Not retried: Only a failed message can be retried; this one is queued." in html


def test_an_out_of_date_reminder_cannot_be_retried(signed_in, clinic, patient) -> None:  # type: ignore[no-untyped-def]
    expired = failed_message(clinic, patient, expires_at=NOW - timedelta(minutes=1))
    html = signed_in.post(
        f"/coordinator/reminders/{expired.id}/retry", follow_redirects=True
    ).get_data(as_text=True)
    assert "Not retried: This reminder is out of date" in html
    db.session.refresh(expired)
    assert expired.status == OutboxStatus.FAILED


def test_another_clinics_reminder_is_not_found(signed_in) -> None:  # type: ignore[no-untyped-def]
    foreign = failed_message(factories.clinic())
    assert signed_in.post(f"/coordinator/reminders/{foreign.id}/dismiss").status_code == 404
    db.session.refresh(foreign)
    assert foreign.dismissed_at is None
    html = signed_in.get("/coordinator/?list=failed-reminders").get_data(as_text=True)
    assert f'id="reminder-{foreign.id}"' not in html


# --- Patient: care stage ----------------------------------------------------------------------


def test_patient_page_shows_stage_article_history_and_allowed_moves(signed_in, patient) -> None:  # type: ignore[no-untyped-def]
    html = signed_in.get(f"/coordinator/patients/{patient.id}").get_data(as_text=True)
    assert html.count(">Log call<") == len(patient.active_plan.events)
    assert '<strong id="current-stage">Watchful waiting</strong>' in html
    assert 'href="/learn/watchful-waiting" id="stage-article"' in html
    assert "Enrolled in watchful waiting." in html and "Watchful (automatic)" in html
    options = re.findall(r'<option value="([a-z_]+)"', html.split('id="stage-form"')[1])
    assert options[:3] == ["biopsy_review", "treatment_planning", "surveillance_ended"]


def test_stage_change_with_a_reason(signed_in, patient, coordinator) -> None:  # type: ignore[no-untyped-def]
    response = signed_in.post(
        f"/coordinator/patients/{patient.id}/stage",
        data={"stage": "biopsy_review", "reason": "Biopsy discussed at the tumour board."},
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert "Moved from Watchful waiting to Biopsy review." in flashes(html)
    assert '<strong id="current-stage">Biopsy review</strong>' in html
    assert 'href="/learn/biopsy-review"' in html
    history = html.split('id="stage-history"')[1].split("</table>")[0]
    assert "Biopsy discussed at the tumour board." in history
    assert (coordinator.full_name or coordinator.email) in history
    db.session.refresh(patient)
    assert patient.stage == "biopsy_review"
    assert patient.active_plan is not None  # still under surveillance


def test_leaving_surveillance_stages_ends_the_plan_and_says_so(signed_in, patient) -> None:  # type: ignore[no-untyped-def]
    html = signed_in.post(
        f"/coordinator/patients/{patient.id}/stage",
        data={"stage": "treatment_planning", "reason": "Growth on the last scan."},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert any("Surveillance ended" in m for m in flashes(html))
    # Every event is done or cancelled now: no call to log.
    assert "Log call" not in html and 'id="contact-form"' not in html
    db.session.refresh(patient)
    assert patient.stage == "treatment_planning"
    assert patient.latest_plan.status == PlanStatus.ENDED


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"stage": "biopsy_review", "reason": "  "}, "reason", "Say why the stage changes."),
        (
            {"stage": "systemic_treatment", "reason": "Straight to treatment."},
            "stage",
            "Cannot move from Watchful waiting to Systemic treatment.",
        ),
        ({"stage": "nonsense", "reason": "Typo."}, "stage", "Unknown stage 'nonsense'."),
        ({"stage": "", "reason": "Forgot to choose."}, "stage", "Choose the stage to move to."),
    ],
)
def test_refused_stage_change_is_422_next_to_the_field_and_keeps_the_text(
    signed_in, patient, data, field, message
) -> None:  # type: ignore[no-untyped-def]
    before = db.session.scalar(select(func.count(StageChange.id)))
    response = signed_in.post(f"/coordinator/patients/{patient.id}/stage", data=data)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert unescape(field_error(html, field)).startswith(message)
    if data["reason"].strip():
        assert data["reason"] in html  # what was typed is still there
    db.session.refresh(patient)
    assert patient.stage == "watchful_waiting"
    assert db.session.scalar(select(func.count(StageChange.id))) == before


# --- Patient: contact attempts ----------------------------------------------------------------


def test_contact_attempt_with_call_again_date_snoozes_the_item(signed_in, patient) -> None:  # type: ignore[no-untyped-def]
    visit = overdue_visit(patient)
    today = signed_in.get("/coordinator/?list=overdue").get_data(as_text=True)
    assert f"#event-{visit.id}" in today
    page = signed_in.get(f"/coordinator/patients/{patient.id}?log_for={visit.id}")
    assert f'<option selected value="{visit.id}">' in page.get_data(as_text=True)

    response = signed_in.post(
        f"/coordinator/patients/{patient.id}/contact-attempts",
        data={
            "event": str(visit.id),
            "result": "left_message",
            "note": "Asked them to call back.",
            "call_again_on": "2026-01-12",
        },
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert (
        "Logged a contact attempt about visit 1: Left a message. "
        "It stays off the worklists until Mon 12 Jan 2026."
    ) in flashes(html)
    table = html.split('id="contact-table"')[1].split("</table>")[0]
    assert "Left a message" in table and "Asked them to call back." in table
    assert "Mon 12 Jan 2026" in table
    today = signed_in.get("/coordinator/?list=overdue").get_data(as_text=True)
    assert f"#event-{visit.id}" not in today
    with time_machine.travel(NOW + timedelta(days=7), tick=False):
        today = signed_in.get("/coordinator/?list=overdue").get_data(as_text=True)
        assert f"#event-{visit.id}" in today  # back on the list on the day


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"result": "", "call_again_on": ""}, "result", "Choose how the call went."),
        ({"result": "no_answer", "call_again_on": "2026-01-05"}, "call_again_on",
         "Pick a day after today."),
        ({"result": "no_answer", "call_again_on": "2027-06-01"}, "call_again_on",
         "Pick a day within a year."),
    ],
)  # fmt: skip
def test_bad_contact_attempt_is_422_and_keeps_what_was_typed(
    signed_in, patient, data, field, message
) -> None:  # type: ignore[no-untyped-def]
    visit = overdue_visit(patient)
    form = {"event": str(visit.id), "note": "Typed note stays.", **data}
    response = signed_in.post(f"/coordinator/patients/{patient.id}/contact-attempts", data=form)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert field_error(html, field) == message
    assert "Typed note stays." in html
    if data["call_again_on"]:
        assert input_value(html, "call_again_on") == data["call_again_on"]
    assert db.session.scalar(select(func.count(ContactAttempt.id))) == 0


def test_contact_attempt_about_another_patients_event_is_refused(
    signed_in, clinic, patient
) -> None:  # type: ignore[no-untyped-def]
    other = factories.enrol(clinic, mrn="INT-2", enrolled_on="2025-06-02")
    response = signed_in.post(
        f"/coordinator/patients/{patient.id}/contact-attempts",
        data={"event": str(overdue_visit(other).id), "result": "called"},
    )
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "event")
    assert db.session.scalar(select(func.count(ContactAttempt.id))) == 0


# --- Patient: calendar link -------------------------------------------------------------------


def test_calendar_link_shows_the_addresses_to_hand_out(signed_in, patient) -> None:  # type: ignore[no-untyped-def]
    secret = feed_tokens.rotate_patient_token(patient)
    db.session.commit()
    html = signed_in.get(f"/coordinator/patients/{patient.id}").get_data(as_text=True)
    assert input_value(html, "feed-url") == f"https://watchful.test/calendar/{secret}.ics"
    assert input_value(html, "webcal-url") == f"webcal://watchful.test/calendar/{secret}.ics"
    assert input_value(html, "page-url") == f"https://watchful.test/p/{secret}"
    assert f'href="https://watchful.test/p/{secret}"' in html  # open it to print

    signed_in.post(f"/coordinator/patients/{patient.id}/calendar-link/revoke")
    html = signed_in.get(f"/coordinator/patients/{patient.id}").get_data(as_text=True)
    assert secret not in html and 'id="feed-url"' not in html


# --- My calendar feed -------------------------------------------------------------------------


def test_my_calendar_feed_page_creates_and_rotates_the_address(signed_in, coordinator) -> None:  # type: ignore[no-untyped-def]
    html = signed_in.get("/coordinator/calendar-feed").get_data(as_text=True)
    assert 'href="/coordinator/calendar-feed"' in html  # in the navbar
    assert 'id="no-clinic-feed"' in html
    html = signed_in.post("/coordinator/calendar-feed", follow_redirects=True).get_data(
        as_text=True
    )
    assert "Your calendar feed address was created." in flashes(html)
    db.session.refresh(coordinator)
    first = feed_tokens.user_secret(coordinator)
    assert input_value(html, "clinic-feed-url") == (
        f"https://watchful.test/calendar/clinic/{first}.ics"
    )
    assert input_value(html, "clinic-webcal-url") == (
        f"webcal://watchful.test/calendar/clinic/{first}.ics"
    )
    feed = signed_in.get(f"/calendar/clinic/{first}.ics")
    assert feed.status_code == 200 and feed.mimetype == "text/calendar"

    html = signed_in.post("/coordinator/calendar-feed", follow_redirects=True).get_data(
        as_text=True
    )
    assert any("the old one no longer works" in m for m in flashes(html))
    assert signed_in.get(f"/calendar/clinic/{first}.ics").status_code == 404


# --- Clinic settings: reminders ---------------------------------------------------------------


@pytest.fixture
def admin(client, clinic):  # type: ignore[no-untyped-def]
    user = factories.user(clinics=[clinic], role="admin")
    sign_in(client, user.email)
    return user


def reminder_form(**overrides: str) -> dict[str, str]:
    data = {
        "enabled": "y",
        "book_window_lead_days": "3",
        "booked_reminder_days": "1, 7, 14",
        "biopsy_heads_up_days": "21",
        "send_hour": "8",
        "digest_hour": "6",
    }  # digest_enabled left unticked
    data.update(overrides)
    return data


def test_reminder_settings_show_defaults_and_save(admin, client, clinic) -> None:  # type: ignore[no-untyped-def]
    url = f"/coordinator/settings/clinics/{clinic.id}"
    html = client.get(url).get_data(as_text=True)
    assert input_value(html, "booked_reminder_days") == "7,1"
    assert input_value(html, "biopsy_heads_up_days") == "28"
    response = client.post(f"{url}/reminders", data=reminder_form(), follow_redirects=True)
    html = response.get_data(as_text=True)
    assert (
        f"Saved the reminder settings of {clinic.name}: booked-visit reminders 14,7,1 days "
        "ahead, biopsy heads-up 21 days ahead, sent at 8:00, no digest."
    ) in flashes(html)
    policy = reminder_settings.policy_for(clinic.id)
    assert policy.booked_reminder_days == (14, 7, 1)
    assert (policy.book_window_lead_days, policy.send_hour) == (3, 8)
    assert policy.digest_enabled is False and policy.enabled is True
    assert input_value(html, "booked_reminder_days") == "14,7,1"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"send_hour": "25"}, "send_hour", "Must be a whole number from 0 to 23."),
        ({"booked_reminder_days": "7, soon"}, "booked_reminder_days",
         "Give whole numbers of days, e.g. 7,1."),
        ({"biopsy_heads_up_days": ""}, "biopsy_heads_up_days", "Enter a number of days."),
    ],
)  # fmt: skip
def test_bad_reminder_settings_are_422_next_to_the_field(
    admin, client, clinic, overrides, field, message
) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        f"/coordinator/settings/clinics/{clinic.id}/reminders", data=reminder_form(**overrides)
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert field_error(html, field) == message
    assert input_value(html, field) == overrides[field]  # what was typed is kept
    assert db.session.get(ReminderSettings, clinic.id) is None  # nothing saved


def test_coordinators_cannot_change_reminder_settings(signed_in, clinic) -> None:  # type: ignore[no-untyped-def]
    response = signed_in.post(
        f"/coordinator/settings/clinics/{clinic.id}/reminders", data=reminder_form()
    )
    assert response.status_code == 403
    assert db.session.get(ReminderSettings, clinic.id) is None
