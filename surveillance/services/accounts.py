"""Clinics, users and their API tokens."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from surveillance import clock, privacy
from surveillance.errors import Conflict, NotFound, ValidationFailed
from surveillance.extensions import db
from surveillance.models import ApiToken, Clinic, ClinicClosure, Role, User
from surveillance.secrets_store import new_token, token_hash

MIN_PASSWORD_LENGTH = 10
# "Last used" is for spotting stale tokens; minute precision would cost a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=5)


def create_clinic(
    slug: str,
    name: str,
    timezone: str = "America/Denver",
    address: str = "",
    calendar_name: str | None = None,
    calendar_address: str | None = None,
) -> Clinic:
    """A new clinic. What patients see defaults to the internal name and address when those
    give nothing away (else a neutral name and no address); given values are checked."""
    errors = {}
    if not slug or not slug.replace("-", "").isalnum() or slug != slug.lower():
        errors["slug"] = "Use lower-case letters, digits and hyphens."
    if not name.strip():
        errors["name"] = "A clinic needs a name."
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors["timezone"] = (
            f"Unknown time zone {timezone!r}; use an IANA name like America/Denver."
        )
    if calendar_name is None:
        calendar_name = privacy.patient_facing_name_for(name)
    if calendar_address is None:
        calendar_address = privacy.patient_facing_address_for(address)
    errors |= privacy.patient_facing_clinic_errors(calendar_name, calendar_address)
    if errors:
        raise ValidationFailed(errors)
    if db.session.scalar(select(Clinic.id).where(Clinic.slug == slug)) is not None:
        raise Conflict(f"A clinic with slug {slug!r} already exists.", {"slug": "Already in use."})
    clinic = Clinic(
        slug=slug,
        name=name.strip(),
        timezone=timezone,
        address=address.strip(),
        calendar_name=calendar_name.strip(),
        calendar_address=calendar_address.strip(),
    )
    db.session.add(clinic)
    db.session.flush()
    return clinic


def add_closure(clinic: Clinic, day: date, reason: str = "") -> int:
    """Close the clinic on ``day`` and re-plan its active plans; returns plans changed."""
    from surveillance.services.plans import refresh_clinic_plans

    if any(c.closed_on == day for c in clinic.closures):
        raise Conflict(f"The clinic is already closed on {day.isoformat()}.", {"day": "Exists."})
    clinic.closures.append(ClinicClosure(closed_on=day, reason=reason.strip()))
    db.session.flush()
    return refresh_clinic_plans(clinic)


def hash_password(password: str) -> str:
    # Werkzeug's default is scrypt, a memory-hard hash.
    return generate_password_hash(password)


def create_user(
    email: str, role: str, password: str, clinics: list[Clinic], full_name: str = ""
) -> User:
    email = email.strip().lower()
    errors = {}
    if "@" not in email:
        errors["email"] = "Enter an email address."
    if role not in set(Role):
        errors["role"] = "Role must be coordinator or admin."
    if len(password) < MIN_PASSWORD_LENGTH:
        errors["password"] = f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if errors:
        raise ValidationFailed(errors)
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("A user with this email already exists.", {"email": "Already in use."})
    user = User(
        email=email,
        role=role,
        password_hash=hash_password(password),
        clinics=list(clinics),
        full_name=full_name,
    )
    db.session.add(user)
    db.session.flush()
    return user


def end_all_sessions(user: User) -> None:
    """Sign the user out everywhere: every existing session cookie stops working."""
    user.session_generation += 1
    db.session.flush()


def verify_password(user: User, password: str) -> bool:
    return check_password(user.password_hash, password)


def check_password(password_hash: str, password: str) -> bool:
    return check_password_hash(password_hash, password)


def issue_api_token(user: User, name: str = "") -> str:
    """Create a token and return its secret, which is shown once and never stored."""
    secret = new_token()
    db.session.add(ApiToken(user=user, name=name, token_hash=token_hash(secret)))
    db.session.flush()
    return secret


def api_tokens_of(user: User) -> list[ApiToken]:
    """The user's tokens, newest first, revoked ones included (their secrets are not kept)."""
    return list(
        db.session.scalars(
            select(ApiToken)
            .where(ApiToken.user_id == user.id)
            .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        )
    )


def api_token_for(user: User, token_id: int) -> ApiToken:
    """One of the user's own tokens (any user's for an admin); ``NotFound`` otherwise, the same
    answer as for a token that does not exist."""
    token = db.session.get(ApiToken, token_id)
    if token is None or not (user.is_admin or token.user_id == user.id):
        raise NotFound("API token not found.")
    return token


def revoke_api_token(token: ApiToken) -> None:
    """Stop the token working at once; revoking twice keeps the first time."""
    if token.revoked_at is None:
        token.revoked_at = clock.utcnow()
        db.session.flush()


def user_for_api_token(secret: str) -> User | None:
    """The active user owning an unrevoked token; the lookup is by hash, so the secret itself
    is never compared byte by byte against stored data."""
    token = db.session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == token_hash(secret), ApiToken.revoked_at.is_(None)
        )
    )
    if token is None or not token.user.is_active:
        return None
    now = clock.utcnow()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now
    return token.user
