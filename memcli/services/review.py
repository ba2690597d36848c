"""Review before remembering (``[chat] review = true``): what chat learns waits until the user approves,
rejects or rewords it (``memcli review``).

A pending fact is not used as truth anywhere: it is not a memory until approved (memcli/store/review.py
says how it is kept apart). Approving applies the decision extraction made when it was learned --
new, or refining / superseding a known fact -- against memory as it is *now*: a fact remembered word
for word meanwhile makes it a duplicate; a superseded target is followed to its current successor (two
pending corrections of one fact, approved in turn, must not leave both standing); a refined target
that is no longer current makes it a plain addition (adding is the one action that destroys nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memcli.context import Context
from memcli.errors import ExitCode, MemcliFailure, usage_error
from memcli.records import Memory, from_epoch, ts
from memcli.store import PendingRow, ReviewQueue, Succession, blob_to_vec, content_hash

MAX_HOPS = 50  # a chain of supersessions longer than this is a loop in damaged data, not history


@dataclass(frozen=True)
class PendingFact:
    id: str  # also the memory's id once approved
    space: str
    text: str
    learned_at: datetime
    source: str  # chat:SESSION
    tags: tuple[str, ...]  # fact, preference or event
    action: str  # what approving does: "add", "refine" or "supersede" (target)
    target_id: str | None
    target_text: str | None  # the fact it would replace, as it reads now (None: gone)
    said: str | None  # the user's message it was learned from (None: that turn is gone)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "learned_at": ts(self.learned_at), "tags": list(self.tags)}


@dataclass(frozen=True)
class ReviewList:
    space: str
    facts: tuple[PendingFact, ...]  # oldest first

    def to_json(self) -> dict[str, Any]:
        return {"space": self.space, "count": len(self.facts), "pending": [f.to_json() for f in self.facts]}


@dataclass(frozen=True)
class Decision:
    fact: PendingFact
    outcome: str  # added, refined, superseded, duplicate (known meanwhile: nothing written), rejected
    memory_id: str | None  # the memory it became
    target_id: str | None  # what it refined, superseded or duplicates
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.fact.id,
            "text": self.fact.text,
            "outcome": self.outcome,
            "memory_id": self.memory_id,
            "target_id": self.target_id,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ReviewResult:
    decisions: tuple[Decision, ...]

    @property
    def approved(self) -> int:
        return sum(d.outcome in ("added", "refined", "superseded") for d in self.decisions)

    @property
    def rejected(self) -> int:
        return sum(d.outcome == "rejected" for d in self.decisions)

    def to_json(self) -> dict[str, Any]:
        return {"approved": self.approved, "rejected": self.rejected, "decisions": [d.to_json() for d in self.decisions]}


def pending(ctx: Context, space: str | None = None) -> ReviewList:
    """The facts of ``space`` waiting for review, oldest first."""
    sp = ctx.space(space)
    return ReviewList(sp, tuple(_describe(ctx, ReviewQueue(ctx.store).pending_facts(sp))))


def approve(ctx: Context, refs: Sequence[str] = (), *, every: bool = False, space: str | None = None) -> ReviewResult:
    """Make pending facts memories (``every``: all of ``space``'s), applying what each replaces."""
    rows = _resolve(ctx, refs, every, space)
    return ReviewResult(tuple(_approve(ctx, row, fact) for row, fact in zip(rows, _describe(ctx, rows), strict=True)))


def reject(ctx: Context, refs: Sequence[str] = (), *, every: bool = False, space: str | None = None) -> ReviewResult:
    """Drop pending facts: their text is deleted, and the same words do not teach them again."""
    rows = _resolve(ctx, refs, every, space)
    facts = _describe(ctx, rows)
    ReviewQueue(ctx.store).reject_pending(rows)
    return ReviewResult(tuple(Decision(f, "rejected", None, None) for f in facts))


def edit(ctx: Context, ref: str, text: str) -> ReviewResult:
    """Approve a pending fact in the user's words (re-embedded); the learned wording is not proposed again."""
    text = " ".join(text.split())
    if not text:
        raise usage_error("the new text is empty", hint='Give the fact as you want it kept: memcli review edit ID "TEXT".')
    [row] = _resolve(ctx, [ref], False, None)
    if text != row.text:
        emb = ctx.embedder
        row = ReviewQueue(ctx.store).reword_pending(row, text, emb.embed_documents([text])[0], emb.model_id)
    [fact] = _describe(ctx, [row])
    return ReviewResult((_approve(ctx, row, fact, edited=True),))


# -- internals ----------------------------------------------------------------------------------------
def _resolve(ctx: Context, refs: Sequence[str], every: bool, space: str | None) -> list[PendingRow]:
    """The pending facts named (all are checked before anything changes), or every one of ``space``."""
    if every == bool(refs):
        raise usage_error(
            "give pending fact ids or --all, not both" if every else "give pending fact ids, or --all",
            hint="`memcli review` lists what waits for review, with ids.",
        )
    if every:
        return ReviewQueue(ctx.store).pending_facts(ctx.space(space))
    rows: dict[str, PendingRow] = {}
    for ref in refs:
        found = ReviewQueue(ctx.store).find_pending(ref.strip().lower())
        if not found:
            raise MemcliFailure(
                f"no fact waiting for review with id {ref!r}",
                hint="`memcli review` lists what waits for review; an approved fact is a memory (`memcli show ID`).",
                code=ExitCode.NOT_FOUND,
            )
        if len(found) > 1:
            raise usage_error(f"id {ref!r} is ambiguous", hint="Give more characters of the id.")
        rows.setdefault(found[0].id, found[0])
    return list(rows.values())


def _describe(ctx: Context, rows: Sequence[PendingRow]) -> list[PendingFact]:
    """Pending rows as the user reviews them: with the fact they would replace and the words they came from."""
    known = ctx.store.catalog.by_ids({i for r in rows for i in (r.replaces, r.derived_from) if i is not None})
    out = []
    for r in rows:
        target = known.get(r.replaces) if r.replaces else None
        turn = known.get(r.derived_from) if r.derived_from else None
        said = turn.text.removeprefix("user: ") if turn is not None and turn.state == "active" else None
        fact = PendingFact(
            id=r.id, space=r.space, text=r.text, learned_at=from_epoch(r.recorded_at),  # type: ignore[arg-type]
            source=r.source, tags=r.tags, action=r.relation or "add", target_id=r.replaces,
            target_text=target.text if target is not None else None, said=said,
        )  # fmt: skip
        out.append(fact)
    return out


def _approve(ctx: Context, row: PendingRow, fact: PendingFact, *, edited: bool = False) -> Decision:
    store = ctx.store
    same = store.catalog.by_hash(row.space, content_hash(row.text))
    if same is not None and same.current:
        ReviewQueue(store).reject_pending([row], remember=False)  # known already: nothing to write, nothing to hold against it
        return Decision(fact, "duplicate", None, same.id, "remembered word for word meanwhile")
    succeeds, why = _succession(ctx, row)
    if row.embed_model == store.catalog.meta("embed_model"):
        vector, model_id = blob_to_vec(row.embedding), row.embed_model
    else:  # the store moved to another embedding model (`memcli reindex`) since the fact was learned
        emb = ctx.embedder
        vector, model_id = emb.embed_documents([row.text])[0], emb.model_id
    links = [(row.derived_from, "derived_from")] if row.derived_from and store.catalog.by_ids([row.derived_from]) else []
    mid = ReviewQueue(store).approve_pending(row, vector, model_id, succeeds=succeeds, links=links)
    outcome = {"refine": "refined", "supersede": "superseded"}[succeeds.reason] if succeeds is not None else "added"
    reason = "; ".join(x for x in ("edited" if edited else "", why) if x)
    return Decision(fact, outcome, mid, succeeds.old.id if succeeds is not None else None, reason)


def _succession(ctx: Context, row: PendingRow) -> tuple[Succession | None, str]:
    """What approving ``row`` retires, as memory stands now, and why that differs from the plan (or "")."""
    if row.replaces is None or row.relation is None:
        return None, ""
    cat = ctx.store.catalog
    old: Memory | None = cat.by_ids([row.replaces]).get(row.replaces)
    hops = 0
    # A contradicted fact that was replaced meanwhile: the correction now contradicts its successor.
    while row.relation == "supersede" and old is not None and not old.current and old.superseded_by and hops < MAX_HOPS:
        old = cat.by_ids([old.superseded_by]).get(old.superseded_by)
        hops += 1
    if old is None or old.state != "active" or not old.current:
        return None, f"the fact it would {row.relation} is no longer current: added as new"
    why = "" if old.id == row.replaces else f"{row.relation}s {old.id}, which replaced the fact it was learned against"
    return Succession(old, row.valid_until, row.relation), why
