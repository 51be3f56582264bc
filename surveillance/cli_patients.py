"""``flask --app surveillance patients import FILE.csv``: bulk enrolment from the shell.

The same import as the coordinator's Bulk enrolment screen (``services.imports``): each row is
enrolled whole or rejected with its reason; the command exits with status 1 when any row was
rejected, so scripts notice.
"""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import select

from surveillance.extensions import db
from surveillance.models import Clinic
from surveillance.services import imports

patients_cli = AppGroup("patients", help="Patients: bulk enrolment.")


@patients_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--clinic", "clinic_slug", help="Clinic (slug) for rows without a clinic column.")
@click.option("--dry-run", is_flag=True, help="Check every row and save nothing.")
def import_patients(file: Path, clinic_slug: str | None, dry_run: bool) -> None:
    """Enrol one patient per CSV row (the API's enrolment fields as columns)."""
    default = None
    if clinic_slug:
        default = db.session.scalar(select(Clinic).where(Clinic.slug == clinic_slug))
        if default is None:
            raise click.ClickException(f"No clinic with slug {clinic_slug!r}.")
    try:
        rows = imports.read_csv(file.read_bytes())
    except imports.ImportFileError as exc:
        raise click.ClickException(str(exc)) from exc
    results = []
    resolver = imports.clinic_by_slug(default)
    with click.progressbar(
        imports.iter_import(rows, resolver),
        length=len(rows),
        label="Enrolling" if not dry_run else "Checking",
    ) as progress:
        for result in progress:
            results.append(result)
    if dry_run:
        db.session.rollback()
    else:
        db.session.commit()
    for result in results:
        if not result.enrolled:
            click.echo(f"line {result.line} ({result.mrn or 'no MRN'}): rejected: {result.reason}")
    enrolled = sum(r.enrolled for r in results)
    verb = "would be enrolled" if dry_run else "enrolled"
    click.echo(f"{enrolled} {verb}, {len(results) - enrolled} rejected.")
    if enrolled != len(results):
        raise SystemExit(1)
