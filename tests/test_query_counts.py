"""No query count grows with the page size: every list loads its rows' relations in a fixed
number of statements (no query per row), whatever the number of rows on the page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import pytest
import time_machine
from sqlalchemy import event, select

from surveillance.extensions import db
from surveillance.models import EventStatus, OutboxMessage, OutboxStatus, PlanEvent, User
from surveillance.services import patient_search, plans, worklists
from tests import factories

TODAY = date(2026, 1, 5)


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        yield


@contextmanager
def counting() -> Iterator[list[str]]:
    """The statements sent to the database (``BEGIN`` excluded) while the block runs."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.strip().upper() != "BEGIN" and not statement.startswith("BEGIN "):
            statements.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def statements_for(call: Callable[[], Any]) -> int:
    db.session.expire_all()  # nothing may come from the identity map
    with counting() as statements:
        call()
    db.session.rollback()
    return len(statements)


SMALL, LARGE = 5, 50
PATIENTS = 24


@pytest.fixture
def busy_clinic(clinic, coordinator):  # type: ignore[no-untyped-def]
    """Patients with events on every event worklist: enrolled long ago (overdue visits), with
    visit and biopsy windows open, some missed visits, and failed reminders."""
    for n in range(PATIENTS):
        enrolled = date(2024, 12, 2) if n % 2 else date(2025, 1, 13)
        factories.enrol(clinic, enrolled_on=enrolled, interval_months=3)
    for missed in db.session.scalars(
        select(PlanEvent)
        .where(PlanEvent.status == EventStatus.PLANNED)
        .order_by(PlanEvent.due_on, PlanEvent.id)
        .limit(48)
    ).all()[::3]:
        if missed.window_end < TODAY:
            plans.mark_missed(missed)
    for reminded in db.session.scalars(select(PlanEvent).order_by(PlanEvent.id).limit(12)):
        db.session.add(_failed_reminder(reminded))
    db.session.commit()
    return coordinator


def _failed_reminder(event: PlanEvent) -> OutboxMessage:
    now = datetime(2026, 1, 5, 16, tzinfo=UTC)
    return OutboxMessage(
        dedupe_key=f"test-{event.id}",
        rule="book-window",
        audience="patient",
        clinic_id=event.patient.clinic_id,
        event=event,
        patient=event.patient,
        recipient="someone@example.org",
        due_at=now,
        expires_at=now,
        status=OutboxStatus.FAILED,
        attempts=3,
        next_attempt_at=now,
        message_id=f"<test-{event.id}@watchful.test>",
        failed_at=now,
        last_error="Mailbox unavailable (550).",
    )


@pytest.mark.parametrize("name", list(worklists.WORKLISTS))
def test_worklist_page_query_count_is_constant(busy_clinic, name: str) -> None:  # type: ignore[no-untyped-def]
    user = busy_clinic
    small = worklists.fetch(name, user, TODAY, per_page=SMALL)
    large = worklists.fetch(name, user, TODAY, per_page=LARGE)
    assert len(large.items) > len(small.items) == SMALL  # the lists really have rows
    assert statements_for(lambda: worklists.fetch(name, user, TODAY, per_page=SMALL)) == (
        statements_for(lambda: worklists.fetch(name, user, TODAY, per_page=LARGE))
    )


def test_worklist_counts_are_one_statement(busy_clinic) -> None:  # type: ignore[no-untyped-def]
    counts = worklists.counts(busy_clinic, TODAY)
    assert all(counts.values())
    db.session.expire_all()
    with counting() as statements:
        worklists.counts(busy_clinic, TODAY)
    # Besides loading the user and their clinics (expired above): one statement for every list.
    assert len([s for s in statements if "outbox_messages" in s or "plan_events" in s]) == 1


@pytest.mark.parametrize("term", ["", "al", "alex", "STPERSO"])
@pytest.mark.parametrize("sort", list(patient_search.SortOrder))
def test_patient_search_query_count_is_constant(busy_clinic, sort, term) -> None:  # type: ignore[no-untyped-def]
    """With no term, a short one (scanned) and longer ones (the trigram indexes)."""

    def search(per_page: int) -> Callable[[], Any]:
        def call() -> None:
            page = patient_search.search(busy_clinic, term, sort=sort, per_page=per_page)
            # Touch what the screen shows of each row.
            for row in page.rows:
                _ = (row.patient.clinic.name, row.next_event and row.next_event.due_on)
                _ = row.patient.active_plan and row.patient.active_plan.interval_months

        return call

    assert len(patient_search.search(busy_clinic, term, per_page=SMALL).rows) == SMALL
    assert len(patient_search.search(busy_clinic, term, per_page=LARGE).rows) > SMALL
    assert statements_for(search(SMALL)) == statements_for(search(LARGE))


def test_api_patient_list_query_count_is_constant(busy_clinic, api) -> None:  # type: ignore[no-untyped-def]
    def listing(per_page: int) -> Callable[[], Any]:
        def call() -> None:
            response = api.get(f"/patients?per_page={per_page}")
            assert response.status_code == 200
            assert len(response.json["items"]) == min(per_page, PATIENTS)

        return call

    listing(SMALL)()  # the token's first use of the day is recorded once
    assert statements_for(listing(SMALL)) == statements_for(listing(LARGE))


@pytest.mark.parametrize("name", list(worklists.WORKLISTS))
def test_api_worklist_query_count_is_constant(busy_clinic, api, name: str) -> None:  # type: ignore[no-untyped-def]
    def listing(per_page: int) -> Callable[[], Any]:
        def call() -> None:
            response = api.get(f"/worklists/{name}?per_page={per_page}")
            assert response.status_code == 200 and len(response.json["items"]) >= SMALL

        return call

    listing(SMALL)()
    assert statements_for(listing(SMALL)) == statements_for(listing(LARGE))


@pytest.mark.parametrize("row_plan", list(patient_search.RowPlan))
def test_patient_search_loads_one_event_a_row(busy_clinic, row_plan) -> None:  # type: ignore[no-untyped-def]
    """A row shows one event: the page must not load every event of its patients' plans (about
    a dozen a patient, which once cost more than the rest of the page together)."""
    user_id = busy_clinic.id
    db.session.expunge_all()  # only what the search loads is in the session afterwards
    user = db.session.get(User, user_id)
    rows = patient_search.search(user, per_page=LARGE, row_plan=row_plan).rows
    loaded = [o for o in db.session.identity_map.values() if isinstance(o, PlanEvent)]
    assert len(rows) == PATIENTS and all(row.next_event is not None for row in rows)
    assert sorted(e.id for e in loaded) == sorted(row.next_event.id for row in rows)
