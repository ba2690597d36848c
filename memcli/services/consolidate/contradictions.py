"""reconcile (LLM): pairs of related current facts are judged by the model. The older of a contradiction
is retired with the time it stopped being true; refinements merge into one statement; nothing is
deleted."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memcli.prompts import consolidate as prompts
from memcli.records import Kind, Memory
from memcli.services import grounding
from memcli.services.consolidate.shared import SOURCE, Feed, Run, Step, became_true, local_day, norm
from memcli.store import NewMemory
from memcli.text.short import short


@dataclass(frozen=True)
class Decision:
    """What the model said about a pair, before it is applied."""

    seq: int  # the change feed entry that led to it (held back if applying it does not take)
    older: Memory
    newer: Memory
    relation: str  # "supersede" or "refine"
    text: str  # refine: the merged statement ("" or one of the two: that one says it all)
    retires: tuple[str, ...]  # the facts applying it retires


def run(run: Run, st: Step) -> None:
    cfg = run.cfg
    feed = Feed(run, "reconcile")
    # Facts consolidate wrote itself came from a judgement over their neighbours already.
    changed = [(s, m) for s, m in feed.items([Kind.FACT.value]) if not m.source.startswith(SOURCE + ":")]
    if changed and run.over is not None and not run.dry_run:
        # Nothing this step decided could be applied: do not spend model calls on it. The cursor stays.
        st.status, st.reason = "skipped", f"the run is over its change budget ({run.over.step}); next run"
        return
    pool = run.pool(Kind.FACT.value, owned_ok=True)
    done: set[str] = set()  # retired by a decision of this run
    asked: set[frozenset[str]] = set()
    # Every pair is judged before any decision is applied: over the change budget none of them is.
    decisions: list[Decision] = []
    for seq, m in changed:
        st.add("checked")
        row = pool.row.get(m.id)
        if row is None or m.id in done:
            continue
        sims = pool.vecs @ pool.vecs[row]
        order = [int(i) for i in np.argsort(-sims) if int(i) != row and sims[i] >= cfg.related_similarity]
        partners = [pool.mems[i] for i in order if pool.mems[i].id not in done][: cfg.reconcile_candidates]
        for other in partners:
            pair = frozenset((m.id, other.id))
            if pair in asked or m.id in done:
                continue
            asked.add(pair)
            if run.duplicate(m, other, float(sims[pool.row[other.id]])):
                continue  # dedupe's business
            st.add("pairs")
            if run.dry_run:
                continue
            if not run.can_call():
                feed.defer(seq)
                st.add("deferred")
                break
            older, newer = sorted((m, other), key=lambda x: (became_true(x), x.recorded_at))
            decision = _judge(run, st, seq, older, newer)
            if decision is not None:
                decisions.append(decision)
                done.update(decision.retires)
    if not run.take_out(st, "reconcile", sum(len(d.retires) for d in decisions), "retire"):
        return  # the cursor stays: the pairs are judged again next run
    for d in decisions:
        if not _apply(run, st, d):
            feed.defer(d.seq)
    feed.commit()


def _judge(run: Run, st: Step, seq: int, older: Memory, newer: Memory) -> Decision | None:
    """Ask how two facts relate. None: nothing to do (unrelated, unusable answer, unsupported merge)."""
    prompt = prompts.RECONCILE.format(older=older.text, newer=newer.text, older_when=_day(older), newer_when=_day(newer))
    answer = run.ask(st, "reconcile", prompt, prompts.RECONCILE_SCHEMA, f"facts:{older.id},{newer.id}", 200)
    if answer is None:
        return None
    if answer["relation"] == "supersede":
        return Decision(seq, older, newer, "supersede", "", (older.id,))
    if answer["relation"] != "refine":
        st.add("unrelated")
        return None
    text = " ".join(answer["text"].split())
    if text and not grounding.supported_by(text, f"{older.text} {newer.text}").grounded:
        # The merge says something neither fact did (a small model answered "refine" as the text):
        # both facts stay as they are rather than give way to words nobody said.
        st.add("unsupported merge kept apart")
        st.example(f"merge not supported by the facts: {short(text)}")
        return None
    if not text or norm(text) == norm(newer.text):
        retires: tuple[str, ...] = (older.id,)
    elif norm(text) == norm(older.text):
        retires = (newer.id,)
    else:
        retires = (older.id, newer.id)
    return Decision(seq, older, newer, "refine", text, retires)


def _apply(run: Run, st: Step, d: Decision) -> bool:
    """Apply a decision to the facts as they are now, and read the change back. False: it did not take."""
    fresh = run.cat.by_ids([d.older.id, d.newer.id])
    if any(x.id not in fresh or fresh[x.id].state != "active" or not fresh[x.id].current for x in (d.older, d.newer)):
        return True  # changed since the model was asked: nothing to do
    older, newer = fresh[d.older.id], fresh[d.newer.id]
    what = f"{d.relation} {older.id[:8]} / {newer.id[:8]}"
    if d.relation == "supersede":
        run.store.retire(older, newer.id, valid_until=became_true(newer), reason="supersede")
        if not st.confirm(run.landed(present=[newer.id], gone=[older.id]), what):
            return False
        st.add("superseded")
        st.example(f"superseded: {short(older.text)} → {short(newer.text)}")
        return True
    if len(d.retires) == 1:
        gone, by = (older, newer) if d.retires[0] == older.id else (newer, older)
        run.store.retire(gone, by.id, valid_until=None, reason="refine")
        ok = st.confirm(run.landed(present=[by.id], gone=[gone.id]), what)
    else:
        events = [x.event_at.timestamp() for x in (older, newer) if x.event_at]
        item = NewMemory(
            text=d.text, kind=Kind.FACT, source=f"{SOURCE}:reconcile", event_at=min(events) if events else None,
            valid_from=became_true(older), tags=tuple(dict.fromkeys((*older.tags, *newer.tags))),
            importance=max(older.importance, newer.importance), pinned=older.pinned or newer.pinned,
        )  # fmt: skip
        mid = run.write(item, links=[], replaces=[(older.id, "refine"), (newer.id, "refine")], note={"op": "refine"})
        ok = st.confirm(run.landed(present=[mid], gone=list(d.retires)), what)
    if ok:
        st.add("refined")
        st.example(f"refined: {short(older.text)} + {short(newer.text)}")
    return ok


def _day(m: Memory) -> str:
    """The local day a fact became true, as the prompt shows it."""
    return local_day(became_true(m)).isoformat()
