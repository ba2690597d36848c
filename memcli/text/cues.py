"""What a memory's text holds and what a question asks for, read without a model: the cues recall's
learned fusion (services/fusion.py) weighs beside the match itself.

A question that asks *when* is answered by a text that holds a time ("last Friday", "in May"), one
that asks *where* or *who* by one that names something, one that asks *how many* by one that holds a
number. A text that holds none of these, or that only asks (a question rather than an answer),
is less often the evidence, however well its words match. All of it is regular expressions over a
short text: cheap enough for every candidate of every recall, and cached per text.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

__all__ = ["Cues", "asks_for", "cues", "question_share"]

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_PARTS = r"week|weekend|month|year|night|morning|evening|summer|winter|spring|fall|autumn"
# Month and day names only capitalised ("may" is mostly a verb); relative times in any case.
_TIME = re.compile(
    rf"\b(?:{_MONTHS}|{_DAYS}|(?:19|20)\d\d)\b|\b(?i:yesterday|today|tonight|tomorrow|ago|recently|lately|weekend"
    rf"|(?:last|next|this|past) (?:{_PARTS}|{_DAYS.lower()}))\b"
)
_NUMBER = re.compile(
    r"\b(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|hundred|thousand"
    r"|first|second|third|couple|few|several)\b",
    re.IGNORECASE,
)
# A capitalised word that does not open a sentence: a name of a person, a place, a title, a brand.
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")
_CALENDAR = frozenset(f"{_MONTHS}|{_DAYS}".split("|"))  # capitalised, yet a time rather than a name
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
_WORD = re.compile(r"\w")

_ASKS = (
    ("time", re.compile(r"^\s*(?:when|what (?:year|month|day|date|time))\b|\bhow long ago\b", re.IGNORECASE)),
    ("name", re.compile(r"^\s*(?:where|who|whom|whose)\b|\b(?:which|what) (?:city|cities|country|countries|place|places|state|town)\b", re.IGNORECASE)),
    ("number", re.compile(r"\bhow (?:many|much|long|often|old)\b", re.IGNORECASE)),
)  # fmt: skip


class Cues(NamedTuple):
    time: bool  # a date, a day, a month, a year, or a relative time ("yesterday", "last week")
    number: bool  # digits or a number word ("two", "first", "a few")
    names: frozenset[str]  # capitalised words that do not open a sentence


def asks_for(question: str) -> frozenset[str]:
    """What kind of answer ``question`` asks for: any of "time", "name", "number" (none for most)."""
    return frozenset(kind for kind, pattern in _ASKS if pattern.search(question))


@functools.lru_cache(maxsize=1 << 16)  # a recall reads ~200 candidate texts, most of them seen before
def cues(text: str) -> Cues:
    """The specifics ``text`` holds. Names include speakers and people addressed ("Thanks, Jon!"):
    the caller knows which names are only that."""
    names = frozenset(w for w in _NAME.findall(text) if w not in _CALENDAR)
    return Cues(bool(_TIME.search(text)), bool(_NUMBER.search(text)), names)


@functools.lru_cache(maxsize=1 << 16)
def question_share(text: str) -> float:
    """The share of ``text``'s sentences that end in a question mark (0 for a text without words)."""
    parts = [s.strip() for s in _SENTENCE.findall(text) if _WORD.search(s)]
    return sum(s.endswith("?") for s in parts) / len(parts) if parts else 0.0
