"""The command-line interface under ``flask --app surveillance``."""

from __future__ import annotations

from sqlalchemy import func, select

from surveillance.extensions import db
from surveillance.models import ApiToken, Clinic, Patient, PlanEvent, User
from surveillance.secrets_store import token_hash


def test_clinics_create(runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(
        args=[
            "clinics",
            "create",
            "north",
            "--name",
            "North Clinic",
            "--timezone",
            "America/Chicago",
            "--address",
            "5 Elm St",
        ]
    )
    assert result.exit_code == 0, result.output
    clinic = db.session.scalar(select(Clinic).where(Clinic.slug == "north"))
    assert (clinic.name, clinic.timezone, clinic.address) == (
        "North Clinic",
        "America/Chicago",
        "5 Elm St",
    )
    again = runner.invoke(args=["clinics", "create", "north", "--name", "Again"])
    assert again.exit_code != 0 and "already exists" in again.output
    bad = runner.invoke(args=["clinics", "create", "south", "--name", "S", "--timezone", "Mars/X"])
    assert bad.exit_code != 0 and "time zone" in bad.output


def test_users_create_prompts_for_the_password(runner, clinic) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(
        args=[
            "users",
            "create",
            "Ana@Example.org",
            "--role",
            "coordinator",
            "--clinic",
            clinic.slug,
        ],
        input="long enough password\nlong enough password\n",
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).where(User.email == "ana@example.org"))
    assert user.role == "coordinator" and [c.slug for c in user.clinics] == [clinic.slug]
    assert "long enough password" not in user.password_hash
    assert user.password_hash.startswith("scrypt:")


def test_users_create_rejects_short_password_and_unknown_clinic(runner) -> None:  # type: ignore[no-untyped-def]
    short = runner.invoke(args=["users", "create", "a@b.org", "--role", "admin", "--password", "x"])
    assert short.exit_code != 0 and "at least" in short.output
    unknown = runner.invoke(
        args=[
            "users",
            "create",
            "a@b.org",
            "--role",
            "admin",
            "--clinic",
            "nope",
            "--password",
            "long enough password",
        ]
    )
    assert unknown.exit_code != 0
    assert db.session.scalar(select(func.count(User.id))) == 0


def test_api_token_prints_the_secret_last_and_stores_only_its_hash(
    runner, client, coordinator
) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(args=["users", "api-token", coordinator.email])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert len(secret) >= 43
    stored = db.session.scalars(select(ApiToken.token_hash)).all()
    assert stored == [token_hash(secret)]
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/patients", headers=headers).status_code == 200


def test_demo_load_is_idempotent(runner, client) -> None:  # type: ignore[no-untyped-def]
    first = runner.invoke(args=["demo", "load"])
    assert first.exit_code == 0, first.output
    assert "Coordinator login:" in first.output
    token = next(
        line.split(":", 1)[1].strip()
        for line in first.output.splitlines()
        if line.startswith("Demo API token")
    )

    def state() -> tuple[int, ...]:
        return tuple(
            db.session.scalar(select(func.count(model.id)))
            for model in (Clinic, User, Patient, PlanEvent, ApiToken)
        )

    before = state()
    assert before[2] >= 5
    second = runner.invoke(args=["demo", "load"])
    assert second.exit_code == 0
    assert state() == before
    patients = client.get("/api/v1/patients", headers={"Authorization": f"Bearer {token}"}).json
    assert patients["total"] == before[2]
    statuses = {e.status for e in db.session.scalars(select(PlanEvent))}
    assert {"planned", "booked", "completed", "cancelled", "missed"} <= statuses


def test_demo_refuses_a_database_with_other_clinics(runner, clinic) -> None:  # type: ignore[no-untyped-def]
    refused = runner.invoke(args=["demo", "load"])
    assert refused.exit_code != 0 and "refusing" in refused.output
    assert db.session.scalar(select(func.count(User.id))) == 0
    assert runner.invoke(args=["demo", "load", "--force"]).exit_code == 0
