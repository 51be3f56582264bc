"""The production access log keeps no query strings and no capability tokens."""

from __future__ import annotations

import datetime
import gc
from types import SimpleNamespace

from gunicorn.config import Config

from surveillance.gunicorn_conf import (
    RedactingLogger,
    access_log_format,
    post_worker_init,
    redact_path,
)


def test_paths_with_tokens_are_masked() -> None:
    assert redact_path("/calendar/AbC-123_x.ics") == "/calendar/[token].ics"
    assert redact_path("/calendar/clinic/AbC-123.ics") == "/calendar/clinic/[token].ics"
    assert redact_path("/calendar/AbC/events/uid-1.ics") == "/calendar/[token]/events/uid-1.ics"
    assert redact_path("/p/AbC-123") == "/p/[token]"
    assert redact_path("/p/AbC-123/qr.svg") == "/p/[token]/qr.svg"
    assert redact_path("/coordinator/patients?q=Sample") == "/coordinator/patients"
    assert redact_path("/learn/surgery") == "/learn/surgery"


def test_logger_atoms_carry_neither_query_nor_token() -> None:
    logger = RedactingLogger(Config())
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/p/SeCrEt?x=Jamie+Sample",
        "PATH_INFO": "/p/SeCrEt",
        "QUERY_STRING": "x=Jamie+Sample",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_REFERER": "https://example.org/calendar/SeCrEt.ics",
        "REMOTE_ADDR": "127.0.0.1",
    }
    response = SimpleNamespace(status="200 OK", headers=[], sent=10)
    atoms = logger.atoms(
        response, SimpleNamespace(headers=[]), environ, datetime.timedelta(milliseconds=5)
    )
    line = access_log_format % atoms
    assert "SeCrEt" not in line and "Jamie" not in line
    assert atoms["r"] == "GET /p/[token] HTTP/1.1"
    assert atoms["q"] == atoms["f"] == "-"


def test_a_started_worker_freezes_its_start_up_objects() -> None:
    before = gc.get_freeze_count()
    try:
        post_worker_init(SimpleNamespace())
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
