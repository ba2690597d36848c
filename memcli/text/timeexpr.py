"""Dates and simple time expressions for --when / --since / --until.

Accepted: ISO dates and date-times (``2024-03-01``, ``2024-03-01T14:30``, with ``Z`` or an offset),
``now``, ``today``, ``yesterday``, ``N minutes|hours|days|weeks|months|years ago``, ``last week|month|year``.
A date or time without a zone is local time. Everything returned is timezone-aware.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from memcli.errors import usage_error

UNITS = {"minute": 60.0, "hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0, "month": 30.44 * 86400.0, "year": 365.25 * 86400.0}
AGO = re.compile(r"(\d+|an?|one|two|three|four|five|six|seven|eight|nine|ten)\s+(minute|hour|day|week|month|year)s?\s+ago")
WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}


def local_now() -> datetime:
    return datetime.now().astimezone()


def start_of_day(dt: datetime) -> datetime:
    return dt.replace(hour=0, minute=0, second=0, microsecond=0)


HINT = "Use e.g. 2024-03-01, 2024-03-01T14:30, yesterday, '3 days ago', 'last week'."


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """Parse a point in time; raises a usage error that lists the accepted forms."""
    try:
        dt = _parse_when(text, now)
        dt.astimezone(UTC)  # what the store keeps: it must exist in UTC too (years 1-9999)
    except (OverflowError, ValueError):  # "1065518456 minutes ago", "0001-01-01" east of UTC
        raise usage_error(f"{text!r} is outside the dates memcli can use (years 1 to 9999)", hint=HINT) from None
    return dt


def _parse_when(text: str, now: datetime | None) -> datetime:
    now = now or local_now()
    s = text.strip().lower()
    if s == "now":
        return now
    if s == "today":
        return start_of_day(now)
    if s == "yesterday":
        return start_of_day(now) - timedelta(days=1)
    m = AGO.fullmatch(s)
    if m:
        n = int(m.group(1)) if m.group(1).isdigit() else WORDS[m.group(1)]
        return now - timedelta(seconds=n * UNITS[m.group(2)])
    m = re.fullmatch(r"last (week|month|year)", s)
    if m:
        unit = m.group(1)
        today = start_of_day(now)
        if unit == "week":
            return today - timedelta(days=today.weekday() + 7)
        if unit == "month":
            first = today.replace(day=1)
            return (first - timedelta(days=1)).replace(day=1)
        return today.replace(year=today.year - 1, month=1, day=1)
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise usage_error(f"cannot read {text!r} as a date or time", hint=HINT) from None
    return dt if dt.tzinfo is not None else dt.astimezone()
