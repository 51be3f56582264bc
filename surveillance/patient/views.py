"""The patient page and its QR code. Both answer 404 for an unknown, revoked or rotated
token, exactly like the calendar feed."""

from __future__ import annotations

import re

from flask import Response, abort, render_template

from surveillance import clock, education, patient_page
from surveillance.feeds import urls as feed_urls
from surveillance.models import EventStatus, Patient
from surveillance.patient import bp
from surveillance.planning import add_months
from surveillance.services import feed_tokens
from surveillance.stages import label

# Secrets are URL-safe base64 (43 characters); anything else is not looked up at all.
TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")

# The page lists a year ahead (a whole plan is long on a phone); the calendar has the rest.
SHOW_MONTHS_AHEAD = 12

# Only this site's own files: the page loads nothing from anywhere else.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def _patient(token: str) -> Patient:
    patient = feed_tokens.patient_for_token(token) if TOKEN.fullmatch(token) else None
    if patient is None:
        abort(404)
    return patient


@bp.after_request
def _private(response: Response) -> Response:
    """A capability URL: never indexed, cached by others or leaked to other sites."""
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Content-Security-Policy", CSP)
    return response


@bp.get("/<token>")
def page(token: str) -> str:
    patient = _patient(token)
    clinic = patient.clinic
    today = clock.today_in(clinic.timezone)
    plan = patient.active_plan  # an ended plan has nothing left to come
    events = plan.events if plan is not None else []
    shown = clinic.for_patients()
    appointments = patient_page.appointments(
        events,
        clinic.timezone,
        today,
        until=add_months(today, SHOW_MONTHS_AHEAD),
        clinic_place=shown.place,
    )
    booked = {e.uid: e for e in events if e.status == EventStatus.BOOKED}
    return render_template(
        "patient/page.html",
        token=token,
        first_name=patient.given_name,
        # The patient-facing name, address and phone only: the internal name may name the
        # condition, and this page is opened on phones other people see.
        clinic=shown,
        stage_label=label(patient.stage),
        article=education.for_stage(patient.stage),
        appointments=appointments,
        months_ahead=SHOW_MONTHS_AHEAD,
        # One booked visit as an .ics file, for calendars the patient does not subscribe in.
        downloads={
            a.uid: feed_urls.event_download_url(booked[a.uid])
            for a in appointments
            if a.uid in booked
        },
        feed_url=feed_urls.patient_feed_url(patient),
        webcal_url=feed_urls.patient_webcal_url(patient),
    )


@bp.get("/<token>/qr.svg")
def qr(token: str) -> Response:
    patient = _patient(token)
    feed_url = feed_urls.patient_feed_url(patient)
    assert feed_url is not None  # the token matched, so the patient has one
    response = Response(patient_page.qr_svg(feed_url), mimetype="image/svg+xml")
    # The image is a document of its own when opened directly: it may run and load nothing.
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    return response
