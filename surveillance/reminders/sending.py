"""SMTP from a process of its own, so that a delivery run prepares one batch while the
previous one is being sent.

Sending a reminder over SMTP is four round trips to the server, and smtplib needs the
interpreter after each reply. In a thread beside the one that claims and renders the next
batch, each of those moments waits for the other thread to let go of the interpreter (the
GIL): on the 2-core bench machine a sending thread gained 0-10 % over one step after the
other, while a process of its own, which shares no interpreter, sent at the pace of SMTP
alone (``bench/HISTORY.md``). So a run's SMTP conversation happens in a child process:

* The child is started with ``spawn`` (a fresh interpreter: forking a process that runs the
  scheduler's threads could copy a lock held by one of them) when a run hands over a full
  batch (more are likely to follow; a run of a few messages sends them from its thread and
  starts nothing), and holds an SMTP connection of its own. Until it says it is ready (a
  fresh interpreter takes about half a second) the run's batches go from the thread as
  before. It gets whole batches over a pipe, each message already as the bytes SMTP sends
  (made while the previous batch was being sent; unpickling and flattening ``Message``
  objects here was over a third of the child's time a message), sends them message by
  message, and answers with one reply per message sent: ``None`` or the ``DeliveryError``
  the transport raised.
  It ignores SIGINT and SIGTERM (a Ctrl-C or a service stop reaches the whole process
  group): the parent ends it, by closing the pipe,
  once the batch in hand is answered or its ``stop`` event is seen between two messages.
  If the parent dies, the pipe closes and the child ends too.
* The parent's sending thread waits on the pipe (without the interpreter) and turns the
  replies into outcomes, as it does for an in-process transport. A child that dies answers
  nothing: the run ends with an error and the batch stays claimed, exactly as if the sending
  thread had raised (its rows go again once their leases run out).

The SMTP settings (password included) travel over the pipe, never on a command line.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from email.message import Message
from multiprocessing.connection import Connection
from typing import Any, NoReturn

from surveillance.reminders.transport import DeliveryError, SmtpTransport

# (message, envelope sender, recipient) for each message of a batch: the message as the
# bytes SMTP sends (``messages.email_bytes``), or, for an address that is not ASCII, as a
# ``Message``
Outgoing = tuple[bytes | Message, str, str]
STOP_SECONDS = 30.0


class SendingProcessDied(RuntimeError):
    """The child ended without answering: the run stops, the batch stays claimed."""

    def __init__(self, exitcode: int | None) -> None:
        super().__init__(f"the SMTP sending process ended unexpectedly (exit code {exitcode})")
        self.exitcode = exitcode


class SendingProcess:
    """The child process and the parent's end of its pipe."""

    def __init__(self, transport: SmtpTransport) -> None:
        context = multiprocessing.get_context("spawn")
        self._stopping = context.Event()
        self._pipe, theirs = context.Pipe()
        self.process = context.Process(
            target=serve,
            args=(theirs, transport.settings(), self._stopping),
            name="watchful-smtp",
            daemon=True,  # ended with the parent if it exits without closing
        )
        self.process.start()
        theirs.close()  # the child's end: only the child holds it now
        self._ready = False

    def ready(self) -> bool:
        """Whether the child has started (without waiting: starting an interpreter takes
        about half a second, during which the run sends from its thread). Raises
        ``SendingProcessDied`` if it died on the way."""
        if not self._ready and self._pipe.poll():
            self._receive()  # its "ready"
            self._ready = True
        return self._ready

    def hand(self, batch: list[Outgoing]) -> None:
        """Give the child ``batch`` to send (it starts at once); ``replies`` waits for its
        answer. Raises ``SendingProcessDied`` if the child is gone."""
        try:
            self._pipe.send(batch)
        except OSError as exc:
            self._died(exc)

    def replies(self) -> list[DeliveryError | None]:
        """One reply per message of the batch handed over that was sent, in order; fewer if
        the child was told to stop. Raises ``SendingProcessDied`` if the child is gone."""
        replies: list[DeliveryError | None] = self._receive()
        return replies

    def _receive(self) -> Any:
        try:
            return self._pipe.recv()
        except (EOFError, OSError) as exc:
            self._died(exc)

    def _died(self, exc: BaseException) -> NoReturn:
        self.process.join(STOP_SECONDS)
        raise SendingProcessDied(self.process.exitcode) from exc

    def stop(self) -> None:
        """Ask the child to stop after the message it is sending (safe from any thread)."""
        self._stopping.set()

    def close(self) -> None:
        """End the child: it finishes the message in hand, closes its SMTP connection and
        exits. Waits for it (and kills it if it does not end within ``STOP_SECONDS``)."""
        self._stopping.set()
        with contextlib.suppress(OSError):  # it is gone already
            self._pipe.send(None)
        self._pipe.close()
        self.process.join(STOP_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def serve(pipe: Connection, settings: dict[str, Any], stopping: Any) -> None:
    """The child: send what arrives until the pipe says ``None`` or closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    transport = SmtpTransport(**settings)
    try:
        pipe.send("ready")
        while True:
            batch: list[Outgoing] | None = pipe.recv()
            if batch is None:
                return
            replies: list[DeliveryError | None] = []
            for message, sender, recipient in batch:
                if stopping.is_set():
                    break
                try:
                    if isinstance(message, bytes):
                        transport.send_wire(message, sender, recipient)
                    else:
                        transport.send(message, sender, recipient)
                except DeliveryError as exc:
                    replies.append(exc)
                else:
                    replies.append(None)
            pipe.send(replies)
    except (EOFError, BrokenPipeError):
        return  # the run ended (before this child was ready, or the parent is gone)
    finally:
        transport.close()
