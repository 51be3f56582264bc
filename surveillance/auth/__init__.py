"""Signing coordinators in and out of the screens (Flask-Login sessions)."""

from __future__ import annotations

from flask import Blueprint

from surveillance.extensions import login_manager

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.sign_in"
login_manager.login_message = "Please sign in to continue."
login_manager.login_message_category = "info"

from surveillance.auth import views  # noqa: E402, F401
