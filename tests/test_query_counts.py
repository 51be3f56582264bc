"""No query count grows with the page size: every list loads its rows' relations in a fixed
number of statements (no query per row), whatever the number of rows on the page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import pytest
import time_machine
from sqlalchemy import event, select

from surveillance.extensions import db
from surveillance.models import EventStatus, PlanEvent
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


@pytest.fixture
def busy_clinic(clinic, coordinator):  # type: ignore[no-untyped-def]
    """Twelve patients, with events on every event worklist: enrolled long ago (overdue
    visits), with visit and biopsy windows open, and some missed visits."""
    for n in range(12):
        enrolled = date(2024, 12, 2) if n % 2 else date(2025, 1, 13)
        factories.enrol(clinic, enrolled_on=enrolled, interval_months=3)
    for missed in db.session.scalars(
        select(PlanEvent).where(PlanEvent.status == EventStatus.PLANNED).limit(24)
    ).all()[::3]:
        if missed.window_end < TODAY:
            plans.mark_missed(missed)
    db.session.commit()
    return coordinator


@pytest.mark.parametrize("name", list(worklists.WORKLISTS))
def test_worklist_page_query_count_is_constant(busy_clinic, name: str) -> None:  # type: ignore[no-untyped-def]
    user = busy_clinic
    small = worklists.fetch(name, user, TODAY, per_page=1)
    large = worklists.fetch(name, user, TODAY, per_page=50)
    if name != worklists.FAILED_REMINDERS:
        assert len(large.items) > len(small.items) >= 1  # the lists really have rows
    assert statements_for(lambda: worklists.fetch(name, user, TODAY, per_page=1)) == (
        statements_for(lambda: worklists.fetch(name, user, TODAY, per_page=50))
    )


@pytest.mark.parametrize("sort", list(patient_search.SortOrder))
def test_patient_search_query_count_is_constant(busy_clinic, sort) -> None:  # type: ignore[no-untyped-def]
    def search(per_page: int) -> Callable[[], Any]:
        def call() -> None:
            page = patient_search.search(busy_clinic, "", sort=sort, per_page=per_page)
            # Touch what the screen shows of each row.
            for row in page.rows:
                _ = (row.patient.clinic.name, row.next_event and row.next_event.due_on)

        return call

    assert len(patient_search.search(busy_clinic, "", per_page=50).rows) == 12
    assert statements_for(search(1)) == statements_for(search(50))


def test_api_patient_list_query_count_is_constant(busy_clinic, api) -> None:  # type: ignore[no-untyped-def]
    def listing(per_page: int) -> Callable[[], Any]:
        def call() -> None:
            response = api.get(f"/patients?per_page={per_page}")
            assert response.status_code == 200
            assert len(response.json["items"]) == min(per_page, 12)

        return call

    listing(1)()  # the token's first use of the day is recorded once
    assert statements_for(listing(1)) == statements_for(listing(50))


def test_api_worklist_query_count_is_constant(busy_clinic, api) -> None:  # type: ignore[no-untyped-def]
    def listing(per_page: int) -> Callable[[], Any]:
        return lambda: api.get(f"/worklists/overdue?per_page={per_page}")

    listing(1)()
    assert statements_for(listing(1)) == statements_for(listing(50))
