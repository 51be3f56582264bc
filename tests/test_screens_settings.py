"""Clinic settings and users: admins only; calendar changes keep plans on working days."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from surveillance.extensions import db
from surveillance.models import EventStatus, User
from surveillance.services import plans
from tests import factories
from tests.screens import field_error, sign_in


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        yield


@pytest.fixture
def admin(client, clinic):  # type: ignore[no-untyped-def]
    user = factories.user(clinics=[clinic], role="admin")
    sign_in(client, user.email)
    return user


def clinic_form(clinic, **overrides):  # type: ignore[no-untyped-def]
    data = {
        "name": clinic.name,
        "timezone": clinic.timezone,
        "address": clinic.address,
        "calendar_name": clinic.calendar_name,
        "calendar_address": clinic.calendar_address,
        "phone": "+1 303 555 0100",
        "working_weekdays": ["0", "1", "2", "3", "4"],
        "observe_us_holidays": "y",
    }
    data.update(overrides)
    return data


def test_coordinators_cannot_open_settings(client, coordinator, clinic) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, coordinator.email)
    assert client.get("/coordinator/settings").status_code == 403
    assert client.get(f"/coordinator/settings/clinics/{clinic.id}").status_code == 403
    response = client.post(
        f"/coordinator/settings/clinics/{clinic.id}/closures", data={"closed_on": "2026-03-02"}
    )
    assert response.status_code == 403
    assert "Settings" not in client.get("/coordinator/").get_data(as_text=True).split("</nav>")[0]


def test_admin_sees_clinics_and_users(client, admin, clinic) -> None:  # type: ignore[no-untyped-def]
    html = client.get("/coordinator/settings").get_data(as_text=True)
    assert clinic.name in html and admin.email in html
    assert "Mon, Tue, Wed, Thu, Fri" in html


def test_clinic_form_errors_keep_the_input(client, admin, clinic) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        f"/coordinator/settings/clinics/{clinic.id}",
        data=clinic_form(clinic, working_weekdays=[], phone="call me", timezone="Mars/Olympus"),
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert field_error(html, "timezone") == "Not a valid choice."
    response = client.post(
        f"/coordinator/settings/clinics/{clinic.id}",
        data=clinic_form(clinic, working_weekdays=[], phone="call me", address="New address"),
    )
    html = response.get_data(as_text=True)
    assert field_error(html, "working_weekdays") == "Choose at least one working day."
    assert field_error(html, "phone") == "Use digits, spaces and + ( ) - . only."
    assert "New address" in html
    db.session.refresh(clinic)
    assert clinic.working_weekdays == "01234" and clinic.address != "New address"


def test_a_new_closure_moves_planned_events_and_flags_bookings(client, admin, clinic) -> None:  # type: ignore[no-untyped-def]
    planned = factories.enrol(clinic, mrn="CL-1", enrolled_on="2026-01-05")  # visit due 6 Jul
    booked = factories.enrol(clinic, mrn="CL-2", family_name="Bookedperson")
    visit = next(e for e in planned.active_plan.events if e.kind == "visit")
    assert visit.due_on == date(2026, 7, 6)
    to_rebook = next(e for e in booked.active_plan.events if e.kind == "visit")
    plans.book(to_rebook, datetime(2026, 7, 6, 9, 0), 30, None)
    db.session.commit()

    response = client.post(
        f"/coordinator/settings/clinics/{clinic.id}/closures",
        data={"closed_on": "2026-07-06", "reason": "Staff training"},
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert "Added a closure on Mon 6 Jul 2026." in html
    assert "planned events moved onto working days." in html
    assert "rebook them: Bookedperson (MRN CL-2)" in html
    db.session.refresh(visit)
    assert visit.due_on == date(2026, 7, 7) and visit.sequence == 1
    db.session.refresh(to_rebook)
    assert to_rebook.status == EventStatus.BOOKED  # never moved silently

    again = client.post(
        f"/coordinator/settings/clinics/{clinic.id}/closures", data={"closed_on": "2026-07-06"}
    )
    assert again.status_code == 409
    assert field_error(again.get_data(as_text=True), "closed_on") == "Already listed as closed."

    closure = clinic.closures[0]
    response = client.post(
        f"/coordinator/settings/clinics/{clinic.id}/closures/{closure.id}/remove",
        follow_redirects=True,
    )
    assert "Removed the closure on Mon 6 Jul 2026." in response.get_data(as_text=True)
    db.session.refresh(visit)
    assert visit.due_on == date(2026, 7, 6)


def test_working_days_change_replans_and_time_zone_keeps_wall_clock(client, admin, clinic) -> None:  # type: ignore[no-untyped-def]
    patient = factories.enrol(clinic, mrn="TZ-1", enrolled_on="2026-01-05")
    events = patient.active_plan.events
    first, second = [e for e in events if e.kind == "visit"][:2]
    plans.book(first, datetime(2026, 7, 6, 9, 30), 45, "Room 1")
    db.session.commit()
    # Mondays off from now on; the clinic moves to Chicago.
    response = client.post(
        f"/coordinator/settings/clinics/{clinic.id}",
        data=clinic_form(clinic, working_weekdays=["1", "2", "3", "4"], timezone="America/Chicago"),
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert f"Saved the settings of {clinic.name}." in html
    db.session.refresh(second)
    assert second.due_on.weekday() != 0  # was Tuesday 5 Jan 2027 or moved off a Monday
    db.session.refresh(first)
    local = first.starts_at.astimezone(ZoneInfo("America/Chicago"))
    assert (local.hour, local.minute) == (9, 30)
    assert (first.ends_at - first.starts_at).total_seconds() == 45 * 60
    assert first.sequence == 2  # booked, then moved to keep its local time
    assert "rebook them" in html  # the Monday booking now falls on a closed day


def test_admin_creates_and_edits_users(client, admin, clinic) -> None:  # type: ignore[no-untyped-def]
    bad = client.post(
        "/coordinator/settings/users/new",
        data={
            "email": "new@watchful.test",
            "role": "coordinator",
            "password": "short",
            "is_active": "y",
        },
    )
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert field_error(html, "password") == "Use at least 10 characters."
    assert 'value="new@watchful.test"' in html
    assert db.session.query(User).filter_by(email="new@watchful.test").count() == 0
    no_clinic = client.post(
        "/coordinator/settings/users/new",
        data={
            "email": "new@watchful.test",
            "role": "coordinator",
            "password": "long enough pw",
            "is_active": "y",
        },
    )
    assert field_error(no_clinic.get_data(as_text=True), "clinics") == (
        "A coordinator needs at least one clinic."
    )
    assert db.session.query(User).filter_by(email="new@watchful.test").count() == 0
    created = client.post(
        "/coordinator/settings/users/new",
        data={
            "email": "new@watchful.test",
            "role": "coordinator",
            "password": "long enough pw",
            "clinics": [str(clinic.id)],
            "is_active": "y",
            "full_name": "New Person",
        },
        follow_redirects=True,
    )
    assert "Created coordinator new@watchful.test." in created.get_data(as_text=True)
    user = db.session.query(User).filter_by(email="new@watchful.test").one()
    assert [c.id for c in user.clinics] == [clinic.id]

    edited = client.post(
        f"/coordinator/settings/users/{user.id}",
        data={"role": "coordinator", "clinics": [str(clinic.id)], "full_name": "Renamed"},
        follow_redirects=True,
    )
    assert "Saved new@watchful.test." in edited.get_data(as_text=True)
    db.session.refresh(user)
    assert user.full_name == "Renamed" and user.is_active is False


def test_admins_cannot_lock_themselves_out(client, admin, clinic) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        f"/coordinator/settings/users/{admin.id}",
        data={"role": "coordinator", "clinics": [str(clinic.id)]},
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert field_error(html, "role") == "You cannot remove your own admin role."
    assert field_error(html, "is_active") == "You cannot deactivate your own account."
    db.session.refresh(admin)
    assert admin.is_admin and admin.is_active
