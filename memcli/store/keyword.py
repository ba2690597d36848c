"""Keyword search over the catalog's FTS5 index: BM25 with the text weighted over the extra keys,
bounded so that a common word never makes a query rank the whole store."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from memcli.store.schema import Filter, chunks, marks

if TYPE_CHECKING:
    from memcli.store.recording import RecordingConnection

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "you",
        "your",
        "yours",
    ]
)


class KeywordHit(NamedTuple):
    id: str
    score: float  # BM25 over text and keys, as ranked (higher is better)
    text: float  # BM25 of the text column alone
    keys: float  # BM25 of the keys column alone


def query_words(text: str) -> list[str]:
    """The distinct words of ``text`` a keyword search uses: stopwords dropped unless nothing else is left."""
    words = [w for w in re.findall(r"\w+", text.lower()) if len(w) > 1 or w.isdigit()]
    content = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(content))


def _match(words: Sequence[str], op: str = "OR") -> str | None:
    """An FTS5 expression joining ``words``, each a quoted phrase, with ``op``."""
    return f" {op} ".join(f'"{w}"' for w in words) if words else None


def fts_query(text: str, op: str = "OR") -> str | None:
    """An FTS5 query joining the words in ``text`` with ``op`` (stopwords dropped unless nothing else is left)."""
    return _match(query_words(text), op)



class KeywordSearch:
    """The keyword half of the catalog (a mixin: ``Catalog`` provides ``db``)."""

    db: RecordingConnection

    def keyword(self, f: Filter, query: str, n: int, budget: int = 0) -> list[tuple[str, float]]:
        """Top ``n`` (id, BM25) pairs, higher is better: ``keyword_hits`` without the per-column scores."""
        return [(h.id, h.score) for h in self.keyword_hits(f, query, n, budget)]

    def keyword_hits(self, f: Filter, query: str, n: int, budget: int = 0) -> list[KeywordHit]:
        """Top ``n`` memories by BM25 (higher is better), text weighted over extra keys, each with its
        BM25 on the text alone and on the keys alone (computed for the returned rows only).

        FTS5 ranks first and only its best rows are joined and filtered (joining every match before
        ranking cost 4x at 100k); when the filter leaves fewer than ``n``, the whole match is ranked.
        ``budget`` > 0 bounds the rows FTS5 ranks (see ``_bounded_match``): ranking costs ~1.6 ms per
        1,000 matched rows at 100k memories and ~4.5 ms at 1M, where a common word matches 100k+."""
        words = query_words(query)
        if not words:
            return []
        match, floor = (_match(words), None) if budget <= 0 else self._bounded_match(words, budget)
        if match is None:
            return []
        where, args = f.sql()
        inner = "memory_fts MATCH ?" + ("" if floor is None else " AND rowid >= ?")
        inner_args: list[Any] = [match] + ([] if floor is None else [floor])
        for limit in (n * 8, -1):
            q = (
                "SELECT m.id, t.s, t.st, t.sk FROM (SELECT rowid, rank AS s, bm25(memory_fts, 1.0, 0.0) AS st, "
                f"bm25(memory_fts, 0.0, 1.0) AS sk FROM memory_fts WHERE {inner} ORDER BY rank LIMIT ?) AS t "
                f"JOIN memories m ON m.rowid = t.rowid WHERE {where} ORDER BY t.s LIMIT ?"
            )
            rows = self.db.execute(q, [*inner_args, limit, *args, n]).fetchall()
            if len(rows) >= n or limit == -1 or self._count(match, limit + 1, floor) <= limit:
                return [KeywordHit(r[0], -float(r[1]), -float(r[2]), -float(r[3])) for r in rows]
        return []

    def _count(self, match: str, cap: int, floor: int | None = None) -> int:
        """Rows matching ``match`` (rowid >= ``floor``), counted up to ``cap``: O(cap), never O(matches)."""
        extra = "" if floor is None else " AND rowid >= ?"
        q = f"SELECT count(*) FROM (SELECT rowid FROM memory_fts WHERE memory_fts MATCH ?{extra} LIMIT ?)"
        return int(self.db.execute(q, [match, *([] if floor is None else [floor]), cap]).fetchone()[0])

    def _bounded_match(self, words: list[str], budget: int) -> tuple[str | None, int | None]:
        """An FTS5 expression for ``words`` whose ranking touches about ``budget`` rows, and the lowest
        rowid to rank (None: every match).

        As BM25 engines skip what cannot change the top results, this keeps the rarest words (the
        ones BM25 weighs most) while their matches fit the budget; the words too common to rank every
        match of still count where they occur together (an AND of them, when the total still fits).
        When even that is too much (every word is common), only the newest ``budget`` matches are
        ranked: the dense side still searches everything. While every word of the query matches fewer
        than ``budget`` memories nothing changes."""
        df = {w: self._count(_match([w]) or "", budget + 1) for w in words}
        kept: list[str] = []
        total = 0
        for w in sorted(words, key=lambda x: df[x]):
            if total + df[w] > budget:
                break
            kept.append(w)
            total += df[w]
        common = [w for w in words if w not in kept]
        if not common:
            return _match(words), None
        clauses = [c for c in (_match(kept), _match(common, "AND") if len(common) > 1 else None) if c]
        if len(clauses) == 2:
            match = " OR ".join(f"({c})" for c in clauses)
            if self._count(match, budget + 1) <= budget:
                return match, None
        if kept:
            return _match(kept), None
        if clauses and self._count(clauses[0], budget + 1) <= budget:
            return clauses[0], None
        # Only common words: rank the newest ``budget`` matches (rowids grow with insertion).
        both = _match(words, "AND") if len(words) > 1 else None
        widest = both if both and self._count(both, 1) else _match(words)
        q = "SELECT rowid FROM memory_fts WHERE memory_fts MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?"
        row = self.db.execute(q, (widest, budget - 1)).fetchone()
        return widest, None if row is None else int(row[0])

    def matches_all_terms(self, f: Filter, query: str) -> bool:
        """Does some memory passing ``f`` contain every content word of ``query``? (Strong keyword evidence.)"""
        match = _match(query_words(query), "AND")
        if match is None:
            return False
        where, args = f.sql()
        # FTS5 drives (CROSS JOIN fixes the order) and the first row passing the filter ends it: the
        # planner's own choice scanned the space and probed FTS5 per row (17 s at 100k), and an
        # IN (subquery) collects every match first (2.6 ms for two common words at 100k, vs 0.2).
        q = (
            "SELECT 1 FROM memory_fts t CROSS JOIN memories m ON m.rowid = t.rowid "
            f"WHERE t.memory_fts MATCH ? AND {where} LIMIT 1"
        )
        return self.db.execute(q, [match, *args]).fetchone() is not None

    def keyword_unindexed(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` that are active but missing from the keyword index (its own per-row records,
        the docsize table, say what is indexed): one primary-key lookup each."""
        out: list[str] = []
        for part in chunks(list(ids)):
            q = (
                f"SELECT m.id FROM memories m WHERE m.id IN ({marks(len(part))}) AND m.state = 'active' "
                "AND NOT EXISTS (SELECT 1 FROM memory_fts_docsize d WHERE d.id = m.rowid)"
            )
            out += [r[0] for r in self.db.execute(q, part)]
        return out

    def keyword_behind(self, space: str) -> list[str]:
        """The latest recorded active memory of ``space`` if the keyword index lacks it (else []): a cheap
        sign of an index that stopped being updated, for when there are no dense candidates to check.
        By recorded_at, which an index orders (by rowid the planner sorted the space: 15 ms at 100k)."""
        row = self.db.execute(
            "SELECT id, rowid FROM memories WHERE space = ? AND state = 'active' ORDER BY recorded_at DESC LIMIT 1", (space,)
        ).fetchone()
        if row is None or self.db.execute("SELECT 1 FROM memory_fts_docsize WHERE id = ?", (row[1],)).fetchone():
            return []
        return [row[0]]
