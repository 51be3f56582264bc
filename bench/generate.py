"""Synthetic data for the benchmarks: clinics, coordinators, patients, plans, events, outbox.

    python bench/generate.py /tmp/watchful-bench.sqlite3
    python bench/generate.py postgresql://postgres@127.0.0.1:5432/watchful_bench

The schema comes from the real Alembic migrations. Rows go in set-based (one executemany per
batch on SQLite, COPY on PostgreSQL), never through the ORM, so the audit listener is not
involved. Plans are made by the real planning engine for a few hundred distinct (enrolment
date, interval) combinations and reused; each patient's events then get their own mix of
statuses. Every patient has a feed token derived under ``BENCH_SECRET_KEY``, so a benchmark can
rebuild each feed URL. All people are synthetic.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import common  # noqa: F401  (puts the project on sys.path)
import sqlalchemy as sa
from tqdm import tqdm

from surveillance import create_app
from surveillance.clinic_calendar import ClinicCalendar
from surveillance.extensions import db
from surveillance.planning import EventSlot, initial_plan
from surveillance.secrets_store import token_hash
from surveillance.services.feed_tokens import PATIENT, derive_secret

GIVEN = [
    "Ada",
    "Alan",
    "Alba",
    "Arlo",
    "Bea",
    "Blake",
    "Cato",
    "Cleo",
    "Dara",
    "Eli",
    "Elin",
    "Emil",
    "Esme",
    "Ezra",
    "Fay",
    "Finn",
    "Gia",
    "Gus",
    "Hana",
    "Hugo",
    "Ida",
    "Ines",
    "Ivo",
    "Jade",
    "Jon",
    "Juno",
    "Kai",
    "Kira",
    "Lars",
    "Lea",
    "Leo",
    "Lina",
    "Luca",
    "Mae",
    "Mila",
    "Nash",
    "Nia",
    "Noa",
    "Olin",
    "Ora",
    "Otto",
    "Pia",
    "Quin",
    "Remy",
    "Rhea",
    "Rio",
    "Rosa",
    "Sami",
    "Sia",
    "Tate",
    "Tess",
    "Uma",
    "Vera",
    "Wade",
    "Wren",
    "Yara",
    "Zane",
    "Zoe",
]
FAMILY = [
    "Abbot",
    "Alder",
    "Ashby",
    "Baird",
    "Barlow",
    "Bexley",
    "Birch",
    "Calder",
    "Carver",
    "Colby",
    "Dalton",
    "Dorsey",
    "Eames",
    "Ellery",
    "Farrow",
    "Fenwick",
    "Galloway",
    "Garner",
    "Hale",
    "Harlow",
    "Hollis",
    "Ingram",
    "Ives",
    "Jarvis",
    "Keaton",
    "Kendal",
    "Lacey",
    "Langley",
    "Marlow",
    "Merrick",
    "Nolan",
    "Norwood",
    "Oakes",
    "Orwell",
    "Pax",
    "Prescott",
    "Quill",
    "Radley",
    "Rowe",
    "Sallow",
    "Selby",
    "Thorne",
    "Tolland",
    "Upton",
    "Vale",
    "Varley",
    "Wardell",
    "Whitby",
    "Yardley",
    "Yates",
    "Zeller",
]
ZONES = ["America/Denver", "America/New_York", "America/Chicago", "America/Los_Angeles"]
SITES = ["pancreas", "small_bowel", "stomach", "rectum", "appendix", "lung", "other"]
PASSWORD = "bench-password-1"
PATIENT_BATCH = 5000


# --- Plan templates ---------------------------------------------------------------------------


def plan_templates(
    today: date, count: int, rng: random.Random
) -> list[tuple[date, int, date, list[EventSlot]]]:
    """(enrolled_on, interval, horizon_until, slots) for ``count`` distinct combinations:
    enrolment up to three years ago (some next month), intervals 3 to 6 months."""
    calendar = ClinicCalendar.build()
    combos: set[tuple[date, int]] = set()
    while len(combos) < count:
        days_ago = rng.randint(-30, 3 * 365)
        combos.add((today - timedelta(days=days_ago), rng.choice((3, 3, 4, 6, 6, 6))))
    templates = []
    for enrolled_on, interval in sorted(combos):
        slots = initial_plan(enrolled_on, interval, today, calendar)
        horizon = max(s.nominal_on for s in slots if s.kind == "visit")  # as the app keeps it
        templates.append((enrolled_on, interval, horizon, slots))
    return templates


def uuid4_text(bits: int) -> str:
    # The version (4) and the RFC 4122 variant bits, as ``uuid.UUID(..., version=4)`` sets them.
    bits = (bits & ~(0xF000 << 64) & ~(0xC000 << 48)) | (4 << 76) | (0x8000 << 48)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# --- Row builders -----------------------------------------------------------------------------


class Builder:
    def __init__(self, clinics: int, today: date, seed: int, key: str) -> None:
        self.rng = random.Random(seed)
        self.today = today
        self.now = datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=8)
        self.clinics = clinics
        self.key = key
        self.templates = plan_templates(today, 400, self.rng)
        self.next_event_id = 1

    def uid(self) -> str:
        """``str(uuid.UUID(int=bits, version=4))`` for 128 random bits, without the UUID
        object (a fifth of the row building's time); ``tests/test_bench_generate.py`` holds
        the two equal."""
        return uuid4_text(self.rng.getrandbits(128))

    def patient(self, pid: int) -> tuple[Any, ...]:
        rng = self.rng
        clinic_id = (pid - 1) % self.clinics + 1
        salt = base64.urlsafe_b64encode(rng.randbytes(32)).rstrip(b"=").decode()
        grade = rng.choice(("G1", "G1", "G1", "G2"))
        return (
            pid,
            clinic_id,
            f"B{clinic_id:02d}-{pid:07d}",
            rng.choice(GIVEN),
            rng.choice(FAMILY),
            date(1940, 1, 1) + timedelta(days=rng.randint(0, 60 * 365)),
            f"patient{pid}@example.org" if rng.random() < 0.9 else None,
            f"+1-555-{pid % 10000:04d}" if rng.random() < 0.8 else None,
            "en",
            rng.random() < 0.05,
            rng.choice(SITES),
            "well",
            grade,
            round(rng.uniform(0.5, 2.9 if grade == "G1" else 15), 1),
            rng.randint(4, 30),
            "unknown",
            salt,
            token_hash(derive_secret(self.key, PATIENT, salt)),
            1,
            self.now,
            self.now,
        )

    def plan_and_events(self, pid: int) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        rng = self.rng
        enrolled_on, interval, horizon, slots = rng.choice(self.templates)
        ended = rng.random() < 0.02
        ended_on = self.today - timedelta(days=rng.randint(1, 60)) if ended else None
        plan = (
            pid,
            pid,
            interval,
            enrolled_on,
            enrolled_on,
            0,
            horizon,
            "ended" if ended else "active",
            None,
            ended_on,
            "Moved to another centre." if ended else None,
            self.now,
            self.now,
        )
        events = []
        next_future_seen = False
        for slot in slots:
            status, booked_on, completed_on = self.status_for(slot, next_future_seen)
            if slot.due_on >= self.today:
                next_future_seen = True
            if ended_on is not None and status in ("planned", "booked") and slot.due_on > ended_on:
                status, booked_on = "cancelled", None
            events.append(self.event(pid, slot, status, booked_on, completed_on))
        return plan, events

    def status_for(
        self, slot: EventSlot, future_seen: bool
    ) -> tuple[str, date | None, date | None]:
        """A plausible status for a slot relative to today: (status, booked day, done day)."""
        r, today = self.rng.random(), self.today
        if slot.window_end < today:  # window over: history
            if r < 0.90:
                done = slot.due_on + timedelta(days=self.rng.randint(-3, 3))
                done = min(max(done, slot.window_start), slot.window_end)
                return "completed", done, done
            return ("missed", None, None) if r < 0.96 else ("cancelled", None, None)
        if slot.due_on < today:  # overdue but window still open
            if r < 0.5:
                return "planned", None, None
            return ("booked", today + timedelta(days=self.rng.randint(1, 14)), None)
        if slot.window_start <= today or not future_seen:  # the next event
            if r < 0.45:
                return "booked", slot.due_on, None
            return "planned", None, None
        return ("cancelled", None, None) if r < 0.01 else ("planned", None, None)

    def event(
        self,
        pid: int,
        slot: EventSlot,
        status: str,
        booked_on: date | None,
        completed_on: date | None,
    ) -> tuple[Any, ...]:
        event_id = self.next_event_id
        self.next_event_id += 1
        starts_at = ends_at = location = None
        if booked_on is not None:
            starts_at = datetime.combine(booked_on, datetime.min.time(), UTC) + timedelta(
                hours=15, minutes=30 * self.rng.randint(0, 10)
            )
            ends_at = starts_at + timedelta(minutes=30 if slot.kind == "visit" else 60)
            location = f"Clinic room {self.rng.randint(1, 12)}"
        changed = self.now if completed_on is None else starts_at or self.now
        return (
            event_id,
            pid,
            pid,
            slot.kind.value,
            slot.ordinal,
            slot.due_on,
            slot.window_start,
            slot.window_end,
            status,
            starts_at,
            ends_at,
            location,
            completed_on,
            "stable" if status == "completed" else None,
            "Patient asked to cancel." if status == "cancelled" else None,
            False,
            self.uid(),
            0 if status == "planned" else 1,
            self.now,
            changed,
            None,
            1,
            (pid - 1) % self.clinics + 1,
        )


PATIENT_COLUMNS = [
    "id",
    "clinic_id",
    "mrn",
    "given_name",
    "family_name",
    "birth_date",
    "email",
    "phone",
    "preferred_language",
    "email_opt_out",
    "primary_site",
    "differentiation",
    "grade",
    "ki67",
    "size_mm",
    "functional",
    "feed_token_salt",
    "feed_token_hash",
    "feed_version",
    "created_at",
    "updated_at",
]
PLAN_COLUMNS = [
    "id",
    "patient_id",
    "interval_months",
    "enrolled_on",
    "anchor_on",
    "anchor_ordinal",
    "horizon_until",
    "status",
    "justification",
    "ended_on",
    "end_reason",
    "created_at",
    "updated_at",
]
EVENT_COLUMNS = [
    "id",
    "plan_id",
    "patient_id",
    "kind",
    "ordinal",
    "due_on",
    "window_start",
    "window_end",
    "status",
    "starts_at",
    "ends_at",
    "location",
    "completed_on",
    "outcome",
    "cancel_reason",
    "cancelled_by_replan",
    "uid",
    "sequence",
    "created_at",
    "updated_at",
    "call_again_on",
    "row_version",
    "clinic_id",
]
OUTBOX_COLUMNS = [
    "id",
    "dedupe_key",
    "rule",
    "audience",
    "clinic_id",
    "event_id",
    "patient_id",
    "recipient",
    "due_at",
    "expires_at",
    "status",
    "attempts",
    "next_attempt_at",
    "message_id",
    "subject",
    "created_at",
    "updated_at",
    "sent_at",
    "failed_at",
    "last_error",
]


# --- Writers ----------------------------------------------------------------------------------


# Texts already made: a plan reuses a few thousand distinct days and timestamps over a million
# rows, and strftime is most of the conversion's cost.
_SQLITE_TEXT: dict[Any, Any] = {}


def _sqlite_value(value: Any) -> Any:
    """SQLAlchemy's own SQLite storage formats (naive UTC text for timestamps)."""
    kind = type(value)
    if kind is datetime or kind is date:
        text = _SQLITE_TEXT.get(value)
        if text is None:
            if kind is datetime:
                text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            else:
                text = value.isoformat()
            _SQLITE_TEXT[value] = text
        return text
    if kind is bool:
        return int(value)
    return value


def sqlite_rows(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(_sqlite_value(v) for v in row) for row in rows]


class Writer:
    """Bulk rows into one table at a time: executemany on SQLite, COPY on PostgreSQL."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self.raw = engine.raw_connection()
        if self.postgres:
            self._skip_foreign_key_checks()
        self.in_transaction = False
        if not self.postgres:
            cursor = self.raw.cursor()
            cursor.execute("PRAGMA synchronous = OFF")
            # A fresh file loaded in one go: no rollback is ever needed, and a crash means
            # generating again. (``finish`` puts the app's WAL mode back.)
            cursor.execute("PRAGMA cache_size = -1048576")
            cursor.execute("PRAGMA journal_mode = OFF")
            cursor.close()
        self.deferred: list[str] = []

    def _skip_foreign_key_checks(self) -> None:
        """PostgreSQL checks each row's foreign keys with a trigger, a quarter of the load's
        time; a superuser's session can leave them out (``session_replication_role``). Every
        row here refers only to rows written before it (``tests/test_bench_generate.py``
        checks the result). Other roles load with the checks."""
        cursor = self.raw.cursor()
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if cursor.fetchone()[0]:
            cursor.execute("SET session_replication_role = replica")
        cursor.close()
        self.raw.commit()

    def defer_indexes(self, tables: Sequence[str]) -> None:
        """Drop the tables' secondary indexes until ``restore_indexes``: building an index once
        over sorted keys is several times cheaper than keeping it up to date row by row (the
        usual advice for a bulk load). Indexes behind constraints stay, and so do unique ones:
        a foreign key may refer to one (plan events to patients' (id, clinic_id))."""
        cursor = self.raw.cursor()
        if self.postgres:
            cursor.execute(
                "SELECT ix.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "JOIN pg_class ix ON ix.oid = i.indexrelid "
                "JOIN pg_class owner ON owner.oid = i.indrelid "
                "WHERE owner.relname = ANY(%s) "
                "AND NOT i.indisunique "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
                (list(tables),),
            )
        else:
            marks = ", ".join("?" * len(tables))
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                f"AND sql NOT LIKE 'CREATE UNIQUE %' AND tbl_name IN ({marks})",
                tuple(tables),
            )
        found = cursor.fetchall()
        for name, definition in found:
            cursor.execute(f'DROP INDEX "{name}"')
            self.deferred.append(definition)
        cursor.close()
        self.raw.commit()

    def restore_indexes(self) -> None:
        cursor = self.raw.cursor()
        if self.postgres:
            cursor.execute("SET maintenance_work_mem = '512MB'")
        for definition in self.deferred:
            cursor.execute(definition)
        cursor.close()
        self.raw.commit()
        self.deferred = []

    def write(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        prepared: bool = False,
    ) -> None:
        """Rows of Python values, or ``prepared`` ones (``sqlite_rows`` already applied)."""
        if not rows:
            return
        cursor = self.raw.cursor()
        if self.postgres:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            if not self.in_transaction:
                cursor.execute("BEGIN")
                self.in_transaction = True
            marks = ", ".join("?" * len(columns))
            cursor.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                rows if prepared else sqlite_rows(rows),
            )
        cursor.close()

    def commit(self) -> None:
        if self.postgres:
            self.raw.commit()
        elif self.in_transaction:
            self.raw.cursor().execute("COMMIT")
            self.in_transaction = False

    def finish(self, tables: Sequence[str]) -> None:
        cursor = self.raw.cursor()
        if self.postgres:
            for table in tables:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
                )
            self.raw.commit()
            # Autovacuum would do this within minutes of a real bulk load; do it now.
            self.raw.driver_connection.autocommit = True
            cursor.execute("VACUUM ANALYZE")
        else:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()
        self.raw.close()


# --- Main -------------------------------------------------------------------------------------


def fresh_database(url: str) -> None:
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return
    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()


def clinics_and_users(writer: Writer, clinics: int, now: datetime) -> None:
    from werkzeug.security import generate_password_hash

    password = generate_password_hash(PASSWORD)
    writer.write(
        "clinics",
        [
            "id",
            "slug",
            "name",
            "timezone",
            "address",
            "calendar_name",
            "calendar_address",
            "phone",
            "working_weekdays",
            "observe_us_holidays",
            "created_at",
            "updated_at",
        ],
        [
            (
                c,
                f"clinic-{c}",
                f"Bench Clinic {c}",
                ZONES[c % len(ZONES)],
                f"{c} Example Street",
                f"Bench Clinic {c}",
                f"{c} Example Street",
                f"+1-555-01{c:02d}",
                "01234",
                True,
                now,
                now,
            )
            for c in range(1, clinics + 1)
        ],
    )
    users = [(1, "admin@bench.test", "Bench Admin", password, "admin", True, 0, now)]
    users += [
        (c + 1, f"coord{c}@bench.test", f"Coordinator {c}", password, "coordinator", True, 0, now)
        for c in range(1, clinics + 1)
    ]
    writer.write(
        "users",
        [
            "id",
            "email",
            "full_name",
            "password_hash",
            "role",
            "is_active",
            "session_generation",
            "created_at",
        ],
        users,
    )
    writer.write(
        "user_clinics", ["user_id", "clinic_id"], [(c + 1, c) for c in range(1, clinics + 1)]
    )


def outbox_rows(builder: Builder, count: int, patients: int) -> Iterator[tuple[Any, ...]]:
    """Reminder history: mostly sent, some failed (the failed-reminders worklist), some
    withdrawn."""
    rng, now = builder.rng, builder.now
    for i in range(1, count + 1):
        pid = rng.randint(1, patients)
        status = rng.choices(("sent", "failed", "withdrawn"), (85, 10, 5))[0]
        due = now - timedelta(days=rng.randint(1, 300))
        yield (
            i,
            f"bench:{i}",
            "book-window",
            "patient",
            (pid - 1) % builder.clinics + 1,
            None,
            pid,
            f"patient{pid}@example.org",
            due,
            due + timedelta(days=21),
            status,
            1 if status != "failed" else 10,
            due,
            f"<bench-{i}@watchful.example.org>",
            "Time to book your next visit",
            due,
            due,
            due if status == "sent" else None,
            due if status == "failed" else None,
            "SMTP 550" if status == "failed" else None,
        )


@dataclass
class Batch:
    """Rows for the writer, in order: (table, columns, rows ready for the driver)."""

    tables: list[tuple[str, list[str], list[tuple[Any, ...]]]]
    patients: int = 0
    events: int = 0


def batches(builder: Builder, patients: int, outbox: int, postgres: bool) -> Iterator[Batch]:
    """Every generated row, a batch of patients at a time, then the outbox."""
    prepare = (lambda rows: rows) if postgres else sqlite_rows
    for first in range(1, patients + 1, PATIENT_BATCH):
        ids = range(first, min(patients, first + PATIENT_BATCH - 1) + 1)
        patient_rows = [builder.patient(pid) for pid in ids]
        plan_rows, event_rows = [], []
        for pid in ids:
            plan, events = builder.plan_and_events(pid)
            plan_rows.append(plan)
            event_rows.extend(events)
        tables = [
            ("patients", PATIENT_COLUMNS, prepare(patient_rows)),
            ("surveillance_plans", PLAN_COLUMNS, prepare(plan_rows)),
            ("plan_events", EVENT_COLUMNS, prepare(event_rows)),
        ]
        yield Batch(tables, len(ids), len(event_rows))
    rows = list(outbox_rows(builder, outbox, patients))
    yield Batch([("outbox_messages", OUTBOX_COLUMNS, prepare(rows))])


def built_elsewhere(
    builder: Builder, patients: int, outbox: int, postgres: bool
) -> Iterator[Batch]:
    """``batches`` made in a forked child while this process writes the ones before: making
    the rows in Python is about half the load's time, and the other core is free (SQLite
    writes in this process, PostgreSQL in its server). One child draws from one ``Random``
    in the same order, so the data is the same as made here. The pipe holds little, so the
    child is at most a batch ahead."""
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)

    def produce() -> None:
        for batch in batches(builder, patients, outbox, postgres):
            sending.send(batch)
        sending.send(None)

    child = context.Process(target=produce, name="bench-rows", daemon=True)
    child.start()
    sending.close()
    try:
        while (batch := receiving.recv()) is not None:
            yield batch
    finally:
        receiving.close()
        child.join(timeout=60)
        if child.exitcode != 0:
            raise RuntimeError(f"the row-making process failed (exit code {child.exitcode})")


def generate(
    target: str, clinics: int, patients: int, outbox: int, seed: int, today: date
) -> dict[str, Any]:
    from common import app_config, database_url

    url = database_url(target)
    started = time.perf_counter()
    fresh_database(url)
    app = create_app(app_config(target))
    with app.app_context():
        from flask_migrate import upgrade

        from surveillance.services import next_due

        upgrade()
        migrated = time.perf_counter()
        builder = Builder(clinics, today, seed, app.config["SECRET_KEY"])
        writer = Writer(db.engine)
        writer.defer_indexes(["patients", "surveillance_plans", "plan_events", "outbox_messages"])
        clinics_and_users(writer, clinics, builder.now)
        events_total = 0
        with tqdm(total=patients, unit="patient", desc="patients") as bar:
            for batch in built_elsewhere(builder, patients, outbox, writer.postgres):
                for table, columns, rows in batch.tables:
                    writer.write(table, columns, rows, prepared=True)
                writer.commit()
                events_total += batch.events
                bar.update(batch.patients)
                bar.set_postfix(events=events_total)
        loaded = time.perf_counter()
        writer.restore_indexes()
        indexed = time.perf_counter()
        # Rows written around the ORM: the stored next-due dates, as any bulk writer must.
        next_due.refresh(None)
        db.session.commit()
        writer.finish(
            ["clinics", "users", "patients", "surveillance_plans", "plan_events", "outbox_messages"]
        )
        counts = {}
        with db.engine.connect() as conn:
            for status, n in conn.execute(
                sa.text("SELECT status, COUNT(*) FROM plan_events GROUP BY status ORDER BY 1")
            ):
                counts[status] = n
        db.engine.dispose()
    return {
        "benchmark": "generate",
        "database": url.split("://", 1)[0],
        "target": target,
        "clinics": clinics,
        "patients": patients,
        "plan_templates": len(builder.templates),
        "events": events_total,
        "events_by_status": counts,
        "outbox_messages": outbox,
        "today": today.isoformat(),
        "migrate_seconds": round(migrated - started, 1),
        "load_seconds": round(loaded - migrated, 1),
        "index_seconds": round(indexed - loaded, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    from common import DEFAULT_SQLITE, emit, machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", nargs="?", default=DEFAULT_SQLITE, help="SQLite path or PG URL")
    parser.add_argument("--clinics", type=int, default=10)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--outbox", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--today", type=date.fromisoformat, default=datetime.now(UTC).date())
    args = parser.parse_args()
    result = generate(args.target, args.clinics, args.patients, args.outbox, args.seed, args.today)
    emit({**result, "machine": machine()})


if __name__ == "__main__":
    main()
