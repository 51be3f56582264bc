"""Where messages go: an SMTP server, or (without ``MAIL_SERVER``, as in the demo) ``.eml``
files in ``<instance>/outbox-mail/`` that anyone can open in a mail program.

Errors come back as ``TemporaryFailure`` (retry later) or ``PermanentFailure`` (retrying will
not help) carrying our own short reason and the SMTP code, never the server's text, which can
quote the recipient's address.
"""

from __future__ import annotations

import io
import os
import re
import smtplib
import ssl
from collections.abc import Callable
from email.generator import BytesGenerator
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

MAIL_FOLDER = "outbox-mail"
SMTP_TIMEOUT_SECONDS = 20


class DeliveryError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TemporaryFailure(DeliveryError):
    """The server is down, busy or refused for now: try again later."""


class PermanentFailure(DeliveryError):
    """The server refused this message for good (e.g. no such mailbox)."""


class Transport(Protocol):
    def send(self, message: Message, sender: str, recipient: str) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class WireTransport(Transport, Protocol):
    """A transport that also takes a message already in the bytes SMTP sends: a delivery
    run over one makes those bytes itself (``messages.email_bytes``), for an envelope in
    ASCII (``ascii_envelope``)."""

    def send_wire(self, data: bytes, sender: str, recipient: str) -> None: ...


def wire_format(message: Message, sender: str, recipient: str) -> bytes | None:
    """The bytes ``smtplib.SMTP.send_message`` would put on the wire for ``message`` from
    ``sender`` to ``recipient``, made once where the message is built, so that the process
    holding the SMTP connection only talks SMTP (``sending``). The same generator and line
    ends; ``send_message`` also strips Bcc headers, which these messages never carry.
    ``None`` when an address is not ASCII: that needs the server's SMTPUTF8 and a generator
    of its own, which ``send_message`` asks for."""
    if not ascii_envelope(sender, recipient):
        return None
    with io.BytesIO() as out:
        BytesGenerator(out).flatten(message, linesep="\r\n")
        return out.getvalue()


def ascii_envelope(sender: str, recipient: str) -> bool:
    """Whether both addresses are ASCII: otherwise ``send_message`` needs the server's
    SMTPUTF8 and flattens the message in a way of its own."""
    return (sender + recipient).isascii()


class SmtpTransport:
    """One connection for a whole delivery run, opened on first use and reopened if the server
    drops it."""

    def __init__(
        self,
        host: str,
        port: int = 25,
        use_tls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = SMTP_TIMEOUT_SECONDS,
    ) -> None:
        self.host, self.port, self.use_tls = host, port, use_tls
        self.username, self.password, self.timeout = username, password, timeout
        self._smtp: smtplib.SMTP | None = None

    def settings(self) -> dict[str, Any]:
        """The constructor's arguments: what another process needs to make the same
        transport (``sending``), kept next to them so that the two never drift apart."""
        return {
            "host": self.host,
            "port": self.port,
            "use_tls": self.use_tls,
            "username": self.username,
            "password": self.password,
            "timeout": self.timeout,
        }

    def _connect(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.use_tls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, message: Message, sender: str, recipient: str) -> None:
        self._attempt(lambda smtp: smtp.send_message(message, sender, [recipient]))

    def send_wire(self, data: bytes, sender: str, recipient: str) -> None:
        """Send a message already in its wire format (``wire_format``): the same
        conversation as ``send``, without making the bytes again."""
        self._attempt(lambda smtp: smtp.sendmail(sender, [recipient], data))

    def _attempt(self, exchange: Callable[[smtplib.SMTP], object]) -> None:
        reused = self._smtp is not None
        try:
            self._exchange_once(exchange)
        except smtplib.SMTPServerDisconnected:
            self.close()
            if not reused:
                raise TemporaryFailure("The mail server closed the connection.") from None
            # An idle connection the server timed out: one fresh try is part of this attempt.
            try:
                self._exchange_once(exchange)
            except smtplib.SMTPServerDisconnected:
                self.close()
                raise TemporaryFailure("The mail server closed the connection.") from None

    def _exchange_once(self, exchange: Callable[[smtplib.SMTP], object]) -> None:
        try:
            if self._smtp is None:
                self._smtp = self._connect()
            exchange(self._smtp)
        except smtplib.SMTPServerDisconnected:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            code = codes[0] if codes else 0
            self._reset()
            if codes and all(500 <= c < 600 for c in codes):
                raise PermanentFailure(f"The mail server refused the recipient ({code}).") from None
            raise TemporaryFailure(
                f"The mail server refused the recipient for now ({code})."
            ) from None
        except smtplib.SMTPDataError as exc:
            self._reset()
            if 500 <= exc.smtp_code < 600:
                raise PermanentFailure(
                    f"The mail server rejected the message ({exc.smtp_code})."
                ) from None
            raise TemporaryFailure(
                f"The mail server deferred the message ({exc.smtp_code})."
            ) from None
        except smtplib.SMTPResponseException as exc:
            # Greeting, sender, authentication or TLS refused: a server or configuration problem
            # that an administrator can fix, so the message waits for it.
            self.close()
            raise TemporaryFailure(f"The mail server refused ({exc.smtp_code}).") from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise TemporaryFailure(
                f"Could not reach the mail server ({type(exc).__name__})."
            ) from None

    def _reset(self) -> None:
        """After a refused message, clear the transaction so the connection can go on."""
        if self._smtp is None:
            return
        try:
            self._smtp.rset()
        except (OSError, smtplib.SMTPException):
            self.close()

    def close(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (OSError, smtplib.SMTPException):
            self._smtp.close()
        self._smtp = None

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FolderTransport:
    """Writes each message as an ``.eml`` file. A message sent again (after a crash) replaces
    its own file: the name comes from its stable Message-ID."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: Message, sender: str, recipient: str) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = _UNSAFE.sub("-", str(message["Message-ID"]).strip("<>")) + ".eml"
            target = self.folder / name
            partial = target.with_suffix(".eml.partial")
            partial.write_bytes(bytes(message))
            os.replace(partial, target)  # atomic: a reader never sees half a message
        except OSError as exc:
            raise TemporaryFailure(
                f"Could not write the mail file ({type(exc).__name__})."
            ) from None

    def close(self) -> None:
        return None

    def __enter__(self) -> FolderTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


def from_config(config: Any, instance_path: str) -> SmtpTransport | FolderTransport:
    if config.get("MAIL_SERVER"):
        return SmtpTransport(
            config["MAIL_SERVER"],
            int(config.get("MAIL_PORT") or 25),
            bool(config.get("MAIL_USE_TLS")),
            config.get("MAIL_USERNAME"),
            config.get("MAIL_PASSWORD"),
            float(config.get("MAIL_TIMEOUT", SMTP_TIMEOUT_SECONDS)),
        )
    return FolderTransport(Path(instance_path) / MAIL_FOLDER)
