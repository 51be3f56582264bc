"""Every change leaves exactly one audit entry, with who, what, before and after."""

from __future__ import annotations

from datetime import date, datetime

import pytest
import sqlalchemy as sa
import time_machine
from sqlalchemy import select

from surveillance import jobs
from surveillance.audit import AuditEntry, acting_as
from surveillance.extensions import db
from surveillance.services import accounts, feed_tokens, plans
from tests import factories


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        yield


def entries(**where) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    query = select(AuditEntry).order_by(AuditEntry.id)
    for key, value in where.items():
        query = query.where(getattr(AuditEntry, key) == value)
    return list(db.session.scalars(query))


def new_entries(before: int) -> list[AuditEntry]:
    return [e for e in entries() if e.id > before]


def last_id() -> int:
    return db.session.scalar(select(sa.func.max(AuditEntry.id))) or 0


def test_enrolment_through_the_api_is_attributed_to_the_token_user(api, coordinator) -> None:  # type: ignore[no-untyped-def]
    body = api.post("/patients", json=factories.enrolment_payload(mrn="AUD-1")).json
    created = entries(entity="patients")
    assert len(created) == 1
    (entry,) = created
    assert entry.action == "create" and entry.entity_id == body["id"]
    assert entry.actor == f"user:{coordinator.email}" and entry.actor_user_id == coordinator.id
    assert entry.changes["after"]["mrn"] == "AUD-1"
    assert entry.changes["after"]["feed_token_hash"] == "set"  # never the hash itself
    assert len(entries(entity="surveillance_plans")) == 1
    assert len(entries(entity="plan_events")) == len(body["events"])
    assert all(e.patient_id == body["id"] for e in entries(entity="plan_events"))


def test_each_kind_of_change_writes_exactly_one_entry(clinic) -> None:  # type: ignore[no-untyped-def]
    patient = factories.enrol(clinic)
    plan = patient.active_plan
    visit = next(e for e in plan.events if e.kind == "visit")

    def one_entry(change, entity: str, action: str = "update") -> AuditEntry:  # type: ignore[no-untyped-def]
        before = last_id()
        change()
        db.session.commit()
        made = new_entries(before)
        assert [(e.entity, e.action) for e in made] == [(entity, action)], made
        return made[0]

    phone = one_entry(lambda: setattr(patient, "phone", "+1 720 555 0111"), "patients")
    assert phone.changes == {"phone": ["+1 303 555 0199", "+1 720 555 0111"]}

    booked = one_entry(
        lambda: plans.book(visit, datetime(2026, 7, 6, 9, 0), 30, "Room 2"), "plan_events"
    )
    assert booked.changes["status"] == ["planned", "booked"]
    assert booked.changes["location"] == [None, "Room 2"]
    assert "sequence" not in booked.changes  # bookkeeping is not a change of its own

    rotated = one_entry(lambda: feed_tokens.rotate_patient_token(patient), "patients")
    assert rotated.changes["feed_token_hash"] == ["set", "rotated"]
    assert "feed_token_salt" in rotated.changes

    revoked = one_entry(lambda: feed_tokens.revoke_patient_token(patient), "patients")
    assert revoked.changes["feed_token_hash"] == ["set", "revoked"]

    user = factories.user(clinics=[clinic])
    token = one_entry(lambda: accounts.issue_api_token(user, "laptop"), "api_tokens", "create")
    assert token.changes["after"]["token_hash"] == "set"

    renamed = one_entry(lambda: setattr(clinic, "name", "Renamed Clinic"), "clinics")
    assert renamed.changes == {"name": [renamed.changes["name"][0], "Renamed Clinic"]}

    other = factories.clinic()
    moved = one_entry(lambda: user.clinics.append(other), "users")
    assert moved.changes["clinics"] == [[clinic.slug], sorted([clinic.slug, other.slug])]

    ended = one_entry(lambda: setattr(plan, "interval_months", 4), "surveillance_plans")
    assert ended.changes == {"interval_months": [6, 4]}


def test_a_change_flushed_twice_in_one_action_is_one_entry(clinic) -> None:  # type: ignore[no-untyped-def]
    patient = factories.enrol(clinic)
    before = last_id()
    patient.phone = "1"
    db.session.flush()
    patient.phone = "2"
    db.session.commit()
    (entry,) = new_entries(before)
    assert entry.changes == {"phone": ["+1 303 555 0199", "2"]}


def test_rolled_back_changes_leave_no_entry(clinic) -> None:  # type: ignore[no-untyped-def]
    patient = factories.enrol(clinic)
    before = last_id()
    patient.phone = "999"
    db.session.flush()
    db.session.rollback()
    db.session.commit()
    assert new_entries(before) == []


def test_secrets_never_reach_the_log(clinic) -> None:  # type: ignore[no-untyped-def]
    user = factories.user(clinics=[clinic], password="first secret phrase")
    secret = accounts.issue_api_token(user)
    user.password_hash = accounts.hash_password("second secret phrase")
    db.session.commit()
    dumped = " ".join(str(e.changes) for e in entries())
    assert secret not in dumped
    assert user.password_hash not in dumped
    assert "scrypt" not in dumped


def test_system_actors_are_named(clinic) -> None:  # type: ignore[no-untyped-def]
    patient = factories.enrol(clinic)
    with acting_as("scheduler"):
        plans.extend_horizon(patient.active_plan, date(2027, 6, 1))
        db.session.commit()
    assert {e.actor for e in entries(entity="plan_events")} >= {"scheduler"}


def test_the_log_is_append_only_in_the_database(clinic) -> None:  # type: ignore[no-untyped-def]
    factories.enrol(clinic)
    for statement in (
        "UPDATE audit_entries SET actor = 'someone else'",
        "DELETE FROM audit_entries",
    ):
        with (
            pytest.raises(sa.exc.DBAPIError, match="append-only"),
            db.engine.begin() as conn,
        ):
            conn.execute(sa.text(statement))
    assert entries()


def test_admins_read_and_filter_the_log_coordinators_cannot(client, clinic, api) -> None:  # type: ignore[no-untyped-def]
    first = api.post("/patients", json=factories.enrolment_payload()).json
    api.post("/patients", json=factories.enrolment_payload())
    assert api.get("/audit").status_code == 403
    admin = factories.ApiClient(client, factories.token_for(factories.user(role="admin")))
    everything = admin.get("/audit?per_page=200").json
    assert everything["total"] >= 2
    about_first = admin.get(f"/audit?patient_id={first['id']}&per_page=200").json
    assert about_first["items"] and all(
        item["patient_id"] == first["id"] for item in about_first["items"]
    )
    patients_only = admin.get("/audit?entity=patients").json
    assert [i["entity"] for i in patients_only["items"]] == ["patients", "patients"]
    assert admin.get("/audit?patient_id=abc").status_code == 422


def test_moving_a_patient_to_another_clinic_is_logged(clinic) -> None:  # type: ignore[no-untyped-def]
    patient = factories.enrol(clinic)
    other = factories.clinic("elsewhere")
    before = last_id()
    patient.clinic = other
    db.session.commit()
    (entry,) = new_entries(before)
    assert entry.entity == "patients"
    assert entry.changes["clinic"] == [clinic.slug, "elsewhere"]


def test_signing_out_everywhere_is_logged(clinic) -> None:  # type: ignore[no-untyped-def]
    user = factories.user(clinics=[clinic])
    before = last_id()
    accounts.end_all_sessions(user)
    db.session.commit()
    (entry,) = new_entries(before)
    assert entry.changes == {"session_generation": [0, 1]}


def test_cli_changes_are_attributed_to_the_cli(runner) -> None:  # type: ignore[no-untyped-def]
    assert runner.invoke(args=["clinics", "create", "cli-made", "--name", "CLI"]).exit_code == 0
    (entry,) = entries(entity="clinics")
    assert entry.actor.startswith("cli:")


def test_the_horizon_job_logs_each_new_visit_and_horizon_like_the_services(clinic) -> None:  # type: ignore[no-untyped-def]
    """The job writes in bulk, past the session's listeners: it writes the same entries."""
    patient = factories.enrol(clinic, interval_months=6)
    plan = patient.active_plan
    before = last_id()
    with time_machine.travel("2026-07-20 17:00:00+00:00", tick=False):
        assert jobs.run_job("extend-horizons") == "added 2 visits to 1 plans"
    created = sorted(
        (e for e in new_entries(before) if e.entity == "plan_events"),
        key=lambda e: e.changes["after"]["ordinal"],
    )
    (horizon,) = [e for e in new_entries(before) if e.entity == "surveillance_plans"]
    assert len(new_entries(before)) == 3
    db.session.expire_all()
    new_visits = sorted((e for e in plan.events if e.ordinal >= 5), key=lambda e: e.ordinal)
    assert [(e.action, e.entity_id, e.patient_id, e.actor) for e in created] == [
        ("create", visit.id, patient.id, "system") for visit in new_visits
    ]
    after = created[0].changes["after"]
    assert after["uid"] == new_visits[0].uid and after["status"] == "planned"
    assert (after["ordinal"], after["due_on"]) == (5, "2028-07-05")
    assert "created_at" not in after and "sequence" not in after
    assert (horizon.action, horizon.entity_id, horizon.patient_id) == (
        "update",
        plan.id,
        patient.id,
    )
    assert horizon.changes == {"horizon_until": ["2028-01-05", "2029-01-05"]}
