"""The coordinator's screens: Today, Patients, Enrol, Patient, Bulk enrolment, Settings."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from flask_login import login_required

from surveillance.errors import NotFound

bp = Blueprint("coordinator", __name__, url_prefix="/coordinator")


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every screen here needs a signed-in user."""


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound) -> Any:
    return render_template("coordinator/not_found.html", message=exc.message), 404


import surveillance.coordinator.audit_log  # noqa: E402  (issue 7)
import surveillance.coordinator.tokens  # noqa: E402, F401  (issue 7)
from surveillance.coordinator import (  # noqa: E402, F401
    care,
    events,
    filters,
    imports,
    patients,
    settings,
    today,
)
