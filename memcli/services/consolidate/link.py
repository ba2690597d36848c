"""link (no LLM): changed memories get ``related`` links to their closest neighbours (A-MEM): very
close ones always, close ones when they share a topical tag."""

from __future__ import annotations

import re
import time

import numpy as np

from memcli.records import INSTRUCTION_LIKE, Memory
from memcli.services.consolidate.shared import Feed, Matrix, Run, Step

# Tags that say what a memory is rather than what it is about: sharing one is no reason to link.
STRUCTURAL_TAGS = frozenset({"chat", "daily", "weekly", "profile", "fact", "preference", "event", INSTRUCTION_LIKE})
_DATE_TAG = re.compile(r"\d{4}-(\d{2}-\d{2}|W\d{2})")  # a summary's period: every memory of it shares it


def run(run: Run, st: Step) -> None:
    cfg = run.cfg
    feed = Feed(run, "link")
    kinds = set(cfg.link_kinds)
    changed = feed.items(sorted(kinds))
    for b in range(0, len(changed), cfg.batch_size):
        batch = changed[b : b + cfg.batch_size]
        vecs = {i: np.frombuffer(blob, dtype=np.float32) for i, blob in run.cat.embeddings(m.id for _, m in batch).items()}
        pairs: list[tuple[str, str]] = []
        for _, m in batch:
            st.add("checked")
            if m.id in vecs:  # related is symmetric: stored once, lower id first
                pairs += [(min(m.id, o.id), max(m.id, o.id)) for o in _neighbours(run, m, vecs[m.id], kinds)]
        pairs = list(dict.fromkeys(pairs))
        if run.dry_run:
            st.add("links", len(run.data.missing_links(pairs, "related")))
            continue
        now = time.time()
        with run.store.write_lock(), run.cat.transaction() as db:
            added = run.cat.add_links(db, [(src, dst, "related", now) for src, dst in pairs])
            feed.save(db, batch[-1][0])  # with the links it stands for: an exact resume
        st.add("links", added)
    feed.commit()


def _neighbours(run: Run, m: Memory, vec: Matrix, kinds: set[str]) -> list[Memory]:
    cfg = run.cfg
    hits = run.store.index.query(run.space, [float(x) for x in vec], cfg.link_max * 4 + 1)
    found = run.cat.by_ids(h.id for h in hits)
    tags = {t for t in m.tags if t not in STRUCTURAL_TAGS and not _DATE_TAG.fullmatch(t)}
    out: list[Memory] = []
    for h in hits:
        o = found.get(h.id)
        if o is None or o.id == m.id or o.state != "active" or not o.current or o.kind.value not in kinds:
            continue
        if o.source == m.source and o.position is not None and m.position is not None:
            continue  # parts of one document or conversation: already ordered there
        if h.similarity >= cfg.link_similarity or (h.similarity >= cfg.related_similarity and tags & set(o.tags)):
            out.append(o)
        if len(out) >= cfg.link_max:
            break
    return out
