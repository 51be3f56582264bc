"""What patients see must not give their condition away: the words that would, in one place.

A patient's calendar, emails and page are seen by other people (a lock screen, a shared family
calendar, a work laptop). Text the app writes itself is neutral by construction; text staff
type and patients see (the clinic's patient-facing name and address, a booking's location) is
checked here, and the tests check the app's own output against the longer list below.

Pure: no Flask, no database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# A clinic whose patient-facing name has never been set, or whose internal name names the
# condition, is shown to patients under this name.
NEUTRAL_CLINIC_NAME = "Outpatient clinic"

NAME_NEEDED = f"Patients need a name for the clinic; if in doubt use “{NEUTRAL_CLINIC_NAME}”."

# Words that name the condition or its treatment. Staff text patients will see is refused when
# it holds one of them ("Neuroendocrine Tumour Clinic", "Cancer Center, 2nd floor").
CONDITION_WORDS = (
    "cancer",
    "cancers",
    "cancerous",
    "tumour",
    "tumours",
    "tumor",
    "tumors",
    "net",
    "nets",
    "neuroendocrine",
    "oncology",
    "oncologist",
    "oncologists",
    "oncological",
    "carcinoid",
    "carcinoids",
    "carcinoma",
    "carcinomas",
    "malignant",
    "malignancy",
    "metastatic",
    "metastasis",
    "metastases",
    "chemotherapy",
    "ki-67",
    "ki67",
)

# Words that would mean a field of the patient's record leaked into something the app wrote.
# They are ordinary words in an address ("Main site", "Stable Lane"), so staff text is not
# refused for them; the tests hold the app's own output to them.
RECORD_WORDS = (
    "grade",
    "graded",
    "site",
    "mrn",
    "birth",
    "birthday",
    "born",
    "diagnosis",
    "progression",
    "stable",
    "inconclusive",
    "G1",
    "G2",
    "G3",
)

# Everything a patient's calendar, email or page must never contain.
FORBIDDEN_PATIENT_WORDS = CONDITION_WORDS + RECORD_WORDS

# Whole words only, any case; a hyphen is a word break here so "Neuro-oncology" is caught.
_CONDITION = re.compile(
    r"(?<!\w)(" + "|".join(re.escape(word) for word in CONDITION_WORDS) + r")(?!\w)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PatientFacingClinic:
    """A clinic as its patients see it: never its internal name or address."""

    name: str
    address: str
    phone: str

    @property
    def place(self) -> str:
        """Where a visit is when the booking names no place: the address, else the name."""
        return self.address or self.name


def condition_words_in(text: str) -> list[str]:
    """The condition words in ``text``, as typed, in order of appearance."""
    return [match.group(1) for match in _CONDITION.finditer(text)]


def place_for_patients(location: str | None, clinic_place: str) -> str:
    """A booking's place as patients may see it: as typed, unless it names the condition
    (typed before the check existed, or written around it), else the clinic's place."""
    if location and not condition_words_in(location):
        return location
    return clinic_place


def patient_facing_name_for(internal_name: str) -> str:
    """A first patient-facing name for a clinic: its internal name when that gives nothing
    away, else the neutral name."""
    name = internal_name.strip()
    return name if name and not condition_words_in(name) else NEUTRAL_CLINIC_NAME


def patient_facing_address_for(internal_address: str) -> str:
    """A first patient-facing address: the internal one when it gives nothing away, else none."""
    address = internal_address.strip()
    return "" if condition_words_in(address) else address


def patient_visible_errors(fields: Mapping[str, str]) -> dict[str, str]:
    """A form error for each field (name → text patients will see) that names the condition."""
    errors = {}
    for field, text in fields.items():
        found = condition_words_in(text or "")
        if found:
            errors[field] = (
                f"Patients see this in their calendar and emails; leave out “{found[0]}”: "
                "words that name a condition tell anyone who sees their screen."
            )
    return errors


def patient_facing_clinic_errors(name: str, address: str) -> dict[str, str]:
    """Form errors for a clinic's patient-facing name and address (keys as on the forms)."""
    errors = patient_visible_errors({"calendar_name": name, "calendar_address": address})
    if not name.strip():
        errors["calendar_name"] = NAME_NEEDED
    elif len(name.strip()) > 200:
        errors["calendar_name"] = "Keep the name under 200 characters."
    return errors
