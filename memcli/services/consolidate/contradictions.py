"""reconcile (LLM): pairs of related current facts are judged by the model. The older of a contradiction
is retired with the time it stopped being true; refinements merge into one statement; nothing is
deleted."""

from __future__ import annotations

import numpy as np

from memcli.prompts import consolidate as prompts
from memcli.records import Kind, Memory
from memcli.services import grounding
from memcli.services.consolidate.shared import SOURCE, Feed, Run, Step, became_true, local_day, norm
from memcli.store import NewMemory
from memcli.text.short import short


def run(run: Run, st: Step) -> None:
    cfg = run.cfg
    feed = Feed(run, "reconcile")
    # Facts consolidate wrote itself came from a judgement over their neighbours already.
    changed = [(s, m) for s, m in feed.items([Kind.FACT.value]) if not m.source.startswith(SOURCE + ":")]
    pool = run.pool(Kind.FACT.value, owned_ok=True)
    done: set[str] = set()  # retired in this run
    asked: set[frozenset[str]] = set()
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
            retired = _judge(run, st, older, newer)
            done.update(retired)
        feed.commit(seq)
    feed.commit()


def _judge(run: Run, st: Step, older: Memory, newer: Memory) -> list[str]:
    """Ask how two facts relate and apply the answer. Returns the ids it retired."""
    prompt = prompts.RECONCILE.format(older=older.text, newer=newer.text, older_when=_day(older), newer_when=_day(newer))
    answer = run.ask(st, "reconcile", prompt, prompts.RECONCILE_SCHEMA, f"facts:{older.id},{newer.id}", 200)
    if answer is None:
        return []
    fresh = run.cat.by_ids([older.id, newer.id])
    if any(x.id not in fresh or fresh[x.id].state != "active" or not fresh[x.id].current for x in (older, newer)):
        return []  # changed while the model was thinking
    older, newer = fresh[older.id], fresh[newer.id]
    if answer["relation"] == "supersede":
        run.store.retire(older, newer.id, valid_until=became_true(newer), reason="supersede")
        st.add("superseded")
        st.example(f"superseded: {short(older.text)} → {short(newer.text)}")
        return [older.id]
    if answer["relation"] != "refine":
        st.add("unrelated")
        return []
    text = " ".join(answer["text"].split())
    if text and not grounding.supported_by(text, f"{older.text} {newer.text}").grounded:
        # The merge says something neither fact did (a small model answered "refine" as the text):
        # both facts stay as they are rather than give way to words nobody said.
        st.add("unsupported merge kept apart")
        st.example(f"merge not supported by the facts: {short(text)}")
        return []
    if not text or norm(text) == norm(newer.text):
        run.store.retire(older, newer.id, valid_until=None, reason="refine")
        retired = [older.id]
    elif norm(text) == norm(older.text):
        run.store.retire(newer, older.id, valid_until=None, reason="refine")
        retired = [newer.id]
    else:
        events = [x.event_at.timestamp() for x in (older, newer) if x.event_at]
        item = NewMemory(
            text=text, kind=Kind.FACT, source=f"{SOURCE}:reconcile", event_at=min(events) if events else None,
            valid_from=became_true(older), tags=tuple(dict.fromkeys((*older.tags, *newer.tags))),
            importance=max(older.importance, newer.importance), pinned=older.pinned or newer.pinned,
        )  # fmt: skip
        run.write(item, links=[], replaces=[(older.id, "refine"), (newer.id, "refine")], note={"op": "refine"})
        retired = [older.id, newer.id]
    st.add("refined")
    st.example(f"refined: {short(older.text)} + {short(newer.text)}")
    return retired


def _day(m: Memory) -> str:
    """The local day a fact became true, as the prompt shows it."""
    return local_day(became_true(m)).isoformat()
