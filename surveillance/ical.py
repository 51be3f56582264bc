"""iCalendar (RFC 5545 / RFC 7986) rendering: frozen dataclasses in, bytes out.

Plain Python with no Flask or database imports: the feeds blueprint and the reminder emails
turn models into these dataclasses, and this module alone decides the bytes.

The ``icalendar`` package (7.x) builds the calendar's own properties and the VTIMEZONEs (both
cached, the same for every feed of a clinic) and formats durations. Events, one per visit and
one in every booked reminder's email, are written directly as the same content lines its
components give (``tests/test_ical.py`` holds the component version and compares the two on
generated events), at a fraction of the cost. Three of its behaviours are not safe, so this
module does those parts itself:

* Values. ``vText`` turns a literal backslash-N typed by a user into a line break (it treats
  ``\\N`` as an escape before escaping backslashes); calendar-level properties it does not type
  are written verbatim: ``NAME``, ``X-WR-CALNAME`` and ``X-WR-CALDESC`` unescaped, and
  ``X-PUBLISHED-TTL`` as ``6:00:00``. Every text value here goes through :class:`Text`, every
  duration through ``vDuration``.
* Folding. ``icalendar`` may fold between the two characters of an escaped backslash; some
  clients unescape line by line and break on that. :func:`fold` never splits an escape or a
  UTF-8 character and keeps every physical line within 75 octets.
* VTIMEZONE. ``Timezone.from_tzid`` writes the onset of daylight time in the wall-clock time
  *after* the change (03:00 instead of 02:00 in the US), while RFC 5545 §3.6.5 reads it with
  ``TZOFFSETFROM``: an hour late. :func:`vtimezone` writes each onset in the time before it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

from icalendar import (
    Calendar,
    Component,
    Timezone,
    TimezoneDaylight,
    TimezoneStandard,
    vDuration,
    vText,
)
from icalendar.parser.parameter import param_value
from icalendar.timezone.tzid import tzid_from_tzinfo

PRODID = "-//Watchful//Surveillance calendar 1.0//EN"
MAX_LINE_OCTETS = 75
CRLF = "\r\n"


class Status(StrEnum):
    TENTATIVE = "TENTATIVE"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"


# --- Input ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllDay:
    """An all-day event: ``DTSTART;VALUE=DATE`` and an exclusive ``DTEND`` the next day."""

    on: date

    @property
    def first_day(self) -> date:
        return self.on


@dataclass(frozen=True)
class Timed:
    """A timed event in a named IANA zone, written with ``TZID`` and a matching VTIMEZONE."""

    start: datetime
    end: datetime
    timezone: str

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("Timed events need timezone-aware start and end times.")
        if self.end <= self.start:
            raise ValueError("A timed event must end after it starts.")
        ZoneInfo(self.timezone)  # raises for an unknown zone

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(self.zone)

    @property
    def local_end(self) -> datetime:
        return self.end.astimezone(self.zone)

    @property
    def first_day(self) -> date:
        return self.local_start.date()


@dataclass(frozen=True)
class Reminder:
    """A display alarm ``before`` the start (clients often drop alarms from subscriptions)."""

    before: timedelta
    description: str


@dataclass(frozen=True)
class CalendarEvent:
    uid: str
    sequence: int
    status: Status
    when: AllDay | Timed
    summary: str
    # Both from the database, never "now": the bytes must not change between two requests.
    dtstamp: datetime
    last_modified: datetime
    created: datetime | None = None
    description: str = ""
    location: str = ""
    url: str = ""
    reminder: Reminder | None = None
    # TRANSPARENT for events that should not make the person look busy all day.
    transparent: bool = False
    private: bool = True


@dataclass(frozen=True)
class CalendarFeed:
    """A calendar object. ``name`` and ``refresh`` are for subscriptions; a single-event file
    for "add to calendar" or an email attachment leaves them out."""

    events: tuple[CalendarEvent, ...]
    name: str | None = None
    description: str | None = None
    refresh: timedelta | None = None
    # The zone clients use for floating and all-day values (Apple and Google read it).
    timezone: str | None = None


# --- Text -------------------------------------------------------------------------------------

_LINE_BREAKS = re.compile("\r\n|\r")
# RFC 5545 §3.1 CONTROL (every ASCII control but TAB; LF is written as an escape), and lone
# surrogates, which UTF-8 cannot carry at all.
_UNWRITABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


def clean_text(value: str) -> str:
    """The text a calendar can carry exactly, which is all of it but four things.

    CRLF and a lone CR become LF, which is what ``\\n`` means in iCalendar: RFC 5545 has no
    way to write a CR. The other ASCII control characters are not allowed in TEXT at all
    (RFC 5545 §3.3.11) and are dropped, as are lone surrogates (no encoding carries them).
    Byte-order marks at the start are dropped too: the ``icalendar`` package decodes each
    value as ``utf-8-sig`` and would drop the first itself, so what is written would differ
    from what was meant. Everything else is kept, including tabs, spaces at either end and
    Unicode's own separators (U+2028, U+2029, NEL), which every parser tested reads back as
    they were.
    """
    return _UNWRITABLE.sub("", _LINE_BREAKS.sub("\n", value)).lstrip("\ufeff")


def escape_text(value: str) -> str:
    """RFC 5545 §3.3.11: backslash first, then semicolon, comma and the line break."""
    return (
        clean_text(value)
        .replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\n", "\\n")
    )


class Text(vText):
    """A TEXT value escaped by :func:`escape_text` (see the module docstring for why)."""

    def to_ical(self) -> bytes:
        return escape_text(str(self)).encode("utf-8")


# --- Folding ----------------------------------------------------------------------------------

_ATOM = re.compile(r"\\.|.", re.DOTALL)
_ESCAPE = re.compile(r"\\.", re.DOTALL)


def fold(line: str, limit: int = MAX_LINE_OCTETS) -> str:
    """Fold one content line into physical lines of at most ``limit`` octets (the leading
    space of a continuation counts). An escape (backslash and the next character) and a UTF-8
    character are never split."""
    if line.isascii() and limit >= 3:  # (a narrower limit cannot hold an escape after a space)
        return _fold_ascii(line, limit)
    if len(line.encode("utf-8")) <= limit:
        return line
    return _fold_atoms(line, limit)


def _fold_atoms(line: str, limit: int) -> str:
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for atom in _ATOM.findall(line):
        width = len(atom.encode("utf-8"))
        if current and size + width > limit:
            pieces.append("".join(current))
            current, size = [" "], 1
        current.append(atom)
        size += width
    pieces.append("".join(current))
    return CRLF.join(pieces)


def _fold_ascii(line: str, limit: int) -> str:
    """``_fold_atoms`` for ASCII, where a character is an octet: cut every ``limit`` octets,
    one earlier where the cut would split an escape (the common case, and much faster)."""
    if len(line) <= limit:
        return line
    escapes = {match.start() for match in _ESCAPE.finditer(line)}
    pieces: list[str] = []
    start, room = 0, limit
    while len(line) - start > room:
        end = start + room
        if end - 1 in escapes:
            end -= 1
        pieces.append(line[start:end])
        start, room = end, limit - 1
    pieces.append(line[start:])
    return (CRLF + " ").join(pieces)


# --- Time zones -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Transition:
    at: datetime  # UTC instant
    offset_from: timedelta
    offset_to: timedelta
    name: str
    daylight: bool


def _state(zone: ZoneInfo, instant: datetime) -> tuple[timedelta, str, bool]:
    """Offset, abbreviation and whether it is daylight time. Only a positive saving counts as
    daylight: Europe/Dublin's "negative summer time" would otherwise label winter DAYLIGHT."""
    local = instant.astimezone(zone)
    offset = local.utcoffset() or timedelta(0)
    return offset, local.tzname() or "", (local.dst() or timedelta(0)) > timedelta(0)


def _transitions(zone: ZoneInfo, start: datetime, end: datetime) -> Iterator[_Transition]:
    """Every change of offset or name between two UTC instants, to the second."""
    step = timedelta(days=1)
    before = start
    state = _state(zone, before)
    while before < end:
        after = min(before + step, end)
        new_state = _state(zone, after)
        if new_state != state:
            # Bisect on whole seconds: the change happens in (low, high].
            low, high = int(before.timestamp()), int(after.timestamp())
            while high - low > 1:
                middle = (low + high) // 2
                if _state(zone, datetime.fromtimestamp(middle, UTC)) == state:
                    low = middle
                else:
                    high = middle
            moment = datetime.fromtimestamp(high, UTC)
            changed = _state(zone, moment)
            yield _Transition(moment, state[0], changed[0], changed[1], changed[2])
            state = changed
        before = after


def vtimezone(tzid: str, first: date, last: date) -> Timezone:
    """A VTIMEZONE for ``tzid`` valid from 1 January of ``first``'s year to the end of
    ``last``'s year, built from the system's zoneinfo (the same rules the app books with).

    Each observance starts at the wall-clock time in force *before* the change, as RFC 5545
    §3.6.5 combines ``DTSTART`` with ``TZOFFSETFROM``.
    """
    zone = ZoneInfo(tzid)
    start = datetime(first.year, 1, 1, tzinfo=zone).astimezone(UTC)
    end = datetime(last.year + 1, 1, 1, tzinfo=zone).astimezone(UTC)
    offset, name, daylight = _state(zone, start)
    component = Timezone()
    component.add("tzid", Text(tzid))
    component.add_component(
        _observance(daylight, [(start + offset).replace(tzinfo=None)], offset, offset, name)
    )
    groups: dict[tuple[bool, timedelta, timedelta, str], list[datetime]] = {}
    for change in _transitions(zone, start, end):
        key = (change.daylight, change.offset_from, change.offset_to, change.name)
        groups.setdefault(key, []).append((change.at + change.offset_from).replace(tzinfo=None))
    for (is_daylight, offset_from, offset_to, tzname), onsets in groups.items():
        component.add_component(_observance(is_daylight, onsets, offset_from, offset_to, tzname))
    return component


def _observance(
    daylight: bool,
    onsets: list[datetime],
    offset_from: timedelta,
    offset_to: timedelta,
    name: str,
) -> Component:
    observance = TimezoneDaylight() if daylight else TimezoneStandard()
    observance.add("dtstart", onsets[0])
    if len(onsets) > 1:
        observance.add("rdate", onsets[1:])
    observance.add("tzoffsetfrom", offset_from)
    observance.add("tzoffsetto", offset_to)
    if name:
        observance.add("tzname", Text(name))
    return observance


# --- Rendering --------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("DTSTAMP, CREATED and LAST-MODIFIED need timezone-aware times.")
    return moment.astimezone(UTC).replace(microsecond=0)


def _wall_clock(moment: datetime) -> datetime:
    """Local time with ``TZID``, except inside the hour that happens twice when clocks go
    back. RFC 5545 §3.3.5 reads such a time as its first occurrence but clients differ
    (ical.js takes the second), so both are written in UTC, which nobody misreads."""
    moment = moment.replace(microsecond=0)
    first, second = moment.replace(fold=0), moment.replace(fold=1)
    if first.astimezone(UTC) != second.astimezone(UTC):
        return moment.astimezone(UTC)
    return moment


def _date_time_digits(moment: datetime) -> str:
    """``YYYYMMDDTHHMMSS``: a DATE-TIME value without its zone."""
    return (
        f"{moment.year:04}{moment.month:02}{moment.day:02}"
        f"T{moment.hour:02}{moment.minute:02}{moment.second:02}"
    )


def _utc_value(moment: datetime) -> str:
    return _date_time_digits(_utc(moment)) + "Z"


def _date_value(day: date) -> str:
    return f";VALUE=DATE:{day.year:04}{day.month:02}{day.day:02}"


@lru_cache(maxsize=1024)
def _tzid_parameter(zone: tzinfo | None) -> str | None:
    """``;TZID=...`` for a time in ``zone`` as ``icalendar`` writes it, or ``None`` for UTC
    (and the zones it counts as UTC), which is written with a ``Z`` instead."""
    tzid = tzid_from_tzinfo(zone)
    return None if tzid == "UTC" else f";TZID={param_value(tzid or '')}"


def _local_value(moment: datetime) -> str:
    moment = _wall_clock(moment)
    value = _date_time_digits(moment)
    parameter = _tzid_parameter(moment.tzinfo)
    return value + "Z" if parameter is None else f"{parameter}:{value}"


def _event_lines(item: CalendarEvent) -> list[str]:
    """The VEVENT's content lines (unfolded), written here rather than through ``icalendar``'s
    components: the same lines (``tests/test_ical.py`` compares the two on generated events)
    at a fraction of the cost, which counted in every reminder email's attachment.
    The values use ``icalendar``'s own rules where they are not plain: TZIDs and durations."""
    lines = [
        "BEGIN:VEVENT",
        f"UID:{escape_text(item.uid)}",
        f"SEQUENCE:{int(item.sequence)}",
        f"DTSTAMP:{_utc_value(item.dtstamp)}",
    ]
    if item.created is not None:
        lines.append(f"CREATED:{_utc_value(item.created)}")
    lines.append(f"LAST-MODIFIED:{_utc_value(item.last_modified)}")
    if isinstance(item.when, AllDay):
        lines.append(f"DTSTART{_date_value(item.when.on)}")
        lines.append(f"DTEND{_date_value(item.when.on + timedelta(days=1))}")
    else:
        lines.append(f"DTSTART{_separated(_local_value(item.when.local_start))}")
        lines.append(f"DTEND{_separated(_local_value(item.when.local_end))}")
    lines.append(f"STATUS:{item.status.value}")
    lines.append(f"TRANSP:{'TRANSPARENT' if item.transparent else 'OPAQUE'}")
    if item.private:
        lines.append("CLASS:PRIVATE")
    lines.append(f"SUMMARY:{escape_text(item.summary)}")
    # Optional text is left out when nothing printable remains (an empty property helps no one).
    if clean_text(item.location):
        lines.append(f"LOCATION:{escape_text(item.location)}")
    if clean_text(item.description):
        lines.append(f"DESCRIPTION:{escape_text(item.description)}")
    if item.url:
        lines.append(f"URL:{item.url}")
    if item.reminder is not None:
        lines += [
            "BEGIN:VALARM",
            "ACTION:DISPLAY",
            f"TRIGGER:{vDuration(-item.reminder.before).to_ical().decode()}",
            f"DESCRIPTION:{escape_text(item.reminder.description)}",
            "END:VALARM",
        ]
    lines.append("END:VEVENT")
    return lines


def _separated(value: str) -> str:
    """A date-time value after its property name: ``:`` unless it starts with parameters."""
    return value if value.startswith(";") else f":{value}"


def _zone_span(feed: CalendarFeed) -> dict[str, tuple[date, date]]:
    """Each zone a TZID names, with the first and last day its VTIMEZONE must cover."""
    spans: dict[str, tuple[date, date]] = {}

    def cover(tzid: str, days: Iterable[date]) -> None:
        for day in days:
            low, high = spans.get(tzid, (day, day))
            spans[tzid] = (min(low, day), max(high, day))

    for item in feed.events:
        if isinstance(item.when, Timed):
            cover(item.when.timezone, (item.when.first_day, item.when.local_end.date()))
    return spans


def _calendar(feed: CalendarFeed) -> Calendar:
    """The calendar's own properties, without components."""
    calendar = Calendar()
    calendar.add("version", "2.0")
    calendar.add("prodid", Text(PRODID))
    calendar.add("calscale", "GREGORIAN")
    if feed.name is not None:
        calendar.add("name", Text(feed.name))
        calendar.add("x-wr-calname", Text(feed.name))
    if feed.description:
        calendar.add("description", Text(feed.description))
        calendar.add("x-wr-caldesc", Text(feed.description))
    if feed.timezone:
        calendar.add("x-wr-timezone", Text(feed.timezone))
    if feed.refresh is not None:
        calendar.add("refresh-interval", vDuration(feed.refresh), parameters={"VALUE": "DURATION"})
        calendar.add("x-published-ttl", vDuration(feed.refresh))
    return calendar


def _lines(component: Component) -> list[str]:
    return [line for line in component.content_lines(sorted=False) if line]


def _folded(lines: Iterable[str]) -> str:
    return "".join(fold(line) + CRLF for line in lines)


@lru_cache(maxsize=256)
def _vtimezone_text(tzid: str, first_year: int, last_year: int) -> str:
    """VTIMEZONEs are the slowest part to build and the same for every feed of a clinic."""
    return _folded(_lines(vtimezone(tzid, date(first_year, 1, 1), date(last_year, 1, 1))))


@lru_cache(maxsize=256)
def _calendar_text(
    name: str | None, description: str | None, refresh: timedelta | None, timezone: str | None
) -> tuple[str, str]:
    """The calendar's own lines before its components, and its last line: the same for every
    feed of a clinic."""
    feed = CalendarFeed((), name, description, refresh, timezone)
    *head, end = _lines(_calendar(feed))
    return _folded(head), _folded([end])


def render(feed: CalendarFeed) -> bytes:
    """The calendar as bytes: UTF-8, CRLF line ends, folded at 75 octets, properties in a
    fixed order, VTIMEZONEs before the events, so the same input always gives the same
    bytes."""
    head, end = _calendar_text(feed.name, feed.description, feed.refresh, feed.timezone)
    parts = [head]
    for tzid, (first, last) in sorted(_zone_span(feed).items()):
        parts.append(_vtimezone_text(tzid, first.year, last.year))
    for item in feed.events:
        parts.append(_folded(_event_lines(item)))
    parts.append(end)
    return "".join(parts).encode("utf-8")
