"""Calendar feeds end to end: the real API changes plans, the feed URLs serve them, and four
independent parsers read what a calendar app would show."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import icalendar
import pytest
import time_machine
import vobject
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event as sa_event
from sqlalchemy import select

from surveillance import ical, privacy
from surveillance.extensions import db
from surveillance.feeds import content, urls, validators, wording
from surveillance.feeds.cache import feed_cache
from surveillance.models import Patient, PlanEvent
from surveillance.secrets_store import token_hash
from surveillance.services import feed_tokens, plans
from tests import calendars, factories

GOLDEN = Path(__file__).parent / "golden" / "patient_feed.ics"
START = "2026-01-05 17:00:00+00:00"


@pytest.fixture(autouse=True)
def _now() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def clinic(app: Flask):  # type: ignore[no-untyped-def]
    """A clinic with a phone number (the patient feed tells people to call it)."""
    return factories.clinic(
        name="Northside Clinic",
        phone="+1 303 555 0100",
        address="1 Test Street, Suite 4; Denver, CO 80202",
    )


# --- Helpers ----------------------------------------------------------------------------------


def enrol(api: factories.ApiClient, **overrides: Any) -> dict[str, Any]:
    response = api.post("/patients", json=factories.enrolment_payload(**overrides))
    assert response.status_code == 201, response.json
    return response.json


def path_of(url: str) -> str:
    return urlsplit(url).path


def personal_details(patient: dict[str, Any]) -> list[str]:
    born = date.fromisoformat(patient["birth_date"])
    return [
        patient["given_name"],
        patient["family_name"],
        patient["mrn"],
        patient["birth_date"],
        born.strftime("%Y%m%d"),
        f"{born:%B} {born.day}, {born.year}",
        patient["email"],
        patient["phone"],
        patient["tumour"]["primary_site"],
        patient["tumour"]["primary_site"].replace("_", " "),
    ]


def assert_private(document: bytes, patient: dict[str, Any]) -> None:
    """The privacy rule for anything a patient's calendar receives."""
    assert calendars.forbidden_words_in(document) == []
    text = calendars.unescape("\n".join(calendars.unfolded(document))).lower()
    for detail in personal_details(patient):
        assert detail.lower() not in text, detail


def get_feed(client: FlaskClient, patient: dict[str, Any], **headers: str) -> Any:
    """Fetch a patient's feed; every 200 is checked for structure and privacy."""
    response = client.get(path_of(patient["feed_url"]), headers=headers)
    if response.status_code == 200:
        calendars.check_structure(response.data)
        assert_private(response.data, patient)
    return response


def events_of(client: FlaskClient, patient: dict[str, Any]) -> dict[str, calendars.Seen]:
    response = get_feed(client, patient)
    assert response.status_code == 200
    return {seen.uid.split("@")[0]: seen for seen in calendars.read_by_all(response.data)}


def api_event(patient: dict[str, Any], kind: str = "visit", index: int = 0) -> dict[str, Any]:
    return [e for e in patient["events"] if e["kind"] == kind][index]


def book(api: factories.ApiClient, event_id: int, starts_at: str, **extra: Any) -> dict[str, Any]:
    payload = {"starts_at": starts_at, "duration_minutes": 45, **extra}
    response = api.post(f"/events/{event_id}/book", json=payload)
    assert response.status_code == 200, response.json
    return response.json


@pytest.fixture
def count_queries(app: Flask) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa_event.listen(db.engine, "before_cursor_execute", record)
    yield statements
    sa_event.remove(db.engine, "before_cursor_execute", record)


# --- The patient feed -------------------------------------------------------------------------


def test_new_patient_feed_lists_every_due_event_as_tentative_all_day(client, api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    response = get_feed(client, patient)
    assert response.status_code == 200
    lines = calendars.unfolded(response.data)
    assert "NAME:Northside Clinic: my visits" in lines
    assert "X-WR-CALNAME:Northside Clinic: my visits" in lines
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT6H" in lines
    assert "X-PUBLISHED-TTL:PT6H" in lines
    seen = events_of(client, patient)
    assert set(seen) == {e["uid"] for e in patient["events"]}
    for api_ev in patient["events"]:
        item = seen[api_ev["uid"]]
        assert item.status == "TENTATIVE"
        assert item.all_day and item.start == api_ev["due_on"]
        assert item.sequence == 0
    parsed = calendars.icaljs_one(response.data)
    first = next(e for e in parsed["events"] if e["start"]["value"] == "2026-07-06")
    assert first["end"]["value"] == "2026-07-07"  # exclusive end: one day
    assert first["transp"] == "TRANSPARENT"
    assert first["summary"] == "Follow-up visit due: please call Northside Clinic to book"
    assert "call Northside Clinic on +1 303 555 0100" in first["description"]
    window = api_event(patient)
    assert (window["window_start"], window["window_end"]) == ("2026-06-14", "2026-07-26")
    assert "book a time between June 14, 2026 and July 26, 2026." in first["description"]
    assert first["url"] == f"https://watchful.test/p/{path_of(patient['feed_url'])[10:-4]}"
    assert first["url"] in first["description"]
    assert first["alarms"] == []


def test_uid_is_the_event_uuid_at_the_configured_domain(app, client, api) -> None:  # type: ignore[no-untyped-def]
    app.config["CALENDAR_UID_DOMAIN"] = "calendar.northside.test"
    patient = enrol(api)
    response = get_feed(client, patient)
    uids = {s.uid for s in calendars.read_by_all(response.data)}
    assert uids == {f"{e['uid']}@calendar.northside.test" for e in patient["events"]}


def test_http_headers(client, api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    for accept in (None, "text/html", "application/json", "*/*", "text/calendar"):
        headers = {"Accept": accept} if accept else {}
        response = get_feed(client, patient, **headers)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
        assert response.headers["Cache-Control"] == "private"
        assert response.headers["X-Robots-Tag"] == "noindex"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        etag = response.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
        assert response.headers["Last-Modified"] == "Mon, 05 Jan 2026 17:00:00 GMT"


def test_head_answers_like_get_without_a_body(client, api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    full = get_feed(client, patient)
    head = client.head(path_of(patient["feed_url"]))
    assert head.status_code == 200
    assert head.data == b""
    for name in ("Content-Type", "ETag", "Last-Modified", "Cache-Control", "Content-Length"):
        assert head.headers[name] == full.headers[name]
    assert int(head.headers["Content-Length"]) == len(full.data)


def test_identical_requests_give_identical_bytes_even_after_a_new_render(  # type: ignore[no-untyped-def]
    app, client, api, _now
) -> None:
    patient = enrol(api)
    first = get_feed(client, patient)
    _now.shift(timedelta(hours=2))  # later the same day, nothing changed
    feed_cache(app).clear()  # another worker, or after a restart
    second = get_feed(client, patient)
    assert second.data == first.data
    assert second.headers["ETag"] == first.headers["ETag"]
    assert second.headers["Last-Modified"] == first.headers["Last-Modified"]


def test_conditional_requests(client, api, _now) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    full = get_feed(client, patient)
    etag, modified = full.headers["ETag"], full.headers["Last-Modified"]

    def status(**headers: str) -> int:
        response = get_feed(client, patient, **headers)
        if response.status_code == 304:
            assert response.data == b""
            assert response.headers["ETag"] == etag
            assert response.headers["Cache-Control"] == "private"
        return response.status_code

    _now.shift(timedelta(minutes=10))  # validators come from clients later on
    assert status(**{"If-None-Match": etag}) == 304
    assert status(**{"If-None-Match": f'"other", {etag}'}) == 304
    assert status(**{"If-None-Match": f"W/{etag}"}) == 304  # weak comparison for GET
    assert status(**{"If-None-Match": "*"}) == 304
    assert status(**{"If-None-Match": '"something-else"'}) == 200
    assert status(**{"If-Modified-Since": modified}) == 304
    later = format_datetime(datetime(2026, 1, 5, 17, 0, 1, tzinfo=UTC), usegmt=True)
    earlier = format_datetime(datetime(2026, 1, 5, 16, 59, 59, tzinfo=UTC), usegmt=True)
    assert status(**{"If-Modified-Since": later}) == 304
    assert status(**{"If-Modified-Since": earlier}) == 200
    # If-None-Match decides when both are sent.
    assert status(**{"If-None-Match": '"something-else"', "If-Modified-Since": later}) == 200
    assert status(**{"If-Modified-Since": "not a date"}) == 200
    # A date in the future is no validator at all.
    future = format_datetime(datetime(2027, 1, 1, tzinfo=UTC), usegmt=True)
    assert status(**{"If-Modified-Since": future}) == 200

    # Something changes a minute later: neither old validator matches any more.
    _now.shift(timedelta(minutes=1))
    book(api, api_event(patient)["id"], "2026-07-06T09:30:00")
    assert get_feed(client, patient, **{"If-None-Match": etag}).status_code == 200
    assert get_feed(client, patient, **{"If-Modified-Since": modified}).status_code == 200
    changed = get_feed(client, patient)
    assert changed.headers["Last-Modified"] == "Mon, 05 Jan 2026 17:11:00 GMT"
    assert changed.headers["ETag"] != etag


def test_unknown_revoked_and_rotated_tokens_are_404(client, api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    for path in (
        "/calendar/" + "A" * 43 + ".ics",
        "/calendar/short.ics",
        "/calendar/not%20a%20token!.ics",
    ):
        response = client.get(path)
        assert response.status_code == 404
        assert response.headers["Cache-Control"] == "private"
        assert response.headers["X-Robots-Tag"] == "noindex"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    old = path_of(patient["feed_url"])
    assert get_feed(client, patient).status_code == 200
    rotated = api.post(f"/patients/{patient['id']}/feed-token").json
    assert client.get(old).status_code == 404
    assert client.get(path_of(rotated["feed_url"])).status_code == 200
    assert api.delete(f"/patients/{patient['id']}/feed-token").status_code == 204
    assert client.get(path_of(rotated["feed_url"])).status_code == 404
    assert client.head(path_of(rotated["feed_url"])).status_code == 404


def test_feed_is_rendered_once_per_change_and_served_with_one_query(  # type: ignore[no-untyped-def]
    app, client, api, count_queries
) -> None:
    # The view, the reference path (the fast path's statements are counted at the driver in
    # test_feed_fast_path.py: it sends no ORM statement).
    app.config["FEED_FAST_PATH"] = False
    patient = enrol(api)
    cache = feed_cache(app)
    cache.clear()
    renders = cache.renders
    first = get_feed(client, patient)
    assert cache.renders == renders + 1
    count_queries.clear()
    again = get_feed(client, patient)
    assert len(count_queries) == 1, count_queries
    assert "feed_token_hash" in count_queries[0]
    assert again.data == first.data
    assert get_feed(client, patient, **{"If-None-Match": first.headers["ETag"]}).status_code == 304
    assert cache.renders == renders + 1
    book(api, api_event(patient)["id"], "2026-07-06T09:30:00")
    assert get_feed(client, patient).data != first.data
    assert cache.renders == renders + 2


def test_cache_is_bounded(app, client, api) -> None:  # type: ignore[no-untyped-def]
    cache = feed_cache(app)
    cache.max_entries = 2
    patients = [enrol(api) for _ in range(4)]
    for patient in patients:
        assert get_feed(client, patient).status_code == 200
    assert len(cache) == 2
    assert cache.size_bytes == sum(len(e.body) for e in cache._entries.values())


def test_a_clinic_change_reaches_the_feed(client, api, clinic, _now) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    before = get_feed(client, patient).data
    _now.shift(timedelta(minutes=5))
    clinic.phone = "+1 303 555 0111"
    db.session.commit()
    after = get_feed(client, patient).data
    assert after != before
    assert b"+1 303 555 0111" in after


# --- Update semantics through the API ---------------------------------------------------------


def test_book_reschedule_complete_cancel_keep_the_uid_and_raise_the_sequence(  # type: ignore[no-untyped-def]
    client, api, _now
) -> None:
    patient = enrol(api)
    visit, biopsy = api_event(patient), api_event(patient, "biopsy")
    uid = visit["uid"]

    book(api, visit["id"], "2026-07-06T09:30:00", location="Room 2, 1 Test Street")
    seen = events_of(client, patient)[uid]
    assert (seen.status, seen.sequence, seen.all_day) == ("CONFIRMED", 1, False)
    assert seen.start == "2026-07-06T15:30:00+00:00"  # 09:30 MDT
    response = get_feed(client, patient)
    parsed = next(e for e in calendars.icaljs_one(response.data)["events"] if uid in e["uid"])
    assert parsed["start"]["tzid"] == "America/Denver"
    assert parsed["start"]["value"] == "2026-07-06T09:30:00"
    assert parsed["end"]["value"] == "2026-07-06T10:15:00"
    assert parsed["location"] == "Room 2, 1 Test Street"
    assert parsed["summary"] == "Follow-up visit at Northside Clinic"
    assert parsed["transp"] == "OPAQUE"
    assert parsed["alarms"] == [
        {
            "action": "DISPLAY",
            "trigger": "-P1D",
            "description": "Tomorrow: Follow-up visit at Northside Clinic",
        }
    ]

    book_response = api.post(
        f"/events/{visit['id']}/reschedule",
        json={"starts_at": "2026-07-08T14:00:00", "duration_minutes": 30},
    )
    assert book_response.status_code == 200
    seen = events_of(client, patient)[uid]
    assert (seen.status, seen.sequence, seen.start) == (
        "CONFIRMED",
        2,
        "2026-07-08T20:00:00+00:00",
    )

    _now.move_to("2026-07-09 17:00:00+00:00")
    response = api.post(
        f"/events/{visit['id']}/complete", json={"completed_on": "2026-07-08", "outcome": "stable"}
    )
    assert response.status_code == 200, response.json
    seen = events_of(client, patient)[uid]
    assert (seen.status, seen.sequence, seen.start) == (
        "CONFIRMED",
        3,
        "2026-07-08T20:00:00+00:00",
    )
    completed = next(
        e for e in calendars.icaljs_one(get_feed(client, patient).data)["events"] if uid in e["uid"]
    )
    assert completed["alarms"] == []
    assert "took place on Wednesday, July 8, 2026" in completed["description"]

    response = api.post(f"/events/{biopsy['id']}/cancel", json={"reason": "Patient moved away"})
    assert response.status_code == 200
    seen = events_of(client, patient)[biopsy["uid"]]
    assert (seen.status, seen.sequence) == ("CANCELLED", 1)
    document = get_feed(client, patient).data
    assert b"moved away" not in document  # reasons stay in the clinic


def test_interval_change_keeps_uids_and_raises_sequences(client, api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    before = events_of(client, patient)
    response = api.patch(f"/patients/{patient['id']}", json={"interval_months": 3})
    assert response.status_code == 200, response.json
    changed = {e["uid"]: e for e in response.json["events"]}
    after = events_of(client, patient)
    assert set(before) <= set(after)  # nothing that was sent disappears at once
    for uid, old in before.items():
        new = after[uid]
        event = changed[uid]
        if event["sequence"] == 0:
            assert new == old
            continue
        assert new.sequence == event["sequence"] > old.sequence
        expected = {"planned": "TENTATIVE", "cancelled": "CANCELLED"}[event["status"]]
        assert new.status == expected
        if event["status"] == "planned":
            assert new.start == event["due_on"]
    moved = [uid for uid in before if changed[uid]["sequence"] > 0]
    assert moved, "a change of interval moves future visits"
    new_uids = set(after) - set(before)
    assert new_uids and all(after[u].status == "TENTATIVE" for u in new_uids)


def test_cancelled_events_stay_90_days_then_drop(client, api, _now) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    visit = api_event(patient)
    assert api.post(f"/events/{visit['id']}/cancel", json={}).status_code == 200
    cancelled_feed = get_feed(client, patient)
    assert events_of(client, patient)[visit["uid"]].status == "CANCELLED"
    _now.move_to("2026-04-05 17:00:00+00:00")  # day 90 after the cancellation
    assert events_of(client, patient)[visit["uid"]].status == "CANCELLED"
    modified = get_feed(client, patient).headers["Last-Modified"]
    assert modified == cancelled_feed.headers["Last-Modified"]
    _now.move_to("2026-04-06 17:00:00+00:00")  # day 91
    assert visit["uid"] not in events_of(client, patient)
    response = get_feed(client, patient, **{"If-Modified-Since": modified})
    assert response.status_code == 200  # dropping an event is a change
    # It dropped at the start of 6 April in Denver.
    assert response.headers["Last-Modified"] == "Mon, 06 Apr 2026 06:00:00 GMT"


def test_completed_visits_stay_a_year_as_history(client, api, _now) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    visit = api_event(patient)
    _now.move_to("2026-07-07 17:00:00+00:00")
    response = api.post(
        f"/events/{visit['id']}/complete", json={"completed_on": "2026-07-06", "outcome": "stable"}
    )
    assert response.status_code == 200
    seen = events_of(client, patient)[visit["uid"]]
    assert (seen.status, seen.all_day, seen.start) == ("CONFIRMED", True, "2026-07-06")
    _now.move_to("2027-07-06 17:00:00+00:00")
    assert visit["uid"] in events_of(client, patient)
    _now.move_to("2027-07-07 17:00:00+00:00")
    assert visit["uid"] not in events_of(client, patient)


def test_missed_visit_is_withdrawn_and_comes_back_when_booked_again(  # type: ignore[no-untyped-def]
    client, api, _now
) -> None:
    patient = enrol(api)
    visit = api_event(patient)
    book(api, visit["id"], "2026-07-06T09:30:00")
    _now.move_to("2026-07-07 17:00:00+00:00")
    assert api.post(f"/events/{visit['id']}/missed", json={}).status_code == 200
    seen = events_of(client, patient)[visit["uid"]]
    assert (seen.status, seen.sequence) == ("CANCELLED", 2)
    assert seen.summary == "Missed: Follow-up visit at Northside Clinic"
    book(api, visit["id"], "2026-07-14T10:00:00")
    seen = events_of(client, patient)[visit["uid"]]
    assert (seen.status, seen.sequence, seen.start) == (
        "CONFIRMED",
        3,
        "2026-07-14T16:00:00+00:00",
    )


def test_ending_surveillance_cancels_without_saying_why(client, api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    response = api.post(
        f"/patients/{patient['id']}/end-surveillance",
        json={"reason": "Progression on imaging; referred to surgery."},
    )
    assert response.status_code == 200
    seen = events_of(client, patient)
    assert {s.status for s in seen.values()} == {"CANCELLED"}
    assert all(s.sequence == 1 for s in seen.values())
    assert b"surgery" not in get_feed(client, patient).data


def test_booking_across_the_daylight_change_is_timed_right(client, api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api, enrolled_on="2025-09-08", interval_months=6)
    visit = next(e for e in patient["events"] if e["due_on"] == "2026-03-09")
    book(api, visit["id"], "2026-03-09T09:00:00")
    other = next(e for e in patient["events"] if e["due_on"] == "2026-09-08")
    book(api, other["id"], "2026-09-08T09:00:00")
    seen = events_of(client, patient)
    assert seen[visit["uid"]].start == "2026-03-09T15:00:00+00:00"  # MDT, after 8 March
    assert seen[other["uid"]].start == "2026-09-08T15:00:00+00:00"


def test_privacy_with_a_profile_full_of_diagnosis(client, api) -> None:  # type: ignore[no-untyped-def]
    """A G3 pancreatic patient with justification and notes: the calendar says none of it."""
    patient = enrol(
        api,
        primary_site="pancreas",
        grade="G3",
        ki67=25.0,
        differentiation="poorly",
        justification="Neuroendocrine tumour, grade 3, patient declines surgery (cancer team).",
    )
    visit = api_event(patient)
    book(api, visit["id"], "2026-07-06T09:30:00")
    api.post(f"/events/{api_event(patient, 'biopsy')['id']}/cancel", json={"reason": "Tumour"})
    response = get_feed(client, patient)
    assert response.status_code == 200  # get_feed ran the privacy checks
    assert b"declines" not in response.data


def test_a_clinic_named_for_the_condition_is_never_named_to_the_patient(  # type: ignore[no-untyped-def]
    client, api, runner, coordinator, clinic
) -> None:
    """Patients' feeds and downloads show only the patient-facing name and address; the
    coordinators' clinic feed keeps the internal ones."""
    clinic.name, clinic.address = "Neuroendocrine Tumour Clinic", "Cancer Center, 1 Test Street"
    clinic.calendar_name, clinic.calendar_address = "Northside Outpatients", "1 Test Street"
    db.session.commit()
    patient = enrol(api)
    visit = api_event(patient)
    book(api, visit["id"], "2026-07-06T09:30:00")  # no place typed: the patient-facing one
    secret = path_of(patient["feed_url"])[len("/calendar/") : -len(".ics")]
    download = client.get(f"/calendar/{secret}/events/{visit['uid']}.ics")
    assert download.status_code == 200
    assert_private(download.data, patient)
    feed = get_feed(client, patient)  # privacy checks, the shared word list among them
    for document in (feed.data, download.data):
        text = calendars.unescape("\n".join(calendars.unfolded(document)))
        assert "Neuroendocrine" not in text and "Cancer Center" not in text
        assert "SUMMARY:Follow-up visit at Northside Outpatients" in text
        assert "LOCATION:1 Test Street" in text
    assert "X-WR-CALNAME:Northside Outpatients: my visits" in calendars.unfolded(feed.data)
    staff = client.get(clinic_feed_path(runner, coordinator.email))
    staff_text = calendars.unescape("\n".join(calendars.unfolded(staff.data)))
    assert "Watchful: Neuroendocrine Tumour Clinic" in staff_text
    # The word-list check would have caught the internal name.
    leaked = ical.render(ical.CalendarFeed(events=(), name=f"{clinic.name}: my visits"))
    assert calendars.forbidden_words_in(leaked) == ["tumour", "neuroendocrine"]


# --- Arbitrary text from the database --------------------------------------------------------


def _db_text(max_size: int) -> st.SearchStrategy[str]:
    # What a database can hold: PostgreSQL refuses NUL and neither stores lone surrogates (the
    # renderer's own tests cover both).
    return st.one_of(
        st.text(
            st.characters(exclude_characters="\x00", exclude_categories=["Cs"]),
            max_size=max_size,
        ),
        st.text(
            st.sampled_from(list(',;\\:"\r\n\t Nn😀é\u2028\x85\x1bEND:VEVENT')), max_size=max_size
        ),
    )


def test_arbitrary_clinic_and_patient_text_in_both_feeds(  # type: ignore[no-untyped-def]
    client, api, runner, coordinator, clinic
) -> None:
    """Names, addresses, phone numbers and locations as stored (CR, LF, ``;``, ``,``, ``\\``,
    emoji, up to the column sizes) never break either feed and read back exactly: the patient's
    feed with the clinic's patient-facing name and address, the clinic feed with its own."""
    body = enrol(api, enrolled_on="2025-11-03", interval_months=3)
    visit = api_event(body)
    book(api, visit["id"], "2026-02-03T10:00:00")
    patient = db.session.get(Patient, body["id"])
    event = db.session.get(PlanEvent, visit["id"])
    assert patient is not None and event is not None
    clinic_path = clinic_feed_path(runner, coordinator.email)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        name=_db_text(200),
        address=_db_text(600),
        calendar_name=_db_text(200),
        calendar_address=_db_text(600),
        phone=_db_text(40),
        location=_db_text(600),
        given_name=_db_text(100),
        family_name=_db_text(100),
    )
    def check(
        name: str,
        address: str,
        calendar_name: str,
        calendar_address: str,
        phone: str,
        location: str,
        given_name: str,
        family_name: str,
    ) -> None:
        clinic.name, clinic.address, clinic.phone = name, address, phone
        clinic.calendar_name, clinic.calendar_address = calendar_name, calendar_address
        seen = clinic.for_patients()
        patient.given_name, patient.family_name = given_name, family_name
        event.location = location
        plans.touch(event)
        db.session.commit()
        own = client.get(path_of(body["feed_url"]))
        shared = client.get(clinic_path)
        assert own.status_code == shared.status_code == 200
        for document in (own.data, shared.data):
            calendars.check_structure(document)

        clean = ical.clean_text
        uid = f"{visit['uid']}@watchful.example.org"
        expected_location = {
            own.data: clean(privacy.place_for_patients(location, seen.place)),
            shared.data: clean(location or address or name),
        }
        expected_summary = {
            own.data: clean(f"Follow-up visit at {seen.name}"),
            shared.data: clean(
                f"Follow-up visit, {wording.initials(given_name, family_name)} (P-{body['id']})"
            ),
        }
        js = dict(
            zip((own.data, shared.data), calendars.icaljs([own.data, shared.data]), strict=True)
        )
        for document, summary in expected_summary.items():
            read_icalendar = next(
                e for e in icalendar.Calendar.from_ical(document).walk("VEVENT") if e["UID"] == uid
            )
            assert str(read_icalendar["SUMMARY"]) == summary
            read_vobject = next(
                e for e in vobject.readOne(document.decode()).vevent_list if e.uid.value == uid
            )
            assert read_vobject.summary.value == summary
            read_js = next(e for e in js[document]["events"] if e["uid"] == uid)
            assert read_js["summary"] == summary
            if expected_location[document]:
                assert str(read_icalendar["LOCATION"]) == expected_location[document]
                assert read_vobject.location.value == expected_location[document]
                assert read_js["location"] == expected_location[document]
            else:
                assert "LOCATION" not in read_icalendar
        feed_name = clean(f"{seen.name}: my visits")
        assert vobject.readOne(own.data.decode()).x_wr_calname.value == feed_name
        assert calendars.unescape(js[own.data]["xWrCalname"]) == feed_name
        description = js[own.data]["events"][0]["description"]
        assert clean(f"please {wording.call_the_clinic(seen.name, phone or None)}.") in description
        # Our own words add nothing forbidden: whatever is found came from the data patients
        # may see (never from the internal name and address).
        typed = ical.render(
            ical.CalendarFeed(events=(), name=f"{seen.name} {seen.address} {phone} {location}")
        )
        assert set(calendars.forbidden_words_in(own.data)) <= set(
            calendars.forbidden_words_in(typed)
        )

    check()


# --- Single event -----------------------------------------------------------------------------


def test_single_event_download_matches_the_feed(app, client, api) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(api)
    visit = api_event(patient)
    book(api, visit["id"], "2026-07-06T09:30:00")
    secret = path_of(patient["feed_url"])[len("/calendar/") : -len(".ics")]
    response = client.get(f"/calendar/{secret}/events/{visit['uid']}.ics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="visit-2026-07-06.ics"'
    )
    assert response.headers["Cache-Control"] == "private"
    calendars.check_structure(response.data)
    assert_private(response.data, patient)
    (single,) = calendars.read_by_all(response.data)
    assert single == events_of(client, patient)[visit["uid"]]
    lines = calendars.unfolded(response.data)
    assert not any(line.startswith(("X-WR-CALNAME", "REFRESH-INTERVAL")) for line in lines)
    assert "TRIGGER:-P1D" in lines
    model = db.session.scalar(select(PlanEvent).where(PlanEvent.uid == visit["uid"]))
    assert content.single_event_ics(model) == response.data
    assert (
        urls.event_download_url(model)
        == f"https://watchful.test{urlsplit(response.request.url).path}"
    )
    etag = response.headers["ETag"]
    again = client.get(urlsplit(response.request.url).path, headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_single_event_only_for_the_patients_booked_events(client, api) -> None:  # type: ignore[no-untyped-def]
    patient, other = enrol(api), enrol(api)
    secret = path_of(patient["feed_url"])[len("/calendar/") : -len(".ics")]
    planned = api_event(patient)
    assert client.get(f"/calendar/{secret}/events/{planned['uid']}.ics").status_code == 404
    foreign = api_event(other)
    book(api, foreign["id"], "2026-07-06T09:30:00")
    assert client.get(f"/calendar/{secret}/events/{foreign['uid']}.ics").status_code == 404
    assert client.get(f"/calendar/{secret}/events/not-a-uid.ics").status_code == 404
    assert client.get(f"/calendar/{'B' * 43}/events/{foreign['uid']}.ics").status_code == 404


# --- Clinic feed ------------------------------------------------------------------------------


def clinic_feed_path(runner, email: str) -> str:  # type: ignore[no-untyped-def]
    result = runner.invoke(args=["users", "feed-token", email])
    assert result.exit_code == 0, result.output
    return path_of(result.output.strip().splitlines()[-1])


def test_clinic_feed_shows_own_clinics_by_initials_only(client, api, runner, coordinator) -> None:  # type: ignore[no-untyped-def]
    mine = enrol(api, given_name="Morgan", family_name="Quill")
    book(api, api_event(mine)["id"], "2026-02-02T10:00:00")
    elsewhere = factories.clinic(name="Southside Clinic", timezone="America/New_York")
    other_api = factories.ApiClient(
        client, factories.token_for(factories.user(clinics=[elsewhere]))
    )
    theirs = enrol(other_api, given_name="Riley", family_name="Stone")
    book(other_api, api_event(theirs)["id"], "2026-02-03T10:00:00")

    path = clinic_feed_path(runner, coordinator.email)
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert response.headers["Cache-Control"] == "private"
    calendars.check_structure(response.data)
    seen = calendars.read_by_all(response.data)
    uids = {s.uid.split("@")[0] for s in seen}
    assert api_event(mine)["uid"] in uids
    assert not uids & {e["uid"] for e in theirs["events"]}
    booked = next(s for s in seen if s.uid.startswith(api_event(mine)["uid"]))
    assert booked.summary == f"Follow-up visit, M.Q. (P-{mine['id']})"
    assert (booked.status, booked.start) == ("CONFIRMED", "2026-02-02T17:00:00+00:00")
    text = calendars.unescape("\n".join(calendars.unfolded(response.data)))
    for secret in ("Morgan", "Quill", mine["mrn"], "1960", "small_bowel", "Ki-67", "grade"):
        assert secret.lower() not in text.lower()
    assert "X-WR-CALNAME:Watchful: Northside Clinic" in calendars.unfolded(response.data)

    admin = factories.user(role="admin")
    admin_seen = calendars.read_by_all(client.get(clinic_feed_path(runner, admin.email)).data)
    admin_uids = {s.uid.split("@")[0] for s in admin_seen}
    assert {api_event(mine)["uid"], api_event(theirs)["uid"]} <= admin_uids


def test_clinic_feed_window_statuses_and_changes(client, api, runner, coordinator, _now) -> None:  # type: ignore[no-untyped-def]
    patient = enrol(
        api, given_name="Morgan", family_name="Quill", enrolled_on="2025-11-03", interval_months=3
    )
    path = clinic_feed_path(runner, coordinator.email)
    seen = {s.uid.split("@")[0]: s for s in calendars.read_by_all(client.get(path).data)}
    # 30 days back (6 December) to 180 days ahead (4 July): the February and May visits.
    in_window = {e["uid"] for e in patient["events"] if "2025-12-06" <= e["due_on"] <= "2026-07-04"}
    assert {e["due_on"] for e in patient["events"] if e["uid"] in in_window} == {
        "2026-02-03",
        "2026-05-04",
    }
    assert set(seen) == in_window
    assert seen[api_event(patient)["uid"]].summary.startswith("To book: follow-up visit, M.Q.")
    assert seen[api_event(patient)["uid"]].status == "TENTATIVE"
    first = client.get(path)

    # Renaming the patient changes the initials: the cached feed must not be served.
    _now.shift(timedelta(minutes=1))
    response = api.patch(f"/patients/{patient['id']}", json={"given_name": "Dana"})
    assert response.status_code == 200
    renamed = client.get(path)
    assert renamed.data != first.data
    assert b"D.Q." in renamed.data
    assert client.get(path, headers={"If-None-Match": first.headers["ETag"]}).status_code == 200

    assert api.post(f"/events/{api_event(patient)['id']}/cancel", json={}).status_code == 200
    seen = {s.uid.split("@")[0]: s for s in calendars.read_by_all(client.get(path).data)}
    assert (seen[api_event(patient)["uid"]].status, seen[api_event(patient)["uid"]].sequence) == (
        "CANCELLED",
        1,
    )

    new_path = clinic_feed_path(runner, coordinator.email)
    assert client.get(path).status_code == 404  # the old address stops at once
    assert client.get(new_path).status_code == 200
    coordinator.is_active = False
    db.session.commit()
    assert client.get(new_path).status_code == 404


def test_clinic_feed_cached_and_conditional(app, client, api, runner, coordinator) -> None:  # type: ignore[no-untyped-def]
    enrol(api)
    path = clinic_feed_path(runner, coordinator.email)
    cache = feed_cache(app)
    first = client.get(path)
    renders = cache.renders
    second = client.get(path)
    assert second.data == first.data and cache.renders == renders
    assert client.get(path, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    modified = first.headers["Last-Modified"]
    assert client.get(path, headers={"If-Modified-Since": modified}).status_code == 304
    head = client.head(path)
    assert head.status_code == 200 and head.data == b""


def test_cli_feed_token_for_unknown_user_fails(runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(args=["users", "feed-token", "nobody@example.org"])
    assert result.exit_code != 0
    assert "No user" in result.output


# --- Golden file ------------------------------------------------------------------------------

GOLDEN_KEY = "golden-secret-key"
GOLDEN_UIDS = [f"00000000-0000-4000-8000-{n:012d}" for n in range(1, 20)]


def _golden_patient(api: factories.ApiClient, now: time_machine.Coordinates) -> Patient:
    """A patient a year into surveillance with every kind of event, built at fixed times."""
    body = enrol(
        api,
        mrn="GOLD-1",
        given_name="Jamie",
        family_name="Sample",
        enrolled_on="2025-07-07",
        interval_months=3,
    )
    patient = db.session.get(Patient, body["id"])
    assert patient is not None
    events = sorted(patient.plans[0].events, key=lambda e: (e.due_on, e.kind, e.ordinal))
    for event, uid in zip(events, GOLDEN_UIDS, strict=False):
        event.uid = uid
    patient.feed_token_salt = "golden-salt"
    patient.feed_token_hash = token_hash(
        feed_tokens.derive_secret(GOLDEN_KEY, feed_tokens.PATIENT, "golden-salt")
    )
    db.session.commit()
    by_due = {e.due_on.isoformat(): e for e in events if e.kind == "visit"}
    october, january = by_due["2025-10-07"], by_due["2026-01-07"]
    now.shift(timedelta(hours=1))
    assert (
        api.post(
            f"/events/{october.id}/complete",
            json={"completed_on": "2025-10-07", "outcome": "stable"},
        ).status_code
        == 200
    )
    now.shift(timedelta(hours=1))
    book(api, january.id, "2026-01-07T08:15:00", location="Imaging, 2nd floor; 1 Test Street")
    now.shift(timedelta(hours=1))
    april = next(e for e in events if e.kind == "visit" and e.due_on.isoformat() > "2026-01-07")
    assert api.post(f"/events/{april.id}/cancel", json={}).status_code == 200
    return patient


def test_golden_patient_feed(app, client, api, _now) -> None:  # type: ignore[no-untyped-def]
    """One full feed, byte for byte. Regenerate with WATCHFUL_UPDATE_GOLDEN=1 after a
    deliberate change, and review the diff."""
    app.config["SECRET_KEY"] = GOLDEN_KEY  # the patient page link is derived from it
    patient = _golden_patient(api, _now)
    path = path_of(urls.patient_feed_url(patient) or "")
    response = client.get(path)
    assert response.status_code == 200
    calendars.check_structure(response.data)
    if os.environ.get("WATCHFUL_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(response.data)
    assert response.data == GOLDEN.read_bytes()
    assert calendars.forbidden_words_in(response.data) == []


# The golden feed's digest under each renderer version. A change of the bytes for the same data
# needs a new ``validators.RENDERER_VERSION``: the ETag comes from the inputs, not the bytes, so
# without it clients revalidating with the old tag would keep the old bytes.
GOLDEN_DIGESTS = {
    "patient-feed/1": "2c62303ab824cf542636fb7b47d8a79881520c4eaef943522659e484e68c9183",
}


def test_golden_bytes_change_only_with_the_renderer_version() -> None:
    digest = hashlib.sha256(GOLDEN.read_bytes()).hexdigest()
    assert GOLDEN_DIGESTS.get(validators.RENDERER_VERSION) == digest
