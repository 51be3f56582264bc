"""The feed rows a web worker thread has read, valid until the database says they changed.

A calendar app's poll needs a handful of values to compute the feed's entity tag (the
patient's id, ``feed_version`` and ``updated_at``, the clinic's id, ``updated_at`` and zone).
Reading them is an indexed lookup; on PostgreSQL it is also a round trip to the server, whose
backend shares the machine's cores with the web workers, and under load that round trip, not
the tag, was the gap between a ``304`` and the benchmark's baseline (``bench/HISTORY.md``). So
each worker thread remembers the rows it has read, keyed by the hash of the feed secret, and
forgets them as soon as the database says they may have changed:

* **PostgreSQL**: migration ``0010_feed_row_signals`` makes every statement that updates or
  deletes patients (or touches clinics) send the changed ids on the ``CHANNEL`` at commit,
  and the thread's own connection ``LISTEN``s to it. Notifications are read (without
  blocking) before every lookup in the table; a row read while a notification came in is not
  remembered (it may predate the change); a row is trusted only within ``recheck_seconds``
  of the connection's last completed statement, so a connection that died without a word is
  found out by the next poll's statement, and its table dropped with it; the table is used
  only when the triggers are in place and enabled. What this costs in exactness: a
  notification travels from the committing backend to the listening one and on to the
  worker, which takes well under a millisecond on an idle machine. A poll arriving within
  that moment after a commit is answered as it would have been just before the commit; its
  calendar app sees the change at its next poll.
* **SQLite**: ``PRAGMA data_version`` (a few microseconds, against the lookup's ten or so)
  changes whenever another connection commits anything, and the table is then emptied. This
  is exact, and coarse: it helps in quiet hours (nights, weekends: calendars keep polling)
  and not while staff are writing. It is read only when the wal-index header in shared
  memory has moved since the last poll (``WalIndexWatch``), so a quiet database answers a
  poll with no statement and no system call at all.

Nothing here imports Flask: the fast path (``fastpath.PatientLookup``) owns the connection.
"""

from __future__ import annotations

import math
import mmap
import sys
import time
from collections.abc import Callable
from typing import Any

CHANNEL = "watchful_feed_rows"
TRIGGERS = (
    "patients_feed_rows_update",
    "patients_feed_rows_delete",
    "patients_feed_rows_truncate",
    "clinics_feed_rows",
)
FORGET_ALL = "*"

DEFAULT_ROWS = 20_000
DEFAULT_RECHECK_SECONDS = 1.0

# patient id, feed_version, patient stamp, clinic id, clinic stamp, clinic zone: what the fast
# path's lookup reads (timestamps as ``validators.stamp`` writes them).
Row = tuple[int, int, str, int, str, str]


class RowTable:
    """Rows by secret hash, with what is needed to forget them by patient id."""

    def __init__(
        self,
        capacity: int = DEFAULT_ROWS,
        recheck_seconds: float = DEFAULT_RECHECK_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.recheck_seconds = recheck_seconds
        self._monotonic = monotonic
        self._rows: dict[str, Row] = {}
        self._key_of_patient: dict[int, str] = {}
        self._checked_at = -math.inf
        self._version: int | None = None  # SQLite's data_version when the rows were read
        # Changes heard of so far (notifications, new data versions): a lookup compares it
        # before and after its statement.
        self.signals = 0
        self.hits = 0  # for tests and operators

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, hashed: str) -> Row | None:
        """The remembered row, unless the connection has been quiet too long to vouch for it."""
        if self._monotonic() - self._checked_at >= self.recheck_seconds:
            return None
        row = self._rows.get(hashed)
        if row is not None:
            self.hits += 1
        return row

    def read(self, hashed: str, row: Row | None, signals_before: int) -> None:
        """Take in what a statement on the listening connection just read for ``hashed``
        (``None``: no such secret). ``signals_before`` is ``signals`` as it was before the
        statement was sent."""
        self._checked_at = self._monotonic()
        if row is None or self.signals != signals_before:
            return  # nothing to remember, or a change came in meanwhile: the row may predate it
        if len(self._rows) >= self.capacity:
            self.forget_all()  # bounded memory; the next polls read again
        previous = self._key_of_patient.get(row[0])
        if previous is not None and previous != hashed:
            del self._rows[previous]  # the patient's secret was replaced
        self._rows[hashed] = row
        self._key_of_patient[row[0]] = hashed

    def observe(self, version: int) -> None:
        """SQLite: the connection's ``PRAGMA data_version``, read just now. It changes when
        another connection commits anything; the rows then may be stale, all of them."""
        self._checked_at = self._monotonic()
        if version != self._version:
            self.signals += 1
            self.forget_all()
            self._version = version

    def unchanged(self) -> None:
        """SQLite: nothing was committed since the last ``observe`` (``WalIndexWatch`` says
        so without a statement): as good as reading the same ``data_version`` again."""
        self._checked_at = self._monotonic()

    def apply(self, payload: str) -> None:
        """A notification from the triggers: patient ids, comma-separated, or ``*``."""
        self.signals += 1
        if payload == FORGET_ALL:
            self.forget_all()
            return
        try:
            patient_ids = [int(part) for part in payload.split(",")]
        except ValueError:  # not ours to understand: be safe
            self.forget_all()
            return
        for patient_id in patient_ids:
            hashed = self._key_of_patient.pop(patient_id, None)
            if hashed is not None:
                del self._rows[hashed]

    def forget_all(self) -> None:
        self._rows.clear()
        self._key_of_patient.clear()


class WalIndexWatch:
    """Whether anyone may have committed to a SQLite database in WAL mode since the last look,
    read from the wal-index header in the ``-shm`` file's shared memory: no statement and no
    system call. ``PRAGMA data_version`` answers the same question exactly, but each time
    through a read transaction (two ``fcntl`` locks and an ``fstat``): three of the four
    system calls a fast-path ``304`` added to gunicorn's own, and about 7 of its 35 µs in
    process on the machine where this was measured (``bench/README.md``).

    Every commit rewrites the header (https://sqlite.org/walformat.html: the change counter
    ``iChange`` goes up, and ``mxFrame`` or the salts move), the first copy last. So an
    unchanged header means nothing was committed since it was read, and a changed one (also
    a half-written or merely reinitialised one) sends the caller to ``data_version``: it can
    only cost a statement, never hide a commit. Only while the connection that made the watch
    is open, though: SQLite shortens or deletes the ``-shm`` file only when no connection
    holds the database, and a deleted one comes back as a new file that this mapping would
    never see again. So the watch lives and dies with that connection (``PatientLookup``
    closes it first, and checks before each poll that the connection is still open and its
    own)."""

    HEADER = 48  # the first copy of WalIndexHdr
    VERSION = 3007000  # iVersion of every wal-index since SQLite 3.7.0

    def __init__(self, shm_path: str) -> None:
        with open(shm_path, "rb") as file:
            self._map = mmap.mmap(file.fileno(), self.HEADER, prot=mmap.PROT_READ)
        self._seen = b""
        if int.from_bytes(self._map[:4], sys.byteorder) != self.VERSION:
            self.close()
            raise ValueError("not a wal-index this watch understands")

    def changed(self) -> bool:
        """``True`` the first time and whenever the header moved since the last call."""
        header = self._map[: self.HEADER]
        if header == self._seen:
            return False
        self._seen = header
        return True

    def close(self) -> None:
        self._map.close()


def wal_index_watch(driver: Any) -> WalIndexWatch | None:
    """A watch on sqlite3 connection ``driver``'s main database, when that is a file in WAL
    mode whose wal-index is shared memory; ``None`` otherwise (``:memory:``, other journal
    modes), and the caller reads ``data_version`` every time."""
    cursor = driver.cursor()
    try:
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        locking = cursor.execute("PRAGMA locking_mode").fetchone()[0]
        files = {name: path for _, name, path in cursor.execute("PRAGMA database_list")}
    finally:
        cursor.close()
    # In exclusive locking mode the wal-index is in the heap, not in the file.
    if mode != "wal" or locking != "normal" or not files.get("main"):
        return None
    try:
        return WalIndexWatch(files["main"] + "-shm")
    except (OSError, ValueError):
        return None


def listen(driver: Any, table: RowTable) -> bool:
    """Subscribe psycopg connection ``driver`` (in autocommit) to the channel, feeding
    ``table``; ``False`` (and no subscription) when the triggers are missing or disabled,
    e.g. on a database not yet upgraded to ``0010_feed_row_signals``."""
    cursor = driver.cursor()
    try:
        cursor.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = ANY(%s) AND tgenabled <> 'D' "
            "AND tgrelid IN (to_regclass('patients'), to_regclass('clinics'))",
            (list(TRIGGERS),),
        )
        (enabled,) = cursor.fetchone()
        if enabled != len(TRIGGERS):
            return False
        driver.add_notify_handler(lambda notify: _deliver(notify, table))
        cursor.execute(f"LISTEN {CHANNEL}")
    finally:
        cursor.close()
    return True


def catch_up(driver: Any) -> None:
    """Hand every notification already on the connection's socket to its handler, without
    waiting for more (libpq's ``PQconsumeInput``/``PQnotifies``, as psycopg's own
    ``notifies()`` generator does once the socket is readable). Raises when the connection
    is broken."""
    pgconn = driver.pgconn
    pgconn.consume_input()
    handler = pgconn.notify_handler
    while (notify := pgconn.notifies()) is not None:
        handler(notify)


def _deliver(notify: Any, table: RowTable) -> None:
    if notify.channel == CHANNEL:
        table.apply(notify.payload)
