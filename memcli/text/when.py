"""Time flag values: --since, --until, --when, --as-of and --now.

A flag value is read by the recall-query language (:mod:`memcli.text.timequery`), so every form a query
understands works here too: ISO dates and date-times (``2024-03-01``, ``2024-03-01T14:30``, with ``Z`` or an
offset), ``now``, ``today``, ``yesterday``, ``N minutes|hours|days|weeks|months|years ago``, ``last
week|month|year``, ``the last 3 days``, months, seasons, weekdays and holidays (``March 2024``, ``last
summer``, ``Monday``, ``last Christmas``). The whole value must be one expression; context words are implied
(``2024``, ``May``, ``Christmas`` alone are read). Open-ended (``before March``) and vague values
(``recently``) are refused: the flag already says which side.

The rule: a value names the moment its window begins; ``--since X`` keeps what is at or after it,
``--until X`` what is before it (so ``--since yesterday --until today`` is yesterday, and ``--until
yesterday`` stops before yesterday), ``--when``, ``--as-of`` and ``--now`` are that moment. The moment is
where ``since X`` cuts in a query: the start of X's window, except a date-time, ``now`` and ``N
minutes|hours ago``, which are the instant, and ``N days|weeks|months|years ago``, which is local midnight of
the day N calendar units before today (the centre of the window a query reads for it). Without a zone a time
is local, with the offset the local zone has on that date. Everything returned is timezone-aware.
"""

from __future__ import annotations

from datetime import UTC, datetime

from memcli.errors import usage_error
from memcli.text.timequery import TimeWindow, parse_time_hint, parse_time_window

HINT = "Use e.g. 2024-03-01, 2024-03-01T14:30, yesterday, '3 days ago', 'last week', 'March 2024', 'last Christmas'."


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """The moment a flag value names (see the module docstring); a usage error that lists examples otherwise."""
    return parse_window(text, now).at


def parse_window(text: str, now: datetime | None = None) -> TimeWindow:
    """A flag value's window and moment. ``now`` defaults to the local clock (local dates then get the
    local zone's offset on that date); a usage error that lists examples when the value is not one time."""
    if now is not None and now.utcoffset() is None:
        raise ValueError("parse_window needs a timezone-aware now")
    ref = datetime.now().astimezone() if now is None else now
    try:
        window = parse_time_window(text, ref, local=now is None)
        if window is not None:
            for dt in (window.since, window.until, window.at):
                dt.astimezone(UTC)  # what the store keeps: it must exist in UTC too (years 1-9999)
    except (OverflowError, ValueError):  # "9999 years ago", "0001-01-01" east of UTC
        raise usage_error(f"{text!r} is outside the dates memcli can use (years 1 to 9999)", hint=HINT) from None
    if window is None:
        raise usage_error(f"cannot read {text!r} as a date or time{_why(text, ref)}", hint=HINT)
    return window


def _why(text: str, now: datetime) -> str:
    """What the query reader sees in a value that is not one time: a part of it, or an open-ended time."""
    found = parse_time_hint(text, now)
    if found is None or not found.matched:
        return ""
    if found.matched.strip() != text.strip():
        return f" (only {found.matched!r} in it is a time; give the time alone)"
    return " (open-ended or vague: give one date or period, e.g. 'March 2024')"
