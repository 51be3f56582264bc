"""Rendered calendars kept in memory, so a feed is rendered once per change, not per request.

Keys carry every input of a rendering (for a patient, its entity tag: a digest of the id, the
feed version the services raise on each visible change, the patient's and clinic's last
changes, the local date and the renderer's configuration; see ``validators``), so an entry
never needs invalidating: a change makes a new key and the old entry ages out. The cache is bounded
in entries and bytes, so a worker's memory stays flat however many feeds are polled.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime

from flask import Flask
from werkzeug.http import http_date

DEFAULT_MAX_ENTRIES = 2048
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CachedFeed:
    """Bytes, their entity tag (unquoted) and their last change (whole seconds, as in HTTP),
    with the header values a hit answers with, formatted once per rendering."""

    body: bytes
    etag: str
    last_modified: datetime
    quoted_etag: str = field(init=False, repr=False)
    http_last_modified: str = field(init=False, repr=False)
    content_length: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "quoted_etag", f'"{self.etag}"')
        object.__setattr__(self, "http_last_modified", http_date(self.last_modified))
        object.__setattr__(self, "content_length", str(len(self.body)))

    @classmethod
    def of(cls, body: bytes, last_modified: datetime, etag: str | None = None) -> CachedFeed:
        """``etag`` when the caller knows it from the inputs (patient feeds); otherwise a
        strong validator from the content itself: same bytes, same tag, in every worker."""
        tag = etag if etag is not None else hashlib.sha256(body).hexdigest()[:32]
        return cls(body, tag, last_modified.replace(microsecond=0))


class FeedCache:
    """A thread-safe LRU of rendered feeds."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, CachedFeed] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.renders = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable) -> CachedFeed | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            return found

    def get_or_render(self, key: Hashable, render: Callable[[], CachedFeed]) -> CachedFeed:
        found = self.get(key)
        if found is not None:
            return found
        # Render outside the lock: two workers' threads may render the same feed at once,
        # which costs a little time but never gives different bytes.
        feed = render()
        with self._lock:
            self.renders += 1
            self._store(key, feed)
        return feed

    def _store(self, key: Hashable, feed: CachedFeed) -> None:
        if len(feed.body) > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        self._entries[key] = feed
        self._bytes += len(feed.body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.body)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


EXTENSION = "watchful_feed_cache"


def install(app: Flask) -> None:
    """Give the app its cache, sized by ``FEED_CACHE_ENTRIES`` and ``FEED_CACHE_BYTES``."""
    app.extensions[EXTENSION] = FeedCache(
        int(app.config.get("FEED_CACHE_ENTRIES", DEFAULT_MAX_ENTRIES)),
        int(app.config.get("FEED_CACHE_BYTES", DEFAULT_MAX_BYTES)),
    )


def feed_cache(app: Flask) -> FeedCache:
    return app.extensions[EXTENSION]
