"""The feed benchmark's baseline: a bare WSGI app answering the same URLs with pre-rendered
bytes of the same size from memory (and ``304`` for a matching If-None-Match), served by the
same gunicorn configuration as the real app. Reads ``WATCHFUL_BASELINE`` (path<TAB>etag<TAB>
size lines)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

_FEEDS: dict[str, tuple[str, bytes]] = {}
with open(os.environ["WATCHFUL_BASELINE"], encoding="utf-8") as lines:
    for line in lines:
        path, etag, size = line.rstrip("\n").split("\t")
        _FEEDS[path] = (etag, b"X" * int(size))


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    found = _FEEDS.get(environ.get("PATH_INFO", ""))
    if found is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not found.\n"]
    etag, body = found
    headers = [("ETag", etag), ("Cache-Control", "private")]
    if environ.get("HTTP_IF_NONE_MATCH") == etag:
        start_response("304 Not Modified", headers)
        return []
    headers += [
        ("Content-Type", "text/calendar; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ]
    start_response("200 OK", headers)
    return [body]
