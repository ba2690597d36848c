"""Time expressions: memcli's one language for time, in recall queries and in the time flags.

:func:`parse_time_hint` finds the first date-like expression in a query ("what did I eat last Tuesday?") and
turns it into a window ``[since, until)`` (``until`` exclusive), plus a recency/age preference, in the spirit
of LongMemEval's time-aware query expansion. :func:`parse_time_window` reads a whole value (``--since "last
Christmas"``, see :mod:`memcli.text.when`) with the same rules: context words are implied there, so ``2024``,
``May``, ``Monday`` and ``Christmas`` are read alone, and ``now`` is the instant. It is pure (no I/O, no
model, standard library only; it reads the system's zone only when asked, ``local=True``) and fast (the
regular expressions are compiled at import; a query takes a few tens of microseconds).

Windows are computed in the timezone of ``now`` (which must be timezone-aware); day, month and year
boundaries fall at local midnight (with ``local=True``, at the offset the system's zone has on that date, so
a summer date read in winter is still local midnight). Weeks start on Monday (ISO). Every date-like window
ends at a local midnight, except ``last night`` and windows counted in hours or minutes.

Rules for window widths
-----------------------
* A named day (``today``, ``yesterday``, ``on Monday``, ``March 3``, ``2023-03-01``) is that calendar day;
  so is a date-time (``2023-03-01T14:30``, zone optional), though ``before|after|since|until`` cut at its instant.
  ``tonight``, ``this morning|afternoon|evening`` and ``earlier today`` are today; ``last night`` is
  yesterday 18:00 to today 06:00.
* ``this|last week|month|year`` (and ``previous``, ``current``, ``the week|month|year before last``,
  ``this|last weekend``) are calendar periods. ``last weekend`` is the Saturday and Sunday before the
  current week's Monday.
* ``the last|past N days|weeks|months|years|hours`` (also ``in the last``, ``over the past``, ``within the
  last``, ``this past week``, ``in recent weeks``) is rolling: from local midnight N units before today
  (or exactly N hours before now) to the end of today; ``few`` is 3. ``last week`` alone is the calendar week, but ``the
  last week``, ``in the last week`` and ``past week`` are the rolling 7 days.
* ``N units ago`` is centred on the day N units before today (calendar months and years) and is one unit
  wide: the day itself for days, ±3 days for weeks (7 days), ±15 days for months (31 days), ±182 days for
  years (365 days); ``N hours|minutes ago`` is centred on that instant, ±30 minutes or ±30 seconds. Vague
  counts (``a few`` = 3, ``a couple`` = 2, ``several`` = 4) widen it to ± one unit (3 days for days, 15 for
  weeks, 61 for months, 731 for years, 2 hours for hours, 2 minutes for minutes).
* A month (``in March``, ``March 2023``, ``Sept 2023``) is the calendar month; ``early|mid|late`` (also
  ``the beginning|middle|end of``) are its thirds: days 1-10, 11-20, 21-end. A year (``in 2023``) is the
  calendar year and its thirds are Jan-Apr, May-Aug, Sep-Dec. ``the 1990s`` is the decade.
* Seasons are northern-hemisphere meteorological seasons: spring Mar-May, summer Jun-Aug, autumn/fall
  Sep-Nov, winter Dec-Feb; ``winter 2023`` is the winter that begins in December 2023.
  ``early|mid|late summer`` is the first, second or third month.
* Without a year: a month or a month-and-day is the most recent one that has started (``in November`` said
  in November is the current month), ``last March`` the most recent March before the current month,
  ``this June`` the one in the current year; a season likewise (``last summer`` is the most recent summer
  that has ended); a weekday (``on Monday``, ``last Tuesday``) is the most recent such day before today.
* Holidays need context (``last Christmas``, ``for Christmas``, ``on Halloween``, ``Easter 2024``) and are
  the day itself, except ``Christmas`` (24-26 December) and ``New Year`` (31 December - 1 January);
  ``Thanksgiving`` is the US one (fourth Thursday of November), ``Easter`` is Western Easter Sunday.
  Without a year: the most recent that has started (``last ...``: that has ended; ``this ...``: this year's).
* ``recently``/``lately`` set ``prefer_recent`` and, when no date is given, a *soft* window of the last
  30 days (``soft=True``: rank by it rather than filter). ``the other day`` is a soft window of the 14
  days before today.

``before X`` (also ``prior to``, ``earlier than``) gives ``until`` = the start of X; ``until|till X`` gives
``until`` = the end of X; ``since X`` gives ``since`` = the start of X; ``after X`` (``later than``) gives
``since`` = the end of X; the other side stays None. For ``N units ago`` the cut is the day N units ago
itself (for hours and minutes, the instant) rather than the window's edge, and for a date-time its instant. ``from X to Y`` and ``between X and Y`` give a range (``from X until
now`` is ``since X``); a year stated only at the end applies to both ends (``from March to May 2023``), and
a weekday range ends on the most recent such day (``between Monday and Wednesday`` said on a Tuesday is
last week's Monday to Wednesday). ``from X`` alone is just X ("notes from March"). An event instead of a
date (``before I moved``) cannot be resolved here: that part yields nothing (the caller may resolve events
later), though another date in the query still counts ("before I moved last year" gives last year).

Ambiguous words are only read as time with context: ``May``/``March``/``Mar`` need a day, a year,
``in``/``during``/``the month of``, ``early|mid|late`` or ``before|after|since|until`` (``last March`` is
read, ``last may`` and ``this may`` are not); other abbreviations need context too, and only the full names
January, February, July and September-December are read alone. ``fall`` needs a year or
``in|during|last|this`` (and not ``the fall of Rome``); weekdays need ``on|last|this past`` or a following
``morning|afternoon|evening|night``. A whole value (:func:`parse_time_window`) is a time by definition, so
there all of these are read alone.

If several date-like expressions occur, the first (leftmost) is used and the description names the others.
"""

from __future__ import annotations

import calendar
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import MAXYEAR, MINYEAR, UTC, date, datetime, timedelta, timezone

__all__ = ["TimeHint", "TimeWindow", "parse_time_hint", "parse_time_window"]


@dataclass(frozen=True)
class TimeHint:
    """What a query says about time.

    ``since``/``until`` are the window (``until`` exclusive), timezone-aware, either may be None.
    ``soft`` is True when the window comes from a vague word (``recently``, ``the other day``) and should
    rank results rather than filter them.
    """

    since: datetime | None
    until: datetime | None
    prefer_recent: bool
    prefer_old: bool
    matched: str
    description: str
    query: str
    soft: bool = False


@dataclass(frozen=True)
class TimeWindow:
    """A whole value read as one time expression (see :func:`parse_time_window`).

    ``[since, until)`` is its window; ``at`` is the moment it names: where ``since X`` in a query would
    cut (the window's start, or for a date-time, ``now`` and ``N units ago`` the point itself).
    """

    since: datetime
    until: datetime
    at: datetime
    description: str


@dataclass(frozen=True)
class _Env:
    now: datetime
    today: date
    year: int | None = None  # year borrowed from the other end of a range
    loose: bool = False  # the second end of a range, or a whole value: context words are implied
    local: bool = False  # now is the system's local time: each date gets its own offset (summer time)
    whole: bool = False  # the text is a whole value: a date datetime cannot hold is an error, not silence


@dataclass(frozen=True)
class _Window:
    since: datetime
    until: datetime
    label: str
    point: datetime | None = None  # "N ago": where before/after/since cut
    explicit_year: int | None = None  # the year written in the expression
    borrow: bool = False  # a yearless month/day/season: may take the year of a range's other end
    soft: bool = False


_Resolver = Callable[[re.Match[str], _Env], "_Window | None"]

_FLAGS = re.IGNORECASE | re.ASCII
# The date patterns run case-sensitively on an ASCII-lowercased copy of the query (same length, so the
# positions carry over): about twice as fast as re.IGNORECASE.
_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

_MONTHS: dict[str, int] = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9,
    "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}  # fmt: skip
_MONTH_NAMES = ["", "January", "February", "March", "April", "May", "June",
                "July", "August", "September", "October", "November", "December"]  # fmt: skip
_AMBIGUOUS_MONTHS = frozenset({"may", "march", "mar"})
_BARE_MONTHS = frozenset({"january", "february", "july", "september", "october", "november", "december"})
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_NUMBERS: dict[str, int] = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30,
}  # fmt: skip
_VAGUE: dict[str, int] = {"few": 3, "couple": 2, "several": 4}
_ORDINAL_WORDS = (
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh",
    "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth", "nineteenth",
    "twentieth",
)  # fmt: skip
_ORDINALS: dict[str, int] = {w: i + 1 for i, w in enumerate(_ORDINAL_WORDS)}
_ORDINALS.update({f"twenty {w}": 20 + n for w, n in list(_ORDINALS.items())[:9]})
_ORDINALS.update({"thirtieth": 30, "thirty first": 31})
_SEASONS: dict[str, int] = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}  # first month
_SEASON_NAMES = {3: "spring", 6: "summer", 9: "autumn", 12: "winter"}


def _alt(words: list[str] | dict[str, int]) -> str:
    return "|".join(r"[\s-]+".join(map(re.escape, w.split())) for w in sorted(words, key=len, reverse=True))


_MON = rf"(?P<mon>{_alt(_MONTHS)})\b\.?"
_YEAR = r"(?:19|20)\d\d"
_NUM = rf"\d+|(?:a\s+)?few|(?:a\s+)?couple(?:\s+of)?|several|{_alt([w for w in _NUMBERS if w not in ('a', 'an')])}"
_UNIT = r"(?P<unit>hour|day|week|month|year)s?\b"
_PART = r"(?:(?P<part>early|mid|late)[\s-]+|(?:the\s+)?(?P<part2>beginning|start|middle|end)\s+of\s+)"
# before/after/since/until cut a window; from/between start a range. "up to" and "through" are left out on
# purpose ("what was I up to yesterday", "went through last week's notes").
_OP = r"(?:\b(?P<op>before|after|since|until|till|prior\s+to|earlier\s+than|later\s+than|from|between)\s+)?"


def _compile(core: str) -> re.Pattern[str]:
    return re.compile(_OP + core, re.ASCII)


_ISO = _compile(
    r"\b(?:(?:on|in)\s+)?(?P<y>\d{4})(?P<sep>[-/.])(?P<m>\d{1,2})(?:(?P=sep)(?P<d>\d{1,2})"
    r"(?:[t\s](?P<hh>\d{1,2}):(?P<mi>\d\d)(?::(?P<ss>\d\d)(?:\.(?P<frac>\d+))?)?(?P<tz>z|[+-]\d\d:?\d\d)?)?)?"
    r"\b(?![-/.:]\d)"
)
_RELDAY = _compile(
    r"\b(?P<w>(?:the\s+)?day\s+before\s+yesterday|yesterday|today|tonight|this\s+(?:morning|afternoon|evening)"
    r"|earlier\s+today|last\s+night|the\s+other\s+day)\b(?:\s+(?:morning|afternoon|evening|night)\b)?"
)
_CALENDAR = _compile(
    r"\b(?:(?:earlier|so\s+far|during|in|over)\s+)?(?:(?P<rel>this\s+past|this|last|previous|the\s+previous|current"
    r"|the\s+current)\s+(?P<unit>weekend|week|month|year)|the\s+(?P<unit2>week|month|year)\s+before\s+last)\b"
)
_ROLLING = _compile(
    rf"\b(?:(?P<ctx>in|over|within|during|for|from)\s+)?(?P<the>the\s+)?(?P<w>this\s+past|last|past|previous|recent"
    rf"|preceding)\s+(?:(?P<n>{_NUM})\s+)?{_UNIT}"
)
_AGO = _compile(
    rf"\b(?:(?:about|around|roughly|approximately|some|just|only|nearly|almost)\s+)?"
    rf"(?P<n>{_NUM}|an?)\s+(?P<unit>minute|hour|day|week|month|year)s?\s+(?:ago|back)\b"
)
_MONTH = _compile(
    r"\b(?:(?P<ctx>(?:back\s+)?in|during|throughout|sometime\s+in|around|on|at|last|this)\s+)?"
    rf"{_PART}?(?P<themonth>the\s+month\s+of\s+)?{_MON}"
    r"(?:\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?\b(?![:.]\d))?(?:,?\s+(?:of\s+)?(?P<y>" + _YEAR + r")\b(?![-/.:]\d))?"
)
_DAYFIRST = _compile(
    rf"\b(?:(?P<on>on)\s+)?(?P<the>the\s+)?(?:(?P<d>\d{{1,2}})(?P<ord>st|nd|rd|th)?|(?P<dw>{_alt(_ORDINALS)}))"
    rf"\s+(?P<of>of\s+)?{_MON}(?:,?\s+(?P<y>{_YEAR})\b(?![-/.:]\d))?"
)
_YEARX = _compile(
    r"\b(?:(?P<ctx>(?:back\s+)?in|during|throughout|sometime\s+in|around|circa|at)\s+)?"
    rf"{_PART}?(?P<theyear>the\s+year\s+)?(?P<y>{_YEAR})\b(?![-/.:]\d\d?\b)"
)
_DECADE = _compile(r"\b(?:(?:back\s+)?in\s+|during\s+)?(?:the\s+)?(?P<dec>(?:19|20)\d0)'?s\b")
_SEASON = _compile(
    r"\b(?:(?P<ctx>(?:back\s+)?in|during|throughout|over|last|this)\s+)?(?P<the>the\s+)?"
    rf"(?:(?P<part>early|mid|late)[\s-]+)?(?P<s>spring|summer|autumn|fall|winter)\b(?:'s)?"
    rf"(?:\s+(?:of\s+)?(?P<y>{_YEAR})\b(?![-/.:]\d))?"
)
_WEEKDAY = _compile(
    rf"\b(?:(?P<ctx>on|last|this\s+past|past|previous)\s+)?(?P<wd>{_alt(_WEEKDAYS)})\b"
    r"(?:\s+(?P<tod>morning|afternoon|evening|night)\b)?"
)
_OF_NOUN = re.compile(r"\s+of\b", _FLAGS)
_HOLIDAY = _compile(
    r"\b(?:(?P<ctx>last|this|on|at|over|during|around|for|(?:back\s+)?in)\s+)?"
    r"(?P<hol>christmas\s+eve|christmas(?:\s+day)?|xmas|new\s+year'?s?\s+eve|new\s+year'?s?(?:\s+day)?|halloween"
    r"|valentine'?s?(?:\s+day)?|thanksgiving|easter(?:\s+sunday)?)\b"
    rf"(?:\s+(?:of\s+)?(?P<y>{_YEAR})\b(?![-/.:]\d))?"
)
_TO_NOW = re.compile(r"(?:now|(?:the\s+)?present|date)\b", re.ASCII)
_CONNECT = re.compile(r"\s*(?:(?:and|to|until|till|through|thru)\s+|[-\u2013\u2014]\s*)", _FLAGS)

_PREFS = re.compile(
    r"\b(?:(?P<recent>latest|most\s+recent(?:ly)?|currently|current|nowadays|these\s+days|right\s+now"
    r"|(?:until|till|up\s+to)\s+now|now"
    r"|(?:the\s+)?last\s+time|newest)"
    r"|(?P<soft>recently|lately|of\s+late)"
    r"|(?P<old>(?:the\s+(?:very\s+)?)?first\s+time|first\s+ever|originally|initially|at\s+first|back\s+when"
    r"|(?<!\bget\s)(?<!\bgot\s)(?<!\bgetting\s)(?<!\bbe\s)(?<!\bbeen\s)(?<!\bam\s)(?<!'m\s)(?<!\bis\s)(?<!'s\s)"
    r"(?<!\bare\s)(?<!'re\s)(?<!\bwas\s)(?<!\bwere\s)used\s+to|earliest|oldest|(?:a\s+)?long\s+(?:time\s+)?ago"
    r"|(?:many\s+)?years\s+ago|in\s+the\s+beginning|(?<=\bi\s)first|(?<=\bwe\s)first))\b",
    re.ASCII,
)


def _norm(s: str) -> str:
    return " ".join(s.lower().replace("-", " ").split())


def _local(env: _Env, naive: datetime) -> datetime:
    """A wall-clock time where ``now`` is."""
    if not env.local:
        return naive.replace(tzinfo=env.now.tzinfo)
    try:
        return naive.astimezone()  # the local zone's offset on that date, not today's
    except (ValueError, OverflowError, OSError) as e:  # year 1 or 9999 on the wrong side of UTC
        raise OverflowError(str(e)) from e


def _at(env: _Env, d: date, hour: int = 0) -> datetime:
    return _local(env, datetime(d.year, d.month, d.day, hour))


def _add_months(d: date, n: int) -> date:
    y, m0 = divmod(d.year * 12 + d.month - 1 + n, 12)
    if not MINYEAR <= y <= MAXYEAR:
        raise OverflowError("date value out of range")  # out of range, unlike an impossible date (ValueError)
    return date(y, m0 + 1, min(d.day, calendar.monthrange(y, m0 + 1)[1]))


def _count(text: str) -> tuple[int, bool] | None:
    """A count and whether it is vague ("a few")."""
    s = _norm(text)
    if s.isdigit():
        return int(s), False
    if s in _NUMBERS:
        return _NUMBERS[s], False
    s = s.removeprefix("a ").removesuffix(" of")
    return (_VAGUE[s], True) if s in _VAGUE else None


def _day_span(
    env: _Env,
    start: date,
    end: date,
    label: str,
    *,
    point: date | None = None,
    explicit_year: int | None = None,
    borrow: bool = False,
    soft: bool = False,
) -> _Window:
    """A window from local midnight of ``start`` to local midnight of ``end``."""
    at_point = None if point is None else _at(env, point)
    return _Window(_at(env, start), _at(env, end), label, at_point, explicit_year, borrow, soft)


def _r_iso(m: re.Match[str], env: _Env) -> _Window | None:
    y, mo = int(m["y"]), int(m["m"])
    if m["d"] is None:
        if len(m["m"]) != 2 or m["sep"] == ".":
            return None
        start = date(y, mo, 1)
        return _day_span(env, start, _add_months(start, 1), f"{_MONTH_NAMES[mo]} {y}", explicit_year=y)
    day = date(y, mo, int(m["d"]))
    w = _day_span(env, day, day + timedelta(days=1), day.isoformat(), explicit_year=y)
    return w if m["hh"] is None else replace(w, point=_clock(m, day, env))


def _clock(m: re.Match[str], day: date, env: _Env) -> datetime:
    """The instant an ISO date-time names: in its own zone, else where ``now`` is."""
    micro = int((m["frac"] or "0")[:6].ljust(6, "0"))
    naive = datetime(day.year, day.month, day.day, int(m["hh"]), int(m["mi"]), int(m["ss"] or 0), micro)
    tz = m["tz"]
    if tz is None:
        return _local(env, naive)
    if tz == "z":
        return naive.replace(tzinfo=UTC)
    offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[-2:]))
    return naive.replace(tzinfo=timezone(-offset if tz[0] == "-" else offset))


def _r_relday(m: re.Match[str], env: _Env) -> _Window | None:
    w, t = _norm(m["w"]).removeprefix("the "), env.today
    if w == "yesterday":
        return _day_span(env, t - timedelta(days=1), t, "yesterday")
    if w == "day before yesterday":
        return _day_span(env, t - timedelta(days=2), t - timedelta(days=1), "the day before yesterday")
    if w == "last night":
        return _Window(_at(env, t - timedelta(days=1), 18), _at(env, t, 6), "last night")
    if w == "other day":
        return _day_span(env, t - timedelta(days=14), t, "the other day (soft: the 14 days before today)", soft=True)
    return _day_span(env, t, t + timedelta(days=1), "today")


def _r_calendar(m: re.Match[str], env: _Env) -> _Window | None:
    t = env.today
    if m["unit2"]:
        unit, off, label = m["unit2"].lower(), -2, f"the {m['unit2'].lower()} before last"
    else:
        rel, unit = _norm(m["rel"]).removeprefix("the "), m["unit"].lower()
        if rel == "this past" and unit != "weekend":
            return None
        off = 0 if rel in ("this", "current") else -1
        label = f"{'this' if off == 0 else 'last'} {unit}"
    monday = t - timedelta(days=t.weekday())
    if unit == "week":
        start = monday + timedelta(weeks=off)
        return _day_span(env, start, start + timedelta(days=7), label)
    if unit == "weekend":
        start = monday + timedelta(days=5, weeks=off)
        return _day_span(env, start, start + timedelta(days=2), label)
    if unit == "month":
        start = _add_months(t.replace(day=1), off)
        return _day_span(env, start, _add_months(start, 1), label)
    return _day_span(env, date(t.year + off, 1, 1), date(t.year + off + 1, 1, 1), label)


def _r_rolling(m: re.Match[str], env: _Env) -> _Window | None:
    w, unit, plural = _norm(m["w"]), m["unit"].lower(), m.group().lower().endswith("s")
    if m["n"]:
        c = _count(m["n"])
        if c is None:
            return None
        n = c[0]
    elif w in ("past", "this past") or (w == "last" and (m["the"] or m["ctx"])) or (w == "recent" and plural):
        n = _VAGUE["few"] if plural else 1
    else:
        return None
    t, until = env.today, _at(env, env.today + timedelta(days=1))
    label = f"the last {n} {unit}s" if n != 1 else f"the last {unit}"
    if unit == "hour":
        return _Window(env.now - timedelta(hours=n), until, label)
    if unit == "day":
        start = t - timedelta(days=n)
    elif unit == "week":
        start = t - timedelta(weeks=n)
    else:
        start = _add_months(t, -n * (12 if unit == "year" else 1))
    return _Window(_at(env, start), until, label)


_HALF_DAYS = {"day": 0, "week": 3, "month": 15, "year": 182}
_VAGUE_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}


def _r_ago(m: re.Match[str], env: _Env) -> _Window | None:
    c = _count(m["n"])
    if c is None:
        return None
    n, vague = c
    unit = m["unit"].lower()
    what = f"{_norm(m['n'])} {unit}{'s' if n != 1 or vague else ''} ago"
    if unit in ("minute", "hour"):
        one = timedelta(minutes=1) if unit == "minute" else timedelta(hours=1)
        point = env.now - n * one
        half = one if vague else one / 2
        return _Window(point - half, point + half, what, point=point)
    t = env.today
    if unit == "day":
        p = t - timedelta(days=n)
    elif unit == "week":
        p = t - timedelta(weeks=n)
    else:
        p = _add_months(t, -n * (12 if unit == "year" else 1))
    h = (_VAGUE_DAYS if vague else _HALF_DAYS)[unit]
    return _day_span(env, p - timedelta(days=h), p + timedelta(days=h + 1), what, point=p)


def _part_of(m: re.Match[str]) -> str | None:
    if m["part"]:
        return m["part"].lower()
    p2 = (m["part2"] or "").lower()
    return {"beginning": "early", "start": "early", "middle": "mid", "end": "late"}.get(p2)


def _month_day(env: _Env, mon: int, day: int, year: int | None) -> _Window | None:
    explicit = year
    if year is None:
        year = env.year
    if year is None:  # the most recent such date not after today (Feb 29 may go back a few years)
        for y in range(env.today.year, env.today.year - 9, -1):
            try:
                if date(y, mon, day) <= env.today:
                    year = y
                    break
            except ValueError:
                continue
        if year is None:
            return None
    d = date(year, mon, day)
    return _day_span(env, d, d + timedelta(days=1), f"{day} {_MONTH_NAMES[mon]} {year}",
                     explicit_year=explicit, borrow=explicit is None and env.year is None)  # fmt: skip


def _r_month(m: re.Match[str], env: _Env) -> _Window | None:
    word = m["mon"].lower()
    mon = _MONTHS[word]
    ctx = _norm(m["ctx"] or "")
    part = _part_of(m)
    year = int(m["y"]) if m["y"] else None
    if m["d"]:
        if ctx == "at":
            return None
        return _month_day(env, mon, int(m["d"]), year)
    if ctx == "on" or (ctx == "at" and not part):
        return None
    if year is None and not (part or m["op"] or env.loose):
        strong = ctx in ("in", "back in", "during", "throughout", "sometime in") or bool(m["themonth"])
        if word in _AMBIGUOUS_MONTHS:
            strong = strong or (ctx == "last" and word != "may")
            if not strong:
                return None
        elif not ctx and word not in _BARE_MONTHS:
            return None
    explicit = year
    if year is None:
        year = env.year
    if year is None:
        t = env.today
        if ctx == "last":
            year = t.year if mon < t.month else t.year - 1
        elif ctx == "this":
            year = t.year
        else:
            year = t.year if mon <= t.month else t.year - 1
    start = date(year, mon, 1)
    end = _add_months(start, 1)
    label = f"{_MONTH_NAMES[mon]} {year}"
    if part:
        lo, hi = {"early": (1, 11), "mid": (11, 21), "late": (21, 0)}[part]
        end = date(year, mon, hi) if hi else end
        start = date(year, mon, lo)
        label = f"{part} {label}"
    return _day_span(env, start, end, label, explicit_year=explicit, borrow=explicit is None and env.year is None)


def _r_dayfirst(m: re.Match[str], env: _Env) -> _Window | None:
    if m["dw"]:
        if not (m["the"] and m["of"]):
            return None
        day = _ORDINALS[_norm(m["dw"])]
    else:
        day = int(m["d"])
    context = m["on"] or m["the"] or m["ord"] or m["of"] or m["y"] or m["op"] or env.loose
    if m["mon"].lower() in _AMBIGUOUS_MONTHS and not context:
        return None
    return _month_day(env, _MONTHS[m["mon"].lower()], day, int(m["y"]) if m["y"] else None)


def _r_year(m: re.Match[str], env: _Env) -> _Window | None:
    ctx, part = _norm(m["ctx"] or ""), _part_of(m)
    if not (ctx or part or m["theyear"] or m["op"] or env.loose) or (ctx == "at" and not part):
        return None
    y = int(m["y"])
    start, end, label = date(y, 1, 1), date(y + 1, 1, 1), str(y)
    if part:
        first = {"early": 1, "mid": 5, "late": 9}[part]
        start, end, label = date(y, first, 1), _add_months(date(y, first, 1), 4), f"{part} {y}"
    return _day_span(env, start, end, label, explicit_year=y)


def _r_decade(m: re.Match[str], env: _Env) -> _Window | None:
    y = int(m["dec"])
    return _day_span(env, date(y, 1, 1), date(y + 10, 1, 1), f"the {y}s", explicit_year=y)


def _r_season(m: re.Match[str], env: _Env) -> _Window | None:
    word, ctx = m["s"].lower(), _norm(m["ctx"] or "")
    year = int(m["y"]) if m["y"] else None
    if year is None and not (ctx or m["op"] or env.loose or (m["part"] and word != "fall")):
        return None
    fall_context = env.loose or ctx in ("in", "during", "last", "this")
    if word == "fall" and year is None and (not fall_context or _OF_NOUN.match(m.string, m.end())):
        return None  # "I fall", "in the fall of Rome"
    first = _SEASONS[word]
    explicit = year
    if year is None:
        year = env.year
    if year is None:
        t = env.today

        def span(y: int) -> tuple[date, date]:
            s = date(y, first, 1)
            return s, _add_months(s, 3)

        years = range(t.year, t.year - 3, -1)
        if ctx == "last":
            year = next(y for y in years if span(y)[1] <= t)
        elif ctx == "this":
            containing = [y for y in (t.year, t.year - 1) if span(y)[0] <= t < span(y)[1]]
            year = containing[0] if containing else t.year
        else:
            year = next(y for y in years if span(y)[0] <= t)
    start = date(year, first, 1)
    end = _add_months(start, 3)
    label = f"{_SEASON_NAMES[first]} {year}" + (f"-{year + 1}" if first == 12 else "")
    if m["part"]:
        part = m["part"].lower()
        start = _add_months(start, {"early": 0, "mid": 1, "late": 2}[part])
        end = _add_months(start, 1)
        label = f"{part} {label}"
    return _day_span(env, start, end, label, explicit_year=explicit, borrow=explicit is None and env.year is None)


def _easter(y: int) -> date:
    """Western Easter Sunday (the anonymous Gregorian algorithm)."""
    a, b, c = y % 19, y // 100, y % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l7 = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l7) // 451
    month, day = divmod(h + l7 - 7 * m + 114, 31)
    return date(y, month, day + 1)


def _holiday(name: str, y: int) -> tuple[date, date, str]:
    one = timedelta(days=1)
    if name == "christmas eve":
        return date(y, 12, 24), date(y, 12, 25), f"Christmas Eve {y}"
    if name == "christmas day":
        return date(y, 12, 25), date(y, 12, 26), f"Christmas Day {y}"
    if name in ("christmas", "xmas"):
        return date(y, 12, 24), date(y, 12, 27), f"Christmas {y}"
    if name.startswith("new year") and name.endswith("eve"):
        return date(y, 12, 31), date(y + 1, 1, 1), f"New Year's Eve {y}"
    if name.startswith("new year") and name.endswith("day"):
        return date(y, 1, 1), date(y, 1, 2), f"New Year's Day {y}"
    if name.startswith("new year"):
        return date(y - 1, 12, 31), date(y, 1, 2), f"New Year {y}"
    if name == "halloween":
        return date(y, 10, 31), date(y, 11, 1), f"Halloween {y}"
    if name.startswith("valentine"):
        return date(y, 2, 14), date(y, 2, 15), f"Valentine's Day {y}"
    if name == "thanksgiving":
        first = date(y, 11, 1)
        d = first + timedelta(days=(3 - first.weekday()) % 7 + 21)  # the fourth Thursday of November (US)
        return d, d + one, f"Thanksgiving {y}"
    d = _easter(y)
    return d, d + one, f"Easter {y}"


def _r_holiday(m: re.Match[str], env: _Env) -> _Window | None:
    ctx = _norm(m["ctx"] or "")
    if not (ctx or m["y"] or m["op"] or env.loose):
        return None  # "the christmas tree", "easter eggs"
    name = _norm(m["hol"]).replace("'", "")
    if m["y"]:
        y = int(m["y"])
    else:
        t = env.today
        years = range(t.year + 1, t.year - 3, -1)
        if ctx == "this":
            y = t.year
        elif ctx == "last":
            y = next(y for y in years if _holiday(name, y)[1] <= t)
        else:
            y = next(y for y in years if _holiday(name, y)[0] <= t)
    start, end, label = _holiday(name, y)
    return _day_span(env, start, end, label, explicit_year=int(m["y"]) if m["y"] else None)


def _r_weekday(m: re.Match[str], env: _Env) -> _Window | None:
    if not (m["ctx"] or m["tod"] or m["op"] or env.loose):
        return None
    wd = _WEEKDAYS.index(m["wd"].lower())
    back = (env.today.weekday() - wd) % 7 or 7
    d = env.today - timedelta(days=back)
    return _day_span(env, d, d + timedelta(days=1), f"{_WEEKDAYS[wd].capitalize()} {d.isoformat()}")


# Speed: a pattern is only searched when the query holds one of its trigger words (every match of it
# contains one as a whole [a-z0-9]+ token); "#4" stands for any token that starts with four digits.
_UNITS = frozenset(f"{u}{s}" for u in ("hour", "day", "week", "month", "year") for s in ("", "s"))
_AGO_UNITS = _UNITS | {"minute", "minutes"}
_MONTH_WORDS = frozenset(_MONTHS)
_DIGITS4 = frozenset({"#4"})
_PATTERNS: list[tuple[re.Pattern[str], _Resolver, frozenset[str]]] = [
    (_ISO, _r_iso, _DIGITS4),
    (_RELDAY, _r_relday, frozenset({"yesterday", "today", "tonight", "morning", "afternoon", "evening", "night", "day"})),
    (_ROLLING, _r_rolling, _UNITS),
    (_CALENDAR, _r_calendar, frozenset({"week", "weekend", "month", "year"})),
    (_AGO, _r_ago, _AGO_UNITS),
    (_MONTH, _r_month, _MONTH_WORDS),
    (_DAYFIRST, _r_dayfirst, _MONTH_WORDS),
    (_YEARX, _r_year, _DIGITS4),
    (_DECADE, _r_decade, _DIGITS4),
    (_SEASON, _r_season, frozenset(_SEASONS)),
    (_WEEKDAY, _r_weekday, frozenset(_WEEKDAYS)),
    (
        _HOLIDAY,
        _r_holiday,
        frozenset({"christmas", "xmas", "new", "halloween", "valentine", "valentines", "thanksgiving", "easter"}),
    ),
]
_PREF_WORDS = frozenset(
    {"latest", "recent", "recently", "currently", "current", "nowadays", "days", "now", "time", "newest", "lately", "late"}
    | {"first", "ever", "originally", "initially", "when", "used", "earliest", "oldest", "ago", "beginning"}
)
_TOKEN = re.compile(r"[a-z0-9]+")


def _tokens(low: str) -> set[str]:
    tokens = set(_TOKEN.findall(low))
    if any(t[:4].isdigit() for t in tokens):
        tokens.add("#4")
    return tokens


@dataclass(frozen=True)
class _Found:
    start: int
    end: int
    order: int
    window: _Window
    op: str
    match: re.Match[str]


def _resolve(resolver: _Resolver, m: re.Match[str], env: _Env) -> _Window | None:
    try:
        return resolver(m, env)
    except OverflowError:  # a date outside datetime's range
        if env.whole and m.start() == 0 and m.end() == len(m.string):
            raise  # the whole value is a time memcli cannot hold: say so rather than "cannot read"
        return None
    except (ValueError, StopIteration):  # an impossible date ("2023-02-30")
        return None


def _first(order: int, text: str, pos: int, env: _Env) -> _Found | None:
    pattern, resolver, _ = _PATTERNS[order]
    while True:
        m = pattern.search(text, pos)
        if m is None:
            return None
        w = _resolve(resolver, m, env)
        if w is not None:
            return _Found(m.start(), m.end(), order, w, _norm(m["op"] or ""), m)
        pos = m.start() + 1


def _best(found: list[_Found]) -> _Found | None:
    return min(found, key=lambda f: (f.start, f.start - f.end, f.order), default=None)


def _fmt(dt: datetime) -> str:
    return (
        dt.date().isoformat()
        if (dt.hour, dt.minute, dt.second, dt.microsecond) == (0, 0, 0, 0)
        else dt.strftime("%Y-%m-%d %H:%M")
    )


def _range_end(text: str, first: _Found, env: _Env) -> tuple[int, _Window, _Window] | None:
    """``from X to Y`` / ``between X and Y``: the end position and both windows."""
    conn = _CONNECT.match(text, first.end)
    if conn is None:
        return None
    loose = replace(env, loose=True)
    ends: list[tuple[int, _Window, re.Match[str], _Resolver]] = []
    for pattern, resolver, _ in _PATTERNS:
        m = pattern.match(text, conn.end())
        if m is not None and not m["op"] and (w := _resolve(resolver, m, loose)) is not None:
            ends.append((m.end(), w, m, resolver))
    if not ends:
        return None
    end, second, _, resolver = max(ends, key=lambda e: e[0])
    start = first.window
    if _PATTERNS[first.order][1] is _r_weekday and resolver is _r_weekday and second.until <= start.since:
        # "between Monday and Wednesday" said on a Tuesday: the Monday before last Wednesday
        days = 7 * ((start.since - second.since).days // 7 + 1)
        d = start.since.date() - timedelta(days=days)
        start = _day_span(env, d, d + timedelta(days=1), f"{_WEEKDAYS[d.weekday()].capitalize()} {d.isoformat()}")
    if start.borrow and second.explicit_year is not None:
        resolver = _PATTERNS[first.order][1]
        for y in (second.explicit_year, second.explicit_year - 1):
            again = _resolve(resolver, first.match, replace(env, year=y))
            if again is not None and again.since < second.until:
                start = again
                break
    if not start.since < second.until:
        return None
    return end, start, second


@dataclass(frozen=True)
class _DateHint:
    since: datetime | None
    until: datetime | None
    at: datetime | None  # the moment the expression names; None when open-ended (before/after/since/until X)
    start: int
    end: int
    description: str
    soft: bool


def _date_hint(text: str, original: str, env: _Env, tokens: set[str]) -> _DateHint | None:
    """The first date-like expression in ``text`` (the lowercased query): window, span and description."""
    found = [
        f
        for i, (_, _, gate) in enumerate(_PATTERNS)
        if not gate.isdisjoint(tokens) and (f := _first(i, text, 0, env)) is not None
    ]
    chosen = _best(found)
    if chosen is None:
        return None
    w, op, end = chosen.window, chosen.op, chosen.end
    since: datetime | None = w.since
    until: datetime | None = w.until
    at: datetime | None = w.point or w.since
    if op in ("from", "between"):
        rng = _range_end(text, chosen, env)
        conn = _CONNECT.match(text, end)
        to_now = _TO_NOW.match(text, conn.end()) if conn is not None else None
        if rng is not None:
            end, first, second = rng
            at = since = first.since
            until = second.until
            desc = f"{first.label} to {second.label} ({_fmt(since)} … {_fmt(until)})"
        elif to_now is not None:  # "from 2020 until now", "between 2020 and now"
            end, since, until, at = to_now.end(), w.since, None, None
            desc = f"from {w.label} until now (from {_fmt(since)})"
        else:
            desc = f"{w.label} ({_fmt(w.since)} … {_fmt(w.until)})"
    elif op in ("before", "prior to", "earlier than"):
        since, until, at = None, w.point or w.since, None
        desc = f"before {w.label} (until {_fmt(until)})"
    elif op in ("until", "till"):
        since, until, at = None, w.point or w.until, None
        desc = f"until {w.label} (until {_fmt(until)})"
    elif op in ("after", "later than"):
        since, until, at = w.point or w.until, None, None
        desc = f"after {w.label} (from {_fmt(since)})"
    elif op == "since":
        since, until, at = w.point or w.since, None, None
        desc = f"since {w.label} (from {_fmt(since)})"
    else:
        desc = f"{w.label} ({_fmt(w.since)} … {_fmt(w.until)})"
    others: list[_Found] = []
    for f in found:
        g = f if f.start >= end else _first(f.order, text, end, env)
        if g is not None:
            others.append(g)
    if others:
        names = ", ".join(f"'{original[g.start : g.end]}'" for g in sorted(others, key=lambda g: (g.start, g.order)))
        desc += f"; used the first of several time expressions (also: {names})"
    return _DateHint(since, until, at, chosen.start, end, desc, w.soft)


_SPACES = re.compile(r"\s+")
_SPACE_PUNCT = re.compile(r"\s+([?.!,;:])")
_PUNCT_RUN = re.compile(r"([,;:])(?:\s*[,;:])+")
_PUNCT_END = re.compile(r"[,;:]+([?.!])")


def _tidy(text: str) -> str:
    s = _SPACES.sub(" ", text)
    s = _SPACE_PUNCT.sub(r"\1", s)
    s = _PUNCT_RUN.sub(r"\1", s)
    s = _PUNCT_END.sub(r"\1", s)
    return s.strip(" ,;:")


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("reading time expressions needs a timezone-aware now")


def parse_time_window(text: str, now: datetime, *, local: bool = False) -> TimeWindow | None:
    """Read ``text`` as one time expression, all of it (a flag value); None when it is not one.

    It is the language of :func:`parse_time_hint`, with the context words implied (``2024``, ``May``,
    ``Monday``, ``Christmas`` are read alone), plus ``now``, an instant (its window is empty). Open-ended
    (``before March``, ``since 2020``) and vague values (``recently``, ``the other day``) are not windows.
    ``local`` says ``now`` is the system's local time, so each date gets the local offset it has then
    (summer time). Raises OverflowError when the text is a time outside the dates a datetime can hold.
    """
    _require_aware(now)
    value = text.strip()
    low = value.translate(_LOWER)
    if low == "now":
        return TimeWindow(now, now, now, "now")
    env = _Env(now, now.date(), loose=True, local=local, whole=True)
    hint = _date_hint(low, value, env, _tokens(low))
    if hint is None or (hint.start, hint.end) != (0, len(low)) or hint.soft:
        return None
    if hint.since is None or hint.until is None or hint.at is None:
        return None
    return TimeWindow(hint.since, hint.until, hint.at, hint.description)


def parse_time_hint(query: str, now: datetime) -> TimeHint | None:
    """Read the time expressions in ``query``; None when there are none. ``now`` must be timezone-aware."""
    _require_aware(now)
    env = _Env(now, now.date())
    spans: list[tuple[int, int]] = []
    parts: list[str] = []
    matched = ""
    since = until = None
    soft = False
    low = query.translate(_LOWER)
    tokens = _tokens(low)
    hint = _date_hint(low, query, env, tokens)
    if hint is not None:
        since, until, soft = hint.since, hint.until, hint.soft
        start, end = hint.start, hint.end
        matched = query[start:end]
        parts.append(hint.description)
        cut = end + 2 if query[end : end + 2].lower() in ("'s", "\u2019s") else end
        spans.append((start, cut))
    blanked = low if hint is None else low[: spans[0][0]] + " " * (spans[0][1] - spans[0][0]) + low[spans[0][1] :]
    recent_words: list[str] = []
    old_words: list[str] = []
    soft_word = ""
    for m in _PREFS.finditer(blanked) if not _PREF_WORDS.isdisjoint(tokens) else ():
        spans.append(m.span())
        word = query[m.start() : m.end()]
        if not matched:
            matched = word
        if m["old"]:
            old_words.append(word)
        else:
            recent_words.append(word)
            if m["soft"] and not soft_word:
                soft_word = word
    if hint is None and not recent_words and not old_words:
        return None
    if hint is None and soft_word:
        try:
            since, until = _at(env, env.today - timedelta(days=30)), _at(env, env.today + timedelta(days=1))
            soft = True
            parts.append(f"{soft_word} (soft: the last 30 days, {_fmt(since)} … {_fmt(until)})")
        except OverflowError:  # a now at the very edge of datetime's range
            since = until = None
    if recent_words:
        parts.append("prefer recent memories (" + ", ".join(f"'{w}'" for w in recent_words) + ")")
    if old_words:
        parts.append("prefer older memories (" + ", ".join(f"'{w}'" for w in old_words) + ")")
    if hint is None and not soft_word:
        parts.append("no date window")
    kept: list[str] = []
    pos = 0
    for a, b in sorted(spans):
        kept.append(query[pos:a])
        pos = max(pos, b)
    kept.append(query[pos:])
    return TimeHint(
        since=since,
        until=until,
        prefer_recent=bool(recent_words),
        prefer_old=bool(old_words),
        matched=matched,
        description="; ".join(parts),
        query=_tidy(" ".join(kept)),
        soft=soft,
    )
