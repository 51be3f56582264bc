"""Delivery sends one batch on a thread of its own while the main thread claims and prepares the
next (``delivery.deliver_due``). What must hold, against a real SMTP server (aiosmtpd): a batch
is recorded before the next one is handed to the sending thread, so at any moment at most one
batch is sent and not recorded; an error on either thread ends the run with that error, the
sending thread stopped before the transport is closed; two workers never send a message twice;
on PostgreSQL a batch's events stay ``FOR SHARE`` while it is sent."""

from __future__ import annotations

import inspect
import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

import pytest
import time_machine
from flask import Flask
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import OperationalError

from surveillance.extensions import db
from surveillance.models import OutboxMessage, OutboxStatus
from surveillance.reminders import delivery, messages, sending
from surveillance.reminders.transport import SmtpTransport, wire_format
from tests.reminders.conftest import MailServer
from tests.reminders.helpers import patient, queue, rows

ENROLLED = "2026-01-05 17:00:00+00:00"
WINDOW_OPENS = datetime(2026, 3, 15, 15, tzinfo=UTC)  # every patient's "time to book" is due
WAIT = 30  # seconds: only ever reached when what is waited for never happens (a failure)


def queued(clinic, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    """``count`` due "time to book" messages; their Message-IDs in claiming order."""
    with time_machine.travel(ENROLLED, tick=False):
        for _ in range(count):
            patient(clinic)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        queue()
    messages = rows()
    assert len(messages) == count
    return [m.message_id for m in messages]


def statuses(engine: Engine) -> dict[str, str]:
    """Message-ID -> status as committed, read on a connection of its own (from any thread)."""
    with engine.connect() as conn:
        found = conn.execute(select(OutboxMessage.message_id, OutboxMessage.status))
        return {message_id: str(status) for message_id, status in found}


class Watched:
    """The real SMTP transport; ``before`` runs (on the sending thread) before each message,
    and every send and close is logged with the thread it ran on."""

    def __init__(self, port: int, before: Callable[[str], None] = lambda message_id: None):
        self.inner = SmtpTransport("127.0.0.1", port)
        self.before = before
        self.log: list[tuple[str, str]] = []  # ("send", Message-ID) or ("close", "")
        self.threads: set[str] = set()

    def send(self, message: Message, sender: str, recipient: str) -> None:
        message_id = str(message["Message-ID"])
        self.threads.add(threading.current_thread().name)
        self.before(message_id)
        self.inner.send(message, sender, recipient)
        self.log.append(("send", message_id))

    def close(self) -> None:
        self.log.append(("close", ""))
        self.inner.close()

    def sent(self) -> list[str]:
        return [message_id for what, message_id in self.log if what == "send"]


def test_each_batch_is_recorded_before_the_next_is_sent_while_the_next_is_prepared(
    clinic, smtp: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    ids = queued(clinic, 5)
    batches = [ids[0:2], ids[2:4], ids[4:5]]  # batch_size=2, in claiming order
    engine = db.engine
    claimed = [threading.Event() for _ in range(len(batches) + 1)]  # the last one finds none
    calls = iter(claimed)
    claim = delivery.claim

    def counting_claim(*args: Any, **kwargs: Any) -> list[int]:
        found = claim(*args, **kwargs)
        next(calls).set()
        return found

    monkeypatch.setattr(delivery, "claim", counting_claim)
    handed: list[dict[str, str]] = []  # the statuses as each batch was handed over
    hand_over = delivery._SendingThread.send

    def watched_hand_over(self: delivery._SendingThread, batch: delivery._Batch, full: bool) -> Any:
        handed.append(statuses(engine))
        return hand_over(self, batch, full)

    monkeypatch.setattr(delivery._SendingThread, "send", watched_hand_over)
    seen: dict[str, dict[str, str]] = {}  # the statuses as each message was sent

    def before(message_id: str) -> None:
        number = next(i for i, batch in enumerate(batches) if message_id in batch)
        # The main thread claims (and prepares) the next batch while this one is sent.
        assert claimed[number + 1].wait(WAIT), "the next batch was not claimed meanwhile"
        seen[message_id] = statuses(engine)

    transport = Watched(smtp.port, before)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        result = delivery.deliver_due(transport=transport, batch_size=2)
    assert result.sent == 5
    assert transport.sent() == ids
    assert sorted(smtp.message_ids()) == sorted(ids)
    assert transport.log[-1] == ("close", "")
    assert transport.threads == {"outbox-send_0"}  # never the main thread
    assert len(handed) == len(batches)
    for number, (batch, status) in enumerate(zip(batches, handed, strict=True)):
        # Handed over only once every earlier batch is recorded: at most one batch is ever
        # sent and not recorded.
        assert {status[i] for b in batches[:number] for i in b} <= {OutboxStatus.SENT}
        assert {status[i] for i in batch} == {OutboxStatus.SENDING}
    for number, batch in enumerate(batches):
        for message_id in batch:
            status = seen[message_id]
            # This batch is recorded after all its messages are sent, not one by one.
            assert {status[i] for i in batch} == {OutboxStatus.SENDING}
            # The next batch is claimed already (and not sent: the order of sends is checked).
            if number + 1 < len(batches):
                assert {status[i] for i in batches[number + 1]} == {OutboxStatus.SENDING}
    assert {(r.status, r.attempts) for r in rows()} == {(OutboxStatus.SENT, 1)}


class Breaks(Exception):
    """Not a delivery failure: a bug, or the process being stopped."""


def test_an_error_on_the_sending_thread_ends_the_run_with_one_batch_unrecorded(
    clinic, app: Flask, smtp: MailServer
) -> None:  # type: ignore[no-untyped-def]
    ids = queued(clinic, 7)  # batches of 3: [0 1 2] [3 4 5] [6]

    def before(message_id: str) -> None:
        if message_id == ids[5]:
            raise Breaks("in the middle of the second batch")

    transport = Watched(smtp.port, before)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        with pytest.raises(Breaks):
            delivery.deliver_due(transport=transport, batch_size=3)
        db.session.rollback()
        status = {r.message_id: (r.status, r.attempts) for r in rows()}
    assert transport.sent() == ids[:5]
    assert transport.log[-1] == ("close", "")
    assert sorted(smtp.message_ids()) == sorted(ids[:5])
    # The first batch is recorded; the second was partly sent and is not: it keeps its claim,
    # as does the third, claimed and prepared meanwhile but never handed over.
    assert [status[i] for i in ids] == [(OutboxStatus.SENT, 1)] * 3 + [
        (OutboxStatus.SENDING, 1)
    ] * 4
    # Once the leases run out the unrecorded rows go again: the two sent ones a second time,
    # with the same Message-IDs (at least once), and nothing of the recorded batch.
    lease = timedelta(seconds=app.config["REMINDER_LEASE_SECONDS"])
    with time_machine.travel(WINDOW_OPENS + lease + timedelta(seconds=1), tick=False):
        assert delivery.deliver_due(batch_size=3).sent == 4
    received = smtp.message_ids()
    assert sorted(received) == sorted(ids + ids[3:5])
    assert {(r.status, r.attempts) for r in rows() if r.message_id in ids[:3]} == {
        (OutboxStatus.SENT, 1)
    }
    assert {(r.status, r.attempts) for r in rows() if r.message_id in ids[3:]} == {
        (OutboxStatus.SENT, 2)
    }


def test_an_error_on_the_main_thread_stops_the_sending_thread_before_the_transport_closes(
    clinic, smtp: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    ids = queued(clinic, 7)  # batches of 3: [0 1 2] [3 4 5] [6]
    first_sent = threading.Event()
    prepare = delivery._prepare_batch
    prepared: list[list[int]] = []

    def failing_prepare(batch_ids: list[int], *args: Any) -> delivery._Batch:
        prepared.append(batch_ids)
        if len(prepared) == 2:
            # The second batch is claimed; fail its preparation while the first is sent.
            assert first_sent.wait(WAIT)
            raise OperationalError("SELECT", {}, Exception("the database went away"))
        return prepare(batch_ids, *args)

    monkeypatch.setattr(delivery, "_prepare_batch", failing_prepare)

    def before(message_id: str) -> None:
        if message_id == ids[0]:
            first_sent.set()

    transport = Watched(smtp.port, before)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        with pytest.raises(OperationalError, match="went away"):
            delivery.deliver_due(transport=transport, batch_size=3)
        db.session.rollback()
        status = {r.message_id: r.status for r in rows()}
    # The sending thread stopped (after the message in hand, at most the first batch) before
    # the transport was closed, and is gone.
    assert transport.log[-1] == ("close", "")
    assert [what for what, _ in transport.log].count("close") == 1
    assert 1 <= len(transport.sent()) <= 3 and set(transport.sent()) <= set(ids[:3])
    assert not [t for t in threading.enumerate() if t.name.startswith("outbox-send")]
    # Nothing was recorded: the first batch (sent, or partly) and the second keep their claims.
    assert [status[i] for i in ids] == [OutboxStatus.SENDING] * 6 + [OutboxStatus.QUEUED]


def test_two_workers_at_once_never_send_a_message_twice(
    clinic, app: Flask, smtp: MailServer
) -> None:  # type: ignore[no-untyped-def]
    ids = queued(clinic, 24)
    results: list[delivery.DeliveryResult] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(name: str) -> None:
        try:
            with app.app_context():
                start.wait(WAIT)
                results.append(delivery.deliver_due(worker=name, batch_size=3))
                db.session.remove()
        except BaseException as exc:  # reported below, on the test thread
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    with time_machine.travel(WINDOW_OPENS, tick=False):  # the whole process's clock
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(WAIT * 4)
    assert not errors, errors
    assert sum(r.sent for r in results) == 24
    assert sum(r.lost_lease for r in results) == 0
    received = smtp.message_ids()
    assert sorted(received) == sorted(ids)  # each once
    db.session.rollback()  # this thread's read began before the workers wrote
    assert {(r.status, r.attempts) for r in rows()} == {(OutboxStatus.SENT, 1)}


def test_postgresql_holds_the_batchs_events_while_it_is_sent(
    clinic, smtp: MailServer, is_postgres: bool
) -> None:  # type: ignore[no-untyped-def]
    if not is_postgres:
        return  # SQLite has no row locks: nothing is held while sending
    ids = queued(clinic, 4)
    events = {r.message_id: r.event_id for r in rows()}
    engine = db.engine
    blocked: list[str] = []

    def reschedule_waits(message_id: str) -> bool:
        """Whether changing the message's event has to wait (for the delivery's lock)."""
        with engine.connect() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '50ms'"))
            try:
                conn.execute(
                    text("UPDATE plan_events SET location = location WHERE id = :id"),
                    {"id": events[message_id]},
                )
            except OperationalError as exc:
                assert "lock timeout" in str(exc)
                return True
            finally:
                conn.rollback()
        return False

    def before(message_id: str) -> None:
        if reschedule_waits(message_id):
            blocked.append(message_id)

    with time_machine.travel(WINDOW_OPENS, tick=False):
        delivery.deliver_due(transport=Watched(smtp.port, before), batch_size=2)
    assert blocked == ids
    assert not any(reschedule_waits(i) for i in ids)  # all released after the run


# --- Over SMTP, the conversation happens in a child process ------------------------------------


class Children:
    """The sending processes runs start from now on, each waited for until it is ready (so
    that the run's batches go through it), and how many messages went through them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started: list[sending.SendingProcess] = []
        self.sent = 0
        self.kinds: set[type] = set()  # of the messages handed to them
        start, send_all = sending.SendingProcess.__init__, sending.SendingProcess.send_all

        def starting(process: sending.SendingProcess, transport: SmtpTransport) -> None:
            start(process, transport)
            self.started.append(process)
            assert process._pipe.poll(WAIT), "the child did not start"
            assert process.ready()

        def sending_all(process: sending.SendingProcess, batch: list[Any]) -> Any:
            self.sent += len(batch)
            self.kinds.update(type(message) for message, _, _ in batch)
            return send_all(process, batch)

        monkeypatch.setattr(sending.SendingProcess, "__init__", starting)
        monkeypatch.setattr(sending.SendingProcess, "send_all", sending_all)


def test_smtp_is_spoken_from_a_child_process_that_ends_with_the_run(
    clinic, smtp: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    ids = queued(clinic, 5)
    children = Children(monkeypatch)
    started = children.started
    with time_machine.travel(WINDOW_OPENS, tick=False):
        result = delivery.deliver_due(batch_size=2)  # the configured SMTP server
    assert result.sent == 5
    assert sorted(smtp.message_ids()) == sorted(ids)
    assert {(r.status, r.attempts) for r in rows()} == {(OutboxStatus.SENT, 1)}
    (child,) = started  # one for the whole run, however many batches
    assert children.sent == 5  # every message went through it
    assert children.kinds == {bytes}  # in their wire format, made by the run
    assert child.process.pid != os.getpid()
    assert not child.process.is_alive() and child.process.exitcode == 0


def test_the_childs_refusals_become_the_messages_outcomes(
    clinic, smtp: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    queued(clinic, 3)
    children = Children(monkeypatch)
    started = children.started
    smtp.recorder.refuse_rcpt = "550 5.1.1 No such mailbox"
    with time_machine.travel(WINDOW_OPENS, tick=False):
        result = delivery.deliver_due(batch_size=2)
    assert (result.sent, result.failed) == (0, 3) and len(started) == 1
    assert {(r.status, r.last_error) for r in rows()} == {
        (OutboxStatus.FAILED, "The mail server refused the recipient (550).")
    }


def test_a_child_that_dies_ends_the_run_and_its_batch_waits_for_its_lease(
    app: Flask, clinic, smtp: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    ids = queued(clinic, 6)
    children = Children(monkeypatch)
    started = children.started
    accept = smtp.recorder.handle_DATA

    async def accept_then_kill_the_sender(server, session, envelope):  # type: ignore[no-untyped-def]
        reply = await accept(server, session, envelope)
        if len(smtp.received) == 3:  # the first message of the second batch
            os.kill(started[0].process.pid, signal.SIGKILL)  # before it hears the reply
        return reply

    smtp.recorder.handle_DATA = accept_then_kill_the_sender  # type: ignore[method-assign]
    with (
        time_machine.travel(WINDOW_OPENS, tick=False),
        pytest.raises(sending.SendingProcessDied),
    ):
        delivery.deliver_due(batch_size=2)
    db.session.rollback()
    by_id = {r.message_id: r.status for r in rows()}
    assert [by_id[i] for i in ids[:2]] == [OutboxStatus.SENT] * 2  # recorded before handing on
    assert {by_id[i] for i in ids[2:]} == {OutboxStatus.SENDING}  # claimed, not recorded
    # Once the leases run out, the rest go: only the unrecorded batch's sent message twice.
    lease = app.config.get("REMINDER_LEASE_SECONDS", 600)
    smtp.recorder.handle_DATA = accept  # type: ignore[method-assign]
    with time_machine.travel(WINDOW_OPENS + timedelta(seconds=lease + 60), tick=False):
        result = delivery.deliver_due(batch_size=2)
    assert result.sent == 4
    received = smtp.message_ids()
    assert sorted(set(received)) == sorted(ids)
    assert sorted(received) == sorted([*ids, ids[2]])


def test_an_error_on_the_main_thread_ends_the_child_too(
    clinic, smtp: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    queued(clinic, 6)
    children = Children(monkeypatch)
    started = children.started
    prepare = delivery._prepare_batch
    calls = iter(range(100))

    def failing_prepare(*args: Any) -> Any:
        if next(calls) == 1:  # the second batch, while the first is with the child
            raise RuntimeError("the database went away")
        return prepare(*args)

    monkeypatch.setattr(delivery, "_prepare_batch", failing_prepare)
    with (
        time_machine.travel(WINDOW_OPENS, tick=False),
        pytest.raises(RuntimeError, match="went away"),
    ):
        delivery.deliver_due(batch_size=2)
    (child,) = started
    assert not child.process.is_alive() and child.process.exitcode == 0


def test_a_run_of_one_partial_batch_sends_from_its_thread(
    clinic, smtp: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    ids = queued(clinic, 3)
    children = Children(monkeypatch)
    started = children.started
    with time_machine.travel(WINDOW_OPENS, tick=False):
        result = delivery.deliver_due(batch_size=5)  # a few messages: the usual minute's run
    assert result.sent == 3 and sorted(smtp.message_ids()) == sorted(ids)
    assert started == []  # no process started for so little


def test_a_child_still_starting_when_the_run_ends_ends_quietly(
    clinic, smtp: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Until the child says it is ready, batches go from the thread; a short run may end
    first (or not: either way every message goes once and the child exits cleanly)."""
    ids = queued(clinic, 5)
    started: list[sending.SendingProcess] = []
    start = sending.SendingProcess.__init__

    def recording(process: sending.SendingProcess, transport: SmtpTransport) -> None:
        start(process, transport)
        started.append(process)

    monkeypatch.setattr(sending.SendingProcess, "__init__", recording)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        result = delivery.deliver_due(batch_size=2)
    assert result.sent == 5 and sorted(smtp.message_ids()) == sorted(ids)
    (child,) = started
    assert not child.process.is_alive() and child.process.exitcode == 0


def test_the_child_gets_every_setting_of_the_transport() -> None:
    """``settings()`` names each constructor argument, so a transport built from it in the
    child is the parent's (a new argument left out would be silently lost there)."""
    transport = SmtpTransport("mail.test", 2525, True, "relay", "secret", 7.5)
    assert set(transport.settings()) == set(inspect.signature(SmtpTransport).parameters)
    again = SmtpTransport(**transport.settings())
    assert again.settings() == transport.settings()
    assert transport.settings()["password"] == "secret" and again.timeout == 7.5


def test_the_wire_format_is_what_send_message_sends(smtp: MailServer) -> None:
    """The child sends each message as ``wire_format`` made it: the same bytes reach the
    server as through ``send_message``, so moving the flattening out of the child changes
    nothing on the wire."""
    rendered = messages.Rendered(
        subject="Réminder: your appointment on Thu Mar 26 at 10:15 AM " + "x" * 60,
        text="Hello Robin,\n.\n.leading dot\n" + "é" * 100 + "\n",
        html="<p>Hello</p>\n" * 40,
        attachments=(messages.Attachment("appointment.ics", b"BEGIN:VCALENDAR\r\n" * 20),),
    )

    class Row:
        message_id = "<reminder-0123@watchful.example.org>"

    with Flask(__name__).app_context():
        email_ = messages.build_email(Row(), rendered, "robin@example.org", datetime(2026, 3, 1))  # type: ignore[arg-type]
    wire = wire_format(email_, "clinic@watchful.test", "robin@example.org")
    assert wire is not None
    with SmtpTransport("127.0.0.1", smtp.port) as transport:
        transport.send(email_, "clinic@watchful.test", "robin@example.org")
        transport.send_wire(wire, "clinic@watchful.test", "robin@example.org")
    through_send_message, through_wire = smtp.received
    assert through_wire.raw == through_send_message.raw
    assert b"\n" not in through_wire.raw.replace(b"\r\n", b"")  # CRLF line ends only
    assert through_wire.rcpt_tos == ["robin@example.org"]
    # An address that is not ASCII needs SMTPUTF8, which only ``send_message`` asks for.
    assert wire_format(email_, "clinic@watchful.test", "röbin@example.org") is None
    assert wire_format(email_, "klinik@wätchful.test", "robin@example.org") is None
