"""Sign-in lockouts, request rates, the idle timeout and sign-out that ends every copy of the
session cookie."""

from __future__ import annotations

import re
from datetime import timedelta

import time_machine
from flask import Flask
from flask.testing import FlaskClient

from surveillance import clock, throttle
from surveillance.auth.views import BAD_CREDENTIALS, LOCKED_OUT
from tests import factories
from tests.screens import PASSWORD, sign_in


def _post(client: FlaskClient, email: str, password: str):  # type: ignore[no-untyped-def]
    return client.post("/sign-in", data={"email": email, "password": password})


def _fresh(client: FlaskClient, path: str):  # type: ignore[no-untyped-def]
    """GET in its own app context: the fixture's context would otherwise keep Flask-Login's
    user cached in ``g`` from one request to the next, which a real server never does."""
    with client.application.app_context():
        return client.get(path)


def _page(response) -> str:  # type: ignore[no-untyped-def]
    """The page without the echoed email (which is expected to differ)."""
    return re.sub(r'value="[^"]*"', "", response.get_data(as_text=True))


def test_unknown_email_and_wrong_password_get_identical_answers(client, coordinator) -> None:  # type: ignore[no-untyped-def]
    wrong = _post(client, coordinator.email, "not the password")
    unknown = _post(client, "nobody@watchful.test", "not the password")
    assert wrong.status_code == unknown.status_code == 422
    assert BAD_CREDENTIALS in wrong.get_data(as_text=True)
    assert _page(wrong) == _page(unknown)
    assert wrong.headers.get("Set-Cookie") is None or "session=" not in wrong.headers.get(
        "Set-Cookie", ""
    )


def test_repeated_failures_lock_the_email_even_for_the_right_password(
    app, client, coordinator
) -> None:  # type: ignore[no-untyped-def]
    start = clock.utcnow()
    with time_machine.travel(start, tick=False) as traveller:
        for _ in range(5):
            assert _post(client, coordinator.email, "guess " * 3).status_code == 422
        locked = _post(client, coordinator.email, PASSWORD)
        assert locked.status_code == 429
        assert LOCKED_OUT in locked.get_data(as_text=True)
        assert client.get("/coordinator/").status_code == 302  # not signed in

        # An unknown email locks exactly the same way: the lockout says nothing about
        # whether an account exists.
        for _ in range(5):
            _post(client, "ghost@watchful.test", "guess " * 3)
        ghost = _post(client, "ghost@watchful.test", PASSWORD)
        assert ghost.status_code == 429
        assert _page(ghost) == _page(locked)

        traveller.shift(timedelta(minutes=16))  # the window passes
        sign_in(client, coordinator.email)
        assert client.get("/coordinator/").status_code == 200


def test_failures_from_one_address_lock_every_email_from_it(app, client, clinic) -> None:  # type: ignore[no-untyped-def]
    app.config["LOGIN_ADDRESS_FAILURE_LIMIT"] = "3 per 15 minutes"
    user = factories.user(clinics=[clinic])
    for n in range(3):
        _post(client, f"someone{n}@watchful.test", "guess " * 3)
    assert _post(client, user.email, PASSWORD).status_code == 429
    # Another address is not affected.
    other = app.test_client()
    response = other.post(
        "/sign-in",
        data={"email": user.email, "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert response.status_code == 302


def test_success_clears_the_emails_failures(client, coordinator) -> None:  # type: ignore[no-untyped-def]
    for _ in range(4):
        _post(client, coordinator.email, "guess " * 3)
    sign_in(client, coordinator.email)
    client.post("/sign-out")
    for _ in range(4):
        _post(client, coordinator.email, "guess " * 3)
    sign_in(client, coordinator.email)  # 8 failures in all, never 5 in a row


def test_sign_in_posts_are_rate_limited_per_address(app, client, coordinator) -> None:  # type: ignore[no-untyped-def]
    app.config["SIGN_IN_RATE_LIMIT"] = "3 per minute"
    for _ in range(3):
        assert _post(client, "", "").status_code == 422
    assert _post(client, coordinator.email, PASSWORD).status_code == 429
    assert client.get("/sign-in").status_code == 200  # only posts are limited
    throttle.limiter.reset()
    assert _post(client, coordinator.email, PASSWORD).status_code == 302


def test_the_session_is_permanent_so_the_idle_timeout_applies(
    app: Flask, client, coordinator
) -> None:  # type: ignore[no-untyped-def]
    start = clock.utcnow()
    with time_machine.travel(start, tick=False) as traveller:
        sign_in(client, coordinator.email)
        with client.session_transaction() as session:
            assert session.permanent
        cookie = _fresh(client, "/coordinator/").headers["Set-Cookie"]
        assert "Expires=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        traveller.shift(timedelta(minutes=29))
        assert _fresh(client, "/coordinator/").status_code == 200  # activity restarts the clock
        traveller.shift(timedelta(minutes=29))
        assert _fresh(client, "/coordinator/").status_code == 200
        traveller.shift(timedelta(minutes=31))
        # The signed cookie's own timestamp is too old now: Flask refuses it.
        response = _fresh(client, "/coordinator/")
        assert response.status_code == 302
        assert "/sign-in" in response.headers["Location"]


def test_sign_out_ends_every_copy_of_the_session_cookie(app: Flask, client, coordinator) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, coordinator.email)
    assert client.get("/coordinator/").status_code == 200
    copied = client.get_cookie("session")
    assert copied is not None
    assert client.post("/sign-out").status_code == 302

    thief = app.test_client()
    thief.set_cookie("session", copied.value)
    response = _fresh(thief, "/coordinator/")
    assert response.status_code == 302
    assert "/sign-in" in response.headers["Location"]
    # The API (bearer tokens) is not affected, and signing in again works.
    sign_in(client, coordinator.email)
    assert client.get("/coordinator/").status_code == 200
