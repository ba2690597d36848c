"""Retention: how much of a memory is left, MemoryBank-style (an Ebbinghaus forgetting curve).

    R = exp(-t / S)
    S = base[kind] * (1 + recall_growth * recalls) * exp(importance_factor * (importance - 0.5))

``t`` is the days since the memory was last recalled, or since it was recorded if it never was; ``S``
is its strength in days. Every recall and a higher importance make S larger, so the memory fades
*slower*. (MemoryBank's published code divided by the strength the other way round, so its most
recalled memories faded fastest; ``tests/test_lifecycle.py`` pins the direction.)

Everything here is a pure function of a memory's fields and the ``[lifecycle]`` settings: the score
needs no storage of its own, it is computed where it is used (prune, recall's gentle re-rank,
consolidate's decay report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from memcli.errors import config_error
from memcli.records import Kind, Memory

if TYPE_CHECKING:
    from memcli.config import LifecycleSettings

DAY = 86400.0


@dataclass(frozen=True)
class RetentionParams:
    """The curve's parameters (``[lifecycle]``), checked once."""

    strength_days: dict[str, float]  # kind -> base strength in days
    recall_growth: float
    importance_factor: float

    @classmethod
    def from_settings(cls, s: LifecycleSettings) -> RetentionParams:
        check_settings(s)
        return cls(
            strength_days={k.value: float(getattr(s, f"strength_{k.value}")) for k in Kind},
            recall_growth=s.recall_growth,
            importance_factor=s.importance_factor,
        )


@dataclass(frozen=True)
class Retention:
    score: float  # R, in (0, 1]: 1 = just recalled or recorded
    strength_days: float  # S
    age_days: float  # t
    since: str  # what t counts from: "last recall" or "recorded"

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "strength_days": self.strength_days, "age_days": self.age_days, "since": self.since}


def check_settings(s: LifecycleSettings) -> None:
    """Values the curve cannot work with are configuration errors, named by key."""
    kinds = [k.value for k in Kind]
    for f in fields(s):
        v = getattr(s, f.name)
        bad = ""
        if f.name == "prune_kinds":
            if not v or any(k not in kinds for k in v):
                bad = f"a non-empty list of: {', '.join(kinds)}"
        elif f.name.startswith("strength_") and not v > 0:
            bad = "a number of days above 0"
        elif f.name == "prune_threshold" and not 0 <= v < 1:
            bad = "at least 0 and below 1"
        elif f.name == "max_change_fraction" and not 0 <= v <= 1:
            bad = "a fraction from 0 to 1 (0.02 = 2 %)"
        elif not f.name.startswith("strength_") and v < 0:
            bad = "0 or more"
        if bad:
            raise config_error(
                f"[lifecycle] {f.name} must be {bad}, got {v!r}",
                hint="Fix it in your config file (`memcli config path`), or remove it to use the default.",
            )


def strength(kind: Kind | str, recalls: int, importance: float, p: RetentionParams) -> float:
    """S in days: grows linearly with each recall (MemoryBank's +1 per recall, in units of the kind's
    base) and exponentially with importance around the default 0.5."""
    base = p.strength_days[Kind(kind).value]
    return base * (1.0 + p.recall_growth * max(0, recalls)) * math.exp(p.importance_factor * (importance - 0.5))


def retention(age_days: float, strength_days: float) -> float:
    """R = exp(-t / S); a memory from the future (clock skew, --now in the past) counts as fresh."""
    return math.exp(-max(0.0, age_days) / strength_days)


def assess(m: Memory, now: datetime | float, p: RetentionParams) -> Retention:
    ref = now.timestamp() if isinstance(now, datetime) else now
    start, since = (m.last_access, "last recall") if m.last_access is not None else (m.recorded_at, "recorded")
    age = max(0.0, ref - start.timestamp()) / DAY
    s = strength(m.kind, m.access_count, m.importance, p)
    return Retention(score=retention(age, s), strength_days=s, age_days=age, since=since)


def days_for(score: float, strength_days: float) -> float:
    """How many days until retention falls to ``score`` (the inverse of :func:`retention`)."""
    return -math.log(score) * strength_days
