"""Bulk enrolment: upload a CSV, see each row enrolled or rejected with its reason."""

from __future__ import annotations

from typing import Any

from flask import Response, render_template

from surveillance.coordinator import bp
from surveillance.coordinator.forms import ImportForm
from surveillance.coordinator.support import me
from surveillance.extensions import db
from surveillance.services import access, enrolment_input, imports


@bp.route("/import", methods=["GET", "POST"])
def bulk_import() -> Any:
    form = ImportForm()
    result = None
    status = 200
    if form.is_submitted():
        if form.validate():
            user = me()
            try:
                rows = imports.read_csv(form.file.data.read())
            except imports.ImportFileError as exc:
                form.file.errors = [str(exc)]
                status = 422
            else:
                dry_run = bool(form.check.data)
                result = imports.import_rows(
                    rows, lambda slug: access.clinic_for_enrolment(user, slug), dry_run=dry_run
                )
                if not dry_run:
                    db.session.commit()
        else:
            status = 422
    return (
        render_template(
            "coordinator/import.html",
            form=form,
            result=result,
            columns=enrolment_input.FIELDS,
            required=enrolment_input.REQUIRED,
        ),
        status,
    )


@bp.get("/import/template.csv")
def import_template() -> Any:
    return Response(
        imports.template_csv(),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=watchful-enrolment-template.csv"},
    )
