"""The demo gives every coordinator screen something to show, and loading it twice changes
nothing."""

from __future__ import annotations

from sqlalchemy import func, select

from surveillance import demo
from surveillance.extensions import db
from surveillance.models import ContactAttempt, OutboxMessage, OutboxStatus, Patient, StageChange
from tests.screens import sign_in


def _counts() -> tuple[int, ...]:
    return tuple(
        db.session.scalar(select(func.count()).select_from(model)) or 0
        for model in (Patient, StageChange, ContactAttempt, OutboxMessage)
    )


def test_demo_shows_biopsy_review_a_failed_reminder_and_a_contact_attempt(runner, client) -> None:  # type: ignore[no-untyped-def]
    first = runner.invoke(args=["demo", "load"])
    assert first.exit_code == 0, first.output
    assert " moved to biopsy review" in first.output
    loaded = _counts()
    # DEMO-0008's biopsy window opened two weeks ago whatever today is (others may be near
    # the edge of theirs, depending on the date).
    in_review = db.session.scalar(select(Patient).where(Patient.mrn == "DEMO-0008"))
    assert in_review is not None and in_review.stage == "biopsy_review"
    failed = db.session.scalar(select(OutboxMessage).where(OutboxMessage.status == "failed"))
    assert failed is not None and failed.patient is not None
    attempt = db.session.scalar(select(ContactAttempt))
    assert attempt is not None and attempt.user is not None

    again = runner.invoke(args=["demo", "load"])
    assert again.exit_code == 0, again.output
    assert "0 new patient(s)" in again.output and "0 moved to biopsy review" in again.output
    assert _counts() == loaded

    sign_in(client, demo.COORDINATOR_EMAIL, demo.DEMO_PASSWORD)
    today = client.get("/coordinator/?list=failed-reminders").get_data(as_text=True)
    assert f'id="reminder-{failed.id}"' in today
    assert 'id="worklist-biopsy-due"' in today
    page = client.get(f"/coordinator/patients/{in_review.id}").get_data(as_text=True)
    assert '<strong id="current-stage">Biopsy review</strong>' in page
    assert "The one-year biopsy window opened." in page
    page = client.get(f"/coordinator/patients/{attempt.event.patient_id}").get_data(as_text=True)
    assert "Rang twice; no voicemail set up." in page
    # The reminder queue sees the bounced reminder as already queued: no second copy.
    queued = runner.invoke(args=["jobs", "run", "queue-reminders"])
    assert queued.exit_code == 0, queued.output
    same = select(func.count(OutboxMessage.id)).where(
        OutboxMessage.event_id == failed.event_id, OutboxMessage.rule == "booked-visit"
    )
    assert db.session.scalar(same) == 1
    # Retrying the bounced reminder queues it again (the visit has not started yet).
    client.post(f"/coordinator/reminders/{failed.id}/retry")
    db.session.refresh(failed)
    assert failed.status == OutboxStatus.QUEUED
