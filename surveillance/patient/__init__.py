"""The patient's own page at /p/<token>: where they are in their care, their next visits,
and how to put them in their calendar. The token is the same secret as their calendar feed."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("patient", __name__, url_prefix="/p")

from surveillance.patient import views  # noqa: E402, F401
