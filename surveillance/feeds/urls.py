"""The public addresses of feeds and the patient page, built from ``PUBLIC_BASE_URL``.

A URL carries a capability secret, so it is only ever built for the one person who may have
it: in the API, on the coordinator's screens and in that patient's own emails.
"""

from __future__ import annotations

from flask import current_app

from surveillance.models import Patient, PlanEvent, User
from surveillance.services import feed_tokens


def _base() -> str:
    return str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/")


def webcal(url: str | None) -> str | None:
    """The same address with the ``webcal`` scheme, which opens the subscribe dialog of Apple
    Calendar and Outlook (Google Calendar takes the https form)."""
    if url is None:
        return None
    return "webcal://" + url.split("://", 1)[1]


def patient_feed_url(patient: Patient) -> str | None:
    secret = feed_tokens.patient_secret(patient)
    return None if secret is None else f"{_base()}/calendar/{secret}.ics"


def patient_webcal_url(patient: Patient) -> str | None:
    return webcal(patient_feed_url(patient))


def patient_page_url(patient: Patient) -> str | None:
    """The patient's own page (same secret as the feed, rotated with it)."""
    secret = feed_tokens.patient_secret(patient)
    return None if secret is None else f"{_base()}/p/{secret}"


def event_download_url(event: PlanEvent) -> str | None:
    """A single booked visit as an ``.ics`` file, for an "add to calendar" button."""
    secret = feed_tokens.patient_secret(event.patient)
    return None if secret is None else f"{_base()}/calendar/{secret}/events/{event.uid}.ics"


def clinic_feed_url(user: User) -> str | None:
    secret = feed_tokens.user_secret(user)
    return None if secret is None else f"{_base()}/calendar/clinic/{secret}.ics"
