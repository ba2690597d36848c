"""Hybrid recall: dense similarity (vector index) fused with BM25 keyword evidence (SQLite FTS5).

Fusion is reciprocal-rank fusion, weighted per signal, plus a small bounded recency bonus:

    score = w_dense / (rrf_k + dense_rank) + w_keyword / (rrf_k + keyword_rank) + w_recency * 0.5^(age / half-life)

RRF needs no score calibration between a cosine and a BM25 scale, which differ per query; the recency
term is at most ``recency_weight`` (default 0.002, about the gap between fused ranks 1 and 4), so an old
exact match still wins.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from memcli.backends.catalog import Filter
from memcli.context import Context
from memcli.errors import usage_error
from memcli.records import Hit, Kind, RecallResult


def recall(
    ctx: Context,
    query: str,
    *,
    k: int | None = None,
    space: str | None = None,
    kinds: Sequence[Kind] = (),
    tags: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    touch: bool = True,
) -> RecallResult:
    query = query.strip()
    if not query:
        raise usage_error("the query is empty", hint="Say what to look for, e.g. memcli recall 'dentist appointment'.")
    rs = ctx.settings.recall
    k = rs.k if k is None else k
    if k < 1:
        raise usage_error(f"-k must be at least 1, got {k}")
    space = ctx.space(space)
    f = Filter(
        space=space,
        kinds=tuple(x.value for x in kinds),
        tags=tuple(tags),
        since=since.timestamp() if since else None,
        until=until.timestamp() if until else None,
    )
    n = max(rs.candidates, k)
    store = ctx.store
    qv = ctx.embedder.embed_query(query)
    dense = store.index.query(space, qv, n, kinds=f.kinds, since=f.since, until=f.until)
    keyword = store.catalog.keyword(f, query, n)

    dense_rank = {h.id: (r, h.similarity) for r, h in enumerate(dense, 1)}
    kw_rank = {mid: (r, s) for r, (mid, s) in enumerate(keyword, 1)}
    memories = store.catalog.by_ids(set(dense_rank) | set(kw_rank))
    ref = now.timestamp() if now else time.time()
    scored: list[tuple[float, str, float]] = []
    for mid, m in memories.items():
        if m.state != "active" or (f.tags and not set(f.tags) <= set(m.tags)):
            continue  # the index may briefly hold what the catalog already retired
        score = 0.0
        if mid in dense_rank:
            score += rs.dense_weight / (rs.rrf_k + dense_rank[mid][0])
        if mid in kw_rank:
            score += rs.keyword_weight / (rs.rrf_k + kw_rank[mid][0])
        when = (m.event_at or m.recorded_at).timestamp()
        age_days = max(0.0, ref - when) / 86400.0
        recency = 0.5 ** (age_days / rs.recency_half_life_days) if rs.recency_half_life_days > 0 else 0.0
        score += rs.recency_weight * recency
        scored.append((score, mid, recency))
    scored.sort(key=lambda x: (-x[0], x[1]))
    hits = []
    for rank, (score, mid, recency) in enumerate(scored[:k], 1):
        d = dense_rank.get(mid)
        kw = kw_rank.get(mid)
        hits.append(
            Hit(
                memory=memories[mid],
                rank=rank,
                score=score,
                dense_rank=d[0] if d else None,
                dense_similarity=d[1] if d else None,
                keyword_rank=kw[0] if kw else None,
                keyword_score=kw[1] if kw else None,
                recency=recency,
            )
        )
    if touch:
        store.touch([h.memory.id for h in hits])
    filters = {
        "kinds": list(f.kinds),
        "tags": list(f.tags),
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
    }
    return RecallResult(query=query, space=space, hits=tuple(hits), filters=filters)
