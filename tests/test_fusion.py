"""Learned fusion (memcli/services/fusion.py): the features it reads from a candidate pool, and what
it does to real recalls, next to the RRF it replaced as the default."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import pytest

from memcli.api import Memcli
from memcli.errors import MemcliFailure
from memcli.records import Kind, Memory
from memcli.services import fusion
from memcli.services.recall import fusion_features
from memcli.store import Filter
from memcli.text import cues

NOW = datetime(2024, 6, 1, 12, 0).astimezone()


def memory(i: int, text: str, source: str = "chat#s1", kind: Kind = Kind.EPISODE, position: int | None = -1) -> Memory:
    return Memory(
        id=f"m{i}", space="default", text=text, kind=kind, source=source, position=i if position == -1 else position,
        recorded_at=NOW, event_at=None,
        tags=(), pinned=False, importance=0.5, access_count=0, last_access=None, content_hash="", embed_model="", keys="",
        state="active",
    )  # fmt: skip


def cand(
    m: Memory, sim: float | None, dense: int | None, kw: int | None, bm: float = 0.0, text: float = 0.0, keys: float = 0.0
) -> fusion.Candidate:
    return fusion.Candidate(m, sim, dense, kw, bm, text, keys)


def col(x: object, name: str) -> list[float]:
    return [round(float(v), 6) for v in x[:, fusion.FEATURES.index(name)]]  # type: ignore[index]


def test_features_read_ranks_ratios_coverage_and_neighbours() -> None:
    pool = [
        cand(memory(0, "Mel: I painted a sunrise at the lake"), 0.6, 1, 2, bm=4.0, text=3.0, keys=1.0),
        cand(memory(1, "Caroline: Lovely! Which lake?"), 0.4, 2, 1, bm=8.0, text=0.0, keys=6.0),
        cand(memory(3, "Mel: paintings of sunrises"), None, None, 3, bm=2.0, text=2.0, keys=0.0),
        cand(memory(9, "an unrelated note about taxes", source="notes.md", kind=Kind.NOTE), 0.5, 3, None),
    ]
    x = fusion.features(pool, ["paint", "sunrise", "mel"])
    assert x.shape == (4, len(fusion.FEATURES))
    assert col(x, "dense_rrf") == [round(1 / 11, 6), round(1 / 12, 6), 0.0, round(1 / 13, 6)]
    assert col(x, "keyword_rrf") == [round(1 / 12, 6), round(1 / 11, 6), round(1 / 13, 6), 0.0]
    # A candidate without a known vector counts as the weakest known one, never as the best.
    assert col(x, "similarity_gap") == [0.0, -0.2, -0.2, -0.1]
    assert col(x, "bm25") == [0.5, 1.0, 0.25, 0.0]
    assert col(x, "bm25_text") == [1.0, 0.0, round(2 / 3, 6), 0.0]
    assert col(x, "bm25_keys") == [round(1 / 6, 6), 1.0, 0.0, 0.0]
    # "painted"/"paintings" hold "paint", "sunrises" holds "sunrise"; a turn's speaker label is not
    # evidence of its content, so "mel" counts for nobody.
    assert col(x, "coverage") == [round(2 / 3, 6), 0.0, round(2 / 3, 6), 0.0]
    assert col(x, "source_best") == [1.0, 1.0, 1.0, 0.0]
    # Positions 0, 1 and 3 of chat#s1: 0 and 1 are neighbours, 1 and 3 are two apart.
    assert col(x, "near1_bm25") == [1.0, 0.5, 0.0, 0.0]
    assert col(x, "near2_bm25") == [0.0, 0.25, 1.0, 0.0]
    assert col(x, "near1_coverage") == [0.0, round(2 / 3, 6), 0.0, 0.0]
    assert col(x, "near1_similarity") == [-0.2, 0.0, -1.0, -1.0]


def test_memories_without_a_position_get_no_source_or_neighbour_evidence() -> None:
    """Two `memcli add`s share the source "cli" without being one document: a strong match in one
    lends nothing to the other."""
    strong = cand(memory(0, "the marathon is on April 12", source="cli", kind=Kind.NOTE, position=None), 0.8, 1, 1, bm=6.0)
    other = cand(memory(1, "bought groceries", source="cli", kind=Kind.NOTE, position=None), 0.2, 2, None)
    x = fusion.features([strong, other], ["marathon"])
    assert col(x, "source_best") == [0.0, 0.0]
    assert col(x, "near1_bm25") == [0.0, 0.0] and col(x, "near1_similarity") == [-1.0, -1.0]


def test_an_empty_pool_has_no_rows() -> None:
    assert fusion.features([], ["anything"]).shape == (0, len(fusion.FEATURES))
    assert len(fusion.scores([], ["anything"])) == 0


def test_scores_follow_the_weights() -> None:
    strong = cand(memory(0, "Mel: the dentist moved my appointment"), 0.7, 1, 1, bm=5.0, text=5.0)
    weak = cand(memory(5, "Mel: nothing much", source="chat#s2"), 0.2, 9, None)
    s = fusion.scores([strong, weak], ["dentist", "appointment"])
    assert s[0] > s[1]


def test_keyword_hits_score_text_and_keys_apart(mem: Memcli, tmp_path: Path) -> None:
    src = tmp_path / "chat.jsonl"
    turns = [("A", "we adopted a puppy named Biscuit"), ("B", "how is the training going?"), ("A", "slowly, lots of treats")]
    session = {"session": "s1", "time": "2024-05-01T10:00:00", "messages": [{"speaker": s, "text": t} for s, t in turns]}
    src.write_text(json.dumps(session) + "\n")
    mem.ingest([src])
    hits = {mem.show(h.id).text: h for h in mem._ctx.store.catalog.keyword_hits(Filter(space="default"), "puppy biscuit", 10)}
    own = hits["A: we adopted a puppy named Biscuit"]
    beside = hits["B: how is the training going?"]  # matches only through its neighbour in its keys
    assert own.text > 0 and beside.text == 0.0
    assert beside.keys > 0
    assert own.score > beside.score


def test_learned_fusion_brings_the_answer_beside_the_match_and_rrf_remains_selectable(home: Path, tmp_path: Path) -> None:
    turns = [
        ("Jon", "morning! busy day at the studio"),
        ("Gina", "how did the dance competition go?"),
        ("Jon", "we won first place with the contemporary routine"),
        ("Gina", "amazing, congratulations to the whole team"),
        ("Jon", "thanks, the kids practised for months"),
    ] + [("Gina", f"unrelated chatter number {i} about the weather and groceries") for i in range(30)]
    path = tmp_path / "talk.jsonl"
    messages = [{"speaker": s, "text": t} for s, t in turns]
    path.write_text(json.dumps({"session": "s1", "time": "2023-03-04T09:00:00", "messages": messages}) + "\n")
    results = {}
    for fusion_mode in ("learned", "rrf"):
        m = Memcli(home=home, settings={("recall", "fusion"): fusion_mode})
        try:
            if fusion_mode == "learned":
                m.ingest([path])
            hits = m.recall("Which place did Jon's team win in the dance competition?", k=3, now=NOW, touch=False).hits
            results[fusion_mode] = [h.memory.text for h in hits]
            if fusion_mode == "learned":
                pool, x = fusion_features(m._ctx, "Which place did Jon's team win in the dance competition?", now=NOW)
                assert x.shape == (len(pool), len(fusion.FEATURES))
                assert len(pool) == len({p.id for p in pool}) <= 2 * m._ctx.settings.recall.candidates
        finally:
            m.close()
    # The turn that names the competition and the answer beside it (which shares only "place") come
    # first, above thirty turns of chatter; "rrf" remains a working choice.
    assert set(results["learned"][:2]) == {
        "Gina: how did the dance competition go?",
        "Jon: we won first place with the contemporary routine",
    }
    assert "Jon: we won first place with the contemporary routine" in results["rrf"]


def test_an_unknown_fusion_is_a_config_error(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[recall]\nfusion = "magic"\n')
    with pytest.raises(MemcliFailure, match="fusion must be one of learned, rrf"):
        Memcli(home=home).close()


def test_cues_read_what_a_question_asks_for_and_what_a_text_holds() -> None:
    assert cues.asks_for("When did Jon open his studio?") == {"time"}
    assert cues.asks_for("What year did we move?") == {"time"}
    assert cues.asks_for("Where did Mel go camping?") == {"name"}
    assert cues.asks_for("Which countries has James visited?") == {"name"}
    assert cues.asks_for("How many screenplays has Joanna written?") == {"number"}
    assert cues.asks_for("What does Calvin do to relax?") == frozenset()
    held = cues.cues("We drove to Jasper last weekend, two days of hiking.")
    assert held.time and held.number and held.names == {"Jasper"}
    # A capitalised month is a time, the verb "may" is not; a sentence's first word is no name.
    assert cues.cues("I went there in May.").time
    assert not cues.cues("Sure, we may go.").time
    assert cues.cues("Great news! Thanks, Jon.").names == {"Jon"}
    assert cues.question_share("Did you win? We did!") == 0.5
    assert cues.question_share("How did it go?") == 1.0
    assert cues.question_share("...") == 0.0


def test_what_a_candidate_says_counts_beside_what_it_matched() -> None:
    pool = [
        cand(memory(0, "Nate: Wow, cool!"), 0.5, 1, None),
        cand(memory(1, "Nate: How many screenplays have you finished so far?"), 0.6, 2, 1, bm=4.0, text=4.0),
        cand(memory(2, "Joanna: Two! I wrapped up the second one last Friday and sent it to Nate."), 0.4, 3, None),
        cand(memory(7, "Joanna likes long walks with Nate", source="cli", kind=Kind.FACT, position=None), 0.3, 4, None),
    ]
    x = fusion.features(pool, ["many", "screenplays"], "How many screenplays has Joanna written?")
    full = math.log1p(fusion.SAYS_ENOUGH)
    # Length and questions judge conversation turns only: a short fact is not a reaction.
    assert col(x, "words") == [round(math.log1p(2) / full, 6), round(math.log1p(8) / full, 6), round(math.log1p(14) / full, 6), 1.0]
    assert col(x, "asks") == [0.0, 1.0, 0.0, 0.0]
    # Nate and Joanna are speakers here, so naming them is no specific; "Friday" is a time, "Two" a number.
    assert col(x, "specifics") == [0.0, 0.0, round(2 / 3, 6), 0.0]
    assert col(x, "answer_kind") == [0.0, 0.0, 1.0, 0.0]
    # The turn after the matching question is its likely answer; nothing follows a fact.
    assert col(x, "answers_match") == [0.0, 0.0, 1.0, 0.0]
    # A "what" question asks for no kind of thing: answer_kind stays 0, the rest does not depend on it.
    y = fusion.features(pool, ["many", "screenplays"], "What did Joanna write?")
    assert col(y, "answer_kind") == [0.0] * 4 and col(y, "specifics") == col(x, "specifics")


def test_the_answer_outranks_a_reaction_that_matched_as_well() -> None:
    """A reaction that matched a little better (ranks) than the turn that tells the answer, right
    after a question that matched, comes second; so does the question itself."""
    question = cand(memory(0, "Mel: Did you go to the pottery workshop?"), 0.55, 3, 1, bm=6.0, text=6.0)
    answer = cand(memory(1, "Caroline: Yes, on Saturday. I made two bowls and a mug for my mom."), 0.5, 2, 3, bm=3.0, text=3.0)
    reaction = cand(memory(5, "Mel: Pottery, nice!", source="chat#s2"), 0.5, 1, 2, bm=3.0, text=3.0)
    s = fusion.scores([question, answer, reaction], ["pottery", "workshop"], "When did Caroline go to the pottery workshop?")
    assert s[1] > s[2]
    assert s[1] > s[0]
