"""The capability secrets behind calendar feeds and the patient's own page.

A patient's feed URL and patient page share one secret; a coordinator has their own for the
clinic feed. The database never holds a secret: it holds a fresh random salt (256 bits, new
at every rotation) and the SHA-256 hash of the secret. The secret is an HMAC of the salt under
the app's ``SECRET_KEY``, so the server can print the URL again (in the API, on screens and in
reminder emails) while a copy of the database alone reveals no working URL. Requests are
matched by the hash with an indexed lookup, so no secret is compared byte by byte.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from flask import current_app
from sqlalchemy import select

from surveillance.extensions import db
from surveillance.models import Patient, User
from surveillance.secrets_store import token_hash

PATIENT, CLINIC_FEED = "patient-feed", "clinic-feed"


def derive_secret(key: str, purpose: str, salt: str) -> str:
    digest = hmac.new(key.encode(), f"{purpose}:{salt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _secret(purpose: str, salt: str | None) -> str | None:
    if salt is None:
        return None
    return derive_secret(current_app.config["SECRET_KEY"], purpose, salt)


def _new_salt_and_hash(purpose: str) -> tuple[str, str, str]:
    salt = secrets.token_urlsafe(32)
    secret = _secret(purpose, salt)
    assert secret is not None
    return salt, token_hash(secret), secret


# --- Patients ---------------------------------------------------------------------------------


def _valid(secret: str | None, stored_hash: str | None) -> str | None:
    """The derived secret, if it still opens the door: after a SECRET_KEY change it would
    not, and showing or mailing a dead link is worse than showing none."""
    if secret is None or stored_hash is None:
        return None
    return secret if hmac.compare_digest(token_hash(secret), stored_hash) else None


def patient_secret(patient: Patient) -> str | None:
    """The patient's current secret, or ``None`` when revoked (or no longer valid)."""
    return _valid(_secret(PATIENT, patient.feed_token_salt), patient.feed_token_hash)


def rotate_patient_token(patient: Patient) -> str:
    """Issue a new secret; the old feed URL and patient page stop working at once."""
    patient.feed_token_salt, patient.feed_token_hash, secret = _new_salt_and_hash(PATIENT)
    patient.feed_version += 1
    db.session.flush()
    return secret


def revoke_patient_token(patient: Patient) -> None:
    patient.feed_token_salt = patient.feed_token_hash = None
    patient.feed_version += 1
    db.session.flush()


def patient_for_token(secret: str) -> Patient | None:
    if not secret:
        return None
    return db.session.scalar(select(Patient).where(Patient.feed_token_hash == token_hash(secret)))


# --- Coordinators' clinic feeds ---------------------------------------------------------------


def user_secret(user: User) -> str | None:
    return _valid(_secret(CLINIC_FEED, user.feed_token_salt), user.feed_token_hash)


def rotate_user_token(user: User) -> str:
    user.feed_token_salt, user.feed_token_hash, secret = _new_salt_and_hash(CLINIC_FEED)
    db.session.flush()
    return secret


def revoke_user_token(user: User) -> None:
    user.feed_token_salt = user.feed_token_hash = None
    db.session.flush()


def user_for_token(secret: str) -> User | None:
    if not secret:
        return None
    user = db.session.scalar(select(User).where(User.feed_token_hash == token_hash(secret)))
    return user if user is not None and user.is_active else None
