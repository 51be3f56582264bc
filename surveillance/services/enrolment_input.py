"""Enrolment from text fields (the enrolment form and CSV rows), checked like the API.

The API's own pydantic schema (``EnrolmentIn``) decides which fields exist and what each may
hold, so the form, the CSV import and the API can never disagree. Only the messages differ:
coordinators get plain words instead of pydantic's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from surveillance import clock, planning
from surveillance.api.schemas import EnrolmentIn
from surveillance.errors import ValidationFailed
from surveillance.models import Clinic
from surveillance.services import plans

FIELDS: tuple[str, ...] = tuple(EnrolmentIn.model_fields)
REQUIRED: frozenset[str] = frozenset(
    name for name, field in EnrolmentIn.model_fields.items() if field.is_required()
)

# Plain-language messages per field for the constraint checks pydantic reports.
_PATTERN_MESSAGES = {
    "mrn": "Use letters, digits and hyphens, starting with a letter or digit.",
    "phone": "Use digits, spaces and + ( ) - . only.",
    "preferred_language": "Use a language code such as en, es or pt-BR.",
}
_RANGE_MESSAGES = {
    "interval_months": "Interval must be 3, 4, 5 or 6 months.",
    "ki67": "Ki-67 must be a percentage from 0 to 100.",
    "size_mm": "Size must be a whole number of millimetres from 1 to 1000.",
}


# Free-text fields a spreadsheet would run as a formula when their text starts with one of
# these (CSV injection). Such text is refused, not stored: no name, email or justification
# starts with them, and a stored formula could reach an export or a coordinator's spreadsheet.
# Other fields cannot hold one: their formats (dates, numbers, codes, phone digits) refuse it.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FREE_TEXT_FIELDS = ("given_name", "family_name", "email", "justification", "clinic")


def formula_fields(raw: Mapping[str, str | None]) -> dict[str, str]:
    """Free-text fields whose text a spreadsheet would read as a formula, with the message."""
    errors = {}
    for name in FREE_TEXT_FIELDS:
        value = raw.get(name)
        if isinstance(value, str) and value.strip().startswith(FORMULA_STARTS):
            first = value.strip()[0]
            errors[name] = (
                f"Must not start with {first!r}: spreadsheets run such text as a formula."
            )
    return errors


@dataclass(frozen=True)
class EnrolmentInput:
    enrolment: plans.Enrolment
    clinic_slug: str | None


def parse(raw: Mapping[str, str | None]) -> EnrolmentInput:
    """Turn text fields into an ``Enrolment``; raise ``ValidationFailed`` naming each bad field.

    Blank optional fields count as not given (a form or a spreadsheet cannot send null).
    """
    data = {
        name: value.strip() if isinstance(value, str) else value
        for name, value in raw.items()
        if not (value is None or (isinstance(value, str) and not value.strip()))
    }
    try:
        body = EnrolmentIn.model_validate(data, strict=False)
    except ValidationError as exc:
        raise ValidationFailed({**_messages(exc), **formula_fields(raw)}) from exc
    if formulas := formula_fields(raw):
        raise ValidationFailed(formulas)
    values = body.model_dump(exclude={"clinic"}, mode="python")
    return EnrolmentInput(plans.Enrolment(**values), body.clinic)


def _messages(exc: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "form"
        fields.setdefault(name, _message(name, error["type"], error["msg"]))
    return fields


def _message(name: str, kind: str, default: str) -> str:
    if kind == "missing":
        return "This field is required."
    if kind == "extra_forbidden":
        return f"Unknown field {name!r}."
    if kind.startswith(("date_", "datetime_")):
        return "Enter a real date as YYYY-MM-DD."
    if kind == "string_pattern_mismatch":
        return _PATTERN_MESSAGES.get(name, "This value has the wrong format.")
    if kind == "string_too_long":
        return "This is too long."
    if kind == "string_too_short":
        return "This field is required."
    if name in _RANGE_MESSAGES and kind in {
        "greater_than_equal",
        "less_than_equal",
        "int_parsing",
        "int_from_float",
        "float_parsing",
    }:
        return _RANGE_MESSAGES[name]
    if kind == "enum":
        return "Choose one of the listed values: " + default.split("should be ", 1)[-1] + "."
    if name == "email":
        return "Enter a valid email address."
    return default


def check(data: plans.Enrolment, clinic: Clinic) -> planning.IntervalAdvice:
    """The clinic's enrolment rules (the same ``check_enrolment`` the API's enrol runs)."""
    return plans.check_enrolment(data, clock.today_in(clinic.timezone))


def preview(data: plans.Enrolment, clinic: Clinic) -> list[planning.EventSlot]:
    """The events enrolling would create, computed without writing anything."""
    advice = check(data, clinic)
    today = clock.today_in(clinic.timezone)
    try:
        return planning.initial_plan(
            data.enrolled_on,
            data.interval_months or advice.months,
            today,
            clinic.calendar(),
            plans._horizon_months(),
        )
    except planning.PlanningError as exc:
        raise ValidationFailed({"enrolled_on": str(exc)}) from exc


def interval_advice(
    differentiation: str, grade: str, ki67: str | float | None
) -> planning.IntervalAdvice | None:
    """The suggested interval for a partly filled-in profile, or ``None`` until it is known."""
    if differentiation not in {"well", "poorly"} or grade not in {"G1", "G2", "G3"}:
        return None
    value: float | None
    try:
        value = float(ki67) if ki67 not in (None, "") else None
    except (TypeError, ValueError):
        value = None
    return planning.suggest_interval(differentiation, grade, value)
