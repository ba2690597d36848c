"""Time flag values (--since, --until, --when, --as-of, --now): the recall-query language, whole values only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from memcli.errors import ExitCode, MemcliFailure
from memcli.text.timequery import parse_time_hint
from memcli.text.when import parse_when, parse_window

TZ = timezone(timedelta(hours=-5))
NOW = datetime(2026, 11, 24, 15, 30, tzinfo=TZ)  # a Tuesday


def d(y: int, m: int, day: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, m, day, h, mi, tzinfo=TZ)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        (" NOW ", NOW),
        ("today", d(2026, 11, 24)),
        ("Yesterday", d(2026, 11, 23)),
        ("last week", d(2026, 11, 16)),
        ("last month", d(2026, 10, 1)),
        ("last year", d(2025, 1, 1)),
        # hours and minutes ago are instants; days and longer are the day N calendar units before today
        ("5 minutes ago", NOW - timedelta(minutes=5)),
        ("an hour ago", NOW - timedelta(hours=1)),
        ("3 days ago", d(2026, 11, 21)),
        ("two weeks ago", d(2026, 11, 10)),
        ("a month ago", d(2026, 10, 24)),
        ("2024-03-01", d(2024, 3, 1)),
        ("2024-03-01T14:30", d(2024, 3, 1, 14, 30)),
        ("2024-03-01T14:30Z", datetime(2024, 3, 1, 14, 30, tzinfo=UTC)),
        ("2024-03-01 14:30:15.5+05:30", datetime(2024, 3, 1, 14, 30, 15, 500000, tzinfo=timezone(timedelta(hours=5.5)))),
        # what only the query language knew before
        ("last Christmas", d(2025, 12, 24)),
        ("Christmas 2023", d(2023, 12, 24)),
        ("March 2024", d(2024, 3, 1)),
        ("in March", d(2026, 3, 1)),
        ("last summer", d(2026, 6, 1)),
        ("the last 3 days", d(2026, 11, 21)),
        ("from March to May 2023", d(2023, 3, 1)),
        # a flag value is a time by definition: no context word needed
        ("2024", d(2024, 1, 1)),
        ("May", d(2026, 5, 1)),
        ("Monday", d(2026, 11, 23)),
        ("Halloween", d(2026, 10, 31)),
        ("fall", d(2026, 9, 1)),
    ],
)
def test_a_flag_value_names_the_moment_its_window_begins(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


def test_a_flag_value_has_the_window_its_query_has() -> None:
    """The same code reads both: the window is the query's, and the moment is where 'since X' cuts."""
    for text in ("last Christmas", "3 weeks ago", "2 hours ago", "in March", "March 2024", "last summer", "yesterday",
                 "the last 3 days", "2024-03-01", "early 2023", "from March to May 2023", "the week before last"):  # fmt: skip
        window = parse_window(text, NOW)
        hint = parse_time_hint(f"what did I do {text}?", NOW)
        assert hint is not None and (hint.since, hint.until) == (window.since, window.until), text
        cut = parse_time_hint(f"notes since {text.removeprefix('from ')}", NOW)
        if not text.startswith("from "):
            assert cut is not None and cut.since == window.at, text


def test_n_weeks_ago_means_one_thing() -> None:
    window = parse_window("3 weeks ago", NOW)
    assert window.at == d(2026, 11, 3)  # 21 days before today, at local midnight
    assert (window.since, window.until) == (d(2026, 10, 31), d(2026, 11, 7))  # the query's week around it
    assert window.description == "3 weeks ago (2026-10-31 … 2026-11-07)"


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", ""),
        ("someday", ""),
        ("2024-13-01", ""),
        ("3 fortnights ago", ""),
        ("foo last Christmas bar", "only 'last Christmas' in it is a time"),
        ("last Christmas, probably", "only 'last Christmas' in it is a time"),
        ("2024-03-01 at noon", "only '2024-03-01' in it is a time"),
        ("before March", "open-ended or vague"),
        ("since 2020", "open-ended or vague"),
        ("recently", "open-ended or vague"),
    ],
)
def test_only_a_whole_time_is_read(bad: str, why: str) -> None:
    with pytest.raises(MemcliFailure) as e:
        parse_when(bad, NOW)
    assert e.value.code == ExitCode.USAGE
    assert e.value.message.startswith(f"cannot read {bad!r} as a date or time") and why in e.value.message
    assert "2024-03-01" in e.value.hint and "'last Christmas'" in e.value.hint


@pytest.mark.parametrize("far", ["9999 years ago", "10000000000 minutes ago", "9999-12-31", "9999-12-31T23:59-14:00"])
def test_times_memcli_cannot_hold_say_so(far: str) -> None:
    with pytest.raises(MemcliFailure) as e:
        parse_when(far, NOW)
    assert e.value.code == ExitCode.USAGE and "outside the dates memcli can use" in e.value.message


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("berlin")
def test_local_dates_get_the_offset_they_have_then() -> None:
    """On the real clock a summer date read in winter (or the reverse) is still local midnight."""
    summer, winter = parse_when("2024-07-01"), parse_when("2024-01-15T08:00")
    assert summer.utcoffset() == timedelta(hours=2) and (summer.hour, summer.minute) == (0, 0)
    assert winter.utcoffset() == timedelta(hours=1) and winter.hour == 8
    christmas = parse_when("last Christmas")
    assert christmas.utcoffset() == timedelta(hours=1) and (christmas.month, christmas.day, christmas.hour) == (12, 24, 0)


# -- through the CLI ---------------------------------------------------------------------------------
def test_since_and_until_last_christmas_end_to_end(cli) -> None:  # type: ignore[no-untyped-def]
    christmas = parse_window("last Christmas")
    before = (christmas.since - timedelta(days=30)).date().isoformat()
    during = (christmas.since + timedelta(days=1)).date().isoformat()
    assert cli("add", "Bought a sled for the winter trip", "--when", before).code == 0
    assert cli("add", "Opened the sled-shaped present", "--when", during).code == 0

    def texts(*args: str) -> list[str]:
        r = cli(*args, "--json")
        assert r.code == 0, r.err
        data = r.json()["data"]
        return sorted(m["text"] for m in data["memories"]) if "memories" in data else [h["memory"]["text"] for h in data["hits"]]

    assert texts("list", "--since", "last Christmas") == ["Opened the sled-shaped present"]
    assert texts("list", "--until", "last Christmas") == ["Bought a sled for the winter trip"]
    assert texts("list", "--since", "yesterday", "--until", "today") == []
    assert texts("recall", "sled", "--since", "last Christmas") == ["Opened the sled-shaped present"]
    assert texts("recall", "sled", "--until", "last Christmas") == ["Bought a sled for the winter trip"]


@pytest.mark.parametrize("flag", ["--since", "--until", "--as-of", "--now"])
def test_a_flag_with_more_than_a_time_is_a_usage_error(cli, flag: str) -> None:  # type: ignore[no-untyped-def]
    r = cli("recall", "sled", flag, "the sled last Christmas")
    assert r.code == ExitCode.USAGE
    assert "cannot read 'the sled last Christmas'" in r.err and "'last Christmas'" in r.err and "Traceback" not in r.err
