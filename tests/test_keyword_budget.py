"""Keyword search at scale: ``[recall] keyword_max_docs`` bounds the rows FTS5 ranks per query.

A tiny budget on a small store stands in for a common word in a million memories: the rarest words
are searched fully, common words only where they occur together, and a query of only common words
ranks the newest matches. A budget larger than every word's matches changes nothing.
"""

from __future__ import annotations

import random

import pytest

from memcli.api import Memcli
from memcli.store import Filter, NewMemory

FILLER = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike"]


@pytest.fixture
def corpus(mem: Memcli) -> dict[str, list[str]]:
    """30 memories say "coffee", 30 say "tea" (3 of them both), one says "zanzibar" with coffee."""
    rng = random.Random(7)
    texts: list[str] = []
    for i in range(60):
        filler = " ".join(rng.sample(FILLER, 4))
        word = "coffee" if i < 30 else "tea"
        texts.append(f"{word} {filler} note{i}")
    texts[10] += " tea"
    texts[12] += " tea"
    texts[14] += " tea"
    texts.append("coffee in zanzibar with the harbour view")
    dim = mem._ctx.embedder.dim
    items = [(NewMemory(text=t), [1.0] + [0.0] * (dim - 1)) for t in texts]
    ids = mem._ctx.store.apply("default", items, mem._ctx.embedder.model_id)
    by = {t: i for t, i in zip(texts, ids)}
    return {
        "coffee": [by[t] for t in texts if "coffee" in t],
        "both": [by[t] for t in texts if "coffee" in t and "tea" in t],
        "zanzibar": [by[t] for t in texts if "zanzibar" in t],
        "all": ids,
    }


def kw(mem: Memcli, query: str, budget: int, n: int = 50) -> list[str]:
    return [i for i, _ in mem._ctx.store.catalog.keyword(Filter(space="default"), query, n, budget)]


def test_a_budget_above_every_word_changes_nothing(mem: Memcli, corpus: dict[str, list[str]]) -> None:
    for q in ("coffee zanzibar", "tea coffee", "harbour", "coffee", "note3 tea"):
        assert kw(mem, q, 1000) == kw(mem, q, 0)


def test_the_rare_word_is_searched_fully_the_common_one_dropped(mem: Memcli, corpus: dict[str, list[str]]) -> None:
    unbounded = kw(mem, "coffee zanzibar", 0)
    assert len(unbounded) == len(corpus["coffee"])  # every coffee memory matches the OR query
    bounded = kw(mem, "coffee zanzibar", 10)
    assert bounded == corpus["zanzibar"]  # coffee (31 matches) is over the budget; zanzibar (1) is not


def test_common_words_still_count_where_they_occur_together(mem: Memcli, corpus: dict[str, list[str]]) -> None:
    # coffee (31) and tea (33) are each over the budget; the 3 memories with both fit it.
    assert sorted(kw(mem, "coffee tea", 10)) == sorted(corpus["both"])
    # with a rare word too: the rare word's match and the pairs
    got = kw(mem, "coffee tea zanzibar", 10)
    assert sorted(got) == sorted(corpus["both"] + corpus["zanzibar"])


def test_only_a_common_word_ranks_its_newest_matches(mem: Memcli, corpus: dict[str, list[str]]) -> None:
    got = kw(mem, "coffee", 5)
    newest = corpus["coffee"][-5:]  # ids in insertion order; rowids grow with it
    assert got and set(got) <= set(newest)
    assert len(got) == 5


def test_recall_reads_the_budget_from_the_config(mem: Memcli, corpus: dict[str, list[str]]) -> None:
    assert mem._ctx.settings.recall.keyword_max_docs == 10000  # the shipped default
    small = Memcli(settings={("recall", "keyword_max_docs"): 10})  # the same MEMCLI_HOME
    try:
        hits = small.recall("coffee zanzibar", k=5, touch=False).hits
        by_keyword = [h.memory.id for h in hits if h.keyword_rank is not None]
        assert by_keyword == corpus["zanzibar"]
    finally:
        small.close()
    hits = mem.recall("coffee zanzibar", k=5, touch=False).hits
    assert sum(h.keyword_rank is not None for h in hits) == 5  # unbounded here: every coffee memory matched


def test_all_terms_check_with_filters(mem: Memcli, corpus: dict[str, list[str]]) -> None:
    cat = mem._ctx.store.catalog
    assert cat.matches_all_terms(Filter(space="default"), "coffee zanzibar harbour")
    assert not cat.matches_all_terms(Filter(space="default"), "tea zanzibar")
    assert not cat.matches_all_terms(Filter(space="elsewhere"), "coffee zanzibar")


# -- wide filters: the vector index over-fetches instead of Chroma's metadata filter -----------------
@pytest.fixture
def kinds_and_times(mem: Memcli) -> list[str]:
    from datetime import UTC, datetime

    from memcli.records import Kind

    ids = []
    for i in range(40):
        kind = Kind.FACT if i % 4 == 0 else Kind.NOTE
        when = datetime(2024, 1 + i % 12, 1 + i % 28, tzinfo=UTC)
        ids.append(mem.add(f"walked the dog along the river, day {i}", kind=kind, when=when).added[0].id)
    return ids


@pytest.mark.parametrize(("overfetch", "wide_cap"), [(4, 300_000), (1, 300_000), (1, 2)])
def test_filters_too_wide_for_an_id_list_give_the_same_hits(
    mem: Memcli, kinds_and_times: list[str], monkeypatch: pytest.MonkeyPatch, overfetch: int, wide_cap: int
) -> None:
    """FILTER_IDS_CAP 2 sends every filter down the wide path: the over-fetch answers (4), or comes up
    short with few candidates (1) so a long id list answers, or that is over its cap too (2) and
    Chroma's own filter answers. Each must give what the short id list gives."""
    from datetime import UTC, datetime

    from memcli.backends import chroma_index
    from memcli.records import Kind
    from memcli.services import recall as recall_mod

    since, until = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 9, 1, tzinfo=UTC)
    cases = [dict(kinds=[Kind.FACT]), dict(since=since, until=until), dict(kinds=[Kind.NOTE], since=since)]
    small = Memcli(settings={("recall", "candidates"): 5})
    calls: list[bool] = []
    query = small._ctx.store.index.query

    def spy(*a: object, **kw: object) -> object:
        calls.append(
            bool(kw.get("ids") is None and kw.get("overfetch_only") is not True and (kw.get("kinds") or kw.get("since")))
        )
        return query(*a, **kw)  # type: ignore[arg-type]

    try:
        expected = [[h.memory.id for h in small.recall("dog by the river", k=5, touch=False, **c).hits] for c in cases]  # type: ignore[arg-type]
        monkeypatch.setattr(recall_mod, "FILTER_IDS_CAP", 2)
        monkeypatch.setattr(recall_mod, "WIDE_IDS_CAP", wide_cap)
        monkeypatch.setattr(chroma_index, "OVERFETCH", overfetch)
        monkeypatch.setattr(small._ctx.store.index, "query", spy)
        got = [[h.memory.id for h in small.recall("dog by the river", k=5, touch=False, **c).hits] for c in cases]  # type: ignore[arg-type]
    finally:
        small.close()
    assert got == expected
    assert all(expected)
    facts = {i for n, i in enumerate(kinds_and_times) if n % 4 == 0}
    assert set(got[0]) <= facts
    assert any(calls) == (wide_cap == 2)  # Chroma's own filter only when both caps are exceeded
