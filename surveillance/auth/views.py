"""Sign in, sign out, and the root URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import select

from surveillance.auth import bp
from surveillance.auth.forms import SignInForm
from surveillance.extensions import db
from surveillance.models import User
from surveillance.services import accounts

# The same words whether the email is unknown, the password wrong or the account inactive,
# so the form never tells anyone which accounts exist.
BAD_CREDENTIALS = "Email or password is incorrect."


@bp.get("/")
def root() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("coordinator.today"))
    return redirect(url_for("auth.sign_in"))


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site: never another host (no open redirect)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("coordinator.today"))
    form = SignInForm()
    if form.validate_on_submit():
        email = (form.email.data or "").strip().lower()
        user = db.session.scalar(select(User).where(User.email == email))
        if (
            user is not None
            and user.is_active
            and accounts.verify_password(user, form.password.data or "")
        ):
            session.clear()  # a fresh session on every sign-in
            login_user(user)
            flash(f"Signed in as {user.email}.", "success")
            return redirect(_safe_next(request.args.get("next")) or url_for("coordinator.today"))
        form.form_errors.append(BAD_CREDENTIALS)
        form.password.data = ""
    status = 200 if request.method == "GET" else 422 if form.errors else 200
    return render_template("auth/sign_in.html", form=form), status


@bp.post("/sign-out")
@login_required
def sign_out() -> Any:
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.sign_in"))


@bp.app_errorhandler(CSRFError)
def _csrf_failed(exc: CSRFError) -> Any:
    """A form sent without its token (or after the page expired) changes nothing."""
    return render_template("auth/csrf_failed.html", reason=exc.description), 400
