"""Time expressions inside recall queries (memcli.text.timequery)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memcli.text.timequery import TimeHint, parse_time_hint

TZ = timezone(timedelta(hours=-5), "UTC-05")
NOW = datetime(2026, 11, 24, 15, 30, tzinfo=TZ)  # a Tuesday; this week's Monday is 2026-11-23


def d(y: int, m: int, day: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, m, day, h, mi, tzinfo=TZ)


def hint(query: str, now: datetime = NOW) -> TimeHint:
    h = parse_time_hint(query, now)
    assert h is not None, query
    return h


WINDOWS: list[tuple[str, datetime | None, datetime | None]] = [
    # days
    ("what did I eat today", d(2026, 11, 24), d(2026, 11, 25)),
    ("what did I eat yesterday?", d(2026, 11, 23), d(2026, 11, 24)),
    ("the day before yesterday", d(2026, 11, 22), d(2026, 11, 23)),
    ("day before yesterday", d(2026, 11, 22), d(2026, 11, 23)),
    ("plans for tonight", d(2026, 11, 24), d(2026, 11, 25)),
    ("what did I read this morning", d(2026, 11, 24), d(2026, 11, 25)),
    ("this evening", d(2026, 11, 24), d(2026, 11, 25)),
    ("earlier today", d(2026, 11, 24), d(2026, 11, 25)),
    ("yesterday evening", d(2026, 11, 23), d(2026, 11, 24)),
    ("last night", d(2026, 11, 23, 18), d(2026, 11, 24, 6)),
    # calendar periods
    ("this week", d(2026, 11, 23), d(2026, 11, 30)),
    ("what happened last week", d(2026, 11, 16), d(2026, 11, 23)),
    ("the previous week", d(2026, 11, 16), d(2026, 11, 23)),
    ("the week before last", d(2026, 11, 9), d(2026, 11, 16)),
    ("this month", d(2026, 11, 1), d(2026, 12, 1)),
    ("last month", d(2026, 10, 1), d(2026, 11, 1)),
    ("this year", d(2026, 1, 1), d(2027, 1, 1)),
    ("LAST YEAR", d(2025, 1, 1), d(2026, 1, 1)),
    ("last weekend", d(2026, 11, 21), d(2026, 11, 23)),
    ("this past weekend", d(2026, 11, 21), d(2026, 11, 23)),
    ("this weekend", d(2026, 11, 28), d(2026, 11, 30)),
    # rolling windows: from midnight N units before today to the end of today
    ("in the last 3 days", d(2026, 11, 21), d(2026, 11, 25)),
    ("last 3 days", d(2026, 11, 21), d(2026, 11, 25)),
    ("over the past few days", d(2026, 11, 21), d(2026, 11, 25)),
    ("the past couple of weeks", d(2026, 11, 10), d(2026, 11, 25)),
    ("in the last week", d(2026, 11, 17), d(2026, 11, 25)),
    ("past week", d(2026, 11, 17), d(2026, 11, 25)),
    ("this past week", d(2026, 11, 17), d(2026, 11, 25)),
    ("the past two months", d(2026, 9, 24), d(2026, 11, 25)),
    ("within the last year", d(2025, 11, 24), d(2026, 11, 25)),
    ("in recent weeks", d(2026, 11, 3), d(2026, 11, 25)),
    ("in the last 24 hours", d(2026, 11, 23, 15, 30), d(2026, 11, 25)),
    # N ago: one unit wide around the day N units ago
    ("3 days ago", d(2026, 11, 21), d(2026, 11, 22)),
    ("a day ago", d(2026, 11, 23), d(2026, 11, 24)),
    ("a few days ago", d(2026, 11, 20), d(2026, 11, 23)),
    ("a couple of days ago", d(2026, 11, 21), d(2026, 11, 24)),
    ("a week ago", d(2026, 11, 14), d(2026, 11, 21)),
    ("3 weeks ago", d(2026, 10, 31), d(2026, 11, 7)),
    ("about two weeks ago", d(2026, 11, 7), d(2026, 11, 14)),
    ("a month ago", d(2026, 10, 9), d(2026, 11, 9)),
    ("two years ago", d(2024, 5, 26), d(2025, 5, 26)),
    ("2 hours ago", d(2026, 11, 24, 13), d(2026, 11, 24, 14)),
    ("a few minutes ago", d(2026, 11, 24, 15, 26), d(2026, 11, 24, 15, 28)),
    ("10000 days ago", d(1999, 7, 9), d(1999, 7, 10)),
    # months, days, years, seasons
    ("in March 2023", d(2023, 3, 1), d(2023, 4, 1)),
    ("March 2023", d(2023, 3, 1), d(2023, 4, 1)),
    ("Sept 2023", d(2023, 9, 1), d(2023, 10, 1)),
    ("in March", d(2026, 3, 1), d(2026, 4, 1)),
    ("in December", d(2025, 12, 1), d(2026, 1, 1)),
    ("in November", d(2026, 11, 1), d(2026, 12, 1)),
    ("last March", d(2026, 3, 1), d(2026, 4, 1)),
    ("in may", d(2026, 5, 1), d(2026, 6, 1)),
    ("the month of May", d(2026, 5, 1), d(2026, 6, 1)),
    ("on March 3", d(2026, 3, 3), d(2026, 3, 4)),
    ("3 March 2023", d(2023, 3, 3), d(2023, 3, 4)),
    ("March 3rd, 2023", d(2023, 3, 3), d(2023, 3, 4)),
    ("the 24th of October", d(2026, 10, 24), d(2026, 10, 25)),
    ("the first of March", d(2026, 3, 1), d(2026, 3, 2)),
    ("Dec 25", d(2025, 12, 25), d(2025, 12, 26)),
    ("Feb 29", d(2024, 2, 29), d(2024, 3, 1)),
    ("early March 2023", d(2023, 3, 1), d(2023, 3, 11)),
    ("mid-March 2023", d(2023, 3, 11), d(2023, 3, 21)),
    ("late February 2024", d(2024, 2, 21), d(2024, 3, 1)),
    ("at the end of March", d(2026, 3, 21), d(2026, 4, 1)),
    ("in 2023", d(2023, 1, 1), d(2024, 1, 1)),
    ("during 2023", d(2023, 1, 1), d(2024, 1, 1)),
    ("mid-2023", d(2023, 5, 1), d(2023, 9, 1)),
    ("in the 1990s", d(1990, 1, 1), d(2000, 1, 1)),
    ("in spring 2023", d(2023, 3, 1), d(2023, 6, 1)),
    ("the summer of 2023", d(2023, 6, 1), d(2023, 9, 1)),
    ("fall 2022", d(2022, 9, 1), d(2022, 12, 1)),
    ("winter 2023", d(2023, 12, 1), d(2024, 3, 1)),
    ("last summer", d(2026, 6, 1), d(2026, 9, 1)),
    ("last autumn", d(2025, 9, 1), d(2025, 12, 1)),
    ("last winter", d(2025, 12, 1), d(2026, 3, 1)),
    ("in early summer 2021", d(2021, 6, 1), d(2021, 7, 1)),
    # weekdays: the most recent such day before today
    ("on Monday", d(2026, 11, 23), d(2026, 11, 24)),
    ("last Tuesday", d(2026, 11, 17), d(2026, 11, 18)),
    ("on Friday", d(2026, 11, 20), d(2026, 11, 21)),
    ("Sunday evening", d(2026, 11, 22), d(2026, 11, 23)),
    # ISO dates
    ("2023-03-01", d(2023, 3, 1), d(2023, 3, 2)),
    ("notes on 2023/03/01 about rent", d(2023, 3, 1), d(2023, 3, 2)),
    ("in 2023-03-01", d(2023, 3, 1), d(2023, 3, 2)),
    ("2023-03", d(2023, 3, 1), d(2023, 4, 1)),
    ("what happened 2023-03-01 14:30?", d(2023, 3, 1), d(2023, 3, 2)),
    # before / after / since / until
    ("before March 2023", None, d(2023, 3, 1)),
    ("after March 2023", d(2023, 4, 1), None),
    ("since last week", d(2026, 11, 16), None),
    ("since 2020", d(2020, 1, 1), None),
    ("since March", d(2026, 3, 1), None),
    ("until yesterday", None, d(2026, 11, 24)),
    ("prior to 2023-03-01", None, d(2023, 3, 1)),
    ("before 3 days ago", None, d(2026, 11, 21)),
    ("since 2 weeks ago", d(2026, 11, 10), None),
    ("since 2 hours ago", d(2026, 11, 24, 13, 30), None),
    ("since 2023-03-01T14:30", d(2023, 3, 1, 14, 30), None),
    ("before 2023-03-01T14:30Z", None, datetime(2023, 3, 1, 9, 30, tzinfo=TZ)),
    # ranges
    ("from March to May 2023", d(2023, 3, 1), d(2023, 6, 1)),
    ("from December to February 2024", d(2023, 12, 1), d(2024, 3, 1)),
    ("between 2020 and 2022", d(2020, 1, 1), d(2023, 1, 1)),
    ("from 2020-2022", d(2020, 1, 1), d(2023, 1, 1)),
    ("between Monday and Wednesday", d(2026, 11, 16), d(2026, 11, 19)),
    ("from Friday to Monday", d(2026, 11, 20), d(2026, 11, 24)),
    ("from 2020 until now", d(2020, 1, 1), None),
    ("between March 2023 and now", d(2023, 3, 1), None),
    ("from 2020 to today", d(2020, 1, 1), d(2026, 11, 25)),
    ("between spring and fall 2023", d(2023, 3, 1), d(2023, 12, 1)),
    # holidays
    ("what did I get for Christmas", d(2025, 12, 24), d(2025, 12, 27)),
    ("last Christmas", d(2025, 12, 24), d(2025, 12, 27)),
    ("on Christmas Eve 2023", d(2023, 12, 24), d(2023, 12, 25)),
    ("on New Year's Eve", d(2025, 12, 31), d(2026, 1, 1)),
    ("Easter 2024", d(2024, 3, 31), d(2024, 4, 1)),
    ("at Thanksgiving", d(2025, 11, 27), d(2025, 11, 28)),
    ("on Halloween", d(2026, 10, 31), d(2026, 11, 1)),
    # soft windows
    ("the other day", d(2026, 11, 10), d(2026, 11, 24)),
    ("what did I buy recently", d(2026, 10, 25), d(2026, 11, 25)),
]


@pytest.mark.parametrize(("query", "since", "until"), WINDOWS)
def test_windows(query: str, since: datetime | None, until: datetime | None) -> None:
    h = hint(query)
    assert (h.since, h.until) == (since, until)


def test_enough_window_cases() -> None:
    assert len(WINDOWS) >= 50


@pytest.mark.parametrize(
    "query",
    [
        "may I ask about the march of progress",
        "I know the answer",
        "second-hand books",
        "a few good men",
        "maybe later",
        "the mayday call",
        "march on, soldiers",
        "May I borrow this?",
        "this may be wrong",
        "the last may be first",
        "the march was long",
        "June said hi",
        "I fall asleep",
        "in the fall of Rome",
        "the snow melted",
        "what did I do before I moved",
        "a day at the beach",
        "my Monday routine",
        "I got used to it",
        "the 2023 budget",
        "route 66 and 3 may",
        "the christmas tree",
        "easter eggs",
        "February 30",
        "2023-02-30",
        "",
    ],
)
def test_no_time_expression(query: str) -> None:
    assert parse_time_hint(query, NOW) is None


@pytest.mark.parametrize(
    ("query", "matched", "rest"),
    [
        ("what did I eat yesterday?", "yesterday", "what did I eat?"),
        ("Yesterday, what did I eat?", "Yesterday", "what did I eat?"),
        ("what did I buy in March 2023 at the market", "in March 2023", "what did I buy at the market"),
        ("notes from last week's meeting", "from last week", "notes meeting"),
        ("what did I decide before March 2023?", "before March 2023", "what did I decide?"),
        ("notes from March", "from March", "notes"),
        ("what did I cook between Monday and Wednesday", "between Monday and Wednesday", "what did I cook"),
        ("what is my latest job", "latest", "what is my job"),
        ("where do I currently live", "currently", "where do I live"),
        ("what did I used to eat", "used to", "what did I eat"),
        ("the first time I went skiing", "the first time", "I went skiing"),
        ("what was I up to yesterday", "yesterday", "what was I up to"),
        ("back in 2019 I lived in Oslo", "back in 2019", "I lived in Oslo"),
        ("what's my most recent address these days", "", "what's my address"),
    ],
)
def test_matched_and_removed_query(query: str, matched: str, rest: str) -> None:
    h = hint(query)
    if matched:
        assert h.matched == matched
    assert h.query == rest


@pytest.mark.parametrize(
    ("query", "recent", "old"),
    [
        ("what is my latest job", True, False),
        ("the most recent trip", True, False),
        ("where do I live currently", True, False),
        ("my current job", True, False),
        ("what do I drink nowadays", True, False),
        ("what do I read these days", True, False),
        ("where do I work now", True, False),
        ("the last time I saw Bob", True, False),
        ("the first time I met Ana", False, True),
        ("what did I originally plan", False, True),
        ("initially I wanted a dog", False, True),
        ("back when I lived in Paris", False, True),
        ("what did I used to eat", False, True),
        ("when I first met Ana", False, True),
        ("what did I buy recently", True, False),
        ("latest news from March 2023", True, False),
        ("originally, in 2019", False, True),
        ("what changed up to now", True, False),
    ],
)
def test_preferences(query: str, recent: bool, old: bool) -> None:
    h = hint(query)
    assert (h.prefer_recent, h.prefer_old) == (recent, old)


def test_preference_alone_has_no_window() -> None:
    h = hint("what is my latest job")
    assert (h.since, h.until, h.soft) == (None, None, False)
    assert h.matched == "latest"
    assert "no date window" in h.description


def test_recently_is_a_soft_window() -> None:
    h = hint("what did I buy recently")
    assert h.soft and h.prefer_recent
    assert "soft" in h.description
    assert not hint("what did I buy in March 2023").soft


def test_recently_with_a_date_uses_the_date() -> None:
    h = hint("what did I buy recently in March 2023")
    assert (h.since, h.until, h.soft, h.prefer_recent) == (d(2023, 3, 1), d(2023, 4, 1), False, True)


def test_date_inside_preference_word_is_not_counted_twice() -> None:
    h = hint("the current year")
    assert (h.since, h.until, h.prefer_recent) == (d(2026, 1, 1), d(2027, 1, 1), False)


def test_first_of_several_is_used_and_described() -> None:
    h = hint("in March 2023 and yesterday")
    assert (h.since, h.until) == (d(2023, 3, 1), d(2023, 4, 1))
    assert "several" in h.description and "'yesterday'" in h.description
    assert h.query == "and yesterday"


@pytest.mark.parametrize(
    ("query", "description"),
    [
        ("in March 2023", "March 2023 (2023-03-01 … 2023-04-01)"),
        ("before March 2023", "before March 2023 (until 2023-03-01)"),
        ("since last week", "since last week (from 2026-11-16)"),
        ("last night", "last night (2026-11-23 18:00 … 2026-11-24 06:00)"),
    ],
)
def test_description(query: str, description: str) -> None:
    assert hint(query).description == description


def test_windows_are_in_nows_timezone() -> None:
    for q in ("yesterday", "in March 2023", "3 weeks ago", "since 2020", "last summer", "2 hours ago"):
        h = hint(q)
        for dt in (h.since, h.until):
            if dt is not None:
                assert dt.utcoffset() == timedelta(hours=-5), q


def test_days_follow_nows_timezone() -> None:
    # 2026-11-25 02:00 in UTC+09:00 is still 2026-11-24 in UTC-05:00
    tokyo = timezone(timedelta(hours=9))
    h = hint("yesterday", datetime(2026, 11, 25, 2, 0, tzinfo=tokyo))
    assert h.since == datetime(2026, 11, 24, tzinfo=tokyo)
    assert h.until == datetime(2026, 11, 25, tzinfo=tokyo)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_time_hint("yesterday", datetime(2026, 11, 24, 15, 30))


def test_hint_is_frozen() -> None:
    h = hint("yesterday")
    with pytest.raises(AttributeError):
        h.since = None  # type: ignore[misc]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_never_raises(text: str) -> None:
    h = parse_time_hint(text, NOW)
    if h is not None:
        if h.since is not None and h.until is not None:
            assert h.since < h.until
        assert h.matched in text


TIME_WORDS = [
    "yesterday", "in", "March", "May", "2023", "last", "week", "the", "past", "3", "days", "ago", "a", "few", "before",
    "after", "since", "from", "to", "between", "and", "on", "Monday", "early", "summer", "winter", "of", "24th", "-",
    "latest", "first", "time", "recently", "now", "2023-03-01", "fall", "month", "year", "until", ",", "2",
]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(TIME_WORDS), max_size=8))
def test_random_time_words_give_valid_windows(words: list[str]) -> None:
    text = " ".join(words)
    h = parse_time_hint(text, NOW)
    if h is not None:
        if h.since is not None and h.until is not None:
            assert h.since < h.until, text
        assert h.matched in text
        assert len(h.query) <= len(text)
