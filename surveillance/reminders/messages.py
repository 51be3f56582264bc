"""Turning an outbox row into an email: plain text plus HTML from ``templates/email/``.

Messages are rendered when they are sent, not when queued, so they describe the event as it
is at that moment (a changed location, a corrected name); the delivery check has already made
sure the reminder itself still applies. Words stay neutral: no diagnosis, the patient's first
name at most, the clinic under its patient-facing name and address only (the internal name
may name the condition), and a link to their own page. Coordinators see the clinic's internal
name, and a patient as initials and an internal reference only.
"""

from __future__ import annotations

import base64
import functools
import re
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime
from email import encoders, quoprimime
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.policy import Compat32
from email.utils import format_datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from flask import current_app
from jinja2 import Environment

from surveillance.feeds import urls, wording
from surveillance.feeds.content import single_event_ics
from surveillance.models import Clinic, OutboxMessage, Patient, PlanEvent
from surveillance.privacy import place_for_patients
from surveillance.reminders.rules import Audience, Rule
from surveillance.services.counting import CappedCount

KIND_LABELS = {kind: title.lower() for kind, title in wording.TITLES.items()}


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str = "text"
    subtype: str = "calendar"
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    attachments: tuple[Attachment, ...] = ()


# Dates and times are spelled out the way the calendar feeds spell them (locale-independent).
long_date = wording.long_date
clock_time = wording.clock_time


def short_date(day: date) -> str:
    """ "Mon Jul 6": short enough for a subject line."""
    return f"{wording.long_date(day)[:3]} {wording.short_date(day)[:3]} {day.day}"


def initials(patient: Patient) -> str:
    return wording.initials(patient.given_name, patient.family_name)


def reference(patient: Patient) -> str:
    return wording.patient_reference(patient.id)


def base_url() -> str:
    return str(current_app.config.get("PUBLIC_BASE_URL", "")).rstrip("/")


def coordinator_patient_url(patient: Patient) -> str:
    return f"{base_url()}/patients/{patient.id}"


def _clinic_context(clinic: Clinic, audience: str) -> dict[str, Any]:
    """The clinic's name and address as this audience may see them."""
    if audience == Audience.PATIENT:
        shown = clinic.for_patients()
        name, address = shown.name, shown.address
    else:
        name, address = clinic.name, clinic.address
    return {
        "clinic_name": name,
        "clinic_phone": clinic.phone or None,
        "clinic_address": address or None,
    }


def _event_context(event: PlanEvent, location: str) -> dict[str, Any]:
    clinic = event.patient.clinic
    local_start = event.starts_at.astimezone(ZoneInfo(clinic.timezone)) if event.starts_at else None
    return {
        "kind_label": KIND_LABELS.get(event.kind, "appointment"),
        "due_on": long_date(event.due_on),
        "window_start": long_date(event.window_start),
        "window_end": long_date(event.window_end),
        "starts_on": long_date(local_start.date()) if local_start else None,
        "starts_at_time": clock_time(local_start) if local_start else None,
        "starts_short": (
            f"{short_date(local_start.date())} at {clock_time(local_start)}"
            if local_start
            else None
        ),
        "location": location,
    }


def _environment() -> Environment:
    """The app's Jinja environment (its loader, filters and settings) without its globals
    (``url_for``, ``request``, ``config``…), which the email templates use none of and which
    Jinja copies into the context of every template rendered: a third of rendering an email.
    One per app, with its own cache of compiled templates."""
    environment = current_app.extensions.get("watchful.email_templates")
    if environment is None:
        environment = current_app.jinja_env.overlay()
        environment.globals = {}
        current_app.extensions["watchful.email_templates"] = environment
    return cast(Environment, environment)


def _render(template: str, subject: str, **context: Any) -> Rendered:
    """Straight through a Jinja environment (compiled templates are cached there):
    ``render_template`` would also run the app's context processors and signals, which the
    email templates use nothing of, for every message of a delivery run."""
    context["subject"] = subject
    environment = _environment()
    return Rendered(
        subject=subject,
        text=environment.get_template(f"email/{template}.txt").render(context),
        html=environment.get_template(f"email/{template}.html").render(context),
    )


def render(message: OutboxMessage, today: date, digest: dict[str, Any] | None = None) -> Rendered:
    """The subject, bodies and attachments of an outbox message as it should go out now."""
    clinic = message.clinic
    common = _clinic_context(clinic, message.audience)
    if message.rule == Rule.DIGEST:
        assert digest is not None
        # Each list's count stops at a limit; past it the sum reads "1234+".
        total = CappedCount.total(section["total"] for section in digest["sections"])
        subject = f"Watchful daily summary for {clinic.name}: {total} to look at"
        return _render(
            "digest", subject, today=long_date(today), app_url=base_url() + "/", **digest, **common
        )
    event, patient = message.event, message.patient
    assert event is not None and patient is not None
    clinic_place = common["clinic_address"] or common["clinic_name"]
    if message.audience == Audience.PATIENT:
        location = place_for_patients(event.location, clinic_place)
    else:
        location = event.location or clinic_place
    common.update(_event_context(event, location))
    if message.audience == Audience.COORDINATOR:
        common.update(
            initials=initials(patient),
            ref=reference(patient),
            patient_url=coordinator_patient_url(patient),
            phone=patient.phone,
        )
        if message.rule == Rule.BIOPSY_UNBOOKED:
            subject = f"Biopsy due today, not booked: {common['initials']} ({common['ref']})"
            return _render("biopsy-unbooked-coordinator", subject, **common)
        subject = (
            f"Biopsy to book by {short_date(event.due_on)}: {common['initials']} ({common['ref']})"
        )
        return _render("biopsy-heads-up-coordinator", subject, **common)
    common.update(first_name=patient.given_name, patient_url=urls.patient_page_url(patient))
    if message.rule == Rule.BOOKED:
        subject = f"Reminder: your appointment on {common['starts_short']}"
        rendered = _render("booked-visit", subject, **common)
        ics = single_event_ics(event)
        attachment = Attachment("appointment.ics", ics, params={"charset": "utf-8"})
        return Rendered(rendered.subject, rendered.text, rendered.html, (attachment,))
    subject = "Time to book your next appointment"
    if message.rule == Rule.BIOPSY_HEADS_UP:
        return _render("biopsy-heads-up", subject, **common)
    return _render("book-window", subject, **common)


def build_email(
    message: OutboxMessage,
    rendered: Rendered,
    recipient: str,
    now: datetime,
    token: str | None = None,
) -> Message:
    """The MIME message: text and HTML alternatives, then any attachments. ``token`` makes
    the boundaries (drawn at random without it).

    Built with the ``compat32`` classes: the modern ``EmailMessage`` parses every header it is
    given through the header registry, which was over half of a message's delivery cost."""
    alternative, mixed = _boundaries(token)
    body = MIMEMultipart("alternative", boundary=alternative, policy=POLICY)
    body.attach(text_part(rendered.text, "plain"))
    body.attach(text_part(rendered.html, "html"))
    email: Message = body
    if rendered.attachments:
        email = MIMEMultipart("mixed", boundary=mixed, policy=POLICY)
        email.attach(body)
        for attachment in rendered.attachments:
            email.attach(_attachment_part(attachment))
    for name, value in _headers(message, rendered, recipient, now):
        email[name] = value
    return email


def _boundaries(token: str | None) -> tuple[str, str]:
    """The boundaries of the alternative and the mixed part. Chosen here rather than by the
    generator, which draws one at random and compiles a regular expression to check that no
    line of the message starts with it, on every flattening: a fifth of that time. "=_"
    cannot occur in the parts' quoted-printable or base64 bodies (in quoted-printable "=" is
    always followed by hex digits or a line end) nor in their headers, so no check is needed."""
    token = token or secrets.token_hex(8)
    return f"=_a{token}", f"=_m{token}"


def _headers(
    message: OutboxMessage, rendered: Rendered, recipient: str, now: datetime
) -> list[tuple[str, str | Header]]:
    """The message's own headers, after the MIME ones, in order."""
    return [
        ("From", current_app.config.get("MAIL_DEFAULT_SENDER") or "watchful@localhost"),
        ("To", recipient),
        ("Subject", _header(rendered.subject)),
        ("Date", format_datetime(now)),
        # The same Message-ID on every attempt: a copy sent again after a crash is
        # recognisably the same message to mail servers and clients.
        ("Message-ID", message.message_id),
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "All"),
    ]


def email_bytes(
    message: OutboxMessage,
    rendered: Rendered,
    recipient: str,
    now: datetime,
    token: str | None = None,
) -> bytes:
    """``build_email``'s message as SMTP sends it (``transport.wire_format``: the
    ``compat32`` generator, CRLF line ends), written directly. Building the ``Message`` and
    flattening it was about 100-190 µs a message, the largest part of preparing one; this is
    a fraction of that. The same bytes, to the byte: every header line still comes from the
    policy's own folding and every part's headers from the ``email`` classes (made once),
    and ``tests/reminders/test_messages.py`` compares the two on any content. Only for an
    envelope in ASCII (``transport.ascii_envelope``), as ``wire_format``."""
    alternative, mixed = _boundaries(token)
    body = _multipart(
        alternative,
        [
            _TEXT_HEAD["plain"] + _wire_body(_qp(rendered.text, CRLF)),
            _TEXT_HEAD["html"] + _wire_body(_qp(rendered.html, CRLF)),
        ],
    )
    kind, boundary = "alternative", alternative
    if rendered.attachments:
        parts = [_multipart_head("alternative", alternative) + body]
        parts += [
            _attachment_head(a) + _wire_body(_base64(a.content).replace("\n", CRLF))
            for a in rendered.attachments
        ]
        body = _multipart(mixed, parts)
        kind, boundary = "mixed", mixed
    head = _multipart_head(kind, boundary, _headers(message, rendered, recipient, now))
    return head + body


CRLF = "\r\n"
_FROM_LINE = re.compile(r"^From ", re.MULTILINE)  # ``compat32`` generators quote such lines


def _wire_body(payload: str) -> bytes:
    """An encoded part body whose lines end in CRLF already, as the generator writes it: a
    line that starts "From " quoted (quoted-printable leaves such a line as it is)."""
    if payload.startswith("From ") or "\nFrom " in payload:
        payload = _FROM_LINE.sub(">From ", payload)
    return payload.encode("ascii")


def _multipart(boundary: str, parts: list[bytes]) -> bytes:
    delimiter = f"\r\n--{boundary}\r\n".encode()
    return f"--{boundary}\r\n".encode() + delimiter.join(parts) + f"\r\n--{boundary}--\r\n".encode()


def _header_lines(headers: list[tuple[str, Any]]) -> bytes:
    return b"".join(_WIRE.fold_binary(name, value) for name, value in headers) + b"\r\n"


def _multipart_head(
    kind: str, boundary: str, headers: list[tuple[str, str | Header]] | None = None
) -> bytes:
    return _header_lines(
        [
            ("Content-Type", f'multipart/{kind}; boundary="{boundary}"'),
            ("MIME-Version", "1.0"),
            *(headers or []),
        ]
    )


@functools.cache
def _part_head(
    maintype: str, subtype: str, params: tuple[tuple[str, str], ...], filename: str
) -> bytes:
    part = _attachment_part(Attachment(filename, b"", maintype, subtype, dict(params)))
    return _header_lines(list(part.raw_items()))


def _attachment_head(attachment: Attachment) -> bytes:
    return _part_head(
        attachment.maintype,
        attachment.subtype,
        tuple(sorted(attachment.params.items())),
        attachment.filename,
    )


class _Compat32OneLine(Compat32):
    """``compat32``, except that a header value that fits on its line as it is (printable
    ASCII, short enough) is written as it is. ``compat32`` gives every header to
    ``email.header.Header``'s folding algorithm, which leaves such a value unchanged but was
    half the cost of flattening a message (which the SMTP client does for each message).
    ``tests/reminders/test_messages.py`` compares the two on any value."""

    def _one_line(self, name: str, value: Any) -> str | None:
        if (
            isinstance(value, str)
            and value.isascii()
            and value.isprintable()
            and self.max_line_length
            and len(name) + 2 + len(value) <= self.max_line_length
        ):
            return f"{name}: {value}{self.linesep}"
        return None

    def fold(self, name: str, value: Any) -> str:
        line = self._one_line(name, value)
        return super().fold(name, value) if line is None else line

    def fold_binary(self, name: str, value: Any) -> bytes:
        line = self._one_line(name, value)
        return super().fold_binary(name, value) if line is None else line.encode("ascii")


POLICY = _Compat32OneLine()
_WIRE = POLICY.clone(linesep="\r\n")  # as SMTP clients flatten

# Readable bodies (quoted-printable) rather than utf-8's default base64.
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP


def text_part(text: str, subtype: str) -> Message:
    """``MIMEText(text, subtype, _UTF8)``, the same headers and the same quoted-printable
    body, without the ``email`` package's header parsing on the way (``set_charset`` re-reads
    and rewrites Content-Type): that was a third of building a message.
    ``tests/reminders/test_messages.py`` compares the two."""
    part = Message(policy=POLICY)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["MIME-Version"] = "1.0"
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part.set_payload(_qp(text))
    return part


def _qp(text: str, eol: str = "\n") -> str:
    # What ``Charset.body_encode`` does for QP: the UTF-8 bytes, one code point per byte.
    # (The encoder splits the text into lines and ends each with ``eol``: the only line
    # ends of an encoded body are its own, so CRLF there is the wire's CRLF directly.)
    return quoprimime.body_encode(text.encode("utf-8").decode("latin-1"), eol=eol)


def _base64(content: bytes) -> str:
    return base64.encodebytes(content).decode("ascii")  # as ``encoders.encode_base64``


# The text parts' headers, as the generator writes them.
_TEXT_HEAD = {
    subtype: _header_lines(list(text_part("", subtype).raw_items()))
    for subtype in ("plain", "html")
}


def _header(value: str) -> str | Header:
    """ASCII as it is; anything else as an RFC 2047 encoded word."""
    return value if value.isascii() else Header(value, "utf-8")


def _attachment_part(attachment: Attachment) -> MIMEBase:
    # Base64 keeps the bytes exact (an .ics needs its CRLF line ends and folding intact).
    part = MIMEBase(attachment.maintype, attachment.subtype, policy=POLICY, **attachment.params)
    part.set_payload(attachment.content)
    encoders.encode_base64(part)
    part.add_header("Content-Disposition", "attachment", filename=attachment.filename)
    return part
