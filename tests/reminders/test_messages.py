"""The MIME parts of reminder emails, built without the ``email`` package's slow paths, are
byte for byte the parts its ``MIMEText`` builds."""

from __future__ import annotations

import email
from collections.abc import Callable
from datetime import datetime
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP, compat32

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from surveillance.reminders import messages
from surveillance.reminders.transport import wire_format
from tests.reminders.helpers import SampleRow, sample_email

# Any text a template can give (a lone surrogate cannot be encoded at all, by either).
TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=3000) | st.text(
    alphabet=st.sampled_from(list("ab =.\r\n\t-é€😀\u2028\x00\x85From ")), max_size=3000
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT, subtype=st.sampled_from(["plain", "html"]))
def test_text_parts_are_mimetexts_bytes(text: str, subtype: str) -> None:
    ours = messages.text_part(text, subtype)
    reference = MIMEText(text, subtype, messages._UTF8)
    for policy in (compat32, SMTP):
        assert ours.as_bytes(policy=policy) == reference.as_bytes(policy=policy)
    assert ours.as_string() == reference.as_string()
    parsed = email.message_from_bytes(ours.as_bytes())
    assert parsed.get_content_charset() == "utf-8"
    if "\r" not in text:  # line ends are the transport's: CR alone does not come back
        assert parsed.get_payload(decode=True) == text.encode("utf-8")


@pytest.mark.parametrize("text", ["", "Hello Robin,\n", "x" * 200 + "\n" + "é" * 100])
def test_the_same_inside_the_multipart_message(text: str) -> None:
    ours, reference = messages.text_part(text, "plain"), MIMEText(text, "plain", messages._UTF8)
    outer = [MIMEMultipart("alternative", boundary="b") for _ in "xy"]
    outer[0].attach(ours)
    outer[1].attach(reference)
    assert outer[0].as_bytes() == outer[1].as_bytes()


# Header values: what the app writes (short ASCII, an address, a date) and anything else
# (long, folded, spaced, non-ASCII, line breaks) around the one-line shortcut's edges.
HEADER_VALUE = (
    st.text(alphabet=st.sampled_from(list('aZ09 <>@.;,:="()-_\t\r\n\x0béß€')), max_size=120)
    | st.text(max_size=100)
    | st.sampled_from(
        [
            "",
            " ",
            "a ",
            " a",
            "a  b",
            "x" * 70,
            "x" * 72,
            "x" * 73,
            "x" * 74,
            "x" * 200,
            "Time to book your next appointment",
            "<reminder-0123456789abcdef0123456789abcdef@watchful.example.org>",
            'multipart/alternative; boundary="=_a0123456789abcdef"',
        ]
    )
)


@settings(max_examples=500, deadline=None)
@given(
    name=st.sampled_from(["To", "Subject", "Content-Type", "X-Auto-Response-Suppress"]),
    value=HEADER_VALUE,
)
def test_the_one_line_policy_writes_every_header_as_compat32_does(name: str, value: str) -> None:
    def outcome(fold: Callable[[str, str], object]) -> object:
        try:
            return fold(name, value)
        except Exception as exc:  # e.g. a value with something like a header after a line break
            return type(exc)

    for ours, reference in (
        (messages.POLICY, compat32),
        (messages.POLICY.clone(linesep="\r\n"), compat32.clone(linesep="\r\n")),
    ):
        assert outcome(ours.fold) == outcome(reference.fold)
        assert outcome(ours.fold_binary) == outcome(reference.fold_binary)


def test_a_reminder_flattens_as_with_compat32_and_its_boundaries_are_not_in_the_parts() -> None:
    """The whole message, as the SMTP client writes it: the same bytes as ``compat32`` gives,
    and the boundaries chosen by ``build_email`` (no check by the generator) appear nowhere
    but on their own delimiter lines."""
    rendered = messages.Rendered(
        subject="Réminder: your appointment on Thu Mar 26 at 10:15 AM " + "x" * 40,
        text="Hello Robin,\n--=_a\n=_ and = and --" + "é" * 200 + "\n",
        html="<p>Hello</p>\n" * 50,
        attachments=(messages.Attachment("appointment.ics", b"BEGIN:VCALENDAR\r\n" * 30),),
    )
    email_ = sample_email(rendered)
    ours = email_.as_bytes(policy=messages.POLICY.clone(linesep="\r\n"))
    assert ours == email_.as_bytes(policy=compat32.clone(linesep="\r\n"))
    boundaries = [part.get_boundary() for part in email_.walk() if part.is_multipart()]
    assert len(boundaries) == 2 and all(b.startswith("=_") for b in boundaries)
    for boundary in boundaries:
        kind = "mixed" if boundary.startswith("=_m") else "alternative"
        header = f'Content-Type: multipart/{kind}; boundary="{boundary}"'
        lines = {line for line in ours.split(b"\r\n") if boundary.encode() in line}
        assert lines == {f"--{boundary}".encode(), f"--{boundary}--".encode(), header.encode()}
    parsed = email.message_from_bytes(ours)
    assert [p.get_content_type() for p in parsed.walk()] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "text/calendar",
    ]
    text = parsed.get_payload(0).get_payload(0).get_payload(decode=True)
    assert text.replace(b"\r\n", b"\n").decode() == rendered.text


def test_email_templates_use_none_of_the_apps_globals(app) -> None:  # type: ignore[no-untyped-def]
    """Emails render without the app's Jinja globals (``messages._environment``): a template
    that used one (``url_for``, ``config``…) would silently get nothing."""
    from jinja2 import meta

    environment, emails = app.jinja_env, messages._environment()
    names = [n for n in environment.list_templates() if n.startswith("email/")]
    assert len(names) >= 10
    for name in names:
        source = environment.loader.get_source(environment, name)[0]
        # Parsed where there are no globals: every name a template reads is listed.
        used = meta.find_undeclared_variables(emails.parse(source))
        assert not used & set(environment.globals), name


# Whole lines, including those the generator treats specially ("From " quoted, a lone dot).
LINES = st.lists(
    st.sampled_from(["From the clinic", "From", ".", "", "é" * 40, "x" * 90, " From", "\r"])
).map("\n".join)

ATTACHMENTS = st.lists(
    st.builds(
        messages.Attachment,
        filename=st.sampled_from(["appointment.ics", "visit plan.ics", "é.ics"]),
        content=st.binary(max_size=600) | st.just(b"BEGIN:VCALENDAR\r\nFrom x\r\n" * 30),
        params=st.sampled_from([{}, {"charset": "utf-8"}, {"method": "PUBLISH"}]),
    ),
    max_size=2,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=TEXT | LINES,
    html=TEXT | LINES,
    subject=TEXT.map(lambda s: s[:150]),
    attachments=ATTACHMENTS,
    recipient=st.sampled_from(["robin@example.org", "r" * 80 + "@example.org"]),
    sender=st.sampled_from(["clinic@watchful.test", "Clinic Name <clinic@watchful.test>"]),
)
@example(  # lines the generator quotes as ">From ", a dot line, a bare CR, a long subject
    text="From the clinic\nhello\n.\nFrom here\r\nx\ry",
    html="From <b>us</b>",
    subject="Réminder: " + "x" * 120,
    attachments=[
        messages.Attachment("appointment.ics", b"From x\r\n", params={"charset": "utf-8"})
    ],
    recipient="robin@example.org",
    sender="clinic@watchful.test",
)
def test_email_bytes_are_the_flattened_message_to_the_byte(
    text: str,
    html: str,
    subject: str,
    attachments: list[messages.Attachment],
    recipient: str,
    sender: str,
) -> None:
    """The delivery's fast path writes exactly what building the ``Message`` and flattening
    it as ``smtplib`` does gives: any bodies, subjects, attachments and header lengths."""
    from flask import Flask

    rendered = messages.Rendered(subject, text, html, tuple(attachments))
    now = datetime(2026, 3, 1, 9, 30)
    app = Flask(__name__)
    app.config["MAIL_DEFAULT_SENDER"] = sender
    with app.app_context():
        built = messages.build_email(SampleRow(), rendered, recipient, now, token="0123abcd")  # type: ignore[arg-type]
        fast = messages.email_bytes(SampleRow(), rendered, recipient, now, token="0123abcd")  # type: ignore[arg-type]
    assert fast == wire_format(built, "clinic@watchful.test", recipient)
