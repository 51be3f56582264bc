"""A hot ``304`` through the app's WSGI callable in this process, without gunicorn or wrk:
the app's own work per poll, to set against what ``feeds.py`` measures under load.

    python bench/feed_wsgi.py /tmp/watchful-bench.sqlite3

Fetches 200 patients' feeds once (their ETags), then revalidates them round robin 50 times,
through the whole app (``app(environ, start_response)``) and through the fast path alone.
Prints JSON: microseconds per request for each.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import common
import feeds

from surveillance import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", nargs="?", default=common.DEFAULT_SQLITE)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    os.environ.update(common.environment_for(args.target))
    app = create_app()
    fast_path = app.extensions["watchful_feed_fast_path"]
    paths = feeds.feed_paths(args.target, args.patients, 0)

    def environ(path: str, etag: str | None = None) -> dict[str, Any]:
        found = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "5000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:5000",
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        if etag is not None:
            found["HTTP_IF_NONE_MATCH"] = etag
        return found

    answers: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answers["status"], answers["headers"] = status, dict(headers)

    etags = {}
    for path in paths:
        b"".join(app(environ(path), start_response))
        etags[path] = answers["headers"]["ETag"]

    def timed(call: Callable[[dict[str, Any], Any], Any]) -> float:
        started = time.perf_counter()
        for _ in range(args.rounds):
            for path in paths:
                call(environ(path, etags[path]), start_response)
        return round((time.perf_counter() - started) / (args.rounds * len(paths)) * 1e6, 1)

    result = {
        "benchmark": "feed-wsgi",
        "database": common.engine_name(args.target),
        "patients": len(paths),
        "app_304_us": timed(app),
        "fast_path_304_us": timed(fast_path),
        "status": answers["status"],
        "machine": common.machine(),
    }
    common.emit(result)


if __name__ == "__main__":
    main()
