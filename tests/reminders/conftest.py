"""Fixtures for the reminder tests: a real SMTP server (aiosmtpd) on a free localhost port."""

from __future__ import annotations

import email
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes = b""  # the message's bytes as they came (before the server added anything)

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def part(self, content_type: str) -> Any:
        return next(p for p in self.message.walk() if p.get_content_type() == content_type)

    def text(self) -> str:
        return str(self.part("text/plain").get_content())

    def html(self) -> str:
        return str(self.part("text/html").get_content())


@dataclass
class Recorder:
    """The SMTP server's behaviour: accept and record, or refuse with a given reply."""

    received: list[Received] = field(default_factory=list)
    refuse_rcpt: str | None = None
    refuse_data: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.refuse_data:
            return self.refuse_data
        parsed = email.message_from_bytes(envelope.original_content, policy=default)
        with self.lock:
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    parsed,  # type: ignore[arg-type]
                    envelope.original_content,
                )
            )
        return "250 Message accepted for delivery"


class MailServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.recorder = Recorder()
        self.controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        return self.recorder.received

    def start(self) -> None:
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def message_ids(self) -> list[str]:
        return [r.message_id for r in self.received]


@pytest.fixture
def smtp(app: Flask) -> Iterator[MailServer]:
    server = MailServer(free_port())
    server.start()
    app.config.update(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=server.port,
        MAIL_USE_TLS=False,
        MAIL_DEFAULT_SENDER="clinic@watchful.test",
    )
    yield server
    server.stop()
