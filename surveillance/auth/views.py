"""Sign in, sign out, and the root URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import select

from surveillance import throttle
from surveillance.auth import bp
from surveillance.auth.forms import SignInForm
from surveillance.extensions import db
from surveillance.models import User
from surveillance.services import accounts

# The same words whether the email is unknown, the password wrong or the account inactive,
# so the form never tells anyone which accounts exist.
BAD_CREDENTIALS = "Email or password is incorrect."
# Shown while the typed email or this address is locked, whether or not the account exists
# and even when the password is right (so guessing cannot continue through the lockout).
LOCKED_OUT = "Too many failed sign-ins. Wait 15 minutes, then try again."


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
@throttle.limiter.limit(throttle.sign_in_rate, methods=["POST"])
def sign_in() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("coordinator.today"))
    form = SignInForm()
    status = 200
    if form.validate_on_submit():
        email = (form.email.data or "").strip().lower()
        if throttle.login_locked(email):
            form.form_errors.append(LOCKED_OUT)
            form.password.data = ""
            return render_template("auth/sign_in.html", form=form), 429
        user = _authenticated(email, form.password.data or "")
        if user is not None:
            throttle.login_succeeded(email)
            session.clear()  # a fresh session on every sign-in
            login_user(user)
            session.permanent = True  # the idle timeout (PERMANENT_SESSION_LIFETIME) applies
            flash(f"Signed in as {user.email}.", "success")
            return redirect(_safe_next(request.args.get("next")) or url_for("coordinator.today"))
        throttle.login_failed(email)
        form.form_errors.append(BAD_CREDENTIALS)
        form.password.data = ""
    if request.method == "POST" and form.errors:
        status = 422
    return render_template("auth/sign_in.html", form=form), status


# Checked against when the email is unknown, so an unknown email takes as long as a wrong
# password (no timing difference tells which accounts exist).
_DUMMY_HASH = accounts.hash_password("no account has this password")


def _authenticated(email: str, password: str) -> User | None:
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        accounts.check_password(_DUMMY_HASH, password)
        return None
    if accounts.verify_password(user, password) and user.is_active:
        return user
    return None


@bp.post("/sign-out")
@login_required
def sign_out() -> Any:
    # Every copy of this session cookie stops working, not just the browser's own.
    accounts.end_all_sessions(current_user._get_current_object())  # type: ignore[attr-defined]
    db.session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.sign_in"))


@bp.app_errorhandler(CSRFError)
def _csrf_failed(exc: CSRFError) -> Any:
    """A form sent without its token (or after the page expired) changes nothing."""
    return render_template("auth/csrf_failed.html", reason=exc.description), 400
