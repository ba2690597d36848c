"""decay (no LLM): the memories of the kinds that fade (``[lifecycle] prune_kinds``) are scored against the
prune threshold and the candidates are reported (what ``memcli prune`` would offer); nothing is pruned. The scores are computed, not stored
(memcli/services/retention.py), so a dry run and a real one do the same."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from memcli.context import Context
from memcli.services.consolidate.shared import EXAMPLES, Run, Step
from memcli.services.prune import plan_prune
from memcli.text.short import short


@dataclass(frozen=True)
class DecayReport:
    """What the decay step reports: counts and a few examples, in words. Nothing is pruned."""

    counts: dict[str, int]
    examples: tuple[str, ...]


def run(run: Run, st: Step) -> None:
    report = refresh(run.ctx, space=run.space, now=run.now)
    st.counts.update(report.counts)
    for e in report.examples[:EXAMPLES]:
        st.example(e)


def refresh(ctx: Context, *, space: str, now: datetime) -> DecayReport:
    """Score the space's memories against the prune threshold and report the candidates."""
    plan = plan_prune(ctx, space=space, now=now)
    counts = {"scored": plan.scored, "candidates": len(plan.candidates)}
    counts.update({f"protected_{k}": v for k, v in plan.protected.items() if v})
    if plan.expired_trash:
        counts["expired_trash"] = len(plan.expired_trash)
    if plan.over_budget() is not None:  # `memcli prune --yes` would refuse it without --force
        counts["prune_over_budget"] = len(plan.candidates)
    examples = tuple(f"{c.memory.id[:8]} fading ({c.why}): {short(c.memory.text)}" for c in plan.candidates[:10])
    return DecayReport(counts=counts, examples=examples)
