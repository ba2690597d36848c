"""`memcli prune`: let faded memories go (to the trash), and empty the trash of what has sat there long.

A plan is built first (what would go, with its score, age, recalls and why) and applied only when the
caller says so; applying re-checks every memory under the write lock, so one recalled, pinned or
restored since the plan was shown is left alone. Only the kinds in ``[lifecycle] prune_kinds``
(conversation turns and summaries) fade unless the caller names kinds: notes, facts and the profile are
what the user wrote or said on purpose. Never pruned, whatever their score:

* pinned memories (the user said keep this);
* profile memories (the user portrait chat relies on);
* memories recalled within ``[lifecycle] protect_recalled_days``;
* retired facts (superseded or refined): they are the history ``recall --as-of`` and ``memcli history``
  answer from, and recall never returns them, so they would otherwise fade for being history.

Pruned memories go to the trash (``memcli restore`` brings them back) unless ``purge``; the trash
itself is emptied of memories trashed more than ``[lifecycle] trash_max_age_days`` ago.

Applying is refused (ExitCode.OVER_BUDGET, nothing changed) when it would take out more than the change
budget (services/budget.py) unless ``force``; and every change is read back: a run whose plan had work
and that changed nothing fails with ExitCode.NO_EFFECT. A run whose candidates were all left alone
because they changed since the plan (recalled, pinned, restored) did what it should: that is success.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from memcli.context import Context
from memcli.records import Kind, Memory, PurgeProof, ts
from memcli.services.budget import ChangeBudget, OverBudget, no_effect
from memcli.services.retention import DAY, Retention, RetentionParams, assess
from memcli.services.scrub import scrub_and_prove

PROTECTIONS = ("pinned", "profile", "recently_recalled", "retired")


@dataclass(frozen=True)
class PruneCandidate:
    memory: Memory
    retention: Retention
    why: str  # in words: what made it fade

    def to_json(self) -> dict[str, Any]:
        m = self.memory
        return {
            "id": m.id,
            "space": m.space,
            "kind": m.kind.value,
            "text": m.text,
            "retention": self.retention.to_json(),
            "recalls": m.access_count,
            "last_access": ts(m.last_access),
            "recorded_at": ts(m.recorded_at),
            "why": self.why,
        }


@dataclass(frozen=True)
class PrunePlan:
    space: str
    now: datetime
    threshold: float
    kinds: tuple[str, ...]  # the kinds that may fade: those named, else [lifecycle] prune_kinds
    older_than_days: float | None
    candidates: tuple[PruneCandidate, ...]  # faded, lowest retention first
    expired_trash: tuple[Memory, ...]  # in the trash longer than trash_max_age_days
    trash_max_age_days: float  # 0 = the trash is never emptied by prune
    scored: int  # active memories looked at
    protected: dict[str, int]  # faded but kept, by reason (PROTECTIONS)
    budget: ChangeBudget

    def over_budget(self, *, purge: bool = False) -> OverBudget | None:
        """Would applying this plan take out more than an unattended run may? (None: it fits.)"""
        return self.budget.check("prune", len(self.candidates), "erase" if purge else "move to the trash")

    def to_json(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "now": ts(self.now),
            "threshold": self.threshold,
            "kinds": list(self.kinds),
            "older_than_days": self.older_than_days,
            "scored": self.scored,
            "protected": dict(self.protected),
            "candidates": [c.to_json() for c in self.candidates],
            "trash_max_age_days": self.trash_max_age_days,
            "expired_trash": [m.id for m in self.expired_trash],
            "budget": {**self.budget.to_json(), "over": self.over_budget() is not None},
        }


@dataclass(frozen=True)
class PruneResult:
    plan: PrunePlan
    applied: bool  # False: a plan only, nothing changed
    purged: bool  # the candidates were erased instead of trashed
    pruned: tuple[str, ...]  # ids trashed (or purged)
    emptied: tuple[str, ...]  # ids erased from the trash for age
    skipped: tuple[str, ...]  # candidates that changed since the plan (recalled, pinned, restored, gone)
    removed: tuple[str, ...] = ()  # what a purge erased, in words
    proof: PurgeProof | None = None  # when something was erased: where it was scrubbed, and the scan
    unconfirmed: tuple[str, ...] = ()  # changes the store accepted that did not show when read back
    forced: bool = False  # applied over the change budget (--force)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.plan.to_json(),
            "proof": None if self.proof is None else self.proof.to_json(),
            "applied": self.applied,
            "purged": self.purged,
            "pruned": list(self.pruned),
            "emptied": list(self.emptied),
            "skipped": list(self.skipped),
            "removed": list(self.removed),
            "unconfirmed": list(self.unconfirmed),
            "forced": self.forced,
        }


def _protection(m: Memory, now: float, protect_days: float) -> str | None:
    if m.pinned:
        return "pinned"
    if m.kind is Kind.PROFILE:
        return "profile"
    if m.last_access is not None and now - m.last_access.timestamp() < protect_days * DAY:
        return "recently_recalled"
    if not m.current:
        return "retired"
    return None


def _why(r: Retention, m: Memory, threshold: float) -> str:
    if r.since == "last recall":
        when = f"last recalled {r.age_days:.0f} days ago ({m.access_count} recalls)"
    else:
        when = f"recorded {r.age_days:.0f} days ago, never recalled"
    return f"{when}; strength {r.strength_days:.0f} days, retention {r.score:.3f} < {threshold:g}"


def plan_prune(
    ctx: Context,
    *,
    space: str | None = None,
    kinds: Sequence[Kind] = (),
    older_than: float | None = None,
    threshold: float | None = None,
    now: datetime | None = None,
) -> PrunePlan:
    """What prune would do, changing nothing. ``kinds``: the kinds that may fade (default ``[lifecycle]
    prune_kinds``; naming them also limits which trash is emptied); ``older_than``: only memories not
    recalled or recorded in that many days (on top of the threshold); ``threshold`` overrides
    ``[lifecycle] prune_threshold``."""
    from memcli.errors import usage_error

    ls = ctx.settings.lifecycle
    params = RetentionParams.from_settings(ls)
    space = ctx.space(space)
    threshold = ls.prune_threshold if threshold is None else threshold
    if not 0 <= threshold < 1:
        raise usage_error(f"the threshold must be at least 0 and below 1, got {threshold:g}", hint="e.g. --threshold 0.05")
    if older_than is not None and older_than < 0:
        raise usage_error(f"--older-than must be 0 or more days, got {older_than:g}")
    ref = now or datetime.now(UTC)
    at = ref.timestamp()
    named = tuple(dict.fromkeys(k.value for k in kinds))
    # What the user wrote on purpose fades only when they name its kind; the trash is emptied of every
    # kind unless they narrowed the command (what sits there was already given up).
    kind_values = named or tuple(dict.fromkeys(ls.prune_kinds))
    cat = ctx.store.catalog
    candidates: list[PruneCandidate] = []
    protected = dict.fromkeys(PROTECTIONS, 0)
    scored = 0
    for m in cat.each_memory(space, kind_values):
        scored += 1
        r = assess(m, at, params)
        if r.score >= threshold or (older_than is not None and r.age_days < older_than):
            continue
        reason = _protection(m, at, ls.protect_recalled_days)
        if reason is not None:
            protected[reason] += 1
            continue
        candidates.append(PruneCandidate(m, r, _why(r, m, threshold)))
    candidates.sort(key=lambda c: (c.retention.score, c.memory.id))
    expired: list[Memory] = []
    if ls.trash_max_age_days > 0:
        cutoff = at - ls.trash_max_age_days * DAY
        expired = cat.trashed_before(space, named, cutoff)
    return PrunePlan(
        space=space,
        now=ref,
        threshold=threshold,
        kinds=kind_values,
        older_than_days=older_than,
        candidates=tuple(candidates),
        expired_trash=tuple(expired),
        trash_max_age_days=ls.trash_max_age_days,
        scored=scored,
        protected=protected,
        budget=ChangeBudget.of(ctx, space),
    )


def apply_prune(ctx: Context, plan: PrunePlan, *, purge: bool = False, force: bool = False) -> PruneResult:
    """Carry out ``plan``: candidates to the trash (or erased with ``purge``), expired trash erased.
    Each memory is re-read under the write lock; one that changed since the plan is skipped. Raises
    MemcliFailure: ExitCode.OVER_BUDGET (nothing changed) when more would go than the change budget
    allows, unless ``force``; ExitCode.NO_EFFECT when there was work and none of it shows in the store."""
    store = ctx.store
    ls = ctx.settings.lifecycle
    at = plan.now.timestamp()
    with store.write_lock():
        fresh = store.catalog.by_ids([c.memory.id for c in plan.candidates] + [m.id for m in plan.expired_trash])
        doomed: list[Memory] = []
        skipped: list[str] = []
        for c in plan.candidates:
            m = fresh.get(c.memory.id)
            if (
                m is None
                or m.state != "active"
                or m.access_count != c.memory.access_count
                or _protection(m, max(at, time.time()), ls.protect_recalled_days) is not None
            ):
                skipped.append(c.memory.id)
            else:
                doomed.append(m)
        # Restored (and maybe trashed again) since the plan, or already gone: not ours to erase.
        expired = [fresh[i] for i in _still_expired(ctx, plan) if i in fresh]
        over = plan.budget.check("prune", len(doomed), "erase" if purge else "move to the trash")
        if over is not None and not force:
            raise over.failure(look="memcli prune", go="memcli prune --yes --force")
        removed: list[str] = []
        erased = [*doomed, *expired] if purge else expired
        if not purge:
            store.trash(doomed, reason="prune")
        if erased:
            removed = store.purge(erased)
        # Read back what was written: a write path that accepts and drops changes must not pass for a prune.
        after = store.catalog.by_ids([m.id for m in (*doomed, *expired)])
        pruned = [m.id for m in doomed if (m.id not in after if purge else after.get(m.id, m).state == "trashed")]
        emptied = [m.id for m in expired if m.id not in after]
        unconfirmed = [m.id for m in (*doomed, *expired) if m.id not in {*pruned, *emptied}]
    if unconfirmed and not pruned and not emptied:
        raise no_effect("memcli prune", len(unconfirmed))
    proof = scrub_and_prove(ctx, erased) if erased else None
    return PruneResult(
        plan=plan,
        applied=True,
        purged=purge,
        pruned=tuple(pruned),
        emptied=tuple(emptied),
        skipped=tuple(skipped),
        removed=tuple(removed),
        proof=proof,
        unconfirmed=tuple(unconfirmed),
        forced=force and over is not None,
    )


def _still_expired(ctx: Context, plan: PrunePlan) -> list[str]:
    ids = [m.id for m in plan.expired_trash]
    if not ids:
        return []
    cutoff = plan.now.timestamp() - plan.trash_max_age_days * DAY
    out = ctx.store.catalog.still_trashed_before(ids, cutoff)
    return [i for i in ids if i in out]


def prune(
    ctx: Context,
    *,
    space: str | None = None,
    kinds: Sequence[Kind] = (),
    older_than: float | None = None,
    threshold: float | None = None,
    now: datetime | None = None,
    apply: bool = False,
    purge: bool = False,
    force: bool = False,
) -> PruneResult:
    """Plan, and with ``apply`` carry out, a prune (see :func:`plan_prune` and :func:`apply_prune`)."""
    plan = plan_prune(ctx, space=space, kinds=kinds, older_than=older_than, threshold=threshold, now=now)
    if not apply:
        return PruneResult(plan=plan, applied=False, purged=purge, pruned=(), emptied=(), skipped=())
    return apply_prune(ctx, plan, purge=purge, force=force)
