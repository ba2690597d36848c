"""What a consolidate run reports: one record per step and one for the run (``--json`` prints it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memcli.errors import MemcliFailure
from memcli.records import ts
from memcli.services.budget import ChangeBudget, OverBudget, no_effect

LLM_STEPS = frozenset({"reconcile", "summarise", "profile"})
# The starter model (what chat uses when none is configured) is not used here: its merge and
# supersede decisions are unreliable (benchmarks/RESULTS.md, learning), and this runs unattended.
NO_MODEL = "no chat model configured (the starter model is not used for consolidation)"


@dataclass(frozen=True)
class StepReport:
    step: str
    status: str  # done, planned (dry run), skipped, failed, "over budget" (it took nothing out)
    reason: str = ""  # why it was skipped or failed
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    llm_calls: int = 0
    failures: tuple[str, ...] = ()  # items that failed (quarantined LLM answers...): nothing applied
    examples: tuple[str, ...] = ()
    writes: int = 0  # memory changes made and seen when read back (merges, retirements, summaries, profile)
    unconfirmed: int = 0  # changes the store accepted that reading back did not show (also in failures)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "status": self.status,
            "reason": self.reason,
            "counts": dict(self.counts),
            "seconds": round(self.seconds, 3),
            "llm_calls": self.llm_calls,
            "failures": list(self.failures),
            "examples": list(self.examples),
            "writes": self.writes,
            "unconfirmed": self.unconfirmed,
        }


@dataclass(frozen=True)
class ConsolidateReport:
    space: str
    started_at: datetime
    dry_run: bool
    llm: str | None  # the chat model used (None: LLM steps skipped)
    since: str  # what "changed" meant: "last run", "everything", or the --since time
    steps: tuple[StepReport, ...]
    seconds: float
    recovered: int = 0  # changes a killed run left half-done, completed first
    log_file: str = ""
    budget: ChangeBudget | None = None  # the run's change budget (services/budget.py)
    taken_out: int = 0  # memories the run took out (merged away, retired), within the budget or forced
    over_budget: OverBudget | None = None  # the step that hit the budget: it and later steps took nothing out
    forced: bool = False  # --force let the run take out more than the budget

    @property
    def llm_calls(self) -> int:
        return sum(s.llm_calls for s in self.steps)

    @property
    def failures(self) -> int:
        return sum(len(s.failures) for s in self.steps) + sum(1 for s in self.steps if s.status == "failed")

    @property
    def no_effect(self) -> bool:
        """Steps made changes and none of them shows in the store: a broken write path, not a quiet night."""
        return not self.dry_run and sum(s.writes for s in self.steps) == 0 and sum(s.unconfirmed for s in self.steps) > 0

    def failure(self) -> MemcliFailure | None:
        """The run's verdict for a caller that exits with a code: no effect, or over the change budget."""
        if self.no_effect:
            return no_effect("memcli consolidate", sum(s.unconfirmed for s in self.steps))
        if self.over_budget is not None and not self.dry_run:
            return self.over_budget.failure(look="memcli consolidate --dry-run", go="memcli consolidate --force")
        return None

    @property
    def needs_attention(self) -> bool:
        """Failures, a step held back by the change budget, or LLM steps skipped for a reason the user
        did not choose (no model configured)."""
        return (
            self.failures > 0
            or self.over_budget is not None
            or any(s.status == "skipped" and s.reason != "--no-llm" for s in self.steps if s.step in LLM_STEPS)
        )

    @property
    def missing_model(self) -> bool:
        """LLM steps were skipped because no chat model is configured."""
        return any(s.reason == NO_MODEL for s in self.steps)

    def step(self, name: str) -> StepReport:
        return next(s for s in self.steps if s.step == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "started_at": ts(self.started_at),
            "dry_run": self.dry_run,
            "llm": self.llm,
            "since": self.since,
            "seconds": round(self.seconds, 3),
            "llm_calls": self.llm_calls,
            "failures": self.failures,
            "recovered": self.recovered,
            "needs_attention": self.needs_attention,
            "log_file": self.log_file,
            "budget": None if self.budget is None else {**self.budget.to_json(), "taken_out": self.taken_out},
            "over_budget": None if self.over_budget is None else self.over_budget.to_json(),
            "forced": self.forced,
            "no_effect": self.no_effect,
            "steps": [s.to_json() for s in self.steps],
        }
