"""The JSON API at /api/v1, for integrations and scripts (bearer tokens from the CLI)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

import surveillance.api.feed_links  # noqa: E402, F401  (calendar feed addresses, issue 3)
from surveillance.api import errors, openapi, views  # noqa: E402, F401
