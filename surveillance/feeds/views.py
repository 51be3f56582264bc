"""The feeds over HTTP.

Calendar apps poll these every few hours, so the common case is cheap: one indexed query
finds the owner of the secret, and the rendered bytes come from the cache (or a ``304``).
Every answer, including ``404``, tells caches and search engines to keep it private.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Response, current_app, request
from sqlalchemy import func, or_, select
from sqlalchemy.orm import contains_eager, joinedload

from surveillance import clock, ical
from surveillance.extensions import db
from surveillance.feeds import bp, content, validators
from surveillance.feeds.cache import CachedFeed, feed_cache, install
from surveillance.models import Clinic, EventStatus, Patient, PlanEvent, User
from surveillance.secrets_store import token_hash

CALENDAR_TYPE = "text/calendar; charset=utf-8"
# Secrets are URL-safe base64; anything else is answered without touching the database.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_UID = re.compile(r"^[0-9a-f-]{36}$")


@bp.record_once
def _install_cache(state) -> None:  # type: ignore[no-untyped-def]
    install(state.app)


# --- Responses --------------------------------------------------------------------------------

# On every feed answer, 404 included (the fast path sends the same).
PRIVATE_HEADERS = (
    ("Cache-Control", "private"),
    ("X-Robots-Tag", "noindex"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
)


def _private(response: Response) -> Response:
    for name, value in PRIVATE_HEADERS:
        response.headers[name] = value
    return response


def _not_found() -> Response:
    return _private(Response("Not found.\n", 404, content_type="text/plain; charset=utf-8"))


def _none_match(etag: str) -> bool:
    """If-None-Match with a weak comparison (RFC 9110 §13.1.2: GET and HEAD)."""
    tags = request.if_none_match
    return bool(tags.star_tag or tags.contains_weak(etag))


def _not_modified(feed: CachedFeed) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present; If-Modified-Since only otherwise,
    and only with a date that is not in the future."""
    if "If-None-Match" in request.headers:
        return _none_match(feed.etag)
    since = request.if_modified_since
    if since is None or since > clock.utcnow():
        return False
    return feed.last_modified <= since


def not_modified_response(etag: str) -> Response:
    """A 304 carries the validator and Cache-Control, and no other representation metadata
    when there is an ETag (RFC 9110 §15.4.5): so no Last-Modified, which a patient feed's 304
    could not know without rendering. Clients keep the one their 200 carried, which belongs
    to the same tag."""
    response = Response(status=304)
    del response.headers["Content-Type"]
    response.set_etag(etag)
    return _private(response)


def calendar_response(feed: CachedFeed, download_name: str | None = None) -> Response:
    if _not_modified(feed):
        return not_modified_response(feed.etag)
    # The same type whatever the Accept header says: Google's fetcher sends none.
    response = Response(feed.body, 200, content_type=CALENDAR_TYPE)
    if download_name:
        response.headers["Content-Disposition"] = f'attachment; filename="{download_name}"'
    response.set_etag(feed.etag)
    response.last_modified = feed.last_modified
    return _private(response)


# --- Owners of secrets ------------------------------------------------------------------------


def _patient_for(token: str) -> Patient | None:
    """One indexed query: the patient and their clinic, by the hash of the secret."""
    if not _TOKEN.match(token):
        return None
    return db.session.scalar(
        select(Patient)
        .options(joinedload(Patient.clinic))
        .where(Patient.feed_token_hash == token_hash(token))
    )


def _user_for(token: str) -> User | None:
    if not _TOKEN.match(token):
        return None
    return (
        db.session.execute(
            select(User)
            .options(joinedload(User.clinics))
            .where(User.feed_token_hash == token_hash(token), User.is_active.is_(True))
        )
        .unique()
        .scalar_one_or_none()
    )


# --- Patient feed -----------------------------------------------------------------------------


@bp.get("/calendar/<token>.ics")
def patient_feed(token: str) -> Response:
    """The reference behaviour; ``fastpath`` answers most requests the same way before they
    reach Flask, and hands everything else (a cache miss for a 200 included) to this view."""
    patient = _patient_for(token)
    if patient is None:
        return _not_found()
    clinic = patient.clinic
    today = clock.today_in(clinic.timezone)
    etag = validators.patient_feed_etag(
        validators.rendering_epoch(current_app.config),
        patient.id,
        patient.feed_version,
        patient.updated_at,
        clinic.id,
        clinic.updated_at,
        clinic.timezone,
        today,
    )
    # If-None-Match decides alone when sent, and the tag is known without rendering.
    if "If-None-Match" in request.headers and _none_match(etag):
        return not_modified_response(etag)

    def render() -> CachedFeed:
        rendered = content.render_patient_feed(patient, today)
        return CachedFeed.of(rendered.body, rendered.last_modified, etag)

    return calendar_response(feed_cache(current_app).get_or_render(etag, render))


@bp.get("/calendar/<token>/events/<uid>.ics")
def single_event(token: str, uid: str) -> Response:
    """A booked visit of this patient as a file of its own ("add to calendar")."""
    patient = _patient_for(token)
    if patient is None or not _UID.match(uid):
        return _not_found()
    event = db.session.scalar(
        select(PlanEvent).where(
            PlanEvent.patient_id == patient.id,
            PlanEvent.uid == uid,
            PlanEvent.status == EventStatus.BOOKED,
        )
    )
    if event is None:
        return _not_found()
    body = content.single_event_ics(event)
    changed = max(event.updated_at, patient.updated_at, patient.clinic.updated_at)
    when = content.event_when(event, patient.clinic.timezone)
    name = f"{event.kind}-{when.first_day.isoformat()}.ics"
    return calendar_response(CachedFeed.of(body, changed), download_name=name)


# --- Clinic feed ------------------------------------------------------------------------------


def _clinics_of(user: User) -> list[Clinic]:
    if user.is_admin:
        return list(db.session.scalars(select(Clinic).order_by(Clinic.name, Clinic.id)))
    return sorted(user.clinics, key=lambda c: (c.name, c.id))


def _patients_version(clinic_ids: Sequence[int] | None) -> tuple[int, int, datetime | None]:
    """A cheap fingerprint of everything the clinic feed shows about patients and events:
    every visible event change raises its patient's feed version, and a renamed patient
    (new initials) gets a new ``updated_at``."""
    query = select(
        func.count(Patient.id), func.coalesce(func.sum(Patient.feed_version), 0)
    ).add_columns(func.max(Patient.updated_at))
    if clinic_ids is not None:
        if not clinic_ids:
            return 0, 0, None
        query = query.where(Patient.clinic_id.in_(clinic_ids))
    count, versions, latest = db.session.execute(query).one()
    return int(count), int(versions), latest


def _clinic_events(
    clinic_ids: Sequence[int] | None, today_by_clinic: dict[int, date]
) -> Sequence[PlanEvent]:
    """Events that may fall in the feed's window; the exact rule is applied in Python."""
    if not today_by_clinic:
        return []
    first = min(today_by_clinic.values()) - content.CLINIC_FEED_PAST - timedelta(days=1)
    last = max(today_by_clinic.values()) + content.CLINIC_FEED_AHEAD + timedelta(days=1)
    first_moment = datetime.combine(first, datetime.min.time(), ZoneInfo("UTC"))
    last_moment = datetime.combine(last, datetime.max.time(), ZoneInfo("UTC"))
    query = (
        select(PlanEvent)
        .join(PlanEvent.patient)
        .options(contains_eager(PlanEvent.patient).joinedload(Patient.clinic))
        .where(
            or_(
                PlanEvent.due_on.between(first, last),
                PlanEvent.completed_on.between(first, last),
                PlanEvent.starts_at.between(first_moment, last_moment),
            )
        )
    )
    if clinic_ids is not None:
        query = query.where(Patient.clinic_id.in_(clinic_ids))
    return db.session.scalars(query).all()


@bp.get("/calendar/clinic/<token>.ics")
def clinic_feed(token: str) -> Response:
    user = _user_for(token)
    if user is None:
        return _not_found()
    clinics = _clinics_of(user)
    clinic_ids = None if user.is_admin else [c.id for c in clinics]
    today_by_clinic = {c.id: clock.today_in(c.timezone) for c in clinics}
    key = (
        "clinic",
        user.id,
        user.is_admin,
        tuple((c.id, c.updated_at, today_by_clinic[c.id]) for c in clinics),
        _patients_version(clinic_ids),
    )

    def render() -> CachedFeed:
        events = _clinic_events(clinic_ids, today_by_clinic)
        feed = content.clinic_calendar(clinics, user.is_admin, events, today_by_clinic)
        # Membership and the moving date window change this feed without a stored
        # timestamp, so its last change is taken as the moment it was rendered: never
        # earlier than the change that made it.
        return CachedFeed.of(ical.render(feed), clock.utcnow())

    return calendar_response(feed_cache(current_app).get_or_render(key, render))
