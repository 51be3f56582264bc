"""The timeline geometry (plain Python)."""

from __future__ import annotations

from datetime import date

from surveillance import timeline
from surveillance.timeline import TimelineEvent


def test_events_are_placed_in_date_order_on_their_lanes() -> None:
    events = [
        TimelineEvent(
            "visit",
            1,
            "completed",
            date(2026, 4, 1),
            completed_on=date(2026, 4, 10),
            outcome="stable",
        ),
        TimelineEvent("visit", 2, "booked", date(2026, 7, 1), booked_on=date(2026, 7, 3)),
        TimelineEvent("biopsy", 1, "planned", date(2027, 1, 4)),
        TimelineEvent("visit", 3, "planned", date(2026, 10, 1)),
    ]
    tl = timeline.build(events, today=date(2026, 11, 1), enrolled_on=date(2026, 1, 5))
    xs = {m.label.split(":")[0]: m.x for m in tl.markers}
    assert xs["Visit 1"] < xs["Visit 2"] < xs["Visit 3"] < xs["Biopsy"]
    assert all(tl.left <= m.x <= tl.width - tl.right for m in tl.markers)
    lanes = {m.kind: m.y for m in tl.markers}
    assert lanes["visit"] != lanes["biopsy"]
    assert tl.today_x is not None and xs["Visit 3"] < tl.today_x < xs["Biopsy"]
    labels = [m.label for m in tl.markers]
    assert "Visit 1: completed 2026-04-10, stable" in labels
    assert "Visit 2: booked for 2026-07-03" in labels
    assert "Visit 3: overdue since 2026-10-01" in labels
    assert [m.overdue for m in tl.markers] == [False, False, False, True]


def test_ticks_never_crowd_and_name_the_year() -> None:
    events = [
        TimelineEvent("visit", n, "planned", date(2026 + n // 4, 3 * (n % 4) + 1, 1))
        for n in range(12)
    ]
    tl = timeline.build(events, today=date(2026, 1, 1), enrolled_on=date(2026, 1, 1))
    gaps = [b.x - a.x for a, b in zip(tl.ticks, tl.ticks[1:], strict=False)]
    assert min(gaps) > 40  # room for a label
    assert any(t.label == "Jan 2027" and t.major for t in tl.ticks)


def test_today_is_always_on_the_timeline() -> None:
    events = [TimelineEvent("visit", 1, "planned", date(2030, 1, 1))]
    tl = timeline.build(events, today=date(2026, 1, 1), enrolled_on=date(2029, 7, 1))
    assert tl.today_x is not None  # today extends the range rather than vanishing
    assert tl.start <= date(2026, 1, 1)
