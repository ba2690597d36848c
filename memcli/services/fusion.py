"""Learned fusion: one linear score over a handful of evidence features per candidate.

Reciprocal-rank fusion sees only two ranks. A memory's evidence is richer than that, and most of it
is already in hand once the candidates are fetched: how close its vector is to the best one, its BM25
on its own text versus on its keys, how many of the query's words its own text holds, and whether
the turns next to it or the rest of its document/conversation matched too (the answer often sits
beside the match, and a conversation about a topic matches more than once). Beside the match, what
the memory's own text says (memcli/text/cues.py): in a conversation the short turns and the
questions react and prompt while the answer tells, a text holding a time, a number or a name is more
often the evidence (more so when the question asks for that kind of thing), and a turn right after a
question that matched is likely its answer. A logistic model over those features, fitted on LoCoMo
and checked by five-fold cross-validation across conversations (``benchmarks/locomo_fit.py``,
numbers in benchmarks/RESULTS.md), beat the tuned RRF at every k, and the matching features alone
by 1.5-4.4 points (overall, held out).

Every feature is computed from the candidate pool alone (the dense and keyword top-N): nothing here
searches again, so the cost is a few array operations on at most 2N rows. Features are scale-free
(ranks, ratios to the best candidate, fractions), so the weights do not depend on the store's size.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from memcli.records import Kind, Memory
from memcli.text import cues

if TYPE_CHECKING:
    import numpy as np

RANK_OFFSET = 10  # the k of the two 1/(k + rank) features the weights were fitted with
SAYS_ENOUGH = 40  # words: a turn this long or longer counts as saying as much as a note or a fact

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
    # What the memory's own text holds (memcli/text/cues.py), whatever it matched:
    "words",  # a conversation turn's length, log-scaled and saturating at SAYS_ENOUGH words (1 for other memories)
    "asks",  # the share of a turn's sentences that are questions (0 for other memories)
    "specifics",  # a time, a number, a name (not a speaker's): thirds
    "answer_kind",  # holds the kind of thing the question asks for (when: a time; where/who: a name; how many: a number)
    "answers_match",  # the turn just before it is a question ("asks") that matched (its "bm25")
)

# Fitted by benchmarks/locomo_fit.py on all ten LoCoMo conversations (logistic regression, L2 1e-3);
# the five-fold cross-validated numbers in RESULTS.md come from weights fitted on eight of them.
WEIGHTS = {
    "dense_rrf": 8.6016,
    "keyword_rrf": 20.9850,
    "similarity_gap": 5.1769,
    "bm25": 2.0782,
    "bm25_text": 0.4790,
    "bm25_keys": -1.9388,
    "coverage": 0.2636,
    "source_best": 1.8813,
    "near1_bm25": -0.8496,
    "near2_bm25": 1.3099,
    "near1_coverage": 1.3167,
    "near2_coverage": -0.7267,
    "near1_similarity": -0.2453,
    "words": 3.6637,
    "asks": -1.2108,
    "specifics": 1.4814,
    "answer_kind": 0.5311,
    "answers_match": 2.7280,
}
BIAS = -8.4316
# Linear scores are logits; this brings their gaps to the size of RRF's (median gap between the first
# two candidates on LoCoMo), so the recency and retention terms keep the weight they were given.
SCALE = 0.01948


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


def features(cands: Sequence[Candidate], query_words: Sequence[str], question: str = "") -> np.ndarray:
    """The ``FEATURES`` matrix, one row per candidate; ``question`` is the query as asked (what it asks
    for: "when ...", "how many ...")."""
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
    said = _said(cands, question)
    for j, name in enumerate(("words", "asks", "specifics", "answer_kind")):
        out[:, col[name]] = said[:, j]
    for i, c in enumerate(cands):  # a question that matched, then this turn: likely its answer
        prev = at.get((c.memory.source, c.memory.position - 1)) if c.memory.position is not None else None
        if prev is not None:
            out[i, col["answers_match"]] = said[prev, 1] * bm[prev]
    return out


def _said(cands: Sequence[Candidate], question: str) -> np.ndarray:
    """Columns words, asks, specifics, answer_kind: what each candidate's own text says, whatever it
    matched. In a conversation the short turns ("Wow, congrats!") and the questions mostly react and
    prompt, while the answer tells; and a turn's vector holds its neighbours' text (ingest's keys),
    so such a turn matches as well as the neighbour that says the thing."""
    import numpy as np

    out = np.zeros((len(cands), 4), dtype=np.float64)
    wanted = cues.asks_for(question) if question else frozenset()
    turns = [c.memory.kind is Kind.EPISODE and c.memory.position is not None for c in cands]
    # A speaker's name is in most turns that address them: it is no more a specific than "you".
    speakers = {
        w for c, t in zip(cands, turns, strict=True) if t and (s := _SPEAKER.match(c.memory.text)) for w in s.group()[:-2].split()
    }
    full = math.log1p(SAYS_ENOUGH)
    for i, (c, turn) in enumerate(zip(cands, turns, strict=True)):
        text = own_text(c.memory)
        if turn:
            out[i, 0] = math.log1p(min(len(text.split()), SAYS_ENOUGH)) / full
            out[i, 1] = cues.question_share(text)
        else:
            out[i, 0] = 1.0
        found = cues.cues(text)
        held = {"time": found.time, "number": found.number, "name": bool(found.names - speakers)}
        out[i, 2] = (held["time"] + held["number"] + held["name"]) / 3
        out[i, 3] = float(any(held[k] for k in wanted))
    return out


def scores(cands: Sequence[Candidate], query_words: Sequence[str], question: str = "") -> np.ndarray:
    """The fused score of each candidate (higher is better)."""
    import numpy as np

    w = np.asarray([WEIGHTS[f] for f in FEATURES])
    out: np.ndarray = (features(cands, query_words, question) @ w + BIAS) * SCALE
    return out
