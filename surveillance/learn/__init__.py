"""Public patient education pages at /learn: no login, the same articles for everyone."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("learn", __name__, url_prefix="/learn")

from surveillance.learn import views  # noqa: E402, F401
