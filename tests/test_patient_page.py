"""The patient's own page at /p/<token>: content, privacy rules, headers and the QR code."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import date, datetime
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import cairosvg
import pytest
import time_machine
import zxingcpp
from PIL import Image

from surveillance import education, patient_page
from surveillance.extensions import db
from surveillance.models import Patient
from surveillance.services import feed_tokens, plans
from surveillance.stages import label
from tests import factories

MRN, FAMILY, BIRTH = "NET-4471", "Quillfeather", date(1958, 3, 9)


class Page(HTMLParser):
    """The page as a browser sees it: its tags and attributes, and its reading text with and
    without the stage article (the one place medical words may appear)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text_parts: list[str] = []
        self.outside_article: list[str] = []
        self._article_depth = 0
        self._depth = 0
        self._skip = 0
        self.feed(html)
        self.close()
        self.text = " ".join("".join(self.text_parts).split())
        self.text_outside_article = " ".join("".join(self.outside_article).split())

    VOID = frozenset({"meta", "link", "img", "input", "br", "hr"})
    INLINE = frozenset({"a", "strong", "em", "b", "i", "span", "time", "abbr", "code"})

    def _boundary(self, tag: str) -> None:
        """Block elements separate words, as they do on screen."""
        if tag not in self.INLINE:
            self.text_parts.append(" ")
            self.outside_article.append(" ")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._boundary(tag)
        if tag in self.VOID:
            return
        self._depth += 1
        if "data-stage-article" in dict(attrs) and not self._article_depth:
            self._article_depth = self._depth
        if tag in ("script", "style", "title"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        self._boundary(tag)
        if tag in self.VOID:
            return
        if tag in ("script", "style", "title"):
            self._skip -= 1
        if self._article_depth == self._depth:
            self._article_depth = 0
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text_parts.append(data)
        if not self._article_depth:
            self.outside_article.append(data)

    def find(self, tag: str, **wanted: str) -> list[dict[str, str | None]]:
        return [
            attrs
            for name, attrs in self.tags
            if name == tag and all(attrs.get(k) == v for k, v in wanted.items())
        ]


@pytest.fixture
def today():  # type: ignore[no-untyped-def]
    # Enrolled 2025-01-06 (6-monthly): the visit due 2026-01-06 is overdue, the biopsy window
    # is open, the next visit is due in July.
    with time_machine.travel("2026-01-20 17:00:00+00:00", tick=False):
        yield date(2026, 1, 20)


@pytest.fixture
def patient(app, today) -> Patient:  # type: ignore[no-untyped-def]
    clinic = factories.clinic(
        name="Riverbend Clinic",
        address="200 River Road\nSuite 4\nDenver, CO 80202",
        phone="+1 303 555 0142",
    )
    patient = factories.enrol(
        clinic,
        mrn=MRN,
        given_name="Robin",
        family_name=FAMILY,
        birth_date=BIRTH.isoformat(),
        enrolled_on="2025-01-06",
        interval_months=6,
        primary_site="pancreas",
        grade="G2",
        ki67=5.5,
        size_mm=17,
        phone="+1 720 555 0177",
        email="robin.q@example.org",
    )
    biopsy = next(e for e in patient.latest_plan.events if e.kind == "biopsy")
    plans.book(biopsy, datetime(2026, 1, 27, 9, 0), 60, "Procedure suite, 2nd floor")
    db.session.commit()
    return patient


def token_of(patient: Patient) -> str:
    secret = feed_tokens.patient_secret(patient)
    assert secret is not None
    return secret


def get_page(client, patient):  # type: ignore[no-untyped-def]
    response = client.get(f"/p/{token_of(patient)}")
    assert response.status_code == 200, response.data[:500]
    return response, Page(response.get_data(as_text=True))


def test_page_shows_name_stage_visits_clinic_and_subscribe(client, patient) -> None:  # type: ignore[no-untyped-def]
    response, page = get_page(client, patient)
    text = page.text
    assert response.mimetype == "text/html"
    assert "Hello, Robin" in text
    # Booking the one-year biopsy moved them to biopsy review; its article is linked.
    assert "Your current stage: Biopsy review" in text
    article = education.for_stage("biopsy_review")
    assert article.summary in text
    assert page.find("a", href=f"/learn/{article.slug}")
    assert client.get(f"/learn/{article.slug}").status_code == 200
    # The next appointment, up front, with a way to the calendar links.
    assert (
        "Your next appointment: Follow-up visit, due since Tuesday, January 6, 2026: please "
        "call the clinic to book it. Add your visits to your calendar" in text
    )
    assert page.find("a", href="#subscribe")
    # Booked biopsy: date, time in the clinic's zone, place, what to expect, how to change.
    assert "Biopsy appointment Booked Date Tuesday, January 27, 2026" in text
    assert "Time 9:00 AM to 10:00 AM (MST) Place Procedure suite, 2nd floor" in text
    assert "Place Procedure suite, 2nd floor" in text
    assert "small piece of tissue" in text
    assert "To change this time, call the clinic at +1 303 555 0142." in text
    # The overdue visit and the next one, with the booking window and how to book.
    assert "Follow-up visit Overdue: please book Due around Tuesday, January 6, 2026" in text
    assert (
        "Follow-up visit Not booked yet Due around Monday, July 6, 2026" in text
        and "to book a day between Monday, June 15, 2026 and Monday, July 27, 2026." in text
    )
    assert text.index("January 6, 2026") < text.index("January 27, 2026") < text.index("July 6")
    assert page.find("a", href="tel:+13035550142")
    # Clinic contact.
    assert "200 River Road Suite 4 Denver, CO 80202" in text
    # Subscribe: webcal and https links, the QR image, and the three calendar apps.
    secret = token_of(patient)
    https = f"https://watchful.test/calendar/{secret}.ics"
    assert page.find("a", href=f"webcal://watchful.test/calendar/{secret}.ics")
    assert page.find("a", href=https)
    (link_input,) = page.find("input", id="calendar-link", value=https)
    assert "readonly" in link_input
    assert page.find("label", **{"for": "calendar-link"})
    assert page.find("img", src=f"/p/{secret}/qr.svg", alt="QR code of your calendar link")
    # The links work: the feed itself, and the booked biopsy on its own.
    assert client.get(f"/calendar/{secret}.ics").mimetype == "text/calendar"
    biopsy = next(e for e in patient.latest_plan.events if e.kind == "biopsy")
    download = f"https://watchful.test/calendar/{secret}/events/{biopsy.uid}.ics"
    assert page.find("a", href=download)
    assert "Add this visit to my calendar (one-time download)" in text
    assert client.get(download.removeprefix("https://watchful.test")).status_code == 200
    for app_name in ("Apple Calendar", "Google Calendar", "Outlook"):
        assert page.find("h3") and app_name in text
    assert "Subscribe from web" in text and "From URL" in text and "New Calendar" in text


def test_headers_and_meta_keep_the_page_private(client, patient) -> None:  # type: ignore[no-untyped-def]
    response, page = get_page(client, patient)
    assert "noindex" in response.headers["X-Robots-Tag"]
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response.headers["Cache-Control"]
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "'unsafe" not in csp
    assert page.find("meta", name="robots", content="noindex, nofollow")
    assert page.find("meta", name="referrer", content="no-referrer")


def test_no_third_party_resources_and_no_inline_scripts_or_styles(client, patient) -> None:  # type: ignore[no-untyped-def]
    response, page = get_page(client, patient)
    html = response.get_data(as_text=True)
    assert "<style" not in html.lower()
    resources = []
    for tag, attrs in page.tags:
        assert "style" not in attrs, f"inline style on <{tag}>"
        assert not any(name.startswith("on") for name in attrs), f"inline handler on <{tag}>"
        if tag == "script":
            assert attrs.get("src"), "inline <script>"
            resources.append(attrs["src"])
        if tag in ("img", "iframe", "source", "audio", "video"):
            resources.append(attrs["src"])
        if tag == "link":
            resources.append(attrs["href"])
    assert resources
    for url in resources:
        assert url and url.startswith("/") and not url.startswith("//"), url
        assert client.get(url).status_code == 200, url


# Identity details: never anywhere in the page, not even in attributes or the article.
def identity(patient: Patient) -> list[str]:
    born = patient.birth_date
    return [
        patient.mrn,
        patient.family_name,
        patient.email or "",
        "720 555 0177",
        born.isoformat(),
        f"{born:%m/%d/%Y}",
        f"{born.month}/{born.day}/{born.year}",
        f"{born:%B} {born.day}, {born.year}",
        f"{born.day} {born:%B} {born.year}",
    ]


# Diagnosis words: only inside the stage article, never in the rest of the page.
DIAGNOSIS = re.compile(
    r"\b(tumou?rs?|cancers?|neuroendocrine|NETs?|oncology|grade|G[123]|Ki-?67|pancrea\w*"
    r"|small[ _]bowel|stomach|rectum|appendix|lung|primary site|differentiat\w*|mm|5\.5)\b",
    re.IGNORECASE,
)


def test_privacy_no_identity_and_no_diagnosis_outside_the_stage_article(client, patient) -> None:  # type: ignore[no-untyped-def]
    response, page = get_page(client, patient)
    html = response.get_data(as_text=True)
    for forbidden in identity(patient):
        assert forbidden.lower() not in html.lower(), forbidden
    outside = page.text_outside_article
    assert "Biopsy appointment" in outside  # the check really reads the page
    assert DIAGNOSIS.findall(outside) == []
    # The same holds for every stage's page (each has its own article).
    for stage in ("watchful_waiting", "treatment_planning", "clinical_trial", "assessment"):
        patient.stage = stage
        db.session.commit()
        _, again = get_page(client, patient)
        assert f"Your current stage: {label(stage)}" in again.text
        assert education.for_stage(stage).summary in again.text
        assert DIAGNOSIS.findall(again.text_outside_article) == [], stage


def test_a_clinic_named_for_the_condition_is_never_named_on_the_page(client, patient) -> None:  # type: ignore[no-untyped-def]
    clinic = patient.clinic
    clinic.name, clinic.address = "Riverbend NET Clinic", "Cancer Center\n200 River Road"
    clinic.calendar_name, clinic.calendar_address = "Riverbend Outpatients", "200 River Road"
    db.session.commit()
    response, page = get_page(client, patient)
    html = response.get_data(as_text=True)
    assert "NET Clinic" not in html and "Cancer Center" not in html
    assert "This is your private page from Riverbend Outpatients." in page.text
    assert "Contact your clinic Riverbend Outpatients 200 River Road" in page.text
    assert DIAGNOSIS.findall(page.text_outside_article) == []


def test_the_privacy_check_would_catch_a_leak(client, patient) -> None:  # type: ignore[no-untyped-def]
    """The checks above are only worth something if a leak trips them."""
    leaky = Page(
        "<p>Hi</p><div data-stage-article><p>Your tumour</p></div><p>Grade G2, pancreas</p>"
    )
    assert DIAGNOSIS.findall(leaky.text_outside_article) == ["Grade", "G2", "pancreas"]
    assert (
        DIAGNOSIS.findall(Page("<p>ok</p><div data-stage-article>NET</div>").text_outside_article)
        == []
    )


def test_ended_plan_shows_the_new_stage_and_no_visits(client, patient) -> None:  # type: ignore[no-untyped-def]
    visit = patient.latest_plan.events[0]
    plans.complete(visit, visit.due_on, "progression")
    db.session.commit()
    _, page = get_page(client, patient)
    assert "Your current stage: Treatment planning" in page.text
    assert "You have no visits planned right now." in page.text
    assert "Follow-up visit" not in page.text and "Biopsy appointment" not in page.text
    assert education.for_stage("treatment_planning").summary in page.text


def test_unknown_rotated_or_revoked_token_is_404(client, patient) -> None:  # type: ignore[no-untyped-def]
    old = token_of(patient)
    assert client.get(f"/p/{old}").status_code == 200
    for bad in ("x" * 43, "short", "a" * 200, "bad%20chars!!!!!!!!!!!"):
        response = client.get(f"/p/{bad}")
        assert response.status_code == 404
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "noindex" in response.headers["X-Robots-Tag"]
    new = feed_tokens.rotate_patient_token(patient)
    db.session.commit()
    assert client.get(f"/p/{old}").status_code == 404
    assert client.get(f"/p/{old}/qr.svg").status_code == 404
    assert client.get(f"/p/{new}").status_code == 200
    assert client.get(f"/p/{new}/qr.svg").status_code == 200
    feed_tokens.revoke_patient_token(patient)
    db.session.commit()
    assert client.get(f"/p/{new}").status_code == 404


def decode_svg(svg: bytes) -> list[str]:
    png = cairosvg.svg2png(bytestring=svg, output_width=400, output_height=400)
    image = Image.open(io.BytesIO(png)).convert("L")
    return [result.text for result in zxingcpp.read_barcodes(image)]


def test_qr_code_on_the_page_decodes_to_the_feed_url(client, patient) -> None:  # type: ignore[no-untyped-def]
    """Decodes exactly the image the page points at, as served."""
    _, page = get_page(client, patient)
    (img,) = [a for a in page.find("img") if str(a.get("src", "")).endswith("/qr.svg")]
    response = client.get(str(img["src"]))
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    svg = response.data
    assert b"<script" not in svg and b"href" not in svg
    assert decode_svg(svg) == [f"https://watchful.test/calendar/{token_of(patient)}.ics"]


def test_qr_decoder_is_not_fooled(client, patient) -> None:  # type: ignore[no-untyped-def]
    """Decoding a code for another URL gives that URL: the test above reads, not assumes."""
    assert decode_svg(patient_page.qr_svg("https://example.org/other.ics")) == [
        "https://example.org/other.ics"
    ]


def test_head_works(client, patient) -> None:  # type: ignore[no-untyped-def]
    response = client.head(f"/p/{token_of(patient)}")
    assert response.status_code == 200
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_only_the_coming_year_and_no_closed_windows(client, patient) -> None:  # type: ignore[no-untyped-def]
    _, page = get_page(client, patient)
    # July 2025: overdue and its window long closed (the clinic's to record); July 2027:
    # more than a year ahead (in the calendar feed).
    assert "July 7, 2025" not in page.text and "July 6, 2027" not in page.text
    assert "Due around Wednesday, January 6, 2027" in page.text
    assert "This list shows the next 12 months." in page.text


@dataclass
class Event:
    uid: str
    kind: str
    status: str
    due_on: date
    window_start: date
    window_end: date
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    location: str | None = None


def test_appointments_as_plain_data() -> None:
    denver = ZoneInfo("America/Denver")
    today = date(2026, 3, 2)
    events = [
        Event("u1", "visit", "completed", date(2026, 1, 5), date(2025, 12, 15), date(2026, 1, 26)),
        Event("u2", "visit", "planned", date(2026, 2, 23), date(2026, 2, 2), date(2026, 3, 16)),
        Event(
            "u3",
            "biopsy",
            "booked",
            date(2026, 3, 10),
            date(2026, 2, 10),
            date(2026, 4, 21),
            datetime(2026, 3, 10, 12, 15, tzinfo=denver),  # after the DST change: MDT
            datetime(2026, 3, 10, 13, 0, tzinfo=denver),
            "Room 3",
        ),
        Event(
            "u4",
            "visit",
            "booked",
            date(2026, 2, 27),
            date(2026, 2, 6),
            date(2026, 3, 20),
            datetime(2026, 2, 27, 0, 5, tzinfo=denver),  # before today: not shown
            None,
        ),
        Event("u5", "visit", "cancelled", date(2026, 4, 1), date(2026, 3, 11), date(2026, 4, 22)),
    ]
    first, second = patient_page.appointments(events, "America/Denver", today)
    assert (first.kind, first.booked, first.overdue) == ("visit", False, True)
    assert (first.book_from_text, first.book_until_text) == (
        "Monday, March 2, 2026",
        "Monday, March 16, 2026",
    )
    assert (second.kind, second.booked, second.place) == ("biopsy", True, "Room 3")
    assert second.time_text == "12:15 PM to 1:00 PM (MDT)"
    assert patient_page.appointments(events, "America/Denver", today, until=date(2026, 3, 9)) == [
        first
    ]


@pytest.mark.parametrize(
    ("hour", "minute", "text"),
    [(0, 5, "12:05 AM"), (9, 0, "9:00 AM"), (12, 0, "12:00 PM"), (13, 30, "1:30 PM")],
)
def test_clock_time(hour: int, minute: int, text: str) -> None:
    assert patient_page.clock_time(datetime(2026, 1, 1, hour, minute)) == text
