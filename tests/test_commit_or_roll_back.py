"""The coordinator views' one write pattern: run an action as one transaction, then answer.

A failed action must leave nothing half-written, whatever it had already flushed; a successful
one is committed before its message is composed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
import sqlalchemy as sa
from flask import Flask, get_flashed_messages
from flask_wtf import FlaskForm
from wtforms import StringField

from surveillance.coordinator.support import RedirectWith, commit_or_roll_back
from surveillance.errors import Conflict, ValidationFailed
from surveillance.extensions import db
from surveillance.models import Clinic, ClinicClosure
from tests import factories


class NameForm(FlaskForm):
    name = StringField("Name")


@pytest.fixture
def request_context(app: Flask) -> Iterator[None]:
    with app.test_request_context("/coordinator/anything", method="POST", data={"name": "New"}):
        yield


def stored() -> tuple[str, int]:
    """The clinic's name and the closures as the database holds them (a connection of its own,
    so nothing pending in the session can show)."""
    with db.engine.connect() as conn:
        name = conn.execute(sa.text("SELECT name FROM clinics")).scalar_one()
        closures = conn.execute(sa.text("SELECT COUNT(*) FROM clinic_closures")).scalar_one()
    return name, closures


def half_write_then_fail(clinic: Clinic) -> None:
    """Two writes flushed to the database, then a broken rule."""
    clinic.name = "Half-written"
    clinic.closures.append(ClinicClosure(closed_on=date(2026, 3, 2), reason="x"))
    db.session.flush()
    raise ValidationFailed({"name": "Not that name.", "elsewhere": "Not a field here."})


def test_a_failed_action_leaves_nothing_and_shows_its_errors(app, request_context) -> None:  # type: ignore[no-untyped-def]
    clinic = factories.clinic(name="Before")
    form = NameForm()
    answer = commit_or_roll_back(
        lambda: half_write_then_fail(clinic),
        form=form,
        failed=lambda exc: ("the form again", exc.status_code),
        done=lambda _: pytest.fail("done must not answer a failure"),
    )
    assert answer == ("the form again", 422)
    assert form.name.errors == ["Not that name."]
    assert form.form_errors == ["Not a field here."]
    assert stored() == ("Before", 0)
    assert clinic.name == "Before" and clinic.closures == []  # the session forgot it too
    assert get_flashed_messages() == []


def test_a_failure_may_flash_and_redirect_instead(app, request_context) -> None:  # type: ignore[no-untyped-def]
    clinic = factories.clinic(name="Before")

    def conflict() -> None:
        clinic.name = "Half-written"
        db.session.flush()
        raise Conflict("Already done.")

    answer = commit_or_roll_back(
        conflict,
        failed=lambda exc: RedirectWith("/back", f"Not done: {exc.message}", "error"),
        done=lambda _: pytest.fail("done must not answer a failure"),
    )
    assert (answer.status_code, answer.location) == (302, "/back")
    assert get_flashed_messages(with_categories=True) == [("error", "Not done: Already done.")]
    assert stored() == ("Before", 0)


def test_a_successful_action_is_committed_before_done_answers(app, request_context) -> None:  # type: ignore[no-untyped-def]
    clinic = factories.clinic(name="Before")
    seen_by_done = []

    def rename() -> str:
        clinic.name = "After"
        return "renamed"

    def done(result: str) -> RedirectWith:
        seen_by_done.append((result, stored()))
        return RedirectWith("/next", "Saved.", notes=(("2 moved.", "info"),))

    answer = commit_or_roll_back(rename, failed=lambda exc: pytest.fail(str(exc)), done=done)
    assert seen_by_done == [("renamed", ("After", 0))]
    assert (answer.status_code, answer.location) == (302, "/next")
    assert get_flashed_messages(with_categories=True) == [
        ("success", "Saved."),
        ("info", "2 moved."),
    ]


def test_an_unexpected_error_is_not_swallowed_or_committed(app, request_context) -> None:  # type: ignore[no-untyped-def]
    clinic = factories.clinic(name="Before")

    def crash() -> None:
        clinic.name = "Half-written"
        db.session.flush()
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        commit_or_roll_back(crash, failed=lambda exc: None, done=lambda _: None)
    db.session.rollback()  # what the request teardown does
    assert stored() == ("Before", 0)
