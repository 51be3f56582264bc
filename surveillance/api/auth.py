"""Bearer-token authentication for the API."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import g, request

from surveillance import audit, throttle
from surveillance.errors import DomainError
from surveillance.extensions import db
from surveillance.models import User
from surveillance.services.accounts import user_for_api_token


class Unauthorized(DomainError):
    status_code = 401


class TooManyAttempts(DomainError):
    status_code = 429


def current_user() -> User:
    return g.api_user


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if throttle.token_checks_locked():
            raise TooManyAttempts("Too many failed token checks from this address; wait a while.")
        header = request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        user = user_for_api_token(secret.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            throttle.token_check_failed()
            raise Unauthorized("A valid API token is required.")
        if db.session.dirty:
            db.session.commit()  # the token's "last used" time, on its own
        g.api_user = user
        audit.act_as_user(user)
        return view(*args, **kwargs)

    return wrapper
