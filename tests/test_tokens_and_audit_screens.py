"""API tokens (list without secrets, revoke) in the API and on "My API tokens"; the admins'
audit log screen."""

from __future__ import annotations

import re
from datetime import timedelta

import time_machine
from sqlalchemy import func, select

from surveillance import clock
from surveillance.audit import AuditEntry
from surveillance.extensions import db
from surveillance.models import ApiToken
from tests import factories
from tests.screens import sign_in

# --- API ---------------------------------------------------------------------------------------


def test_tokens_are_listed_without_secrets_and_revoked(api, client, coordinator) -> None:  # type: ignore[no-untyped-def]
    second = accounts_token(coordinator, "backup script")
    listed = api.get("/tokens")
    assert listed.status_code == 200
    items = listed.json["items"]
    assert [t["name"] for t in items] == ["backup script", "test"]
    text = listed.get_data(as_text=True)
    assert api.token not in text and second not in text
    assert "hash" not in text

    token_id = items[0]["id"]
    assert api.delete(f"/tokens/{token_id}").status_code == 204
    refused = client.get("/api/v1/patients", headers={"Authorization": f"Bearer {second}"})
    assert refused.status_code == 401
    assert api.delete(f"/tokens/{token_id}").status_code == 204  # again: nothing changes
    revoked = api.get("/tokens").json["items"][0]
    assert revoked["revoked_at"] is not None
    assert _entries("api_tokens", "update") == 1  # one audit entry, for the first revocation


def accounts_token(user, name: str) -> str:  # type: ignore[no-untyped-def]
    from surveillance.services import accounts

    secret = accounts.issue_api_token(user, name)
    db.session.commit()
    return secret


def _entries(entity: str, action: str) -> int:
    return db.session.scalar(
        select(func.count(AuditEntry.id)).where(
            AuditEntry.entity == entity, AuditEntry.action == action
        )
    )


def test_others_tokens_are_not_found_and_not_listed(api, clinic) -> None:  # type: ignore[no-untyped-def]
    other = factories.user(clinics=[clinic])
    accounts_token(other, "theirs")
    their_id = db.session.scalar(select(ApiToken.id).where(ApiToken.user_id == other.id))
    assert api.delete(f"/tokens/{their_id}").status_code == 404
    assert db.session.get(ApiToken, their_id).revoked_at is None
    assert api.get(f"/tokens?user_id={other.id}").status_code == 403
    assert api.get("/tokens?user_id=x").status_code == 422
    assert [t["name"] for t in api.get("/tokens").json["items"]] == ["test"]


def test_admins_list_and_revoke_anyones_tokens(client, clinic, coordinator) -> None:  # type: ignore[no-untyped-def]
    admin = factories.user(role="admin")
    api = factories.ApiClient(client, factories.token_for(admin))
    accounts_token(coordinator, "theirs")
    listed = api.get(f"/tokens?user_id={coordinator.id}").json["items"]
    assert [t["name"] for t in listed] == ["theirs"]
    assert api.get("/tokens?user_id=999999").status_code == 404
    assert api.delete(f"/tokens/{listed[0]['id']}").status_code == 204


# --- My API tokens screen ---------------------------------------------------------------------


def test_my_tokens_screen_creates_shows_the_secret_once_and_revokes(client, coordinator) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, coordinator.email)
    with time_machine.travel(clock.utcnow(), tick=False):
        created = client.post("/coordinator/tokens", data={"name": "nightly export"})
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    html = created.get_data(as_text=True)
    secret = re.search(r'id="new-token-secret" type="text" readonly value="([^"]+)"', html).group(1)
    used = client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {secret}"})
    assert used.status_code == 200

    page = client.get("/coordinator/tokens").get_data(as_text=True)
    assert "nightly export" in page and secret not in page
    row = re.search(r"<tr>\s*<td>nightly export</td>.*?</tr>", page, re.S).group(0)
    assert "Never" not in row  # the API call above is its last use
    token_id = db.session.scalar(select(ApiToken.id).where(ApiToken.name == "nightly export"))
    revoked = client.post(f"/coordinator/tokens/{token_id}/revoke", follow_redirects=True)
    assert "revoked" in revoked.get_data(as_text=True)
    assert (
        client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )


def test_my_tokens_screen_refuses_a_nameless_token_and_others_tokens(
    client, clinic, coordinator
) -> None:  # type: ignore[no-untyped-def]
    other = factories.user(clinics=[clinic])
    accounts_token(other, "theirs")
    their_id = db.session.scalar(select(ApiToken.id).where(ApiToken.user_id == other.id))
    sign_in(client, coordinator.email)
    refused = client.post("/coordinator/tokens", data={"name": ""})
    assert refused.status_code == 422
    assert "Name the token" in refused.get_data(as_text=True)
    assert client.post(f"/coordinator/tokens/{their_id}/revoke").status_code == 404
    assert db.session.get(ApiToken, their_id).revoked_at is None
    assert "theirs" not in client.get("/coordinator/tokens").get_data(as_text=True)


# --- Audit log screen -------------------------------------------------------------------------


def test_audit_screen_is_for_admins_only(client, coordinator) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/coordinator/audit").status_code == 302  # anonymous: sign in first
    sign_in(client, coordinator.email)
    assert client.get("/coordinator/audit").status_code == 403


def test_audit_screen_filters_and_shows_before_and_after(client, clinic) -> None:  # type: ignore[no-untyped-def]
    admin = factories.user(role="admin", email="auditor@watchful.test")
    with time_machine.travel("2026-03-02 12:00:00+00:00", tick=False):
        first = factories.enrol(clinic, family_name="Firstperson")
    with time_machine.travel("2026-03-05 12:00:00+00:00", tick=False):
        second = factories.enrol(clinic, family_name="Secondperson")
        api = factories.ApiClient(client, factories.token_for(admin))
        assert (
            api.patch(f"/patients/{second.id}", json={"phone": "+1 720 555 0101"}).status_code
            == 200
        )

    sign_in(client, admin.email)
    everything = client.get("/coordinator/audit").get_data(as_text=True)
    assert "Firstperson" in everything and "Secondperson" in everything

    updates = client.get(
        f"/coordinator/audit?entity=patients&patient_id={second.id}&actor=auditor"
    ).get_data(as_text=True)
    assert re.search(r'id="audit-total">1 entry', updates)
    assert "+1 303 555 0199" in updates and "+1 720 555 0101" in updates  # before and after
    assert "Firstperson" not in updates

    march_2 = client.get(
        "/coordinator/audit?entity=patients&date_from=2026-03-02&date_to=2026-03-02"
    ).get_data(as_text=True)
    assert "Firstperson" in march_2 and "Secondperson" not in march_2
    assert str(first.id) in march_2

    bad = client.get("/coordinator/audit?date_from=2026-03-05&date_to=2026-03-01&patient_id=x")
    assert bad.status_code == 422
    assert "must not be before" in bad.get_data(as_text=True)


def test_audit_screen_is_paginated(client, clinic) -> None:  # type: ignore[no-untyped-def]
    admin = factories.user(role="admin")
    for _ in range(6):
        factories.enrol(clinic)
    total = db.session.scalar(select(func.count(AuditEntry.id)))
    assert total > 50  # a patient, a plan and several events each
    sign_in(client, admin.email)
    first = client.get("/coordinator/audit").get_data(as_text=True)
    assert first.count('class="card mb-2 audit-entry"') == 50
    assert 'rel="next"' in first
    last_page = (total + 49) // 50
    last = client.get(f"/coordinator/audit?page={last_page}").get_data(as_text=True)
    assert last.count('class="card mb-2 audit-entry"') == total - 50 * (last_page - 1)
    assert 'rel="prev"' in last and 'rel="next"' not in last


def test_old_entries_stay_readable(client, clinic) -> None:  # type: ignore[no-untyped-def]
    admin = factories.user(role="admin")
    with time_machine.travel(clock.utcnow() - timedelta(days=400), tick=False):
        factories.enrol(clinic, family_name="Longago")
    sign_in(client, admin.email)
    assert "Longago" in client.get("/coordinator/audit?entity=patients").get_data(as_text=True)


def test_absurd_page_numbers_are_harmless(client, clinic) -> None:  # type: ignore[no-untyped-def]
    admin = factories.user(role="admin")
    sign_in(client, admin.email)
    for path in ("/coordinator/audit", "/coordinator/patients", "/coordinator/"):
        for page in ("99999999999999999999999", "-5", "x"):
            assert client.get(f"{path}?page={page}").status_code == 200, (path, page)
