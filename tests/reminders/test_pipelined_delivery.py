"""Delivery prepares the next batch while the current one is being sent (one sending thread):
SMTP failures in the middle of a run, a crash mid-batch and a batch whose event changes
while it waits, against a real SMTP server (aiosmtpd). Each row must end as its own SMTP
conversation says, and nothing goes twice except what a crash left unconfirmed."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import event as sa_event

from surveillance.extensions import db
from surveillance.reminders import delivery
from surveillance.reminders.transport import SmtpTransport
from tests.reminders.conftest import MailServer, Recorder
from tests.reminders.helpers import patient, queue, rows

ENROLLED = "2026-01-05 17:00:00+00:00"
START = datetime(2026, 3, 15, 15, tzinfo=UTC)  # every patient's book-window reminder is due
BATCH = 5


class Flaky(Recorder):
    """Accepts the first ``accept`` messages, then answers 451 to every recipient (an outage
    in the middle of a run); ``bounce`` addresses get a permanent 550 throughout."""

    def __init__(self, accept: int, bounce: set[str]) -> None:
        super().__init__()
        self.accept, self.bounce, self.outage = accept, bounce, True

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address in self.bounce:
            return "550 5.1.1 No such user"
        if self.outage and len(self.received) >= self.accept:
            return "451 4.3.0 Try again later"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


def _patients(clinic, count: int) -> list[Any]:  # type: ignore[no-untyped-def]
    with time_machine.travel(ENROLLED, tick=False):
        return [patient(clinic) for _ in range(count)]


def test_an_outage_in_the_middle_of_a_run_leaves_each_row_as_its_conversation_ended(
    clinic, app, smtp: MailServer
) -> None:  # type: ignore[no-untyped-def]
    people = _patients(clinic, 13)
    bounce = {people[1].email, people[9].email}
    smtp.stop()
    smtp.recorder = Flaky(accept=6, bounce=bounce)
    smtp.start()
    with time_machine.travel(START, tick=False):
        queue()
        result = delivery.deliver_due(batch_size=BATCH)
    # Three batches in flight one after the other: 6 accepted, then the outage; the two
    # bounced addresses fail for good wherever they fall.
    assert (result.sent, result.failed, result.retrying) == (6, 2, 5)
    received = {r.rcpt_tos[0]: r.message_id for r in smtp.received}
    assert len(smtp.received) == len(received) == 6
    by_patient = {r.patient_id: r for r in rows()}
    for person in people:
        row = by_patient[person.id]
        assert row.attempts == 1
        if person.email in received:
            assert (row.status, row.sent_at, row.last_error) == ("sent", START, None)
            assert received[person.email] == row.message_id
        elif person.email in bounce:
            assert (row.status, row.failed_at) == ("failed", START)
            assert row.last_error == "The mail server refused the recipient (550)."
        else:
            assert (row.status, row.next_attempt_at) == ("queued", START + timedelta(seconds=60))
            assert row.last_error == "The mail server refused the recipient for now (451)."
    assert {r.status for r in rows()} == {"sent", "failed", "queued"}
    assert not [r for r in rows() if r.claimed_by or r.lease_until]
    # The server recovers: the retries go, once each, and nothing sent before goes again.
    smtp.recorder.outage = False
    with time_machine.travel(START + timedelta(seconds=60), tick=False):
        assert delivery.deliver_due(batch_size=BATCH).sent == 5
    ids = smtp.message_ids()
    assert len(ids) == len(set(ids)) == 11
    assert Counter(r.status for r in rows()) == {"sent": 11, "failed": 2}


class CrashOnSend:
    """Sends for real; the ``crash_at``-th send goes out and then the process dies."""

    def __init__(self, port: int, crash_at: int) -> None:
        self.inner, self.crash_at, self.count = SmtpTransport("127.0.0.1", port), crash_at, 0

    def send(self, message, sender, recipient) -> None:  # type: ignore[no-untyped-def]
        self.inner.send(message, sender, recipient)
        self.count += 1
        if self.count == self.crash_at:
            raise KeyboardInterrupt("the process dies here")

    def close(self) -> None:
        self.inner.close()


def test_a_crash_mid_batch_leaves_that_batch_and_the_prepared_one_to_their_leases(
    clinic, app, smtp: MailServer
) -> None:  # type: ignore[no-untyped-def]
    _patients(clinic, 12)
    crashing = CrashOnSend(smtp.port, crash_at=BATCH + 2)
    with time_machine.travel(START, tick=False):
        queue()
        with pytest.raises(KeyboardInterrupt):
            delivery.deliver_due(transport=crashing, batch_size=BATCH)
        db.session.rollback()
    first, second, third = rows()[:5], rows()[5:10], rows()[10:]
    # The first batch was recorded; the second went out in part and was not; the third was
    # claimed and prepared while the second went out, and never sent.
    assert {(r.status, r.attempts) for r in first} == {("sent", 1)}
    assert {(r.status, r.attempts) for r in second + third} == {("sending", 1)}
    unconfirmed = [r.message_id for r in second[:2]]
    assert smtp.message_ids() == [r.message_id for r in first] + unconfirmed
    with time_machine.travel(START + timedelta(seconds=30), tick=False):
        assert delivery.deliver_due(batch_size=BATCH).sent == 0  # still leased
    lease = timedelta(seconds=app.config["REMINDER_LEASE_SECONDS"])
    with time_machine.travel(START + lease + timedelta(seconds=1), tick=False):
        assert delivery.deliver_due(batch_size=BATCH).sent == 7
    assert {(r.status, r.attempts) for r in rows()[:5]} == {("sent", 1)}
    assert {(r.status, r.attempts) for r in rows()[5:]} == {("sent", 2)}
    # At least once: only the two messages the crash left unconfirmed arrived twice.
    copies = Counter(smtp.message_ids())
    assert {r.message_id: copies[r.message_id] for r in rows()} == {
        r.message_id: 2 if r.message_id in unconfirmed else 1 for r in rows()
    }


def test_the_next_batch_is_claimed_and_prepared_while_this_one_is_sent(
    clinic, app, smtp: MailServer
) -> None:  # type: ignore[no-untyped-def]
    """The overlap itself: the first send waits until the main thread has claimed the second
    batch (it would wait forever, here 30 s, if the two took turns)."""
    _patients(clinic, 2 * BATCH)
    claims = 0
    threads: set[str] = set()
    second_claim = threading.Event()

    def watch(conn, cursor, statement: str, *args) -> None:  # type: ignore[no-untyped-def]
        nonlocal claims
        threads.add(threading.current_thread().name)
        if "UPDATE outbox_messages" in statement and "RETURNING" in statement:  # a claim
            claims += 1
            if claims == 2:
                second_claim.set()

    class WaitForTheNextClaim(SmtpTransport):
        overlapped: bool | None = None

        def send(self, message, sender, recipient) -> None:  # type: ignore[no-untyped-def]
            if self.overlapped is None:
                self.overlapped = second_claim.wait(timeout=30)
            super().send(message, sender, recipient)

    transport = WaitForTheNextClaim("127.0.0.1", smtp.port)
    with time_machine.travel(START, tick=False):
        queue()
        sa_event.listen(db.engine, "before_cursor_execute", watch)
        try:
            result = delivery.deliver_due(transport=transport, batch_size=BATCH)
        finally:
            sa_event.remove(db.engine, "before_cursor_execute", watch)
    assert transport.overlapped is True
    assert result.sent == 2 * BATCH and len(set(smtp.message_ids())) == 2 * BATCH
    # Every statement ran on the main thread: the sending thread never touches the database.
    assert threads == {threading.main_thread().name}
