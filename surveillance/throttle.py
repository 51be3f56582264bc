"""Rate limits and lockouts for everything that checks a secret.

Request rates use Flask-Limiter. Failed sign-ins and failed API-token checks are counted per
key (the email typed, the client address) with the same storage — in memory by default, Redis
at ``REDIS_URL`` when several workers or hosts must share the counts. A locked-out key gets
the same answer whether or not an account exists, so lockouts reveal nothing.
"""

from __future__ import annotations

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse

limiter = Limiter(key_func=get_remote_address)

DEFAULTS = {
    "RATELIMIT_HEADERS_ENABLED": True,
    # Failed attempts allowed per key before it is locked for the rest of the window.
    "LOGIN_FAILURE_LIMIT": "5 per 15 minutes",
    # Failed sign-ins from one address, whatever emails were typed. Higher than the per-email
    # limit because a clinic's staff may all share one address behind its router.
    "LOGIN_ADDRESS_FAILURE_LIMIT": "30 per 15 minutes",
    # Sign-in form posts per address, successful or not (Flask-Limiter's request rate).
    "SIGN_IN_RATE_LIMIT": "30 per minute",
    "TOKEN_FAILURE_LIMIT": "20 per 10 minutes",
}


def init_app(app: Flask) -> None:
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    if "RATELIMIT_STORAGE_URI" not in app.config:
        app.config["RATELIMIT_STORAGE_URI"] = app.config.get("REDIS_URL") or "memory://"
    limiter.init_app(app)


def client_address() -> str:
    return get_remote_address() or "unknown"


def _limit(config_key: str):  # type: ignore[no-untyped-def]
    return parse(current_app.config[config_key])


def is_locked(config_key: str, *identifiers: str) -> bool:
    """True when any identifier has used up its failures for the current window."""
    strategy = limiter.limiter
    return any(not strategy.test(_limit(config_key), config_key, i) for i in identifiers)


def record_failure(config_key: str, *identifiers: str) -> None:
    strategy = limiter.limiter
    for identifier in identifiers:
        strategy.hit(_limit(config_key), config_key, identifier)


def clear_failures(config_key: str, *identifiers: str) -> None:
    strategy = limiter.limiter
    for identifier in identifiers:
        strategy.clear(_limit(config_key), config_key, identifier)


# --- Sign-in ---------------------------------------------------------------------------------


def _email_key(email: str) -> str:
    return f"email:{email.strip().lower()}"


def _address_key() -> str:
    return f"ip:{client_address()}"


def login_locked(email: str) -> bool:
    """True when the typed email or this address has used up its failed sign-ins. Counted by
    the email typed, so an unknown email locks exactly like a real one."""
    return is_locked("LOGIN_FAILURE_LIMIT", _email_key(email)) or is_locked(
        "LOGIN_ADDRESS_FAILURE_LIMIT", _address_key()
    )


def login_failed(email: str) -> None:
    record_failure("LOGIN_FAILURE_LIMIT", _email_key(email))
    record_failure("LOGIN_ADDRESS_FAILURE_LIMIT", _address_key())


def sign_in_rate() -> str:
    return str(current_app.config["SIGN_IN_RATE_LIMIT"])


def login_succeeded(email: str) -> None:
    clear_failures("LOGIN_FAILURE_LIMIT", _email_key(email))


# --- API tokens ------------------------------------------------------------------------------


def token_checks_locked() -> bool:
    return is_locked("TOKEN_FAILURE_LIMIT", f"ip:{client_address()}")


def token_check_failed() -> None:
    record_failure("TOKEN_FAILURE_LIMIT", f"ip:{client_address()}")


def is_request_for_api() -> bool:
    return request.path.startswith("/api/")
