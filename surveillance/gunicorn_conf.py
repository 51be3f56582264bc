"""gunicorn settings: ``gunicorn -c python:surveillance.gunicorn_conf 'surveillance:create_app()'``.

The access log must not carry health data or secrets: query strings (patient searches) are
dropped and the capability tokens in feed and patient-page paths are masked.
"""

from __future__ import annotations

import gc
import os
import re

from gunicorn.glogging import Logger

bind = os.environ.get("WATCHFUL_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'

# /calendar/<token>.ics, /calendar/clinic/<token>.ics, /calendar/<token>/events/…, /p/<token>…
_SECRET_PATH = re.compile(r"^(/calendar/(?:clinic/)?|/p/)[^/.?]+")


def redact_path(path: str) -> str:
    return _SECRET_PATH.sub(r"\1[token]", path.split("?", 1)[0])


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):  # type: ignore[no-untyped-def]
        values = super().atoms(resp, req, environ, request_time)
        values["U"] = redact_path(values.get("U") or "")
        values["r"] = f"{values.get('m')} {values['U']} {values.get('H')}"
        values["q"] = values["f"] = "-"  # query strings and referrers may carry either
        return values


logger_class = RedactingLogger


def post_worker_init(worker: object) -> None:
    """Move everything the app built at start-up out of the garbage collector's sight.

    Requests then only pay for collecting their own objects: without this, a full collection
    walks the app's ~150,000 start-up objects and pauses a request for 60-120 ms, which was
    the whole of the worklists' slowest 1 % (``bench/HISTORY.md``)."""
    gc.freeze()
