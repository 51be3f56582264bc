"""Bulk enrolment from a CSV file, shared by the coordinator screen and the CLI.

One row is one patient, with the API's enrolment fields as column names (``clinic`` is the
clinic slug, optional when the importer works for one clinic). Each row is checked exactly
like an API enrolment and written inside its own savepoint: a row is either enrolled whole
(patient, plan and every event) or rejected with its reason and leaves nothing behind. Valid
rows are kept when others are rejected, so a file with one typo does not block a hundred
patients; the result says which rows to fix and send again. With ``dry_run`` every row is
checked the same way and nothing at all is kept.

The caller commits (or, for a dry run, nothing is left to commit).
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import select

from surveillance.errors import DomainError, ValidationFailed
from surveillance.extensions import db
from surveillance.models import Clinic
from surveillance.services import enrolment_input, plans

MAX_ROWS = 5000

ClinicResolver = Callable[[str | None], Clinic]


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (not CSV, wrong columns, too many rows)."""


@dataclass(frozen=True)
class CsvRow:
    line: int  # the line number a spreadsheet shows (the header is line 1)
    values: dict[str, str]

    @property
    def mrn(self) -> str:
        return self.values.get("mrn", "").strip()


@dataclass(frozen=True)
class RowResult:
    line: int
    mrn: str
    enrolled: bool
    reason: str = ""
    patient_id: int | None = None


@dataclass
class ImportResult:
    rows: list[RowResult] = field(default_factory=list)
    dry_run: bool = False

    @property
    def enrolled(self) -> int:
        return sum(r.enrolled for r in self.rows)

    @property
    def rejected(self) -> int:
        return sum(not r.enrolled for r in self.rows)


def decode(data: bytes) -> str:
    """The file's text, or an error that says how to save it instead."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data[:200]:
        raise ImportFileError(
            'The file is UTF-16 ("Unicode text"), not UTF-8; save it as CSV (UTF-8) instead.'
        )
    try:
        return data.decode("utf-8-sig")  # spreadsheets often add a byte-order mark
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(
            f"Line {line} is not UTF-8 text (byte 0x{data[exc.start]:02X}, perhaps Latin-1 or "
            "Windows-1252); save the file as CSV (UTF-8)."
        ) from exc


def read_csv(data: bytes | str) -> list[CsvRow]:
    """Parse the file; refuse it whole when its shape is wrong."""
    text = decode(data) if isinstance(data, bytes) else data
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    if not header:
        raise ImportFileError("The file is empty: the first line must name the columns.")
    unknown = [name for name in header if name not in enrolment_input.FIELDS]
    if unknown:
        raise ImportFileError(
            "Unknown column(s): "
            + ", ".join(unknown)
            + ". Allowed columns: "
            + ", ".join(enrolment_input.FIELDS)
            + "."
        )
    missing = sorted(enrolment_input.REQUIRED - set(header))
    if missing:
        raise ImportFileError("Missing column(s): " + ", ".join(missing) + ".")
    reader.fieldnames = header
    rows = []
    try:
        for record in reader:
            if None in record:
                raise ImportFileError(f"Line {reader.line_num} has more cells than the header.")
            values = {k: (v or "") for k, v in record.items()}
            if not any(v.strip() for v in values.values()):
                continue  # blank line
            rows.append(CsvRow(reader.line_num, values))
            if len(rows) > MAX_ROWS:
                raise ImportFileError(f"Import at most {MAX_ROWS} rows at a time.")
    except csv.Error as exc:
        raise ImportFileError(f"Line {reader.line_num} is not valid CSV: {exc}.") from exc
    if not rows:
        raise ImportFileError("The file has a header but no patients.")
    return rows


def describe(exc: DomainError) -> str:
    """One line for a rejected row: each field with its message."""
    if exc.fields:
        return "; ".join(f"{name}: {message}" for name, message in exc.fields.items())
    return exc.message


def import_rows(
    rows: Iterable[CsvRow],
    resolve_clinic: ClinicResolver,
    dry_run: bool = False,
) -> ImportResult:
    """Enrol each row in its own savepoint; see the module docstring."""
    result = ImportResult(dry_run=dry_run)
    for outcome in iter_import(rows, resolve_clinic):
        result.rows.append(outcome)
    if dry_run:
        db.session.rollback()
    return result


def iter_import(rows: Iterable[CsvRow], resolve_clinic: ClinicResolver) -> Iterator[RowResult]:
    """Like ``import_rows`` but yields each row's result as it is done (for progress bars)."""
    for row in rows:
        yield _import_one(row, resolve_clinic)


def _import_one(row: CsvRow, resolve_clinic: ClinicResolver) -> RowResult:
    savepoint = db.session.begin_nested()
    try:
        parsed = enrolment_input.parse(row.values)
        clinic = resolve_clinic(parsed.clinic_slug)
        patient = plans.enrol(parsed.enrolment, clinic)
    except DomainError as exc:
        savepoint.rollback()
        return RowResult(row.line, row.mrn, False, describe(exc))
    savepoint.commit()
    return RowResult(row.line, row.mrn, True, "", patient.id)


def clinic_by_slug(default: Clinic | None) -> ClinicResolver:
    """A resolver for trusted callers (the CLI): any clinic by slug, or the default."""

    def resolve(slug: str | None) -> Clinic:
        if slug is None:
            if default is None:
                raise ValidationFailed({"clinic": "Name the clinic (slug) or pass --clinic."})
            return default
        clinic = db.session.scalar(select(Clinic).where(Clinic.slug == slug))
        if clinic is None:
            raise ValidationFailed({"clinic": f"Unknown clinic {slug!r}."})
        return clinic

    return resolve


def template_csv() -> str:
    """A header line plus one synthetic example row, offered for download."""
    example = {
        "mrn": "NEW-0001",
        "given_name": "Jamie",
        "family_name": "Sample",
        "birth_date": "1962-05-01",
        "email": "jamie.sample@example.org",
        "phone": "+1 303 555 0100",
        "preferred_language": "en",
        "enrolled_on": "2026-01-05",
        "interval_months": "",
        "primary_site": "small_bowel",
        "differentiation": "well",
        "grade": "G1",
        "ki67": "1.5",
        "size_mm": "14",
        "functional": "no",
        "clinic": "",
        "justification": "",
    }
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(enrolment_input.FIELDS), lineterminator="\n")
    writer.writeheader()
    writer.writerow({name: example.get(name, "") for name in enrolment_input.FIELDS})
    return out.getvalue()
