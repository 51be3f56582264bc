"""The feed benchmark's baseline: a bare WSGI app answering the same URLs with the app's own
answers, pre-rendered in memory: the same status lines and headers (names, order and sizes,
sampled from the app by ``feeds.py``), each feed's ETag, and a body of each feed's size (and
``304`` for a matching If-None-Match). Served by the same gunicorn configuration as the real
app, so the difference is the app's work to find the answer, not the bytes it sends. Reads
``WATCHFUL_BASELINE`` (path<TAB>etag<TAB>size lines) and ``WATCHFUL_BASELINE_HEADERS`` (JSON:
the app's status line and headers of a ``200`` and of a ``304``). With
``WATCHFUL_BASELINE_LOADS_APP`` set (``feeds.py --baseline-loads-app``) each worker also
builds the real app and never calls it: the same process image as the app's workers, so the
difference is only the work of answering.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

Answer = tuple[str, list[tuple[str, str]]]

with open(os.environ["WATCHFUL_BASELINE_HEADERS"], encoding="utf-8") as sample:
    _SAMPLE: dict[str, Any] = json.load(sample)


def _answer(kind: str, etag: str, size: int) -> Answer:
    """The sampled answer of ``kind`` ("200" or "304") with this feed's ETag and length."""
    own = {"etag": etag, "content-length": str(size)}
    headers = [(name, own.get(name.lower(), value)) for name, value in _SAMPLE[kind]["headers"]]
    return _SAMPLE[kind]["status"], headers


_FEEDS: dict[str, tuple[str, Answer, Answer, bytes]] = {}
with open(os.environ["WATCHFUL_BASELINE"], encoding="utf-8") as lines:
    for line in lines:
        path, etag, size = line.rstrip("\n").split("\t")
        _FEEDS[path] = (
            etag,
            _answer("200", etag, int(size)),
            _answer("304", etag, int(size)),
            b"X" * int(size),
        )


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    found = _FEEDS.get(environ.get("PATH_INFO", ""))
    if found is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not found.\n"]
    etag, ok, not_modified, body = found
    if environ.get("HTTP_IF_NONE_MATCH") == etag:
        start_response(*not_modified)
        return []
    start_response(*ok)
    return [body]


if os.environ.get("WATCHFUL_BASELINE_LOADS_APP"):
    from surveillance import create_app

    _LOADED_NOT_USED = create_app()
