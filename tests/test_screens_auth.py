"""Signing in and out of the coordinator screens, and CSRF on their forms."""

from __future__ import annotations

import re

from tests import factories
from tests.screens import PASSWORD, sign_in


def test_root_sends_visitors_to_sign_in_and_users_to_today(client, coordinator) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/").location == "/sign-in"
    sign_in(client, coordinator.email)
    assert client.get("/").location == "/coordinator/"


def test_screens_need_a_signed_in_user(client) -> None:  # type: ignore[no-untyped-def]
    for path in ("/coordinator/", "/coordinator/patients", "/coordinator/patients/new"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.location.startswith("/sign-in?next=")


def test_sign_in_then_returns_to_the_page_asked_for(client, coordinator) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        "/sign-in?next=/coordinator/patients",
        data={"email": coordinator.email.upper(), "password": PASSWORD},
    )
    assert response.location == "/coordinator/patients"
    assert client.get("/coordinator/patients").status_code == 200


def test_sign_in_never_redirects_off_site(client, coordinator) -> None:  # type: ignore[no-untyped-def]
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = client.post(
            f"/sign-in?next={target}", data={"email": coordinator.email, "password": PASSWORD}
        )
        assert response.location == "/coordinator/"
        client.post("/sign-out")


def test_wrong_password_unknown_email_and_inactive_user_look_the_same(app, client, clinic) -> None:  # type: ignore[no-untyped-def]
    active = factories.user(clinics=[clinic])
    inactive = factories.user(clinics=[clinic])
    inactive.is_active = False
    from surveillance.extensions import db

    db.session.commit()
    attempts = [
        (active.email, "wrong password!"),
        ("nobody@watchful.test", PASSWORD),
        (inactive.email, PASSWORD),
    ]
    pages = []
    for email, password in attempts:
        response = client.post("/sign-in", data={"email": email, "password": password})
        assert response.status_code == 422
        html = response.get_data(as_text=True)
        assert "Email or password is incorrect." in html
        # The email is kept, the password is not echoed back.
        assert f'value="{email}"' in html
        assert password not in html
        pages.append(re.sub(r'value="[^"]*"', "", html))
    assert pages[0] == pages[1] == pages[2]
    assert client.get("/coordinator/").status_code == 302


def test_empty_sign_in_form_names_each_missing_field(client) -> None:  # type: ignore[no-untyped-def]
    html = client.post("/sign-in", data={}).get_data(as_text=True)
    assert "Enter your email address." in html
    assert "Enter your password." in html


def test_sign_out_needs_post_and_ends_the_session(client, coordinator) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, coordinator.email)
    assert client.get("/sign-out").status_code == 405
    response = client.post("/sign-out", follow_redirects=True)
    assert "You are signed out." in response.get_data(as_text=True)
    assert client.get("/coordinator/").status_code == 302


def test_forms_without_a_csrf_token_are_refused(app, client, coordinator) -> None:  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = True
    refused = client.post("/sign-in", data={"email": coordinator.email, "password": PASSWORD})
    assert refused.status_code == 400
    assert "Nothing was changed" in refused.get_data(as_text=True)
    assert client.get("/coordinator/").status_code == 302  # not signed in

    page = client.get("/sign-in").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert token is not None
    accepted = client.post(
        "/sign-in",
        data={"email": coordinator.email, "password": PASSWORD, "csrf_token": token.group(1)},
    )
    assert accepted.status_code == 302
    # Signed in, a state-changing screen form without its token is refused too.
    patient = factories.enrol(coordinator.clinics[0])
    response = client.post(f"/coordinator/patients/{patient.id}/calendar-link/revoke")
    assert response.status_code == 400
    from surveillance.extensions import db

    db.session.refresh(patient)
    assert patient.feed_token_hash is not None
