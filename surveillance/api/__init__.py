"""The JSON API at /api/v1, for integrations and scripts (bearer tokens from the CLI)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

import surveillance.api.feed_links  # noqa: E402  (calendar feed addresses, issue 3)
import surveillance.api.tokens  # noqa: E402, F401  (listing and revoking API tokens, issue 7)
from surveillance.api import errors, openapi, views, worklists  # noqa: E402, F401
