"""The indexed patient search (pg_trgm on PostgreSQL, FTS5 trigrams on SQLite) finds exactly the
patients a plain substring filter finds: by "given family", "family, given" or MRN, any case."""

from __future__ import annotations

import random
from datetime import date

import pytest

from surveillance.extensions import db
from surveillance.models import Clinic, Patient
from surveillance.services import counting, patient_search
from surveillance.services.counting import CappedCount
from tests import factories

GIVEN = ["Ada", "Zoe", "Hamid", "Chloé", "Élodie", "Marta", "Jean-Luc", "O'Neil", "Li", "Shah"]
FAMILY = ["Hale", "Haddad", "Ng", "Zoltan", "Müller", "Ölberg", "Smith_Jones", "Bar%ton", "Chan"]


def _synthetic_patients(clinic: Clinic, count: int, rng: random.Random) -> list[Patient]:
    patients = []
    for n in range(count):
        patient = Patient(
            clinic=clinic,
            mrn=f"{rng.choice('ABZ')}{rng.randint(0, 9):02d}-{n:05d}",
            given_name=rng.choice(GIVEN),
            family_name=rng.choice(FAMILY) + rng.choice(["", "son", "a"]),
            birth_date=date(1960, 1, 1),
            primary_site="small_bowel",
            differentiation="well",
            grade="G1",
        )
        db.session.add(patient)
        patients.append(patient)
    db.session.commit()
    return patients


def _expected(patients: list[Patient], term: str) -> set[int]:
    term = term.strip().lower()
    return {
        p.id
        for p in patients
        if term in f"{p.given_name} {p.family_name}".lower()
        or term in f"{p.family_name}, {p.given_name}".lower()
        or term in p.mrn.lower()
    }


def _terms(patients: list[Patient], rng: random.Random) -> list[str]:
    """Pieces of real names and MRNs of every length, in any case, and terms found nowhere."""
    terms = ["", "  ", "%", "_", "%ton", "_jo", '"', "o'n", "ha", "zz", "hale, a", "n, z", "a z"]
    for _ in range(60):
        p = rng.choice(patients)
        text = rng.choice([f"{p.given_name} {p.family_name}", f"{p.family_name}, {p.given_name}"])
        text = rng.choice([text, p.mrn])
        start = rng.randrange(len(text))
        piece = text[start : start + rng.randint(1, 7)]
        terms.append(rng.choice([piece, piece.upper(), piece.lower()]))
    return terms


@pytest.fixture
def admin(clinic):  # type: ignore[no-untyped-def]
    return factories.user(role="admin")


def _found(user, term: str) -> set[int]:  # type: ignore[no-untyped-def]
    page = patient_search.search(user, term, sort=patient_search.SortOrder.NAME, per_page=1000)
    return {row.patient.id for row in page.rows}


def test_search_finds_what_a_substring_filter_finds(clinic, admin) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(8)
    patients = _synthetic_patients(clinic, 300, rng)
    for term in _terms(patients, rng):
        if len(term.strip()) < patient_search.TRIGRAM and not term.isascii():
            continue  # short terms scan with SQL lower(): SQLite folds ASCII letters only
        expected = _expected(patients, term)
        assert _found(admin, term) == expected, term
        assert patient_search.count_matches(admin, term) == CappedCount.of(len(expected)), term


def test_accented_names_are_found_in_any_case(clinic, admin) -> None:  # type: ignore[no-untyped-def]
    patients = _synthetic_patients(clinic, 40, random.Random(3))
    for term in ("élodie", "ÉLODIE", "Müller", "MÜLL", "ölberg", "chloé"):
        assert _found(admin, term) == _expected(patients, term) != set(), term


def test_a_renamed_patient_is_found_by_the_new_name_only(clinic, coordinator) -> None:  # type: ignore[no-untyped-def]
    patient = factories.enrol(clinic, given_name="Rowan", family_name="Oldname", mrn="REN-001")
    assert _found(coordinator, "oldname") == {patient.id}
    patient.family_name, patient.mrn = "Newsurname", "REN-002"
    db.session.commit()
    assert _found(coordinator, "oldname") == set()
    assert _found(coordinator, "newsurn") == _found(coordinator, "ren-002") == {patient.id}
    assert _found(coordinator, "ren-001") == set()


def test_search_is_limited_to_the_users_clinics(clinic, coordinator) -> None:  # type: ignore[no-untyped-def]
    other = factories.clinic()
    mine = factories.enrol(clinic, family_name="Sharedname")
    factories.enrol(other, family_name="Sharedname")
    assert _found(coordinator, "sharedname") == {mine.id}


def test_counts_stop_at_the_limit(clinic, admin, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _synthetic_patients(clinic, 12, random.Random(5))
    monkeypatch.setattr(counting, "COUNT_LIMIT", 10)
    found = patient_search.search(admin, "", per_page=5)
    assert found.total == CappedCount(10, capped=True) and str(found.total) == "10+"
    assert found.has_next and len(found.rows) == 5
    last = patient_search.search(admin, "", per_page=5, page=3)
    assert not last.has_next and len(last.rows) == 2
    monkeypatch.setattr(counting, "COUNT_LIMIT", 12)
    assert patient_search.count_matches(admin, "") == CappedCount(12, capped=False)
