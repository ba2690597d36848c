"""The change budget of an unattended run: how many memories one `memcli consolidate` or `memcli prune
--yes` may take out of a space before it stops and asks for ``--force``.

Why: these commands run from cron with nobody watching. A bug, a changed embedding model that makes
everything look alike, or a chat model that answers "supersede" to every pair would otherwise empty a
space in one night, and the user would find out weeks later. A run that stays under the budget goes
through; one that would go over does nothing destructive, says why, and exits with
``ExitCode.OVER_BUDGET``.

What counts: every memory the run would take out of the active, current set on its own judgement —
moved to the trash or erased by prune, merged away by dedupe, retired by reconcile (superseded, or
refined into a new statement). Not counted: consolidate's summaries and profile replaced by their own
newer version (one per period or run by construction, the old one kept as history), and prune emptying
the trash of what has sat there longer than ``trash_max_age_days`` (decided when it was trashed).

The limit is ``max(max_change_floor, floor(max_change_fraction * current))``, ``current`` being the
space's active, current memories when the run starts. The floor keeps a small space usable: at 2 % a
space under 150 memories would allow fewer than 3 changes, and its ordinary nightly work (a duplicate
merged, a fact superseded) would stop every night; what the floor lets through is restorable (trash,
retired history).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from memcli.context import Context
from memcli.errors import ExitCode, MemcliFailure


@dataclass(frozen=True)
class ChangeBudget:
    space: str
    current: int  # active, current memories of the space when the run started
    fraction: float  # [lifecycle] max_change_fraction
    floor: int  # [lifecycle] max_change_floor

    @classmethod
    def of(cls, ctx: Context, space: str) -> ChangeBudget:
        ls = ctx.settings.lifecycle
        return cls(space, ctx.store.catalog.current_count(space), ls.max_change_fraction, ls.max_change_floor)

    @property
    def limit(self) -> int:
        """How many memories one run may take out."""
        return max(self.floor, math.floor(self.fraction * self.current + 1e-9))

    def check(self, step: str, wanted: int, what: str, *, before: int = 0) -> OverBudget | None:
        """None if ``step`` may take out ``wanted`` memories after ``before`` taken out earlier in the run."""
        if before + wanted <= self.limit:
            return None
        return OverBudget(step=step, what=what, wanted=wanted, before=before, limit=self.limit, current=self.current,
                          fraction=self.fraction, space=self.space)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {"current": self.current, "fraction": self.fraction, "floor": self.floor, "limit": self.limit}


@dataclass(frozen=True)
class OverBudget:
    """A step that would have taken the run over its budget: it applied none of its changes."""

    step: str  # "prune", or the consolidate step ("dedupe", "reconcile")
    what: str  # what it would have done, in words: "merge away", "retire", "move to the trash", "erase"
    wanted: int  # memories this step would have taken out
    before: int  # memories earlier steps of the run took out (within the budget)
    limit: int
    current: int
    fraction: float
    space: str

    @property
    def excess(self) -> str:
        """What the step would do and by how much that is over the budget, in words."""
        total = self.before + self.wanted
        share = total / self.current if self.current else 1.0
        earlier = f" after {self.before} taken out earlier in the run" if self.before else ""
        return (
            f"{self.step} would {self.what} {self.wanted} of the {self.current} memories in space {self.space}{earlier}: "
            f"{total} ({share:.1%}) is over the budget of {self.limit} for one unattended run ([lifecycle] "
            f"max_change_fraction = {self.fraction:g})"
        )

    @property
    def message(self) -> str:
        return f"{self.excess}, so {self.step} took nothing out"

    def failure(self, *, look: str, go: str) -> MemcliFailure:
        """The failure to exit with: ``look`` shows what would happen, ``go`` does it anyway."""
        return MemcliFailure(
            self.message,
            hint=f"See what it would do with `{look}`; if that is right, run `{go}`. A store that often needs "
            "more can raise [lifecycle] max_change_fraction.",
            code=ExitCode.OVER_BUDGET,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "what": self.what,
            "wanted": self.wanted,
            "before": self.before,
            "limit": self.limit,
            "current": self.current,
            "fraction": self.fraction,
            "message": self.message,
        }


def no_effect(command: str, planned: int) -> MemcliFailure:
    """The failure of a run whose plan said it would change ``planned`` memories and that changed none
    (a "success" with zero changes is how a broken write path hides)."""
    return MemcliFailure(
        f"{command} was to change {planned} memories, and reading the store back shows none of them changed: "
        "the writes were accepted but did not take",
        hint="Nothing was lost. Run `memcli doctor` to check the store, then run it again; report it if it persists.",
        code=ExitCode.NO_EFFECT,
    )
