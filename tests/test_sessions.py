"""Session cookies name a session generation; ending sessions invalidates old cookies."""

from __future__ import annotations

from datetime import timedelta

from surveillance.extensions import _load_user, db
from surveillance.services import accounts
from tests import factories


def test_loader_accepts_only_the_current_generation(clinic) -> None:  # type: ignore[no-untyped-def]
    user = factories.user(clinics=[clinic])
    cookie_id = user.get_id()
    assert _load_user(cookie_id) is user
    accounts.end_all_sessions(user)
    db.session.commit()
    assert _load_user(cookie_id) is None
    assert _load_user(user.get_id()) is user
    user.is_active = False
    db.session.commit()
    assert _load_user(user.get_id()) is None
    for junk in ("", "abc", f"{user.id}", f"{user.id}:x", ":1"):
        assert _load_user(junk) is None


def test_cookie_settings(app) -> None:  # type: ignore[no-untyped-def]
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert app.config["SESSION_COOKIE_SECURE"] is True  # PUBLIC_BASE_URL is https in tests
    assert app.config["PERMANENT_SESSION_LIFETIME"] == timedelta(minutes=30)


def test_feed_links_made_under_an_old_secret_key_are_not_shown(app, clinic) -> None:  # type: ignore[no-untyped-def]
    from surveillance.services import feed_tokens

    patient = factories.enrol(clinic)
    secret = feed_tokens.patient_secret(patient)
    assert secret and feed_tokens.patient_for_token(secret) is patient
    app.config["SECRET_KEY"] = "a-new-key"
    assert feed_tokens.patient_secret(patient) is None  # no dead link is shown or mailed
    assert feed_tokens.patient_for_token(secret) is patient  # the issued URL still works
