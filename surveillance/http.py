"""App-wide HTTP concerns: security headers, plain error pages, database outages."""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from flask import Flask, Response, request
from sqlalchemy.exc import OperationalError
from werkzeug.middleware.proxy_fix import ProxyFix

from surveillance.extensions import db

log = logging.getLogger(__name__)

# No inline script or style anywhere, nothing from other origins, no framing.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HSTS = "max-age=31536000; includeSubDomains"


# Set on every response that does not set them itself (the feed fast path sends the same).
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    # Feed and patient-page URLs carry secrets: never send them on in a Referer.
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)


def _secure_headers(response: Response) -> Response:
    headers = response.headers
    for name, value in SECURITY_HEADERS:
        headers.setdefault(name, value)
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response


PLAIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><main><h1>{title}</h1><p>{text}</p></main></body></html>
"""


def plain_error(status: int, title: str, text: str, **headers: str) -> Response:
    """An error page that can never contain personal data: it interpolates nothing."""
    if request.path.startswith("/api/"):
        body = json.dumps({"error": text, "fields": {}})
        response = Response(body, status, mimetype="application/json")
    else:
        response = Response(PLAIN_PAGE.format(title=title, text=text), status, mimetype="text/html")
    response.headers.update(headers)
    return response


def _database_unavailable(exc: OperationalError) -> Response:
    """Operational errors are the database being away, locked or overloaded (bugs surface as
    ProgrammingError or IntegrityError instead): ask the client to come back shortly."""
    db.session.rollback()
    log.error("database unavailable (%s)", type(exc.orig).__name__)
    return plain_error(
        503,
        "Service temporarily unavailable",
        "Watchful cannot reach its database right now. Please try again in a minute.",
        **{"Retry-After": "30"},
    )


def _server_error(exc: Exception) -> Any:
    db.session.rollback()
    return plain_error(
        500, "Something went wrong", "The error was logged. Please try again or call support."
    )


def _log_exception_without_data(exc_info: Any) -> None:
    """Flask's own version logs the request path (which may hold a feed or page secret) and
    the exception's message (a database error quotes the row: names, MRN, birth date). Log
    the route pattern, the exception types and the stack's code locations only."""
    _, exc, tb = exc_info
    rule = request.url_rule.rule if request.url_rule is not None else "(no route)"
    chain = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:
        chain.append(type(current).__module__ + "." + type(current).__qualname__)
        current = current.__cause__ or current.__context__
    frames = "".join(
        f"\n  {frame.filename}:{frame.lineno} in {frame.name}" for frame in traceback.extract_tb(tb)
    )
    log.error("Exception on %s [%s]: %s%s", rule, request.method, " <- ".join(chain), frames)


def init_app(app: Flask) -> None:
    app.after_request(_secure_headers)
    app.log_exception = _log_exception_without_data  # type: ignore[method-assign]
    app.register_error_handler(OperationalError, _database_unavailable)
    app.register_error_handler(500, _server_error)
    # A dropped connection in the pool is replaced instead of failing the next request, so
    # the app recovers by itself once the database is back.
    options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    # SQL errors and SQL logging never show the statement's values (names, MRNs, dates).
    options.setdefault("hide_parameters", True)
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        options.setdefault("pool_pre_ping", True)


def install_proxy_fix(app: Flask) -> None:
    """Behind a reverse proxy: take the client address and https from its headers, so rate
    limits are per client and HSTS and Secure cookies apply. Installed last, outermost, so
    that every other WSGI middleware (the feed fast path) sees the fixed environment too."""
    hops = int(app.config.get("TRUST_PROXY_HOPS", 0) or 0)
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
