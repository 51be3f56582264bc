"""Which days a clinic is open. Plain Python: no Flask, no database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

import holidays

MONDAY_TO_FRIDAY: frozenset[int] = frozenset(range(5))
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@lru_cache(maxsize=256)
def us_federal_holidays(year: int) -> frozenset[date]:
    """US federal holidays of one year, on the dates they are observed."""
    return frozenset(holidays.country_holidays("US", years=year, observed=True).keys())


@dataclass(frozen=True)
class ClinicCalendar:
    """The days a clinic can see patients.

    ``working_weekdays`` uses Python's numbering (Monday is 0). Federal holidays count as
    closures unless the clinic opts out; ``closures`` adds the clinic's own closed days.
    """

    working_weekdays: frozenset[int] = MONDAY_TO_FRIDAY
    closures: frozenset[date] = field(default_factory=frozenset)
    observe_us_holidays: bool = True

    @classmethod
    def build(
        cls,
        working_weekdays: Iterable[int] = MONDAY_TO_FRIDAY,
        closures: Iterable[date] = (),
        observe_us_holidays: bool = True,
    ) -> ClinicCalendar:
        return cls(frozenset(working_weekdays), frozenset(closures), observe_us_holidays)

    def is_working_day(self, day: date) -> bool:
        if day.weekday() not in self.working_weekdays or day in self.closures:
            return False
        return not (self.observe_us_holidays and day in us_federal_holidays(day.year))

    def closure_reason(self, day: date) -> str | None:
        """Why the clinic is closed on ``day``, in words a coordinator understands."""
        if day.weekday() not in self.working_weekdays:
            return f"the clinic does not work on {WEEKDAY_NAMES[day.weekday()]}"
        if day in self.closures:
            return "the clinic is closed that day"
        if self.observe_us_holidays and day in us_federal_holidays(day.year):
            name = holidays.country_holidays("US", years=day.year, observed=True).get(day)
            return f"the clinic is closed for {name}"
        return None
