"""Learned fusion: one linear score over a handful of evidence features per candidate.

Reciprocal-rank fusion sees only two ranks. A memory's evidence is richer than that, and most of it
is already in hand once the candidates are fetched: how close its vector is to the best one, its BM25
on its own text versus on its keys, how many of the query's words its own text holds, and whether
the turns next to it or the rest of its document/conversation matched too (the answer often sits
beside the match, and a conversation about a topic matches more than once). A logistic model over
those features, fitted on LoCoMo and checked by two-fold cross-validation across conversations
(``benchmarks/locomo_fit.py``, numbers in benchmarks/RESULTS.md), beat the tuned RRF at every k.

Every feature is computed from the candidate pool alone (the dense and keyword top-N): nothing here
searches again, so the cost is a few array operations on at most 2N rows. Features are scale-free
(ranks, ratios to the best candidate, fractions), so the weights do not depend on the store's size.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from memcli.records import Kind, Memory

if TYPE_CHECKING:
    import numpy as np

RANK_OFFSET = 10  # the k of the two 1/(k + rank) features the weights were fitted with

FEATURES = (
    "dense_rrf",  # 1/(RANK_OFFSET + dense rank); 0 outside the dense top-N
    "keyword_rrf",  # 1/(RANK_OFFSET + keyword rank); 0 outside the keyword top-N
    "similarity_gap",  # cosine similarity minus the best candidate's (<= 0)
    "bm25",  # BM25 (text and keys) over the best keyword candidate's
    "bm25_text",  # BM25 of the memory's own text over the best
    "bm25_keys",  # BM25 of its extra keys over the best
    "coverage",  # fraction of the query's words found in the memory's own text
    "source_best",  # the best bm25 feature among candidates from the same document/conversation (0 without a position)
    "near1_bm25",  # the best bm25 feature of candidates one position away in the same source
    "near2_bm25",  # ... two positions away
    "near1_coverage",
    "near2_coverage",
    "near1_similarity",  # the best similarity_gap one position away (-1 when none is a candidate)
)

# Fitted by benchmarks/locomo_fit.py on all ten LoCoMo conversations (logistic regression, L2 1e-3);
# the two-fold cross-validated numbers in RESULTS.md come from weights fitted on half of them.
WEIGHTS = {
    "dense_rrf": 9.7525,
    "keyword_rrf": 22.7425,
    "similarity_gap": 4.3718,
    "bm25": 2.6034,
    "bm25_text": 0.7339,
    "bm25_keys": -2.6041,
    "coverage": 0.5237,
    "source_best": 1.7937,
    "near1_bm25": -0.6504,
    "near2_bm25": 1.3790,
    "near1_coverage": 1.5676,
    "near2_coverage": -0.2312,
    "near1_similarity": -0.1556,
}
BIAS = -5.2892
# Linear scores are logits; this brings their gaps to the size of RRF's (median gap between the first
# two candidates on LoCoMo), so the recency and retention terms keep the weight they were given.
SCALE = 0.02275


@dataclass(frozen=True)
class Candidate:
    memory: Memory
    similarity: float | None  # cosine similarity to the query (None: no vector known)
    dense_rank: int | None
    keyword_rank: int | None
    bm25: float  # 0 when not a keyword candidate; higher is better
    bm25_text: float
    bm25_keys: float


_SPEAKER = re.compile(r"[^:\n]{1,40}: ")
_WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=1 << 16)  # a recall stems ~7,000 words, nearly all seen before
def stem(word: str) -> str:
    """A light English stemmer after Porter's first step, enough to count "allergies" as "allergy",
    "paintings" as "paint" and "sunrises" as "sunrise" when checking which query words a text holds
    (FTS5's porter tokenizer does the ranking; this only has to map a word's forms to one key)."""
    w = word[:-2] if word.endswith("'s") else word
    if w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "i"
    elif w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        w = w[:-1]
    for suffix in ("ing", "ed"):
        rest = w[: -len(suffix)]
        if w.endswith(suffix) and len(rest) >= 3 and any(v in rest for v in "aeiouy"):
            w = rest[:-1] if len(rest) > 3 and rest[-1] == rest[-2] and rest[-1] not in "lsz" else rest
            break
    if len(w) > 3 and w.endswith("y"):
        w = w[:-1] + "i"
    return w[:-1] if len(w) > 3 and w.endswith("e") else w


def stems(text: str, heads: set[str] | None = None) -> set[str]:
    """The stems of the words of ``text`` (only of those whose first two letters are in ``heads``)."""
    words = _WORD.findall(text.lower())
    return {stem(w) for w in words if heads is None or w[:2] in heads}


def own_text(m: Memory) -> str:
    """The memory's words that are evidence: a conversation turn's "speaker: " label is not."""
    if m.kind is Kind.EPISODE and (s := _SPEAKER.match(m.text)):
        return m.text[s.end() :]
    return m.text


def features(cands: Sequence[Candidate], query_words: Sequence[str]) -> np.ndarray:
    """The ``FEATURES`` matrix, one row per candidate."""
    import numpy as np

    n = len(cands)
    out = np.zeros((n, len(FEATURES)), dtype=np.float64)
    if n == 0:
        return out
    col = {name: i for i, name in enumerate(FEATURES)}

    def ratio(values: list[float]) -> np.ndarray:
        a = np.asarray(values, dtype=np.float64)
        top = a.max(initial=0.0)
        return a / top if top > 0 else np.zeros(n)

    known = [c.similarity for c in cands if c.similarity is not None]
    floor = min(known, default=0.0)
    sim = np.asarray([c.similarity if c.similarity is not None else floor for c in cands])
    gap = sim - sim.max()
    bm = ratio([c.bm25 for c in cands])
    q = {stem(w) for w in query_words}
    heads = {s[:2] for s in q}  # stemming keeps a word's start: only words starting like a query word can match
    cov = np.asarray([len(q & stems(own_text(c.memory), heads)) / len(q) if q else 0.0 for c in cands])
    out[:, col["dense_rrf"]] = [1.0 / (RANK_OFFSET + c.dense_rank) if c.dense_rank else 0.0 for c in cands]
    out[:, col["keyword_rrf"]] = [1.0 / (RANK_OFFSET + c.keyword_rank) if c.keyword_rank else 0.0 for c in cands]
    out[:, col["similarity_gap"]] = gap
    out[:, col["bm25"]] = bm
    out[:, col["bm25_text"]] = ratio([c.bm25_text for c in cands])
    out[:, col["bm25_keys"]] = ratio([c.bm25_keys for c in cands])
    out[:, col["coverage"]] = cov
    best: dict[str, float] = {}
    at: dict[tuple[str, int], int] = {}
    # Only memories with a position belong to a document or conversation; the rest share a source
    # label ("cli", "consolidate:day") without being about one thing, so they get no source evidence.
    for i, c in enumerate(cands):
        if c.memory.position is not None:
            best[c.memory.source] = max(best.get(c.memory.source, 0.0), float(bm[i]))
            at[(c.memory.source, c.memory.position)] = i
    for i, c in enumerate(cands):
        if c.memory.position is None:
            out[i, col["near1_similarity"]] = -1.0
            continue
        out[i, col["source_best"]] = best[c.memory.source]
        for d in (1, 2):
            near = [
                at[k] for k in ((c.memory.source, c.memory.position - d), (c.memory.source, c.memory.position + d)) if k in at
            ]
            out[i, col[f"near{d}_bm25"]] = max((bm[j] for j in near), default=0.0)
            out[i, col[f"near{d}_coverage"]] = max((cov[j] for j in near), default=0.0)
            if d == 1:
                out[i, col["near1_similarity"]] = max((gap[j] for j in near), default=-1.0)
    return out


def scores(cands: Sequence[Candidate], query_words: Sequence[str]) -> np.ndarray:
    """The fused score of each candidate (higher is better)."""
    import numpy as np

    w = np.asarray([WEIGHTS[f] for f in FEATURES])
    out: np.ndarray = (features(cands, query_words) @ w + BIAS) * SCALE
    return out
