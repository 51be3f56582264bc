"""Bulk enrolment: the CSV service, the upload screen and the CLI command."""

from __future__ import annotations

import io

import pytest
import time_machine
from sqlalchemy import select

from surveillance.extensions import db
from surveillance.models import Patient
from surveillance.services import imports
from tests import factories
from tests.screens import counts, sign_in

HEADER = "mrn,given_name,family_name,birth_date,enrolled_on,primary_site,differentiation,grade"
GOOD_1 = "IM-1,Ari,One,1960-01-02,2026-01-05,pancreas,well,G1"
GOOD_2 = "IM-2,Bo,Two,1961-01-02,2026-01-05,rectum,well,G2"
BAD_DATE = "IM-3,Cy,Three,1962-02-30,2026-01-05,lung,well,G1"
NEEDS_JUSTIFICATION = "IM-4,Di,Four,1963-01-02,2026-01-05,lung,poorly,G3"


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        yield


def csv_text(*rows: str) -> str:
    return "\n".join((HEADER, *rows)) + "\n"


def mrns() -> list[str]:
    return sorted(db.session.scalars(select(Patient.mrn)))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty"),
        (b"\xff\xfe\x00n\x00o", "not UTF-8"),
        (HEADER.encode() + b"\n", "no patients"),
        (b"mrn,given_name\nX,Y\n", "Missing column(s): birth_date"),
        ((HEADER + ",shoe_size\n").encode(), "Unknown column(s): shoe_size"),
        ((csv_text(GOOD_1) + "a,b,c,d,e,f,g,h,i,j\n").encode(), "more cells than the header"),
    ],
)
def test_badly_shaped_files_are_refused_whole(content: bytes, message: str) -> None:
    with pytest.raises(
        imports.ImportFileError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        imports.read_csv(content)


def test_each_row_enrolled_whole_or_rejected_with_its_reason(app, clinic) -> None:  # type: ignore[no-untyped-def]
    rows = imports.read_csv(
        ("\ufeff" + csv_text(GOOD_1, BAD_DATE, NEEDS_JUSTIFICATION, "", GOOD_2, GOOD_1)).encode()
    )
    result = imports.import_rows(rows, imports.clinic_by_slug(clinic))
    db.session.commit()
    assert [(r.line, r.mrn, r.enrolled) for r in result.rows] == [
        (2, "IM-1", True),
        (3, "IM-3", False),
        (4, "IM-4", False),
        (6, "IM-2", True),
        (7, "IM-1", False),
    ]
    reasons = {r.mrn: r.reason for r in result.rows if not r.enrolled}
    assert reasons["IM-3"] == "birth_date: Enter a real date as YYYY-MM-DD."
    assert reasons["IM-4"].startswith("justification: Poorly differentiated or G3")
    assert result.rows[-1].reason == "mrn: MRN already in use."
    assert mrns() == ["IM-1", "IM-2"]
    # No half-written rows: every plan has its events, every patient its plan.
    assert counts() == (2, 2, 5 + 9)  # G1: 6-monthly (4 visits + biopsy); G2: 3-monthly (8 + 1)


def test_rejected_rows_leave_nothing_behind_even_after_writing_started(app, clinic) -> None:  # type: ignore[no-untyped-def]
    """A row failing inside ``enrol`` (after objects were added) is rolled back to its
    savepoint; on SQLite this relies on the explicit-BEGIN setup in create_app."""
    factories.enrol(clinic, mrn="IM-2")
    rows = imports.read_csv(csv_text(GOOD_1, GOOD_2).encode())
    result = imports.import_rows(rows, imports.clinic_by_slug(clinic))
    db.session.rollback()  # the caller gives up: nothing of this import may stay
    assert [r.enrolled for r in result.rows] == [True, False]
    assert mrns() == ["IM-2"]


def test_dry_run_checks_everything_and_keeps_nothing(app, clinic) -> None:  # type: ignore[no-untyped-def]
    rows = imports.read_csv(csv_text(GOOD_1, BAD_DATE).encode())
    result = imports.import_rows(rows, imports.clinic_by_slug(clinic), dry_run=True)
    db.session.commit()
    assert (result.enrolled, result.rejected) == (1, 1)
    assert counts() == (0, 0, 0)


def test_template_csv_is_a_valid_import(app, clinic) -> None:  # type: ignore[no-untyped-def]
    rows = imports.read_csv(imports.template_csv().encode())
    result = imports.import_rows(rows, imports.clinic_by_slug(clinic), dry_run=True)
    assert result.enrolled == 1, result.rows


def test_upload_screen_lists_each_row(client, clinic, coordinator) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, coordinator.email)
    response = client.post(
        "/coordinator/import",
        data={"file": (io.BytesIO(csv_text(GOOD_1, BAD_DATE).encode()), "p.csv"), "run": "Import"},
        content_type="multipart/form-data",
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "1 enrolled, 1 rejected." in html
    assert "birth_date: Enter a real date as YYYY-MM-DD." in html
    assert mrns() == ["IM-1"]


def test_upload_screen_check_only_saves_nothing(client, clinic, coordinator) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, coordinator.email)
    html = client.post(
        "/coordinator/import",
        data={"file": (io.BytesIO(csv_text(GOOD_1).encode()), "p.csv"), "check": "Check only"},
        content_type="multipart/form-data",
    ).get_data(as_text=True)
    assert "1 row would be enrolled, 0 rejected." in html
    assert mrns() == []


def test_upload_screen_errors(client, clinic, coordinator) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, coordinator.email)
    missing = client.post("/coordinator/import", data={"run": "Import"})
    assert missing.status_code == 422
    assert "Choose a CSV file to upload." in missing.get_data(as_text=True)
    wrong = client.post(
        "/coordinator/import",
        data={"file": (io.BytesIO(b"name,age\nx,1\n"), "p.csv"), "run": "Import"},
        content_type="multipart/form-data",
    )
    assert wrong.status_code == 422
    assert "Unknown column(s): name, age" in wrong.get_data(as_text=True)


def test_upload_screen_only_enrols_into_the_users_clinics(client, clinic, coordinator) -> None:  # type: ignore[no-untyped-def]
    other = factories.clinic(slug="elsewhere")
    sign_in(client, coordinator.email)
    text = HEADER + ",clinic\n" + GOOD_1 + f",{other.slug}\n" + GOOD_2 + f",{clinic.slug}\n"
    html = client.post(
        "/coordinator/import",
        data={"file": (io.BytesIO(text.encode()), "p.csv"), "run": "Import"},
        content_type="multipart/form-data",
    ).get_data(as_text=True)
    assert "clinic: Unknown clinic." in html
    assert mrns() == ["IM-2"]


def test_template_download(client, coordinator) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, coordinator.email)
    response = client.get("/coordinator/import/template.csv")
    assert response.mimetype == "text/csv"
    assert response.get_data(as_text=True).startswith("mrn,given_name,family_name,birth_date")


def test_cli_import_with_progress_bar_and_exit_status(runner, clinic, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "patients.csv"
    path.write_text(csv_text(GOOD_1, BAD_DATE, GOOD_2))
    result = runner.invoke(args=["patients", "import", str(path), "--clinic", clinic.slug])
    assert result.exit_code == 1  # a row was rejected
    assert "Enrolling" in result.output  # the progress bar's label
    assert "line 3 (IM-3): rejected: birth_date: Enter a real date as YYYY-MM-DD." in result.output
    assert result.output.rstrip().endswith("2 enrolled, 1 rejected.")
    db.session.rollback()
    assert mrns() == ["IM-1", "IM-2"]


def test_cli_dry_run_and_clinic_column(runner, clinic, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "patients.csv"
    path.write_text(HEADER + ",clinic\n" + GOOD_1 + f",{clinic.slug}\n")
    result = runner.invoke(args=["patients", "import", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "1 would be enrolled, 0 rejected." in result.output
    db.session.rollback()
    assert mrns() == []
    result = runner.invoke(args=["patients", "import", str(path), "--clinic", "nope"])
    assert result.exit_code != 0 and "No clinic with slug 'nope'" in result.output
    path.write_text(csv_text(GOOD_1))
    result = runner.invoke(args=["patients", "import", str(path)])
    assert "clinic: Name the clinic (slug) or pass --clinic." in result.output
