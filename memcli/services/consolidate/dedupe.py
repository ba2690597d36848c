"""dedupe (no LLM): near-identical facts/summaries merge into the earliest one (union of tags, earliest
event time, summed recall counts, ``merged_from`` links, audit); copies go to the trash."""

from __future__ import annotations

import numpy as np

from memcli.records import Memory
from memcli.services.consolidate.shared import SOURCE, Feed, Pool, Run, Step, norm
from memcli.text.short import short

Merge = tuple[int, Memory, list[Memory]]  # (seq of the change that found it, survivor, copies)


def run(run: Run, st: Step) -> None:
    cfg = run.cfg
    feed = Feed(run, "dedupe")
    changed = feed.items(cfg.dedupe_kinds)
    # A copy the user restored after a merge stays: they said it is not a duplicate.
    restored = run.data.merged_ids()
    pools: dict[str, Pool] = {}
    gone: set[str] = set()
    # Every merge is planned before any is made: over the change budget the step makes none of them.
    plan: list[tuple[int, list[Merge]]] = []  # (batch's last seq, its merges)
    for b in range(0, len(changed), cfg.batch_size):
        batch = changed[b : b + cfg.batch_size]
        merges: list[Merge] = []
        for seq, m in batch:
            st.add("checked")
            if m.id in gone or m.id in restored or m.source.startswith(SOURCE + ":"):
                continue  # consolidate's own summaries are one per period by construction
            pool = pools.get(m.kind.value)
            if pool is None:
                pool = pools[m.kind.value] = run.pool(m.kind.value, owned_ok=False)
            row = pool.row.get(m.id)
            if row is None:
                continue  # ingested: its file is the truth
            sims = pool.vecs @ pool.vecs[row]
            near = {int(i) for i in np.nonzero(sims >= cfg.duplicate_similarity)[0]} | pool.same.get(norm(m.text), set())
            dups = [
                pool.mems[i] for i in sorted(near)
                if i != row and pool.mems[i].id not in gone and pool.mems[i].id not in restored
                and not pool.mems[i].source.startswith(SOURCE + ":")
                and run.duplicate(m, pool.mems[i], float(sims[i]))
            ]  # fmt: skip
            if not dups:
                continue
            members = [m, *dups]
            keep = min(members, key=lambda x: (x.recorded_at, x.id))  # the first learned keeps its id
            kv = pool.vecs[pool.row[keep.id]]
            # Every copy must be a duplicate of the survivor too, not just of m (no chains).
            merged = [x for x in members if x is not keep and run.duplicate(x, keep, float(pool.vecs[pool.row[x.id]] @ kv))]
            if merged:
                gone.update(x.id for x in merged)
                merges.append((seq, keep, merged))
        plan.append((batch[-1][0], merges))
    planned = [x for _, merges in plan for x in merges]
    if run.dry_run:
        for _, keep, merged in planned:
            _count(st, keep, merged)
    if not run.take_out(st, "dedupe", sum(len(merged) for _, _, merged in planned), "merge away") or run.dry_run:
        return  # over the budget, the cursor stays: the same merges are planned again next run
    for last, merges in plan:
        for seq, keep, merged in merges:
            ids = [x.id for x in merged]
            if not run.data.merge(keep.id, ids):
                continue  # changed since it was read (a chat wrote or forgot meanwhile)
            if not st.confirm(run.landed(present=[keep.id], gone=ids), f"merge into {keep.id[:8]}"):
                feed.defer(seq)
                continue
            _count(st, keep, merged)
        feed.commit(last)
    feed.commit()


def _count(st: Step, keep: Memory, merged: list[Memory]) -> None:
    st.add("clusters")
    st.add("merged", len(merged))
    st.example(f"{keep.id[:8]} kept, {len(merged)} merged: {short(keep.text)}")
