"""Hybrid recall: dense similarity (vector index) fused with BM25 keyword evidence (SQLite FTS5).

The candidates are the dense top-N and the keyword top-N (``[recall] candidates``). Fusion is, by
default, the learned linear score of services/fusion.py over each candidate's evidence (ranks,
similarity, BM25 per field, query-word coverage, what its neighbours and its source matched);
``fusion = "rrf"`` gives reciprocal-rank fusion, weighted per signal. Either way a small bounded
recency bonus and the retention term are added:

    score = fused + w_recency * 0.5^(age / half-life) + w_retention * R
    fused (rrf) = w_dense / (rrf_k + dense_rank) + w_keyword / (rrf_k + keyword_rank)

The learned score is scaled so that its typical gap between ranks 1 and 2 matches RRF's, so both
terms keep their size: the recency term is at most ``recency_weight`` (default 0.002, a fraction of
the gap between fused ranks 1 and 2), so an old exact match still wins. R is the memory's retention
(services/retention.py: it fades with the days since its last recall, slower the more often it was
recalled and the more important it is); ``[lifecycle] retention_weight`` (0.001) keeps that term
smaller still. The fusion, rrf_k and the weights were chosen on LoCoMo (benchmarks/RESULTS.md: RRF
with rrf_k 60 and equal weights was 13 points worse at k=5 than the tuned RRF, which the learned
fusion beats at every k).

Time-aware: a time expression in the query ("last week", "in March 2023") becomes a window on the
memories' event time (falling back to the whole store when the window holds nothing), and words like
"latest" or "originally" become a recency preference; explicit ``since``/``until`` win over both.

Links (``links`` > 0): each hit also carries up to that many memories one link away (A-MEM style
"related" links that consolidate draws from shared tags and similarity, a fact's successor or
predecessor, a summary and what it summarises, the turn a fact was learned from, the notes an
ingested note names in [[wikilinks]]), with the reason.
They ride along with their hit rather than taking a rank, so they never push a direct match out of
the top k; they obey the same space, kind, tag, time-window and truth (current / ``as_of``) filters.

Degraded, never silently: when a leg cannot be used (the embedding model is missing or fails, the
vector index cannot be read, the keyword index fails or is out of date) recall answers from what
works and says which leg was missing and why (``RecallResult.degraded``). Out of date is checked
where it is cheap and matters: are the memories closest in meaning in the keyword index (one indexed
lookup per dense candidate, ~0.2 ms), or, without a dense leg, the newest memory of the space.
Only when neither leg can answer does recall fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from memcli.backends.base import VectorHit
from memcli.context import Context
from memcli.errors import MemcliFailure, store_error, usage_error
from memcli.records import Degraded, Hit, Kind, Linked, Memory, RecallResult
from memcli.services import fusion
from memcli.services.retention import RetentionParams, assess
from memcli.store import Filter, KeywordHit, query_words

FILTER_IDS_CAP = 20_000
WIDE_IDS_CAP = 300_000
PREFERENCE_BOOST = 10.0  # how much stronger the recency term gets when the query asks for the latest


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
    context: int = 0,
    time_aware: bool = True,
    touch: bool = True,
    as_of: datetime | None = None,
    links: int = 0,
) -> RecallResult:
    """``as_of``: answer with what was true then (facts retired later count; ones learned later do
    not); by default only what is true now (a superseded or refined fact is history, not an answer)."""
    query = query.strip()
    if not query:
        raise usage_error("the query is empty", hint="Say what to look for, e.g. memcli recall 'dentist appointment'.")
    rs = ctx.settings.recall
    k = rs.k if k is None else k
    if k < 1:
        raise usage_error(f"-k must be at least 1, got {k}")
    if context < 0:
        raise usage_error(f"--context must be 0 or more, got {context}")
    if links < 0:
        raise usage_error(f"--links must be 0 or more, got {links}")
    space = ctx.space(space)
    ref = now or datetime.now().astimezone()
    plan = _plan(ctx, query, space, kinds, tags, since, until, ref, time_aware)
    f, window, keyword_query = plan.filter, plan.window, plan.keyword_query
    since, until = plan.since, plan.until
    store = ctx.store
    legs = _Legs()
    qv = legs.embed(ctx, query)
    scored, memories, dense_rank, kw_rank = _candidates(
        ctx, f, qv, keyword_query, k, plan.recency_weight, ref.timestamp(), as_of, legs
    )
    if not scored and plan.from_hint:
        window += " — nothing there, searched everything"
        scored, memories, dense_rank, kw_rank = _candidates(
            ctx, plan.base, qv, keyword_query, k, plan.recency_weight, ref.timestamp(), as_of, legs
        )
    legs.check_both_failed()
    hits = []
    for rank, (score, mid, recency) in enumerate(scored[:k], 1):
        d = dense_rank.get(mid)
        kw = kw_rank.get(mid)
        m = memories[mid]
        around: tuple[Memory, ...] = ()
        if context and m.position is not None:
            around = tuple(x for x in store.catalog.neighbours(m.source, m.position, context) if x.id != m.id)
        hits.append(
            Hit(
                memory=m,
                rank=rank,
                score=score,
                dense_rank=d[0] if d else None,
                dense_similarity=d[1] if d else None,
                keyword_rank=kw[0] if kw else None,
                keyword_score=kw[1] if kw else None,
                recency=recency,
                context=around,
            )
        )
    if links and hits:
        hits = _with_links(ctx, hits, f, as_of, links)
    confidence = max((s for _, s in dense_rank.values()), default=0.0)
    # Any keyword hit is weak evidence: 94% of questions asked of an unrelated store had one (common
    # words; benchmarks/abstention.py). A memory holding every content word of the query is strong
    # evidence (a name, a rare term) even when the dense similarity is low.
    # Without the dense leg there is no similarity to judge by: the hits are shown, said to be keyword-only.
    dense_ok = not any(d.leg == "dense" for d in legs.degraded)
    abstained = not hits or (
        dense_ok and confidence < rs.min_similarity and not store.catalog.matches_all_terms(f, keyword_query)
    )
    if touch and not abstained:
        store.touch([h.memory.id for h in hits])
    filters = {
        "kinds": list(f.kinds),
        "tags": list(f.tags),
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "as_of": as_of.isoformat() if as_of else None,
    }
    return RecallResult(
        query=query,
        space=space,
        hits=tuple(hits),
        filters=filters,
        abstained=abstained,
        confidence=confidence,
        time_window=window,
        degraded=tuple(legs.degraded),
    )


_INDEX_HINT = "`memcli doctor` checks the indexes; `memcli doctor --repair` rebuilds them from the catalog."


class _Legs:
    """What this recall could use: the query's vector (None without an embedding model) and the legs
    found missing, in words. ``None`` in ``_pool``'s place (fusion_features) lets failures raise."""

    def __init__(self) -> None:
        self.degraded: list[Degraded] = []
        self.keyword_failed: MemcliFailure | None = None

    def note(self, leg: str, reason: str, hint: str) -> None:
        if not any(d.leg == leg and d.reason == reason for d in self.degraded):
            self.degraded.append(Degraded(leg, reason, hint))

    def embed(self, ctx: Context, query: str) -> list[float] | None:
        try:
            return ctx.embedder.embed_query(query)
        except MemcliFailure as e:  # missing, unusable or not the store's model: the user's to fix (hint)
            self.note("dense", f"searched by keywords only: the embedding model is unavailable ({e.message})", e.hint)
        except Exception as e:  # a corrupt model file fails inside llama.cpp
            self.note(
                "dense",
                f"searched by keywords only: the embedding model failed ({type(e).__name__}: {e})",
                "Check [embedding] model (`memcli config show`); `memcli doctor` tests it.",
            )
        return None

    def check_both_failed(self) -> None:
        dense = next((d for d in self.degraded if d.leg == "dense"), None)
        if dense is not None and self.keyword_failed is not None:
            raise store_error(
                f"recall cannot search: {dense.reason}; and {self.keyword_failed.message}", hint=dense.hint or _INDEX_HINT
            )


def _dense(ctx: Context, f: Filter, qv: list[float] | None, n: int, legs: _Legs | None) -> list[VectorHit]:
    """The dense top ``n`` under ``f`` (see ``_pool``); [] when the vector index cannot be read."""
    if qv is None:
        return []
    store = ctx.store
    filtered = bool(f.kinds or f.tags or f.since is not None or f.until is not None)
    # Chroma's metadata filter took 60-200 ms at 100k and 4.7 s at 1M; the ids from the catalog's
    # index plus an id-restricted query took ~18 ms at 100k. Past FILTER_IDS_CAP ids, an unfiltered
    # over-fetch is cheaper when the filter is wide (27 ms at 1M); when too few of those pass, a
    # long id list (87-113 ms for 27k-110k ids at 1M) still beats Chroma's filter.
    ids = store.catalog.filtered_ids(f, FILTER_IDS_CAP) if filtered else None
    wide = filtered and ids is None
    try:  # only the vector index's failures are caught: the catalog's are the store's, and raise
        dense = store.index.query(f.space, qv, n, kinds=f.kinds, since=f.since, until=f.until, ids=ids, overfetch_only=wide)
        if wide and len(dense) < n:
            ids = store.catalog.filtered_ids(f, WIDE_IDS_CAP)
            dense = store.index.query(f.space, qv, n, kinds=f.kinds, since=f.since, until=f.until, ids=ids)
    except Exception as e:  # unreadable files, a server that does not answer: the keyword leg still can
        if legs is None:
            raise
        message = e.message if isinstance(e, MemcliFailure) else f"{type(e).__name__}: {e}"
        hint = e.hint if isinstance(e, MemcliFailure) and e.hint else _INDEX_HINT
        legs.note("dense", f"searched by keywords only: the vector index could not be read ({message})", hint)
        return []
    # Nothing at all while the catalog holds memories that pass: the index (a collection per space) is
    # gone or unreadable; Chroma answers both as "no such collection", so the catalog is asked.
    if not dense and legs is not None and (ids is None or ids) and store.catalog.has_active(f):
        legs.note("dense", "searched by keywords only: the vector index holds none of these memories (missing or unreadable)", _INDEX_HINT)
    return list(dense)


def _keyword(
    ctx: Context, f: Filter, keyword_query: str, n: int, dense_ids: list[str], legs: _Legs | None
) -> list[KeywordHit]:
    """The keyword top ``n`` under ``f``; [] when the keyword index fails. Notes an out-of-date index."""
    cat = ctx.store.catalog
    try:
        hits = cat.keyword_hits(f, keyword_query, n, ctx.settings.recall.keyword_max_docs)
        if legs is not None:
            # Every write indexes its text in the same transaction, so a gap is damage (or an older tool).
            missing = cat.keyword_unindexed(dense_ids) if dense_ids else cat.keyword_behind(f.space)
            if missing:
                of = f" of the {len(dense_ids)} memories closest in meaning" if dense_ids else " (the newest memory)"
                legs.note(
                    "keyword",
                    f"keyword search incomplete: the keyword index is out of date ({len(missing)}{of} missing from it)",
                    "`memcli doctor --repair` rebuilds it from the catalog.",
                )
        return list(hits)
    except Exception as e:
        if legs is None:
            raise
        message = e.message if isinstance(e, MemcliFailure) else f"{type(e).__name__}: {e}"
        legs.keyword_failed = store_error(f"the keyword index could not be read ({message})")
        legs.note("keyword", f"searched by meaning only: the keyword index could not be read ({message})", _INDEX_HINT)
        return []


@dataclass(frozen=True)
class _Plan:
    filter: Filter
    base: Filter  # the filter without the time window
    keyword_query: str  # the query less its time expression
    since: datetime | None
    until: datetime | None
    from_hint: bool  # the window was read from the query (so it may be dropped when it holds nothing)
    window: str
    recency_weight: float


def _plan(
    ctx: Context,
    query: str,
    space: str,
    kinds: Sequence[Kind],
    tags: Sequence[str],
    since: datetime | None,
    until: datetime | None,
    ref: datetime,
    time_aware: bool,
) -> _Plan:
    """The filters, keyword query and recency preference a query asks for."""
    keyword_query = query
    recency_weight = ctx.settings.recall.recency_weight
    window = ""
    from_hint = False
    if time_aware:
        from memcli.text.timequery import parse_time_hint

        hint = parse_time_hint(query, ref)
        if hint is not None:
            window = hint.description
            keyword_query = hint.query or query
            if since is None and until is None and not hint.soft and (hint.since or hint.until):
                since, until = hint.since, hint.until
                from_hint = True
            if hint.prefer_recent:
                recency_weight *= PREFERENCE_BOOST
            elif hint.prefer_old:
                recency_weight *= -PREFERENCE_BOOST
    base = Filter(space=space, kinds=tuple(x.value for x in kinds), tags=tuple(tags))
    f = replace(base, since=since.timestamp() if since else None, until=until.timestamp() if until else None)
    return _Plan(f, base, keyword_query, since, until, from_hint, window, recency_weight)


def fusion_features(
    ctx: Context, query: str, *, space: str | None = None, now: datetime | None = None
) -> tuple[list[Memory], Any]:
    """The candidate pool of ``query`` as recall sees it and its fusion feature matrix (one row per
    memory; columns ``fusion.FEATURES``): what benchmarks/locomo_fit.py fits the weights on."""
    ref = now or datetime.now().astimezone()
    plan = _plan(ctx, query, ctx.space(space), (), (), None, None, ref, True)
    qv = ctx.embedder.embed_query(query)
    for f in (plan.filter, plan.base) if plan.from_hint else (plan.filter,):
        cands = [c for c in _pool(ctx, f, qv, plan.keyword_query, ctx.settings.recall.candidates) if _truthful(c.memory)]
        if cands:
            break
    return [c.memory for c in cands], fusion.features(cands, query_words(plan.keyword_query), plan.keyword_query)


def _truthful(m: Memory, as_of: datetime | None = None) -> bool:
    """True now (by default), or true at ``as_of`` as memcli knew it then. Superseded facts are rare:
    filtering them from the candidates keeps the indexes simple."""
    return m.current if as_of is None else m.true_at(as_of) and m.recorded_at <= as_of


def _pool(
    ctx: Context, f: Filter, qv: list[float] | None, keyword_query: str, n: int, legs: _Legs | None = None
) -> list[fusion.Candidate]:
    """The dense and keyword top ``n`` under ``f``: active memories only, with their evidence. With
    ``legs``, a leg that fails is noted there and left out; without, its failure raises."""
    import numpy as np

    rs = ctx.settings.recall
    store = ctx.store
    dense = _dense(ctx, f, qv, n, legs)
    keyword = _keyword(ctx, f, keyword_query, n, [h.id for h in dense], legs)
    dense_rank = {h.id: (r, h.similarity) for r, h in enumerate(dense, 1)}
    kw = {h.id: (r, h) for r, h in enumerate(keyword, 1)}
    memories = store.catalog.by_ids(set(dense_rank) | set(kw))
    memories = {
        mid: m
        for mid, m in memories.items()
        # the index may briefly hold what the catalog already retired
        if m.state == "active" and not (f.tags and not set(f.tags) <= set(m.tags))
    }
    sims = {mid: d[1] for mid, d in dense_rank.items()}
    missing = [mid for mid in memories if mid not in sims]
    if missing and qv is not None and rs.fusion == "learned":  # keyword-only candidates: similarity from the stored vector
        q = np.asarray(qv, dtype=np.float32)
        q /= float(np.linalg.norm(q)) or 1.0
        for mid, blob in store.catalog.embeddings(missing).items():
            v = np.frombuffer(blob, dtype=np.float32)
            if v.shape == q.shape:  # an interrupted reindex leaves vectors of the old model for a while
                sims[mid] = float(v @ q) / (float(np.linalg.norm(v)) or 1.0)
    out = []
    for mid, m in memories.items():
        d = dense_rank.get(mid)
        k = kw.get(mid)
        h = k[1] if k else None
        out.append(
            fusion.Candidate(
                memory=m,
                similarity=sims.get(mid),
                dense_rank=d[0] if d else None,
                keyword_rank=k[0] if k else None,
                bm25=h.score if h else 0.0,
                bm25_text=h.text if h else 0.0,
                bm25_keys=h.keys if h else 0.0,
            )
        )
    return out


def _candidates(
    ctx: Context,
    f: Filter,
    qv: list[float] | None,
    keyword_query: str,
    k: int,
    recency_weight: float,
    ref: float,
    as_of: datetime | None = None,
    legs: _Legs | None = None,
) -> tuple[list[tuple[float, str, float]], dict[str, Memory], dict[str, tuple[int, float]], dict[str, tuple[int, float]]]:
    """Fused, sorted candidates: ([(score, id, recency)], memories, dense ranks, keyword ranks)."""
    rs = ctx.settings.recall
    retention_weight = ctx.settings.lifecycle.retention_weight
    params = RetentionParams.from_settings(ctx.settings.lifecycle) if retention_weight else None
    pool = _pool(ctx, f, qv, keyword_query, max(rs.candidates, k), legs)
    pool = [c for c in pool if _truthful(c.memory, as_of)]
    if rs.fusion == "learned":
        fused = [float(x) for x in fusion.scores(pool, query_words(keyword_query), keyword_query)]
    else:
        fused = [
            (rs.dense_weight / (rs.rrf_k + c.dense_rank) if c.dense_rank else 0.0)
            + (rs.keyword_weight / (rs.rrf_k + c.keyword_rank) if c.keyword_rank else 0.0)
            for c in pool
        ]
    scored: list[tuple[float, str, float]] = []
    for c, score in zip(pool, fused, strict=True):
        m = c.memory
        when = (m.event_at or m.recorded_at).timestamp()
        age_days = max(0.0, ref - when) / 86400.0
        recency = 0.5 ** (age_days / rs.recency_half_life_days) if rs.recency_half_life_days > 0 else 0.0
        score += recency_weight * recency
        if params is not None:
            score += retention_weight * assess(m, ref, params).score
        scored.append((score, m.id, recency))
    dense_rank = {c.memory.id: (c.dense_rank, c.similarity or 0.0) for c in pool if c.dense_rank}
    kw_rank = {c.memory.id: (c.keyword_rank, c.bm25) for c in pool if c.keyword_rank}
    # Ties (common: a turn and its neighbour share key text) go to the better keyword match, whose
    # own text weighs more than its keys, then to the better dense match.
    inf = 1 << 30
    scored.sort(key=lambda x: (-x[0], kw_rank.get(x[1], (inf, 0.0))[0], dense_rank.get(x[1], (inf, 0.0))[0], x[1]))
    return scored, {c.memory.id: c.memory for c in pool}, dense_rank, kw_rank


_LINK_WORDS = {  # (outgoing, incoming): how the linked memory relates to the hit
    "supersedes": ("what this replaced", "what replaced this"),
    "refines": ("what this refined", "what refined this"),
    "summarises": ("summarised here", "a summary of this"),
    "derived_from": ("where this was learned", "learned from this"),
    "wikilink": ("a note this one links to", "a note that links here"),
}


def _with_links(ctx: Context, hits: list[Hit], f: Filter, as_of: datetime | None, limit: int) -> list[Hit]:
    """Attach up to ``limit`` memories one link away to each hit (see the module docstring)."""
    import numpy as np

    from memcli.services.consolidate import STRUCTURAL_TAGS

    cat = ctx.store.catalog
    shown = {h.memory.id for h in hits}
    edges = {
        h.memory.id: [(dst if src == h.memory.id else src, kind, src == h.memory.id) for src, kind, dst in cat.links(h.memory.id)]
        for h in hits
    }
    others = cat.by_ids({o for e in edges.values() for o, _, _ in e} - shown)

    def allowed(m: Memory) -> bool:
        if m.state != "active" or m.space != f.space or (f.kinds and m.kind.value not in f.kinds):
            return False
        if f.tags and not set(f.tags) <= set(m.tags):
            return False
        t = (m.event_at or m.recorded_at).timestamp()
        if (f.since is not None and t < f.since) or (f.until is not None and t >= f.until):
            return False
        return _truthful(m, as_of)

    wanted = [i for i, m in others.items() if allowed(m)]
    vecs = {i: np.frombuffer(b, dtype=np.float32) for i, b in cat.embeddings([*wanted, *shown]).items()} if wanted else {}

    allowed_ids = set(wanted)

    def cosine(a: str, b: str) -> float | None:
        if a not in vecs or b not in vecs:
            return None
        x, y = vecs[a], vecs[b]
        return float(x @ y / ((np.linalg.norm(x) * np.linalg.norm(y)) or 1.0))

    out = []
    for h in hits:
        found: list[tuple[float, Linked]] = []
        for oid, kind, outgoing in edges[h.memory.id]:
            m = others.get(oid)
            if m is None or oid not in allowed_ids:
                continue
            sim = cosine(h.memory.id, oid)
            if kind in _LINK_WORDS:
                reason = f"{kind} link: {_LINK_WORDS[kind][0 if outgoing else 1]}"
            else:
                shared = sorted((set(h.memory.tags) & set(m.tags)) - STRUCTURAL_TAGS)
                reason = f"{kind} link" + (f": shared tags {', '.join(shared)}" if shared else "")
            if sim is not None:
                reason += f"; similarity {sim:.2f}"
            found.append((sim if sim is not None else -1.0, Linked(m, kind, outgoing, reason)))
        found.sort(key=lambda x: -x[0])
        out.append(replace(h, linked=tuple(x for _, x in found[:limit])))
    return out
