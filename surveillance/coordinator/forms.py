"""Forms of the coordinator screens.

Forms only collect and re-display what the user typed; the rules live in the services. The
enrolment form in particular has no validators of its own: its text goes through
``services.enrolment_input.parse`` (the API's schema) and ``plans.check_enrolment``, and the
errors come back next to each field.
"""

from __future__ import annotations

from collections.abc import Iterable
from zoneinfo import available_timezones

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
    TimeField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from surveillance import privacy
from surveillance.clinic_calendar import WEEKDAY_NAMES
from surveillance.services.enrolment_input import FIELDS

PRIMARY_SITES = [
    ("pancreas", "Pancreas"),
    ("small_bowel", "Small bowel"),
    ("stomach", "Stomach"),
    ("rectum", "Rectum"),
    ("appendix", "Appendix"),
    ("lung", "Lung"),
    ("other", "Other or unknown"),
]
DIFFERENTIATION = [("well", "Well differentiated"), ("poorly", "Poorly differentiated")]
GRADES = [("G1", "G1"), ("G2", "G2"), ("G3", "G3")]
FUNCTIONAL = [("unknown", "Unknown"), ("no", "No"), ("yes", "Yes")]
INTERVALS = [("3", "3 months"), ("4", "4 months"), ("5", "5 months"), ("6", "6 months")]
OUTCOMES = [
    ("stable", "Stable"),
    ("inconclusive", "Inconclusive"),
    ("progression", "Progression (ends surveillance)"),
]


def options(pairs: Iterable[tuple[object, str]]) -> list[SelectChoice]:
    """Choices for a select, radio or checkbox group (value, label)."""
    return [SelectChoice(str(value), label) for value, label in pairs]


def _choose(label: str) -> list[tuple[str, str]]:
    return [("", label)]


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class EnrolmentForm(FlaskForm):
    mrn = StringField("MRN", render_kw={"required": True, "autocomplete": "off"})
    given_name = StringField("Given name", render_kw={"required": True, "autocomplete": "off"})
    family_name = StringField("Family name", render_kw={"required": True, "autocomplete": "off"})
    birth_date = StringField("Birth date", render_kw={"type": "date", "required": True})
    clinic = SelectField("Clinic", choices=[], validate_choice=False)
    email = StringField("Email", render_kw={"type": "email", "autocomplete": "off"})
    phone = StringField("Phone", render_kw={"type": "tel", "autocomplete": "off"})
    preferred_language = StringField(
        "Preferred language", default="en", description="A language code, e.g. en or es."
    )
    primary_site = SelectField(
        "Primary site",
        choices=options(_choose("Choose…") + PRIMARY_SITES),
        validate_choice=False,
        render_kw={"required": True},
    )
    differentiation = SelectField(
        "Differentiation",
        choices=options(_choose("Choose…") + DIFFERENTIATION),
        validate_choice=False,
        render_kw={"required": True},
    )
    grade = SelectField(
        "Grade",
        choices=options(_choose("Choose…") + GRADES),
        validate_choice=False,
        render_kw={"required": True},
    )
    ki67 = StringField(
        "Ki-67 index (%)", render_kw={"inputmode": "decimal"}, description="Optional."
    )
    size_mm = StringField(
        "Tumour size (mm)", render_kw={"inputmode": "numeric"}, description="Optional."
    )
    functional = SelectField(
        "Functional tumour", choices=options(FUNCTIONAL), default="unknown", validate_choice=False
    )
    enrolled_on = StringField("Enrolment date", render_kw={"type": "date", "required": True})
    interval_months = SelectField(
        "Follow-up interval",
        choices=options(_choose("Use the suggested interval") + INTERVALS),
        validate_choice=False,
    )
    justification = TextAreaField(
        "Clinical justification",
        description="Required for poorly differentiated or G3 tumours.",
        render_kw={"rows": 3},
    )
    preview = SubmitField("Preview plan")
    save = SubmitField("Enrol patient")

    def enrolment_fields(self) -> dict[str, str | None]:
        """The submitted text, keyed by the API's field names."""
        return {name: self[name].data for name in FIELDS}


class BookingForm(FlaskForm):
    day = DateField("Date", validators=[InputRequired("Enter the date.")])
    start_time = TimeField("Start time", validators=[InputRequired("Enter the start time.")])
    duration_minutes = IntegerField(
        "Duration (minutes)",
        default=30,
        validators=[
            InputRequired("Enter the duration in minutes."),
            NumberRange(5, 480, "Duration must be 5 to 480 minutes."),
        ],
    )
    location = StringField(
        "Location",
        validators=[Optional(), Length(max=500)],
        description="The patient sees it in their calendar and emails, so leave out words that "
        "name a condition. Leave empty to use the address patients see.",
    )
    submit = SubmitField("Save booking")


class CompletionForm(FlaskForm):
    completed_on = DateField("Date it took place", validators=[InputRequired("Enter the date.")])
    outcome = RadioField(
        "Outcome", choices=options(OUTCOMES), validators=[InputRequired("Choose the outcome.")]
    )
    submit = SubmitField("Record completion")


class CancelForm(FlaskForm):
    reason = TextAreaField(
        "Reason (optional)", validators=[Optional(), Length(max=2000)], render_kw={"rows": 2}
    )
    submit = SubmitField("Cancel this event")


class ActionForm(FlaskForm):
    """A button that posts with only the CSRF token."""

    submit = SubmitField("Confirm")


class IntervalForm(FlaskForm):
    interval_months = SelectField("Follow-up interval", choices=options(INTERVALS))
    submit = SubmitField("Change interval")


class EndSurveillanceForm(FlaskForm):
    reason = TextAreaField(
        "Reason",
        validators=[DataRequired("Say why surveillance ends."), Length(max=2000)],
        render_kw={"rows": 2},
    )
    submit = SubmitField("End surveillance")


class ImportForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file to upload.")])
    check = SubmitField("Check only")
    run = SubmitField("Import")


def _timezones() -> list[tuple[str, str]]:
    zones = sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/"))
    return [(z, z.replace("_", " ")) for z in zones]


class ClinicForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[DataRequired("A clinic needs a name."), Length(max=200)],
        description="For staff: these screens and the clinic calendar. Patients never see it.",
    )
    timezone = SelectField("Time zone", choices=[])
    address = TextAreaField(
        "Address",
        validators=[Length(max=1000)],
        render_kw={"rows": 2},
        description="For staff, like the name.",
    )
    calendar_name = StringField(
        "Name patients see",
        validators=[DataRequired(privacy.NAME_NEEDED), Length(max=200)],
        description=(
            "Shown in patients' calendars, reminder emails and their own page, which other "
            "people may see (a lock screen, a shared family calendar). Use a name that does not "
            "say what the clinic treats: “Outpatient Clinic 3”, not “Neuroendocrine Tumour "
            "Clinic”."
        ),
    )
    calendar_address = TextAreaField(
        "Address patients see",
        validators=[Length(max=1000)],
        render_kw={"rows": 2},
        description="Where patients come for visits, without condition words. Leave it "
        "empty to show no address.",
    )
    phone = StringField("Phone", validators=[Length(max=40)], render_kw={"type": "tel"})
    working_weekdays = MultiCheckboxField(
        "Working days", choices=options((i, name) for i, name in enumerate(WEEKDAY_NAMES))
    )
    observe_us_holidays = BooleanField("Closed on US federal holidays")
    submit = SubmitField("Save clinic")

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.timezone.choices = options(_timezones())


class ClosureForm(FlaskForm):
    closed_on = DateField("Closed on", validators=[InputRequired("Enter the date.")])
    reason = StringField("Reason", validators=[Optional(), Length(max=200)])
    submit = SubmitField("Add closure")


class UserForm(FlaskForm):
    full_name = StringField("Full name", validators=[Length(max=200)])
    role = SelectField(
        "Role", choices=options([("coordinator", "Coordinator"), ("admin", "Admin")])
    )
    clinics = MultiCheckboxField("Clinics", choices=[], coerce=int)
    is_active = BooleanField("Active (may sign in)", default=True)
    submit = SubmitField("Save user")


class NewUserForm(UserForm):
    email = EmailField("Email", validators=[DataRequired("Enter an email address.")])
    password = PasswordField(
        "Initial password",
        validators=[DataRequired("Enter an initial password.")],
        description="At least 10 characters; give it to the user in person.",
        render_kw={"autocomplete": "new-password"},
    )


# --- Care stage, contact attempts, reminders (wired in from the stages and reminders issues) ---

CONTACT_RESULTS = [
    ("called", "Called: spoke with them"),
    ("left_message", "Left a message"),
    ("no_answer", "No answer"),
    ("booked", "Booked"),
]


class StageForm(FlaskForm):
    # Choices are the allowed next stages; the service checks the move (and says which are
    # allowed), so a stale page or a crafted value gets its message next to the field.
    stage = SelectField(
        "Move to",
        choices=[],
        validate_choice=False,
        validators=[InputRequired("Choose the stage to move to.")],
    )
    reason = TextAreaField(
        "Reason",
        validators=[DataRequired("Say why the stage changes."), Length(max=2000)],
        render_kw={"rows": 2, "required": True},
    )
    submit = SubmitField("Change stage")


class ContactAttemptForm(FlaskForm):
    event = SelectField("About", choices=[], validate_choice=False)
    result = RadioField(
        "Result",
        choices=options(CONTACT_RESULTS),
        validators=[InputRequired("Choose how the call went.")],
    )
    note = TextAreaField(
        "Note (optional)", validators=[Optional(), Length(max=2000)], render_kw={"rows": 2}
    )
    call_again_on = DateField(
        "Call again on (optional)",
        validators=[Optional()],
        description="Keeps this event off the worklists until that day.",
    )
    submit = SubmitField("Log contact attempt")


class ReminderSettingsForm(FlaskForm):
    # Ranges and the list format are checked by ``reminders.settings.update``.
    enabled = BooleanField("Send reminders to patients and coordinators")
    book_window_lead_days = IntegerField(
        "“Time to book”: days before the booking window opens",
        validators=[InputRequired("Enter a number of days (0: the day it opens).")],
        description="0 to 60; 0 sends it on the day the window opens.",
    )
    booked_reminder_days = StringField(
        "Before a booked visit: days ahead",
        validators=[Optional(strip_whitespace=True)],
        description="Comma-separated, e.g. 7,1 (1 to 60 days, at most 5); empty: none.",
    )
    biopsy_heads_up_days = IntegerField(
        "Biopsy heads-up: days before it is due",
        validators=[InputRequired("Enter a number of days.")],
        description="1 to 120.",
    )
    send_hour = IntegerField(
        "Hour reminders go out (clinic time)",
        validators=[InputRequired("Enter an hour from 0 to 23.")],
        description="0 to 23.",
    )
    digest_enabled = BooleanField("Send coordinators a daily digest")
    digest_hour = IntegerField(
        "Hour of the daily digest (clinic time)",
        validators=[InputRequired("Enter an hour from 0 to 23.")],
        description="0 to 23.",
    )
    submit = SubmitField("Save reminder settings")


class ApiTokenForm(FlaskForm):
    """A new API token for the signed-in user (issue 7)."""

    name = StringField(
        "Name",
        validators=[
            DataRequired("Name the token, e.g. the script that will use it."),
            Length(max=100),
        ],
        description="What will use it, so you know which one to revoke later.",
    )
    submit = SubmitField("Create token")
