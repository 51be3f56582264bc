"""Counts that stop early: "100+" is as useful on a screen as 12,345, and much cheaper.

An exact count reads every matching row (on 100,000 patients, hundreds of milliseconds);
a capped count reads at most ``COUNT_LIMIT + 1`` of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select

from surveillance.extensions import db

COUNT_LIMIT = 100


@dataclass(frozen=True)
class CappedCount:
    """``value`` rows, or more than ``value`` when ``capped`` (then ``value`` is the limit)."""

    value: int
    capped: bool = False

    def __str__(self) -> str:
        return f"{self.value}+" if self.capped else str(self.value)

    def __bool__(self) -> bool:
        return self.value > 0

    @classmethod
    def total(cls, counts: Iterable[CappedCount]) -> CappedCount:
        """The sum of several counts, capped if any of them is."""
        counts = list(counts)
        return cls(sum(c.value for c in counts), any(c.capped for c in counts))

    @classmethod
    def of(cls, found: int, limit: int | None = None) -> CappedCount:
        """From a count of at most ``limit + 1`` rows (``COUNT_LIMIT`` by default)."""
        limit = COUNT_LIMIT if limit is None else limit
        return cls(limit, True) if found > limit else cls(found)


def capped_subquery(query: Select[Any], limit: int | None = None) -> Any:
    """``SELECT count(*) FROM (query LIMIT limit + 1)`` as a scalar subquery."""
    limit = COUNT_LIMIT if limit is None else limit
    return select(func.count()).select_from(query.limit(limit + 1).subquery()).scalar_subquery()


def capped_count(query: Select[Any], limit: int | None = None) -> CappedCount:
    found = db.session.scalar(select(capped_subquery(query, limit))) or 0
    return CappedCount.of(found, limit)
