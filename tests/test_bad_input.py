"""Bad CSV uploads get clear errors and change nothing; formulas are refused on the way in
and neutralised on the way out (worklist CSV)."""

from __future__ import annotations

import csv
import io
import time

import pytest
import time_machine
from sqlalchemy import func, select

from surveillance.api.worklists import safe_cell
from surveillance.audit import AuditEntry
from surveillance.extensions import db
from surveillance.models import Patient
from surveillance.services import imports
from tests import factories
from tests.screens import counts, enrol_form, sign_in

HEADER = "mrn,given_name,family_name,birth_date,enrolled_on,primary_site,differentiation,grade"
GOOD = "BI-1,Ari,One,1960-01-02,2026-01-05,pancreas,well,G1"
FORMULA_MESSAGE = "spreadsheets run such text as a formula"


@pytest.fixture(autouse=True)
def _today():  # type: ignore[no-untyped-def]
    with time_machine.travel("2026-01-05 17:00:00+00:00", tick=False):
        yield


def upload(client, content: bytes):  # type: ignore[no-untyped-def]
    return client.post(
        "/coordinator/import",
        data={"file": (io.BytesIO(content), "patients.csv"), "run": "Import"},
        content_type="multipart/form-data",
    )


def nothing_written() -> bool:
    return counts() == (0, 0, 0) and not db.session.scalar(
        select(func.count(AuditEntry.id)).where(AuditEntry.entity == "patients")
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            (HEADER + "\n" + GOOD + "\n").encode("utf-16"),
            "The file is UTF-16 (&#34;Unicode text&#34;), not UTF-8",
        ),
        (
            (
                HEADER + "\n" + GOOD + "\nBI-2,José,Núñez,1960-01-02,2026-01-05,pancreas,well,G1\n"
            ).encode("latin-1"),
            "Line 3 is not UTF-8 text (byte 0xE9, perhaps Latin-1 or Windows-1252)",
        ),
        (b"mrn,given_name,family_name\nX,Y,Z\n", "Missing column(s): birth_date, differentiation"),
        (b"", "The file is empty"),
    ],
    ids=["utf-16", "latin-1", "missing-columns", "empty"],
)
def test_badly_encoded_or_shaped_files_are_refused_whole(
    client, clinic, coordinator, content, message
) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, coordinator.email)
    response = upload(client, content)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert nothing_written()


def test_ten_thousand_rows_are_refused_quickly_and_whole(client, clinic, coordinator) -> None:  # type: ignore[no-untyped-def]
    rows = [f"BIG-{n},Ari,Row{n},1960-01-02,2026-01-05,pancreas,well,G1" for n in range(10_000)]
    content = ("\n".join([HEADER, *rows]) + "\n").encode()
    sign_in(client, coordinator.email)
    started = time.perf_counter()
    response = upload(client, content)
    assert time.perf_counter() - started < 10
    assert response.status_code == 422
    assert f"Import at most {imports.MAX_ROWS} rows at a time." in response.get_data(as_text=True)
    assert nothing_written()


@pytest.mark.parametrize(
    ("row", "field", "first"),
    [
        ("BI-2,=cmd|' /C calc'!A0,Two,1960-01-02,2026-01-05,pancreas,well,G1", "given_name", "="),
        ("BI-3,Cy,+SUM(1;2),1960-01-02,2026-01-05,pancreas,well,G1", "family_name", "+"),
        ("BI-4,Di,-2+3,1960-01-02,2026-01-05,pancreas,well,G1", "family_name", "-"),
        ("BI-5,@SUM(A1),Five,1960-01-02,2026-01-05,pancreas,well,G1", "given_name", "@"),
        ("BI-6,  =1+1,Six,1960-01-02,2026-01-05,pancreas,well,G1", "given_name", "="),
    ],
)
def test_formula_cells_are_refused_row_by_row(
    client, clinic, coordinator, row, field, first
) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, coordinator.email)
    response = upload(client, f"{HEADER}\n{GOOD}\n{row}\n".encode())
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "1 enrolled, 1 rejected." in html
    assert f"{field}: Must not start with &#39;{first}&#39;: {FORMULA_MESSAGE}" in html
    assert sorted(db.session.scalars(select(Patient.mrn))) == ["BI-1"]


def test_formula_in_a_justification_or_email_column_is_refused(app, clinic) -> None:  # type: ignore[no-untyped-def]
    text = (
        HEADER
        + ",email,justification,phone\n"
        + 'BI-7,Eve,Seven,1960-01-02,2026-01-05,lung,poorly,G3,,=HYPERLINK("http://x"),\n'
        + "BI-8,Fay,Eight,1960-01-02,2026-01-05,lung,well,G1,@fay@example.org,,\n"
        + "BI-9,Gus,Nine,1960-01-02,2026-01-05,lung,well,G1,gus@example.org,,+1 303 555 0100\n"
    )
    result = imports.import_rows(imports.read_csv(text.encode()), imports.clinic_by_slug(clinic))
    db.session.commit()
    reasons = {r.mrn: r.reason for r in result.rows}
    assert FORMULA_MESSAGE in reasons["BI-7"] and reasons["BI-7"].startswith("justification:")
    assert "email: " in reasons["BI-8"]
    assert reasons["BI-9"] == ""
    # The phone column's leading + is a phone number, not a formula: still accepted.
    assert db.session.scalar(select(Patient.phone)) == "+1 303 555 0100"


def test_the_enrolment_form_refuses_formulas_too(client, clinic, coordinator) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, coordinator.email)
    response = client.post("/coordinator/patients/new", data=enrol_form(family_name="=1+1"))
    assert response.status_code == 422
    assert FORMULA_MESSAGE in response.get_data(as_text=True)
    assert counts() == (0, 0, 0)
    accepted = client.post("/coordinator/patients/new", data=enrol_form(phone="+1 303 555 0100"))
    assert accepted.status_code == 302


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+1 303 555 0199", "'+1 303 555 0199"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("  =1+1", "'  =1+1"),
        ("\t=1", "'\t=1"),
        ("Smith", "Smith"),
        (None, ""),
    ],
)
def test_safe_cell_neutralises_every_formula_start(value, written) -> None:  # type: ignore[no-untyped-def]
    assert safe_cell(value) == written


def test_worklist_export_neutralises_formulas_that_came_in_through_the_api(api, clinic) -> None:  # type: ignore[no-untyped-def]
    """The API may store such names (it is not a spreadsheet); the export makes them inert."""
    payload = factories.enrolment_payload(
        given_name="@SUM(A1)", family_name="-2+3", enrolled_on="2025-06-02"
    )
    assert api.post("/patients", json=payload).status_code == 201
    response = api.get("/worklists/overdue.csv")
    table = list(csv.DictReader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert table
    for row in table:
        assert row["given_name"] == "'@SUM(A1)" and row["family_name"] == "'-2+3"
        assert all(not v.lstrip(" ").startswith(("=", "+", "-", "@", "\t")) for v in row.values())
