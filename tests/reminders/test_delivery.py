"""Delivery to a real SMTP server (aiosmtpd): what arrives, once, and what happens on failure."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email.policy import default
from pathlib import Path

import icalendar
import pytest
import time_machine
from sqlalchemy import update

from surveillance.extensions import db
from surveillance.models import OutboxMessage, PlanEvent
from surveillance.reminders import delivery
from surveillance.reminders.transport import SmtpTransport
from surveillance.services import feed_tokens, plans, worklists
from tests.reminders.conftest import MailServer
from tests.reminders.helpers import book, deliver, event, local, patient, queue, rows

ENROLLED = "2026-01-05 17:00:00+00:00"
WINDOW_OPENS = "2026-03-15 15:00:00+00:00"
# Diagnosis words that must never appear in a patient's email.
FORBIDDEN = ("cancer", "tumour", "tumor", "neuroendocrine", "oncolog", "ki-67", "grade", "net ")


def assert_neutral(text: str, p) -> None:  # type: ignore[no-untyped-def]
    lowered = text.lower()
    for word in FORBIDDEN:
        assert word not in lowered, word
    assert p.family_name not in text and p.mrn not in text
    assert p.primary_site.replace("_", " ") not in lowered


def test_time_to_book_arrives_once_with_neutral_words_and_the_patient_link(
    clinic, smtp: MailServer
) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(ENROLLED, tick=False):
        p = patient(clinic, given_name="Robin")
    with time_machine.travel(WINDOW_OPENS, tick=False):
        queue()
        assert deliver().sent == 1
        queue()
        assert deliver().sent == 0  # the sweep again: nothing new
    (received,) = smtp.received
    assert received.rcpt_tos == [p.email]
    assert received.mail_from == "clinic@watchful.test"
    message = received.message
    assert message["Subject"] == "Time to book your next appointment"
    assert message["To"] == p.email
    assert message["Message-ID"] == rows()[0].message_id
    text, html = received.text(), received.html()
    assert "Hello Robin," in text and "Hello Robin," in html
    assert "Monday, April 6, 2026" in text  # the due date, spelled out
    link = f"https://watchful.test/p/{feed_tokens.patient_secret(p)}"
    assert link in text and f'href="{link}"' in html
    for body in (text, html, message["Subject"]):
        assert_neutral(body, p)
    (row,) = rows()
    assert (row.status, row.attempts, row.subject) == ("sent", 1, message["Subject"])
    assert row.sent_at == datetime(2026, 3, 15, 15, tzinfo=UTC)


def test_booked_reminder_carries_the_visits_ics(clinic, smtp: MailServer) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(ENROLLED, tick=False):
        p = patient(clinic)
    visit = event(p)
    with time_machine.travel("2026-03-19 16:15:00+00:00", tick=False):  # 7 days before
        book(visit, local(2026, 3, 26, 10, 15), location="Room 4, 1 Test Street")
        queue()
        assert deliver().sent == 1
    (received,) = smtp.received
    assert received.message["Subject"] == "Reminder: your appointment on Thu Mar 26 at 10:15 AM"
    text = received.text()
    assert "Thursday, March 26, 2026 at 10:15 AM" in text and "Room 4, 1 Test Street" in text
    assert_neutral(text, p)
    attachment = received.part("text/calendar")
    assert attachment.get_filename() == "appointment.ics"
    calendar = icalendar.Calendar.from_ical(attachment.get_content())
    (vevent,) = calendar.walk("VEVENT")
    assert str(vevent["UID"]).startswith(visit.uid)
    assert vevent.decoded("DTSTART") == datetime(2026, 3, 26, 16, 15, tzinfo=UTC).astimezone(
        vevent.decoded("DTSTART").tzinfo
    )
    assert vevent["DTSTART"].params["TZID"] == "America/Denver"
    assert int(vevent["SEQUENCE"]) == visit.sequence
    assert str(vevent["STATUS"]) == "CONFIRMED"


def test_a_rescheduled_visits_old_reminder_never_arrives(clinic, smtp: MailServer) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(ENROLLED, tick=False):
        p = patient(clinic)
    visit = event(p)
    with time_machine.travel("2026-03-20 16:00:00+00:00", tick=False):
        book(visit, local(2026, 3, 26, 10))
        queue()  # its 7-day reminder is due: queued
        plans.reschedule(visit, local(2026, 4, 2, 10), 30, None)
        db.session.commit()
        deliver()
        queue()
        deliver()
    assert smtp.received == []
    with time_machine.travel("2026-03-26 16:00:00+00:00", tick=False):
        queue()
        deliver()
    with time_machine.travel("2026-04-01 16:00:00+00:00", tick=False):
        queue()
        deliver()
    subjects = [r.message["Subject"] for r in smtp.received]
    assert subjects == [
        "Reminder: your appointment on Thu Apr 2 at 10:00 AM",
        "Reminder: your appointment on Thu Apr 2 at 10:00 AM",
    ]
    assert "Mar 26" not in " ".join(r.text() for r in smtp.received)
    assert len(set(smtp.message_ids())) == 2


def test_delivery_rechecks_the_event_even_when_the_hook_was_bypassed(
    clinic, smtp: MailServer
) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(ENROLLED, tick=False):
        p = patient(clinic)
    visit = event(p)
    with time_machine.travel("2026-03-20 16:00:00+00:00", tick=False):
        book(visit, local(2026, 3, 26, 10))
        queue()
        moved = visit.starts_at + timedelta(hours=2)
        db.session.execute(
            update(PlanEvent).where(PlanEvent.id == visit.id).values(starts_at=moved)
        )
        db.session.commit()
        result = deliver()
    assert (result.sent, result.withdrawn) == (0, 1)
    assert smtp.received == []
    (row,) = rows(rule="booked-visit")
    assert (row.status, row.last_error) == ("withdrawn", "Withdrawn: the event changed.")


def test_opt_out_after_queueing_withdraws(clinic, smtp: MailServer) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(ENROLLED, tick=False):
        p = patient(clinic)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        queue()
        p.email_opt_out = True
        db.session.commit()
        assert deliver().withdrawn == 1
    assert smtp.received == []


def test_patient_email_changed_after_queueing_goes_to_the_new_address(
    clinic, smtp: MailServer
) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(ENROLLED, tick=False):
        p = patient(clinic)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        queue()
        p.email = "new.address@example.org"
        db.session.commit()
        deliver()
    assert [r.rcpt_tos for r in smtp.received] == [["new.address@example.org"]]
    assert rows()[0].recipient == "new.address@example.org"


def test_smtp_down_then_up_each_arrives_once(clinic, app, smtp: MailServer) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(ENROLLED, tick=False):
        patients = [patient(clinic) for _ in range(3)]
    smtp.stop()
    start = datetime(2026, 3, 15, 15, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        queue()
        assert deliver().retrying == 3
        assert deliver().retrying == 0  # backing off: nothing is claimed again yet
    assert {(r.status, r.attempts) for r in rows()} == {("queued", 1)}
    assert {r.last_error for r in rows()} == {
        "Could not reach the mail server (ConnectionRefusedError)."
    }
    assert {r.next_attempt_at for r in rows()} == {start + timedelta(seconds=60)}
    with time_machine.travel(start + timedelta(seconds=60), tick=False):
        assert deliver().retrying == 3  # still down: the wait doubles
    assert {r.next_attempt_at for r in rows()} == {start + timedelta(seconds=180)}
    smtp.start()
    with time_machine.travel(start + timedelta(seconds=180), tick=False):
        assert deliver().sent == 3
        assert deliver().sent == 0
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == sorted(p.email for p in patients)
    assert len(smtp.message_ids()) == len(set(smtp.message_ids())) == 3
    assert {(r.status, r.attempts, r.last_error) for r in rows()} == {("sent", 3, None)}


def test_a_refusing_server_is_retried_then_the_failure_lands_on_the_worklist(
    clinic, coordinator, app, smtp: MailServer
) -> None:  # type: ignore[no-untyped-def]
    app.config["REMINDER_MAX_ATTEMPTS"] = 3
    smtp.recorder.refuse_rcpt = "451 4.3.0 Mailbox temporarily unavailable"
    with time_machine.travel(ENROLLED, tick=False):
        p = patient(clinic)
    start = datetime(2026, 3, 15, 15, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        queue()
        # The digest is refused too: only the patient's reminder is followed here.
        deliver()
    (row,) = rows(rule="book-window")
    assert (row.status, row.attempts) == ("queued", 1)
    assert row.last_error == "The mail server refused the recipient for now (451)."
    with time_machine.travel(start + timedelta(seconds=60), tick=False):
        deliver()
    with time_machine.travel(start + timedelta(seconds=180), tick=False):
        deliver()
    (row,) = rows(rule="book-window")
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.failed_at == start + timedelta(seconds=180)
    assert "Gave up after 3 attempts" in (row.last_error or "")
    assert p.email not in (row.last_error or "")
    page = worklists.fetch("failed-reminders", coordinator, start.date())
    assert [m.id for m in page.items if m.rule == "book-window"] == [row.id]
    assert smtp.received == []


def test_a_permanently_refused_recipient_fails_at_once(clinic, smtp: MailServer) -> None:  # type: ignore[no-untyped-def]
    smtp.recorder.refuse_rcpt = "550 5.1.1 <someone@example.org>: no such user"
    with time_machine.travel(ENROLLED, tick=False):
        patient(clinic)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        queue()
        assert deliver().failed == 1
    (row,) = rows()
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error == "The mail server refused the recipient (550)."


def test_a_reminder_that_could_not_go_out_in_time_is_a_failure(clinic, smtp: MailServer) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(ENROLLED, tick=False):
        p = patient(clinic)
    visit = event(p)
    smtp.stop()
    with time_machine.travel("2026-03-25 16:00:00+00:00", tick=False):
        book(visit, local(2026, 3, 26, 10))
        queue()  # the 1-day reminder
        assert deliver().retrying == 1
    smtp.start()
    with time_machine.travel("2026-03-26 16:00:01+00:00", tick=False):  # the visit has started
        assert deliver().failed == 1
    (row,) = rows(rule="booked-visit")
    assert (row.status, row.last_error) == (
        "failed",
        "Not delivered before it stopped being useful.",
    )
    assert smtp.received == []


class CrashAfterSending:
    """Sends for real, then dies before the outbox row can say so."""

    def __init__(self, inner: SmtpTransport) -> None:
        self.inner = inner

    def send(self, message, sender, recipient) -> None:  # type: ignore[no-untyped-def]
        self.inner.send(message, sender, recipient)
        raise KeyboardInterrupt("the process dies here")

    def close(self) -> None:
        self.inner.close()


def test_a_crash_between_sending_and_recording_is_recovered_by_the_lease(
    clinic, app, smtp: MailServer
) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(ENROLLED, tick=False):
        patient(clinic)
    start = datetime(2026, 3, 15, 15, tzinfo=UTC)
    crashing = CrashAfterSending(SmtpTransport("127.0.0.1", smtp.port))
    with time_machine.travel(start, tick=False):
        queue()
        with pytest.raises(KeyboardInterrupt):
            delivery.deliver_due(transport=crashing)
        db.session.rollback()
        (row,) = rows()
        assert (row.status, row.attempts) == ("sending", 1)
        assert deliver().sent == 0  # leased: nobody else may take it yet
    lease = timedelta(seconds=app.config["REMINDER_LEASE_SECONDS"])
    with time_machine.travel(start + lease + timedelta(seconds=1), tick=False):
        assert deliver().sent == 1
    (row,) = rows()
    assert (row.status, row.attempts) == ("sent", 2)
    # At least once: the copy sent before the crash and the one after carry one Message-ID.
    assert smtp.message_ids() == [row.message_id, row.message_id]


def test_claims_never_overlap(clinic, smtp: MailServer) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(ENROLLED, tick=False):
        for _ in range(5):
            patient(clinic)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        queue()
        now = datetime(2026, 3, 15, 15, tzinfo=UTC)
        first = delivery.claim(now, "worker-a", 3, timedelta(minutes=10))
        second = delivery.claim(now, "worker-b", 10, timedelta(minutes=10))
    assert len(first) == 3 and len(second) == 2 and not set(first) & set(second)
    assert {r.claimed_by for r in rows()} == {"worker-a", "worker-b"}


def test_claims_take_abandoned_rows_first_then_due_rows_in_order(clinic) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(ENROLLED, tick=False):
        for _ in range(6):
            patient(clinic)
    now = datetime(2026, 3, 15, 15, tzinfo=UTC)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        queue()
    ids = sorted(r.id for r in rows())
    assert len(ids) == 6
    # Due at one moment (a morning's reminders share it) except one due earlier; one not due
    # yet; one claimed by a process whose lease ran out, one whose lease still holds.
    due_times = {ids[0]: now, ids[1]: now, ids[2]: now - timedelta(hours=1), ids[3]: now}
    for outbox_id, due in due_times.items():
        db.session.execute(
            update(OutboxMessage).where(OutboxMessage.id == outbox_id).values(next_attempt_at=due)
        )
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == ids[4])
        .values(next_attempt_at=now + timedelta(minutes=1))
    )
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == ids[5])
        .values(
            status="sending", claimed_by="gone", attempts=1, lease_until=now - timedelta(seconds=1)
        )
    )
    db.session.commit()
    lease = timedelta(minutes=10)
    first = delivery.claim(now, "worker-a", 2, lease)
    assert first == sorted([ids[5], ids[2]])  # the abandoned claim, then the earliest due
    assert delivery.claim(now, "worker-b", 1, lease) == [ids[0]]  # ties: in id order
    assert delivery.claim(now, "worker-b", 10, lease) == [ids[1], ids[3]]  # not ids[4]
    assert delivery.claim(now, "worker-c", 10, lease) == []
    claimed = {r.id: (r.claimed_by, r.attempts) for r in rows()}
    assert claimed[ids[5]] == ("worker-a", 2) and claimed[ids[2]] == ("worker-a", 1)
    assert claimed[ids[4]] == (None, 0)


def test_without_mail_server_messages_are_files_a_person_can_open(clinic, app) -> None:  # type: ignore[no-untyped-def]
    app.config["MAIL_SERVER"] = None
    with time_machine.travel(ENROLLED, tick=False):
        p = patient(clinic)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        queue()
        assert deliver().sent == 1
    folder = Path(app.instance_path) / "outbox-mail"
    (path,) = folder.glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=default)
    assert message["To"] == p.email
    assert message["Message-ID"] == rows()[0].message_id
    assert "Hello Alex," in message.get_body(("plain",)).get_content()


def test_coordinator_digest_once_a_day_lists_the_worklists(
    clinic, coordinator, smtp: MailServer
) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel("2025-12-01 17:00:00+00:00", tick=False):
        overdue = patient(clinic, enrolled_on="2025-09-01")
    with time_machine.travel("2026-01-06 14:00:00+00:00", tick=False):  # 07:00 MST
        queue()
        queue()
        deliver()
    (received,) = smtp.received
    assert received.rcpt_tos == [coordinator.email]
    assert received.message["Subject"].startswith(f"Watchful daily summary for {clinic.name}")
    text = received.text()
    assert "Overdue: 1" in text and "Failed reminders: 0" in text
    assert f"A.{overdue.family_name[0]}. (P-{overdue.id})" in text
    assert overdue.family_name not in text and overdue.mrn not in text
    with time_machine.travel("2026-01-06 20:00:00+00:00", tick=False):
        queue()
        deliver()
    assert len(smtp.received) == 1
    with time_machine.travel("2026-01-07 14:00:00+00:00", tick=False):
        queue()
        deliver()
    assert len(smtp.received) == 2


def test_a_message_whose_process_keeps_dying_ends_up_failed(clinic, app, smtp: MailServer) -> None:  # type: ignore[no-untyped-def]
    app.config["REMINDER_MAX_ATTEMPTS"] = 2
    with time_machine.travel(ENROLLED, tick=False):
        patient(clinic)
    start = datetime(2026, 3, 15, 15, tzinfo=UTC)
    lease = timedelta(seconds=app.config["REMINDER_LEASE_SECONDS"])
    crashing = CrashAfterSending(SmtpTransport("127.0.0.1", smtp.port))
    for attempt in range(2):
        with time_machine.travel(start + attempt * (lease + timedelta(seconds=1)), tick=False):
            if attempt == 0:
                queue()
            with pytest.raises(KeyboardInterrupt):
                delivery.deliver_due(transport=crashing)
            db.session.rollback()
    with time_machine.travel(start + 2 * (lease + timedelta(seconds=1)), tick=False):
        deliver()
    (row,) = rows()
    assert (row.status, row.attempts) == ("failed", 2)
    assert row.last_error == "No delivery was confirmed after the last attempt."
    assert len(smtp.received) == 2  # both copies left; neither was confirmed


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_login_with_the_configured_credentials(clinic, app) -> None:  # type: ignore[no-untyped-def]
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    from tests.reminders.conftest import Recorder, free_port

    def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        credentials = (auth_data.login, auth_data.password)
        ok = isinstance(auth_data, LoginPassword) and credentials == (b"watchful", b"s3cret")
        return AuthResult(success=ok, handled=False)  # unhandled: the server answers 535

    recorder, port = Recorder(), free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        app.config.update(
            MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_USERNAME="watchful", MAIL_PASSWORD="wrong"
        )
        with time_machine.travel(ENROLLED, tick=False):
            patient(clinic)
        start = datetime(2026, 3, 15, 15, tzinfo=UTC)
        with time_machine.travel(start, tick=False):
            queue()
            assert deliver().retrying == 1
        assert rows()[0].last_error == "The mail server refused (535)."
        app.config["MAIL_PASSWORD"] = "s3cret"
        with time_machine.travel(start + timedelta(minutes=1), tick=False):
            assert deliver().sent == 1
        assert len(recorder.received) == 1
    finally:
        controller.stop()


def test_starttls_when_mail_use_tls_is_set(clinic, app, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import ssl
    import subprocess

    from aiosmtpd.controller import Controller

    from tests.reminders.conftest import Recorder, free_port

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts this test certificate
    recorder, port = Recorder(), free_port()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, tls_context=server_context, require_starttls=True
    )
    controller.start()
    try:
        app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_USE_TLS=False)
        with time_machine.travel(ENROLLED, tick=False):
            patient(clinic)
        start = datetime(2026, 3, 15, 15, tzinfo=UTC)
        with time_machine.travel(start, tick=False):
            queue()
            assert deliver().retrying == 1  # the server insists on TLS
        assert rows()[0].last_error == "The mail server refused (530)."
        app.config["MAIL_USE_TLS"] = True
        with time_machine.travel(start + timedelta(minutes=1), tick=False):
            assert deliver().sent == 1
        assert len(recorder.received) == 1
    finally:
        controller.stop()


def test_a_clinic_named_for_the_condition_is_never_named_in_patient_emails(  # type: ignore[no-untyped-def]
    clinic, smtp: MailServer
) -> None:
    """Subject, bodies and the attached .ics name the clinic as patients see it."""
    clinic.name, clinic.address = "Neuroendocrine Tumour Clinic", "Cancer Center, 1 Test Street"
    clinic.calendar_name, clinic.calendar_address = "Northside Outpatients", "1 Test Street"
    db.session.commit()
    with time_machine.travel(ENROLLED, tick=False):
        p = patient(clinic)
    with time_machine.travel(WINDOW_OPENS, tick=False):
        queue()
        assert deliver().sent == 1  # time to book
    visit = event(p)
    with time_machine.travel("2026-03-19 16:15:00+00:00", tick=False):
        book(visit, local(2026, 3, 26, 10, 15))  # no place typed
        queue()
        assert deliver().sent == 1  # the booked reminder, with its .ics
    assert len(smtp.received) == 2
    for received in smtp.received:
        parts = [received.message["Subject"], received.text(), received.html()]
        parts += [  # the attached .ics, unfolded
            part.get_content().replace("\r\n ", "")
            for part in received.message.walk()
            if part.get_content_type() == "text/calendar"
        ]
        for part in parts:
            assert_neutral(part, p)
            assert "Neuroendocrine" not in part and "Cancer Center" not in part
        assert "Northside Outpatients" in received.text()
    booked = smtp.received[1]
    assert "1 Test Street" in booked.text()
    assert "SUMMARY:Follow-up visit at Northside Outpatients" in booked.part(
        "text/calendar"
    ).get_content().replace("\r\n ", "")


def _statements_to_deliver(patients: int, clinic, smtp: MailServer) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    from sqlalchemy import event as sa_event

    with time_machine.travel(ENROLLED, tick=False):
        for _ in range(patients):
            patient(clinic)
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    with time_machine.travel(WINDOW_OPENS, tick=False):
        queue()
        db.session.expire_all()
        sa_event.listen(db.engine, "before_cursor_execute", record)
        try:
            sent = deliver().sent
        finally:
            sa_event.remove(db.engine, "before_cursor_execute", record)
    return sent, len(statements)


def test_a_batch_costs_the_same_statements_whatever_its_size(clinic, smtp: MailServer) -> None:  # type: ignore[no-untyped-def]
    """Messages are checked against rows read for the whole batch and recorded together: no
    statement per message."""
    sent, few = _statements_to_deliver(2, clinic, smtp)
    assert sent == 2
    db.session.execute(update(OutboxMessage).values(status="sent"))  # start again, 6 more
    db.session.commit()
    sent, many = _statements_to_deliver(6, clinic, smtp)
    assert sent == 6
    assert many == few
