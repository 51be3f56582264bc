"""Private calendar feeds: a patient's own visits, a coordinator's clinics, single events.

Every URL here carries a capability secret (see ``services.feed_tokens``); there is no login.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("feeds", __name__)

from surveillance.feeds import views  # noqa: E402, F401
