"""Reading calendars back the way clients do: three parsers besides the ``icalendar`` package
the app writes with, plus structural checks on the raw bytes.

* ical.js (Mozilla, the parser in Thunderbird), driven through ``tests/ical_parse.mjs``;
* vobject;
* ics-py 0.7.

Known reader quirks the tests allow for, each checked against RFC 5545:
* ical.js and icalendar return ``NAME``/``X-WR-CALNAME`` verbatim (still escaped): they do not
  type those calendar properties as TEXT. :func:`unescape` applies §3.3.11 to compare.
* ics-py 0.7 unescapes ``\\n`` before ``\\\\``, so it misreads an escaped backslash followed by
  ``n``/``N``; its text is compared only where no such pair occurs.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import icalendar
import ics
import vobject

from surveillance import privacy

ROOT = Path(__file__).resolve().parent.parent
NODE_SCRIPT = ROOT / "tests" / "ical_parse.mjs"

# Words that must never appear in a patient's calendar (word boundaries, any case): the app's
# own list, shared with the validation of what staff type for patients to see.
FORBIDDEN_PATIENT_WORDS = privacy.FORBIDDEN_PATIENT_WORDS


def icaljs(documents: list[bytes]) -> list[dict[str, Any]]:
    """Parse documents with ical.js in one node process; each result has ``ok``."""
    completed = subprocess.run(
        ["node", str(NODE_SCRIPT)],
        input=json.dumps([d.decode("utf-8") for d in documents]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    return json.loads(completed.stdout)


def icaljs_one(document: bytes) -> dict[str, Any]:
    (result,) = icaljs([document])
    assert result["ok"], result
    return result


def unescape(value: str) -> str:
    """RFC 5545 §3.3.11 TEXT unescaping, written independently of every parser here."""
    return re.sub(
        r"\\(.)", lambda m: "\n" if m.group(1) in "nN" else m.group(1), value, flags=re.DOTALL
    )


def physical_lines(document: bytes) -> list[bytes]:
    assert document.endswith(b"\r\n"), "a calendar ends with CRLF"
    return document[:-2].split(b"\r\n")


def unfolded(document: bytes) -> list[str]:
    return document.decode("utf-8").replace("\r\n ", "").replace("\r\n\t", "").split("\r\n")[:-1]


@dataclass(frozen=True)
class Structure:
    components: list[str]
    tzids_used: set[str]
    tzids_defined: set[str]


def check_structure(document: bytes) -> Structure:
    """Everything a strict client needs from the raw bytes, asserted:

    UTF-8; CRLF line ends and no other CR or LF; every physical line at most 75 octets; folds
    that never split an escape (no physical line ends in an odd run of backslashes); balanced
    BEGIN/END; each content line a NAME[;params]:value; each TZID defined by a VTIMEZONE.
    """
    document.decode("utf-8")  # raises on invalid UTF-8, including a split character
    lines = physical_lines(document)
    for line in lines:
        assert b"\r" not in line and b"\n" not in line, line
        assert len(line) <= 75, (len(line), line)
        trailing = len(line) - len(line.rstrip(b"\\"))
        assert trailing % 2 == 0, f"a fold splits an escape: {line!r}"
        line.decode("utf-8")  # each physical line is whole UTF-8 on its own
    stack: list[str] = []
    components: list[str] = []
    tzids_used: set[str] = set()
    tzids_defined: set[str] = set()
    for line in unfolded(document):
        match = re.match(r"^([A-Za-z0-9-]+)((?:;[A-Za-z0-9-]+=(?:\"[^\"]*\"|[^;:,\"]*))*):", line)
        assert match, f"not a content line: {line!r}"
        name, params = match.group(1).upper(), match.group(2)
        value = line[match.end() :]
        if name == "BEGIN":
            stack.append(value)
            components.append(value)
        elif name == "END":
            assert stack and stack.pop() == value, f"unbalanced END:{value}"
        elif name == "TZID" and stack and stack[-1] == "VTIMEZONE":
            tzids_defined.add(value)
        for tzid in re.findall(r";TZID=([^;:]+)", params):
            tzids_used.add(tzid.strip('"'))
    assert not stack, f"unclosed {stack}"
    assert components[:1] == ["VCALENDAR"] and components.count("VCALENDAR") == 1
    assert tzids_used <= tzids_defined, f"TZID without VTIMEZONE: {tzids_used - tzids_defined}"
    return Structure(components, tzids_used, tzids_defined)


def forbidden_words_in(document: bytes) -> list[str]:
    """Forbidden words found in a calendar, read as a client would (unfolded, unescaped)."""
    text = unescape("\n".join(unfolded(document)))
    found = []
    for word in FORBIDDEN_PATIENT_WORDS:
        flags = 0 if word in ("G1", "G2", "G3") else re.IGNORECASE
        if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, flags):
            found.append(word)
    return found


# --- The same facts from every parser ---------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One event as a parser read it."""

    uid: str
    sequence: int
    status: str
    all_day: bool
    start: str  # ISO date, or ISO date-time in UTC
    summary: str


def by_icalendar(document: bytes) -> list[Seen]:
    calendar = icalendar.Calendar.from_ical(document)
    seen = []
    for event in calendar.walk("VEVENT"):
        start = event["DTSTART"].dt
        all_day = not hasattr(start, "hour")
        seen.append(
            Seen(
                str(event["UID"]),
                int(event.get("SEQUENCE", 0)),
                str(event["STATUS"]),
                all_day,
                start.isoformat() if all_day else _utc_iso(start),
                str(event["SUMMARY"]),
            )
        )
    return seen


def by_icaljs(document: bytes) -> list[Seen]:
    parsed = icaljs_one(document)
    seen = []
    for event in parsed["events"]:
        start = event["start"]
        seen.append(
            Seen(
                event["uid"],
                int(event["sequence"] or 0),
                event["status"],
                start["isDate"],
                start["value"] if start["isDate"] else start["utc"].replace(".000Z", "+00:00"),
                event["summary"],
            )
        )
    return seen


def by_vobject(document: bytes) -> list[Seen]:
    calendar = vobject.readOne(document.decode("utf-8"))
    seen = []
    for event in calendar.contents.get("vevent", []):
        start = event.dtstart.value
        all_day = not hasattr(start, "hour")
        seen.append(
            Seen(
                event.uid.value,
                int(event.sequence.value) if hasattr(event, "sequence") else 0,
                event.status.value,
                all_day,
                start.isoformat() if all_day else _utc_iso(start),
                event.summary.value,
            )
        )
    return seen


def ics_sequence(event: Any) -> int:
    """ics-py 0.7 keeps SEQUENCE among the lines it does not model."""
    for line in event.extra:
        if line.name == "SEQUENCE":
            return int(line.value)
    return 0


def by_ics(document: bytes) -> list[Seen]:
    calendar = ics.Calendar(document.decode("utf-8"))
    seen = []
    for event in calendar.events:
        seen.append(
            Seen(
                event.uid,
                ics_sequence(event),
                event.status,
                event.all_day,
                event.begin.date().isoformat() if event.all_day else _utc_iso(event.begin),
                event.name,
            )
        )
    return seen


def _utc_iso(moment: Any) -> str:
    from datetime import UTC

    return moment.astimezone(UTC).isoformat()


def read_by_all(document: bytes) -> list[Seen]:
    """The events as all four parsers read them, asserted identical; sorted by UID."""
    readings = {
        "icalendar": sorted(by_icalendar(document), key=lambda s: s.uid),
        "ical.js": sorted(by_icaljs(document), key=lambda s: s.uid),
        "vobject": sorted(by_vobject(document), key=lambda s: s.uid),
        "ics-py": sorted(by_ics(document), key=lambda s: s.uid),
    }
    reference = readings["icalendar"]
    for parser, reading in readings.items():
        assert reading == reference, f"{parser} reads differently: {reading} != {reference}"
    return reference
