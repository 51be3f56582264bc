"""Delivery sends one batch on a thread of its own while the main thread claims and prepares the
next and records the one before (``delivery.deliver_due``). What must hold, against a real
SMTP server (aiosmtpd): a batch is sent in chunks, each recorded as soon as it is sent, and the
sending never runs more than one batch's worth of messages ahead of the recording, so at any
moment at most that many are sent and not recorded; an error on either thread ends the run with
that error, the sending thread stopped before the transport is closed; two workers never send a
message twice; on PostgreSQL a batch's events stay ``FOR SHARE`` while it is sent."""

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
from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import OperationalError

from surveillance.extensions import db
from surveillance.models import OutboxMessage, OutboxStatus
from surveillance.reminders import delivery, messages, sending
from surveillance.reminders.transport import SmtpTransport, wire_format
from tests.reminders.conftest import MailServer
from tests.reminders.helpers import patient, queue, rows, sample_email

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


def test_at_most_a_batch_is_sent_and_not_recorded_while_the_next_is_prepared(
    clinic, smtp: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    ids = queued(clinic, 9)
    batch_size = 4
    batches = [ids[0:4], ids[4:8], ids[8:9]]  # in claiming order; sent in chunks of 2
    engine = db.engine
    claimed = [threading.Event() for _ in range(len(batches) + 1)]  # the last one finds none
    calls = iter(claimed)
    claim = delivery.claim

    def counting_claim(*args: Any, **kwargs: Any) -> list[int]:
        found = claim(*args, **kwargs)
        next(calls).set()
        return found

    monkeypatch.setattr(delivery, "claim", counting_claim)
    unrecorded: list[list[str]] = []  # before each send: the messages sent and not recorded

    def before(message_id: str) -> None:
        number = next(i for i, batch in enumerate(batches) if message_id in batch)
        # The main thread claims (and prepares) the next batch while this one is sent.
        assert claimed[number + 1].wait(WAIT), "the next batch was not claimed meanwhile"
        status = statuses(engine)
        assert status[message_id] == OutboxStatus.SENDING
        unrecorded.append([i for i in transport.sent() if status[i] != OutboxStatus.SENT])

    transport = Watched(smtp.port, before)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        result = delivery.deliver_due(transport=transport, batch_size=batch_size)
    assert result.sent == 9
    assert transport.sent() == ids
    assert sorted(smtp.message_ids()) == sorted(ids)
    assert transport.log[-1] == ("close", "")
    assert transport.threads == {"outbox-send"}  # never the main thread
    # Whatever the timing, a crash at any moment would have left at most one batch's worth
    # sent and not recorded, this message included: the chunks two before it are recorded.
    assert len(unrecorded) == 9
    for number, (message_id, waiting) in enumerate(zip(ids, unrecorded, strict=True)):
        assert len(waiting) + 1 <= batch_size, (message_id, waiting)
        assert set(waiting) <= set(ids[max(number - 3, 0) : number])
        assert not set(ids[: max(number // 2 * 2 - 2, 0)]) & set(waiting)  # chunk k-2 recorded
    assert {(r.status, r.attempts) for r in rows()} == {(OutboxStatus.SENT, 1)}


class Breaks(Exception):
    """Not a delivery failure: a bug, or the process being stopped."""


def test_an_error_on_the_sending_thread_ends_the_run_with_its_chunk_unrecorded(
    clinic, app: Flask, smtp: MailServer
) -> None:  # type: ignore[no-untyped-def]
    ids = queued(clinic, 7)  # batches of 3: [0 1 2] [3 4 5] [6], sent in chunks [3 4] [5]

    def before(message_id: str) -> None:
        if message_id == ids[5]:
            raise Breaks("in the second chunk of the second batch")

    transport = Watched(smtp.port, before)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        with pytest.raises(Breaks):
            delivery.deliver_due(transport=transport, batch_size=3)
        db.session.rollback()
        status = {r.message_id: (r.status, r.attempts) for r in rows()}
    assert transport.sent() == ids[:5]
    assert transport.log[-1] == ("close", "")
    assert sorted(smtp.message_ids()) == sorted(ids[:5])
    # The chunks sent before the error are recorded; the one it broke is not, nor the third
    # batch, claimed, prepared and handed over meanwhile but never sent: they keep their claim.
    assert [status[i] for i in ids] == [(OutboxStatus.SENT, 1)] * 5 + [
        (OutboxStatus.SENDING, 1)
    ] * 2
    # Once the leases run out the unrecorded rows go again, and nothing recorded does.
    lease = timedelta(seconds=app.config["REMINDER_LEASE_SECONDS"])
    with time_machine.travel(WINDOW_OPENS + lease + timedelta(seconds=1), tick=False):
        assert delivery.deliver_due(batch_size=3).sent == 2
    assert sorted(smtp.message_ids()) == sorted(ids)  # each once
    assert {(r.status, r.attempts) for r in rows() if r.message_id in ids[:5]} == {
        (OutboxStatus.SENT, 1)
    }
    assert {(r.status, r.attempts) for r in rows() if r.message_id in ids[5:]} == {
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
    # Recorded: what the sending thread had sent and recorded by the time it stopped (it
    # records no more once stopped); the rest of the first batch and the second keep their
    # claims; the third was never claimed.
    sent = transport.sent()
    recorded = [i for i in ids if status[i] == OutboxStatus.SENT]
    assert recorded == sent[: len(recorded)] and len(recorded) <= 2  # a chunk at most
    assert {status[i] for i in ids[:6] if i not in recorded} == {OutboxStatus.SENDING}
    assert status[ids[6]] == OutboxStatus.QUEUED


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
        start, hand = sending.SendingProcess.__init__, sending.SendingProcess.hand

        def starting(process: sending.SendingProcess, transport: SmtpTransport) -> None:
            start(process, transport)
            self.started.append(process)
            assert process._pipe.poll(WAIT), "the child did not start"
            assert process.ready()

        def handing(process: sending.SendingProcess, batch: list[Any]) -> None:
            self.sent += len(batch)
            self.kinds.update(type(message) for message, _, _ in batch)
            hand(process, batch)

        monkeypatch.setattr(sending.SendingProcess, "__init__", starting)
        monkeypatch.setattr(sending.SendingProcess, "hand", handing)


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
    assert [by_id[i] for i in ids[:2]] == [OutboxStatus.SENT] * 2  # recorded: sent before
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
    """``wire_format`` (the reference ``messages.email_bytes`` is held to) is what
    ``send_message`` puts on the wire: sent with ``send_wire``, the same bytes reach the
    server, so making the bytes outside the child changes nothing on the wire."""
    rendered = messages.Rendered(
        subject="Réminder: your appointment on Thu Mar 26 at 10:15 AM " + "x" * 60,
        text="Hello Robin,\n.\n.leading dot\n" + "é" * 100 + "\n",
        html="<p>Hello</p>\n" * 40,
        attachments=(messages.Attachment("appointment.ics", b"BEGIN:VCALENDAR\r\n" * 20),),
    )
    email_ = sample_email(rendered)
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


def test_a_digest_goes_out_between_batches_with_nothing_else_being_sent(
    clinic, coordinator, smtp: MailServer
) -> None:  # type: ignore[no-untyped-def]
    """Digests go over the run's own transport from the main thread: only once the batches
    before are sent and recorded, and before the next is handed to the sending thread."""
    with time_machine.travel(ENROLLED, tick=False):
        for _ in range(5):
            patient(clinic)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        queue()  # "time to book" for each, and the coordinator's daily digest
    # (row id, Message-ID): plain values, read on the sending thread too.
    (digest,) = [(r.id, r.message_id) for r in rows() if r.rule == "digest"]
    reminders = [(r.id, r.message_id) for r in rows() if r.rule != "digest"]
    # Claimed in batches of 2: [r0 r1] [r2 digest] [r3 r4].
    due = {
        row_id: WINDOW_OPENS - timedelta(minutes=30 - n) for n, (row_id, _) in enumerate(reminders)
    }
    due[digest[0]] = due[reminders[2][0]] + timedelta(seconds=30)
    for row_id, at in due.items():
        db.session.execute(
            update(OutboxMessage).where(OutboxMessage.id == row_id).values(next_attempt_at=at)
        )
    db.session.commit()
    engine = db.engine
    at_digest: dict[str, str] = {}

    def before(message_id: str) -> None:
        if message_id == digest[1]:
            at_digest.update(statuses(engine))

    transport = Watched(smtp.port, before)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        result = delivery.deliver_due(transport=transport, batch_size=2)
    assert result.sent == 6
    order = [reminders[0], reminders[1], reminders[2], digest, reminders[3], reminders[4]]
    assert transport.sent() == [message_id for _, message_id in order]
    assert transport.threads == {"outbox-send", "MainThread"}
    assert [at_digest[message_id] for _, message_id in reminders] == [OutboxStatus.SENT] * 3 + [
        OutboxStatus.SENDING
    ] * 2
    assert sorted(smtp.message_ids()) == sorted(message_id for _, message_id in order)


def test_over_smtp_the_next_chunk_is_sent_while_the_last_is_recorded(
    clinic, smtp: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """With a sending process the mail server is never kept waiting for the recording: the
    first batch's last chunk is recorded only once the server has the second batch's first
    message (recorded one after the other, this would wait forever). And at each message
    the server receives, at most one batch's worth is sent and not recorded."""
    ids = queued(clinic, 9)
    batch_size = 4  # [0-3] [4-7] [8], each sent in chunks of 2 by the child
    Children(monkeypatch)
    row_of = {r.message_id: r.id for r in rows()}
    second_batch_arrived = threading.Event()
    record_on = delivery._record_on

    def slow_record_on(conn: Any, outcomes: list[Any], *args: Any) -> None:
        if {o.message_id for o in outcomes} == {row_of[i] for i in ids[2:4]}:
            assert second_batch_arrived.wait(WAIT), "the next chunk waited for the recording"
        record_on(conn, outcomes, *args)

    monkeypatch.setattr(delivery, "_record_on", slow_record_on)
    # The first batch's last chunk is answered only once the run has handed the second batch
    # over: otherwise, on a busy machine, the sending thread may find nothing to send next and
    # (rightly) record at once, and the wait above would never end.
    handed_over: list[Any] = []
    second_handed = threading.Event()
    hand_over, answer = delivery._SendingThread.send, sending.SendingProcess.replies

    def handing_over(thread: Any, batch: Any, full: bool) -> Any:
        handed = hand_over(thread, batch, full)
        handed_over.append(batch)
        if len(handed_over) == 2:
            second_handed.set()
        return handed

    answered: list[Any] = []

    def answering(process: Any) -> Any:
        replies = answer(process)
        answered.append(replies)
        if len(answered) == 2:  # the first batch's second and last chunk
            assert second_handed.wait(WAIT), "the run never handed the second batch over"
        return replies

    monkeypatch.setattr(delivery._SendingThread, "send", handing_over)
    monkeypatch.setattr(sending.SendingProcess, "replies", answering)
    engine = db.engine
    unrecorded: list[int] = []  # at each message received: how many sent are not recorded
    accept = smtp.recorder.handle_DATA

    async def watching(server, session, envelope):  # type: ignore[no-untyped-def]
        reply = await accept(server, session, envelope)
        received = smtp.message_ids()
        status = statuses(engine)
        unrecorded.append(sum(status[i] != OutboxStatus.SENT for i in received))
        if ids[4] in received:
            second_batch_arrived.set()
        return reply

    smtp.recorder.handle_DATA = watching  # type: ignore[method-assign]
    with time_machine.travel(WINDOW_OPENS, tick=False):
        result = delivery.deliver_due(batch_size=batch_size)
    assert result.sent == 9
    assert sorted(smtp.message_ids()) == sorted(ids)
    assert len(unrecorded) == 9 and max(unrecorded) <= batch_size
    assert {(r.status, r.attempts) for r in rows()} == {(OutboxStatus.SENT, 1)}
