"""The pure iCalendar renderer: escaping, folding, time zones, determinism, and arbitrary user
text read back exactly by four independent parsers."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import icalendar
import pytest
import vobject
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surveillance import ical
from tests import calendars

STAMP = datetime(2026, 1, 5, 17, 0, 0, 123456, tzinfo=UTC)
DENVER = "America/Denver"


def timed(start: datetime, minutes: int = 45, zone: str = DENVER) -> ical.Timed:
    local = start.replace(tzinfo=ZoneInfo(zone))
    return ical.Timed(local, local + timedelta(minutes=minutes), zone)


def event(**overrides: object) -> ical.CalendarEvent:
    fields: dict[str, object] = {
        "uid": "0f8fad5b-d9cb-469f-a165-70867728950e@watchful.test",
        "sequence": 0,
        "status": ical.Status.CONFIRMED,
        "when": ical.AllDay(date(2026, 7, 6)),
        "summary": "Follow-up visit",
        "dtstamp": STAMP,
        "last_modified": STAMP,
    }
    fields.update(overrides)
    return ical.CalendarEvent(**fields)  # type: ignore[arg-type]


def feed(*events: ical.CalendarEvent, **overrides: object) -> ical.CalendarFeed:
    fields: dict[str, object] = {
        "events": events,
        "name": "Northside Clinic: my visits",
        "refresh": timedelta(hours=6),
        "timezone": DENVER,
    }
    fields.update(overrides)
    return ical.CalendarFeed(**fields)  # type: ignore[arg-type]


def lines_of(document: bytes) -> list[str]:
    return calendars.unfolded(document)


# --- Escaping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "written"),
    [
        ("a,b", r"a\,b"),
        ("a;b", r"a\;b"),
        ("C:\\Users", r"C:\\Users"),
        ("C:\\New", r"C:\\New"),  # icalendar's vText would turn this "\N" into a line break
        ("one\ntwo", r"one\ntwo"),
        ("one\r\ntwo", r"one\ntwo"),
        ("lone\rCR", r"lone\nCR"),
        ("u2028\u2028kept\u2029\x85", "u2028\u2028kept\u2029\x85"),
        ("bell\x07null\x00esc\x1bdel\x7f", "bellnullescdel"),
        ("tab\tkept", "tab\tkept"),
        ("lone\udb82surrogate", "lonesurrogate"),
        ('colon: and "quotes"', 'colon: and "quotes"'),
        ("\\,", r"\\\,"),
        # Leading byte-order marks go (icalendar would drop the first itself); others stay.
        ("\ufeff\ufeffBOM\ufeff", "BOM\ufeff"),
        ("\x07\ufeffafter a control", "after a control"),
    ],
)
def test_text_is_escaped_per_rfc5545(typed: str, written: str) -> None:
    assert ical.escape_text(typed) == written


def test_calendar_level_text_is_escaped_too() -> None:
    """icalendar leaves NAME and X-WR-CALNAME unescaped; the renderer must not."""
    document = ical.render(feed(name="North, South; East\\West\nClinic", description="a,b"))
    lines = lines_of(document)
    assert r"NAME:North\, South\; East\\West\nClinic" in lines
    assert r"X-WR-CALNAME:North\, South\; East\\West\nClinic" in lines
    assert r"X-WR-CALDESC:a\,b" in lines
    parsed = vobject.readOne(document.decode())
    assert parsed.x_wr_calname.value == "North, South; East\\West\nClinic"


def test_durations_are_real_durations() -> None:
    lines = lines_of(ical.render(feed()))
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT6H" in lines
    assert "X-PUBLISHED-TTL:PT6H" in lines  # icalendar alone would write "6:00:00"


def test_fixed_header_properties() -> None:
    lines = lines_of(ical.render(feed()))
    assert lines[:4] == [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Watchful//Surveillance calendar 1.0//EN",
        "CALSCALE:GREGORIAN",
    ]
    assert "X-WR-TIMEZONE:America/Denver" in lines
    assert lines[-1] == "END:VCALENDAR"


def test_single_event_file_has_no_subscription_properties() -> None:
    lines = lines_of(ical.render(ical.CalendarFeed(events=(event(),))))
    names = {line.split(":")[0].split(";")[0] for line in lines}
    assert not names & {"NAME", "X-WR-CALNAME", "REFRESH-INTERVAL", "X-PUBLISHED-TTL"}


# --- Events -----------------------------------------------------------------------------------


def test_all_day_event_has_date_values_and_an_exclusive_end() -> None:
    lines = lines_of(ical.render(feed(event(status=ical.Status.TENTATIVE, transparent=True))))
    assert "DTSTART;VALUE=DATE:20260706" in lines
    assert "DTEND;VALUE=DATE:20260707" in lines
    assert "STATUS:TENTATIVE" in lines
    assert "TRANSP:TRANSPARENT" in lines


def test_timed_event_with_tzid_alarm_and_utc_stamps() -> None:
    item = event(
        when=timed(datetime(2026, 7, 6, 9, 30)),
        sequence=3,
        created=STAMP - timedelta(days=30),
        location="1 Test Street, Denver",
        reminder=ical.Reminder(timedelta(days=1), "Tomorrow: follow-up visit"),
    )
    lines = lines_of(ical.render(feed(item)))
    assert "DTSTART;TZID=America/Denver:20260706T093000" in lines
    assert "DTEND;TZID=America/Denver:20260706T101500" in lines
    assert "DTSTAMP:20260105T170000Z" in lines
    assert "LAST-MODIFIED:20260105T170000Z" in lines
    assert "CREATED:20251206T170000Z" in lines
    assert "SEQUENCE:3" in lines
    assert r"LOCATION:1 Test Street\, Denver" in lines
    alarm = lines[lines.index("BEGIN:VALARM") : lines.index("END:VALARM") + 1]
    assert alarm == [
        "BEGIN:VALARM",
        "ACTION:DISPLAY",
        "TRIGGER:-P1D",
        "DESCRIPTION:Tomorrow: follow-up visit",
        "END:VALARM",
    ]


@pytest.mark.parametrize("utc_hour", [7, 8])
def test_a_time_in_the_repeated_hour_is_written_in_utc(utc_hour: int) -> None:
    """01:30 happens twice in Denver on 1 November 2026 (07:30 and 08:30 UTC). Clients
    disagree on which one a local 01:30 means, so either is written in UTC."""
    zone = ZoneInfo(DENVER)
    moment = datetime(2026, 11, 1, utc_hour, 30, tzinfo=UTC)
    local = moment.astimezone(zone)
    assert local.replace(tzinfo=None) == datetime(2026, 11, 1, 1, 30)
    item = event(when=ical.Timed(local, local + timedelta(minutes=30), DENVER))
    document = ical.render(feed(item))
    assert f"DTSTART:20261101T0{utc_hour}3000Z" in lines_of(document)
    (seen,) = calendars.read_by_all(document)
    assert seen.start == moment.isoformat()


def test_rendering_is_deterministic() -> None:
    items = (
        event(uid="b@x", when=timed(datetime(2026, 3, 9, 9, 0))),
        event(uid="a@x", status=ical.Status.CANCELLED),
    )
    assert ical.render(feed(*items)) == ical.render(feed(*items))


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        ical.Timed(datetime(2026, 1, 1, 9), datetime(2026, 1, 1, 10), DENVER)
    with pytest.raises(ValueError):
        ical.render(feed(event(dtstamp=datetime(2026, 1, 1))))


# --- Folding ----------------------------------------------------------------------------------


def test_fold_keeps_escapes_and_characters_whole() -> None:
    line = "DESCRIPTION:" + "x" * 62 + r"\\" + "é" * 40 + "😀" * 30 + r"\," * 50
    folded = ical.fold(line)
    physical = folded.split("\r\n")
    assert all(len(p.encode()) <= 75 for p in physical)
    assert all(p.startswith(" ") for p in physical[1:])
    assert "".join(p[1:] if i else p for i, p in enumerate(physical)) == line
    for piece in physical:
        assert (len(piece) - len(piece.rstrip("\\"))) % 2 == 0


@given(st.text(max_size=400))
def test_fold_round_trips_and_respects_the_limit(value: str) -> None:
    line = "SUMMARY:" + ical.escape_text(value)
    physical = ical.fold(line).split("\r\n")
    assert "".join(p[1:] if i else p for i, p in enumerate(physical)) == line
    for piece in physical:
        assert len(piece.encode("utf-8")) <= 75
        assert (len(piece) - len(piece.rstrip("\\"))) % 2 == 0


# --- Time zones -------------------------------------------------------------------------------


def test_daylight_onset_is_written_in_the_time_before_the_change() -> None:
    document = ical.render(feed(event(when=timed(datetime(2026, 7, 6, 9, 30)))))
    lines = lines_of(document)
    start = lines.index("BEGIN:DAYLIGHT")
    assert lines[start + 1 : start + 4] == [
        "DTSTART:20260308T020000",
        "TZOFFSETFROM:-0700",
        "TZOFFSETTO:-0600",
    ]
    start = lines.index("BEGIN:STANDARD", start)
    assert lines[start + 1 : start + 4] == [
        "DTSTART:20261101T020000",
        "TZOFFSETFROM:-0600",
        "TZOFFSETTO:-0700",
    ]


def test_every_tzid_has_its_vtimezone() -> None:
    items = [
        event(uid=f"{zone}@x", when=timed(datetime(2026, 5, 4, 10), zone=zone))
        for zone in ("America/Denver", "America/New_York", "Europe/Dublin", "Asia/Kolkata")
    ]
    structure = calendars.check_structure(ical.render(feed(*items)))
    assert structure.tzids_used == {
        "America/Denver",
        "America/New_York",
        "Europe/Dublin",
        "Asia/Kolkata",
    }
    assert structure.tzids_defined == structure.tzids_used


ZONES = sorted(
    z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/"))
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone=st.sampled_from(ZONES),
    moment=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31)),
)
def test_vtimezone_gives_zoneinfo_offsets(zone: str, moment: datetime) -> None:
    """Read back by icalendar, the generated VTIMEZONE gives the same UTC instant as zoneinfo
    for any time in its range, across every kind of zone (half hours, negative summer time,
    southern hemisphere, zones without daylight time)."""
    instant = moment.replace(tzinfo=UTC)
    local = instant.astimezone(ZoneInfo(zone))
    item = event(when=ical.Timed(local, local + timedelta(hours=1), zone))
    document = ical.render(feed(item, timezone=None))
    calendars.check_structure(document)
    parsed = icalendar.Calendar.from_ical(document)
    start = parsed.walk("VEVENT")[0]["DTSTART"].dt
    assert start.astimezone(UTC) == instant.replace(microsecond=0)


def test_ical_js_and_vobject_agree_across_daylight_changes() -> None:
    """Times next to both changes, read through the embedded VTIMEZONE by every parser."""
    moments = [
        datetime(2026, 3, 7, 9, 0),
        datetime(2026, 3, 8, 3, 30),
        datetime(2026, 3, 9, 9, 0),
        datetime(2026, 10, 31, 9, 0),
        datetime(2026, 11, 1, 1, 30),
        datetime(2026, 11, 2, 9, 0),
    ]
    items = [event(uid=f"{i}@x", when=timed(m)) for i, m in enumerate(moments)]
    document = ical.render(feed(*items))
    seen = calendars.read_by_all(document)
    zone = ZoneInfo(DENVER)
    expected = [m.replace(tzinfo=zone).astimezone(UTC).isoformat() for m in moments]
    assert [s.start for s in seen] == expected


# --- Arbitrary user text ----------------------------------------------------------------------

NASTY = st.text(
    alphabet=st.sampled_from(list(',;\\:"\r\n\t Nné😀\u2028\x00\x85BEGIN:VEVENT')), max_size=500
)
USER_TEXT = st.one_of(st.text(max_size=500), NASTY)


def _ics_can_read(value: str) -> bool:
    """ics-py 0.7 misreads an escaped backslash followed by n or N (see tests.calendars)."""
    return not re.search(r"\\[nN]", value)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    texts=st.lists(
        st.tuples(USER_TEXT, USER_TEXT, USER_TEXT).filter(lambda t: ical.clean_text(t[0])),
        min_size=1,
        max_size=3,
    ),
    name=USER_TEXT,
)
def test_user_text_never_breaks_structure_and_round_trips(
    texts: list[tuple[str, str, str]], name: str
) -> None:
    items = tuple(
        event(
            uid=f"{index}@watchful.test",
            summary=summary,
            location=location,
            description=notes,
            when=timed(datetime(2026, 7, 6 + index, 9, 30)) if index % 2 else event().when,
        )
        for index, (summary, location, notes) in enumerate(texts)
    )
    document = ical.render(feed(*items, name=name))
    structure = calendars.check_structure(document)

    # Nothing typed can add a line, a property or a component: the content lines are the
    # same as for plain placeholders.
    plain = ical.render(
        feed(
            *(
                event(
                    uid=i.uid,
                    summary="x",
                    location="x" if ical.clean_text(i.location) else "",
                    description="x" if ical.clean_text(i.description) else "",
                    when=i.when,
                )
                for i in items
            ),
            name="x",
        )
    )
    assert [line.split(":")[0] for line in calendars.unfolded(document)] == [
        line.split(":")[0] for line in calendars.unfolded(plain)
    ]
    assert structure.components.count("VEVENT") == len(items)

    expected = [
        (ical.clean_text(i.summary), ical.clean_text(i.location), ical.clean_text(i.description))
        for i in items
    ]
    expected_name = ical.clean_text(name)

    parsed = icalendar.Calendar.from_ical(document)
    assert [
        (str(e["SUMMARY"]), str(e.get("LOCATION", "")), str(e.get("DESCRIPTION", "")))
        for e in parsed.walk("VEVENT")
    ] == expected
    assert calendars.unescape(str(parsed["X-WR-CALNAME"])) == expected_name

    vcal = vobject.readOne(document.decode("utf-8"))
    assert [
        (
            e.summary.value,
            e.location.value if hasattr(e, "location") else "",
            e.description.value if hasattr(e, "description") else "",
        )
        for e in vcal.vevent_list
    ] == expected
    assert vcal.x_wr_calname.value == expected_name
    assert vcal.contents["name"][0].value == expected_name

    js = calendars.icaljs_one(document)
    assert [
        (e["summary"], e["location"] or "", e["description"] or "") for e in js["events"]
    ] == expected
    assert calendars.unescape(js["xWrCalname"]) == expected_name
    assert calendars.unescape(js["name"]) == expected_name

    import ics

    ics_events = {e.uid: e for e in ics.Calendar(document.decode("utf-8")).events}
    assert len(ics_events) == len(items)
    for item, (summary, location, notes) in zip(items, expected, strict=True):
        read = ics_events[item.uid]
        for got, want in (
            (read.name, summary),
            (read.location, location),
            (read.description, notes),
        ):
            if _ics_can_read(want):
                assert (got or "") == want


# --- Events written directly, as icalendar's components would ---------------------------------


def icalendar_event_lines(item: ical.CalendarEvent) -> list[str]:
    """The reference: the VEVENT built with icalendar's components, as ``ical`` did before it
    wrote events itself (for speed: every reminder email carries one)."""
    event = icalendar.Event()
    event.add("uid", ical.Text(item.uid))
    event.add("sequence", item.sequence)
    event.add("dtstamp", ical._utc(item.dtstamp))
    if item.created is not None:
        event.add("created", ical._utc(item.created))
    event.add("last-modified", ical._utc(item.last_modified))
    if isinstance(item.when, ical.AllDay):
        event.add("dtstart", item.when.on)
        event.add("dtend", item.when.on + timedelta(days=1))
    else:
        event.add("dtstart", ical._wall_clock(item.when.local_start))
        event.add("dtend", ical._wall_clock(item.when.local_end))
    event.add("status", item.status.value)
    event.add("transp", "TRANSPARENT" if item.transparent else "OPAQUE")
    if item.private:
        event.add("class", "PRIVATE")
    event.add("summary", ical.Text(item.summary))
    if ical.clean_text(item.location):
        event.add("location", ical.Text(item.location))
    if ical.clean_text(item.description):
        event.add("description", ical.Text(item.description))
    if item.url:
        event.add("url", item.url)
    if item.reminder is not None:
        alarm = icalendar.Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("trigger", -item.reminder.before)
        alarm.add("description", ical.Text(item.reminder.description))
        event.add_component(alarm)
    return ical._lines(event)


ALL_ZONES = sorted(available_timezones())
STAMPS = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 12, 31), timezones=st.just(UTC)
) | st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2060, 12, 31),
    timezones=st.sampled_from(ALL_ZONES).map(ZoneInfo),
)


@st.composite
def whens(draw: st.DrawFn) -> ical.AllDay | ical.Timed:
    if draw(st.booleans()):
        return ical.AllDay(draw(st.dates(min_value=date(1, 1, 1), max_value=date(9998, 12, 30))))
    zone = draw(st.sampled_from(ALL_ZONES))
    start = draw(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2090, 1, 1)))
    local = start.replace(tzinfo=ZoneInfo(zone), fold=draw(st.integers(0, 1)))
    length = draw(st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3)))
    return ical.Timed(local, local + length, zone)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    uid=USER_TEXT,
    sequence=st.integers(min_value=0, max_value=2**31 - 1),
    status=st.sampled_from(list(ical.Status)),
    when=whens(),
    texts=st.tuples(USER_TEXT, USER_TEXT, USER_TEXT),
    stamps=st.tuples(STAMPS, STAMPS, st.none() | STAMPS),
    url=st.sampled_from(["", "https://watchful.test/p/abc_DEF-123", "https://x.test/a?b=c&d=e"]),
    reminder=st.none()
    | st.builds(
        ical.Reminder,
        st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
        USER_TEXT,
    ),
    flags=st.tuples(st.booleans(), st.booleans()),
)
def test_events_are_written_as_icalendars_components_write_them(
    uid: str,
    sequence: int,
    status: ical.Status,
    when: ical.AllDay | ical.Timed,
    texts: tuple[str, str, str],
    stamps: tuple[datetime, datetime, datetime | None],
    url: str,
    reminder: ical.Reminder | None,
    flags: tuple[bool, bool],
) -> None:
    summary, location, description = texts
    item = ical.CalendarEvent(
        uid=uid,
        sequence=sequence,
        status=status,
        when=when,
        summary=summary,
        dtstamp=stamps[0],
        last_modified=stamps[1],
        created=stamps[2],
        description=description,
        location=location,
        url=url,
        reminder=reminder,
        transparent=flags[0],
        private=flags[1],
    )
    assert ical._event_lines(item) == icalendar_event_lines(item)


@pytest.mark.parametrize("zone", ALL_ZONES)
def test_every_zone_is_named_as_icalendar_names_it(zone: str) -> None:
    """TZID (or UTC's ``Z``) in every zone the system knows, including the repeated hour."""
    local = datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo(zone))
    item = event(when=ical.Timed(local, local + timedelta(hours=1), zone))
    assert ical._event_lines(item) == icalendar_event_lines(item)


@settings(max_examples=500, deadline=None)
@given(
    line=st.text(alphabet=st.sampled_from(list("\\\\\\nN;,ab ")), max_size=400)
    | st.text(alphabet=st.characters(max_codepoint=127), max_size=400),
    limit=st.integers(min_value=1, max_value=80),
)
def test_ascii_lines_fold_as_the_general_way_folds_them(line: str, limit: int) -> None:
    folded = ical.fold(line, limit)
    assert folded == (line if len(line) <= limit else ical._fold_atoms(line, limit))
