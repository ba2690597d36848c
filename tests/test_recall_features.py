"""Time-aware recall, context around hits, abstention — on a fixture with known dates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memcli.api import Memcli
from memcli.records import Kind

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def dated(mem: Memcli) -> Memcli:
    def at(y: int, m: int, d: int) -> datetime:
        return datetime(y, m, d, 12, 0, tzinfo=UTC)

    mem.add("Went to the dentist for a filling", when=at(2023, 3, 14))
    mem.add("Went to the dentist for a cleaning", when=at(2024, 6, 2))
    mem.add("Dentist check-up, all fine", when=at(2026, 11, 18))
    mem.add("Bought winter tyres for the car", when=at(2026, 11, 23))
    return mem


def test_month_in_query_becomes_a_window(dated: Memcli) -> None:
    r = dated.recall("dentist in March 2023", now=NOW)
    assert [h.memory.text for h in r.hits] == ["Went to the dentist for a filling"]
    assert "March 2023" in r.time_window


def test_relative_expressions_use_the_reference_time(dated: Memcli) -> None:
    assert dated.recall("what did I do last week", now=NOW).hits[0].memory.text == "Dentist check-up, all fine"
    yesterday = dated.recall("what happened yesterday", now=NOW)
    assert [h.memory.text for h in yesterday.hits] == ["Bought winter tyres for the car"]
    old = dated.recall("dentist two years ago", now=NOW)
    assert old.hits[0].memory.text == "Went to the dentist for a cleaning"


def test_latest_prefers_recent_and_explicit_window_wins(dated: Memcli) -> None:
    assert dated.recall("my latest dentist visit", now=NOW).hits[0].memory.text == "Dentist check-up, all fine"
    r = dated.recall(
        "dentist last week",
        now=NOW,
        since=datetime(2024, 1, 1, tzinfo=UTC),
        until=datetime(2025, 1, 1, tzinfo=UTC),
    )
    assert [h.memory.text for h in r.hits] == ["Went to the dentist for a cleaning"]


def test_empty_window_falls_back_to_everything(dated: Memcli) -> None:
    r = dated.recall("dentist in March 2019", now=NOW)
    assert r.hits and "nothing there" in r.time_window


def test_time_awareness_can_be_turned_off(dated: Memcli) -> None:
    r = dated.recall("dentist in March 2023", now=NOW, time_aware=False, k=10)
    assert len(r.hits) == 4 and r.time_window == ""


def test_abstains_when_nothing_is_relevant(dated: Memcli) -> None:
    r = dated.recall("quantum chromodynamics lattice", now=NOW)
    assert r.abstained and r.confidence < 0.3
    before = dated.list().memories
    assert all(m.access_count == 0 for m in before)  # an abstained recall counts nothing
    assert not dated.recall("dentist", now=NOW).abstained


def test_context_returns_neighbouring_turns(mem: Memcli, tmp_path: Path) -> None:
    lines = [
        {
            "session": "s1",
            "time": "2023-05-08T13:56:00",
            "messages": [
                {"speaker": "Ana", "text": "Guess where I was on Saturday?"},
                {"speaker": "Ben", "text": "No idea, tell me!"},
                {"speaker": "Ana", "text": "At the pottery workshop in Porto, I made a blue bowl."},
                {"speaker": "Ben", "text": "That sounds lovely."},
            ],
        },
    ]
    p = tmp_path / "chat.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in lines))
    mem.ingest([p])
    hit = mem.recall("pottery workshop bowl", k=1, context=1).hits[0]
    assert hit.memory.text.startswith("Ana: At the pottery workshop")
    assert [m.text for m in hit.context] == ["Ben: No idea, tell me!", "Ben: That sounds lovely."]


def test_cli_explain_shows_window_and_context(cli) -> None:  # type: ignore[no-untyped-def]
    cli("add", "Planted tulip bulbs", "--when", "2025-10-05")
    r = cli("recall", "gardening in October 2025", "--explain", "--now", "2026-01-01")
    assert "October 2025" in r.err and "tulip" in r.out
    r = cli("recall", "string theory in detail")
    assert "nothing relevant found" in r.err and r.out == ""


def test_explicit_window_is_never_dropped(dated: Memcli) -> None:
    """Only a window read from the query falls back to everything; the user's own --since/--until stay."""
    r = dated.recall(
        "dentist in March 2023",
        now=NOW,
        since=datetime(2019, 1, 1, tzinfo=UTC),
        until=datetime(2019, 2, 1, tzinfo=UTC),
    )
    assert r.hits == ()


# -- following links one hop ---------------------------------------------------------------------
def _linked_store(mem: Memcli) -> dict[str, str]:
    """A note linked ('related', as consolidate links them) to another, a fact superseded by a newer
    one, a trashed memory linked to the note, and a memory in another space linked to it."""
    ids = {
        "note": mem.add("Planted the tomatoes by the south fence", tags=["garden"]).added[0].id,
        "related": mem.add("Basil grows best next to tomatoes, says the seed catalogue", tags=["garden"]).added[0].id,
        "trashed": mem.add("Old plan: tomatoes in pots on the balcony", tags=["garden"]).added[0].id,
        "elsewhere": mem.add("Tomato soup recipe from work lunch", space="work").added[0].id,
    }
    store = mem._ctx.store
    store.link(ids["note"], ids["related"], "related")
    store.link(ids["note"], ids["trashed"], "related")
    store.link(ids["note"], ids["elsewhere"], "related")
    mem.forget([ids["trashed"]])
    return ids


def test_links_bring_related_memories_with_the_reason(mem: Memcli) -> None:
    ids = _linked_store(mem)
    plain = mem.recall("where did I plant the tomatoes", k=1, touch=False)
    assert plain.hits[0].memory.id == ids["note"] and plain.hits[0].linked == ()  # off unless asked
    r = mem.recall("where did I plant the tomatoes", k=1, links=3, touch=False)
    (hit,) = r.hits
    assert hit.memory.id == ids["note"]
    # the trashed one and the other space's one are filtered out, like any recall result
    assert [x.memory.id for x in hit.linked] == [ids["related"]]
    x = hit.linked[0]
    assert x.kind == "related" and x.outgoing and "shared tags garden" in x.reason and "similarity 0." in x.reason
    assert [h.memory.id for h in r.hits] == [h.memory.id for h in plain.hits]  # ranks untouched


def test_links_follow_supersession_and_respect_as_of(mem: Memcli) -> None:
    from memcli.store import NewMemory, Succession

    store, emb = mem._ctx.store, mem._ctx.embedder
    t0 = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    [old] = store.add("default", [(NewMemory(text="My dentist is Dr. Alvarez", kind=Kind.FACT, valid_from=t0, event_at=t0, recorded_at=t0), emb.embed_documents(["My dentist is Dr. Alvarez"])[0])], emb.model_id)  # fmt: skip
    old_m = store.catalog.by_ids([old])[old]
    t1 = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    text = "My dentist is Dr. Okafor at the new clinic"
    [new] = store.apply("default", [(NewMemory(text=text, kind=Kind.FACT, valid_from=t1, event_at=t1, recorded_at=t1), emb.embed_documents([text])[0])], emb.model_id, succeeds=Succession(old_m, t1, "supersede"))  # fmt: skip
    turn = mem.add("user: I switched to Dr. Okafor, the old clinic closed", kind=Kind.EPISODE).added[0].id
    store.link(new, turn, "derived_from")
    now = mem.recall("who is my dentist", k=1, links=2, kinds=[Kind.FACT], touch=False)
    assert now.hits[0].memory.id == new
    assert [x.memory.id for x in now.hits[0].linked] == []  # the episode is not a fact; the closed fact not true now
    now = mem.recall("who is my dentist", k=1, links=2, touch=False)
    assert now.hits[0].memory.id == new
    assert [(x.memory.id, x.reason.split(";")[0]) for x in now.hits[0].linked] == [
        (turn, "derived_from link: where this was learned")
    ]
    then = mem.recall("who is my dentist", k=2, links=2, as_of=datetime(2025, 6, 1, tzinfo=UTC), touch=False)
    assert [h.memory.id for h in then.hits] == [new]
    back = mem.recall("who is my dentist", k=1, links=2, as_of=datetime(2024, 6, 1, tzinfo=UTC), touch=False)
    assert back.hits[0].memory.id == old and back.hits[0].linked == ()  # the successor was not yet true


def test_explain_shows_why_a_linked_memory_is_there(cli, mem: Memcli) -> None:  # type: ignore[no-untyped-def]
    ids = _linked_store(mem)
    mem.close()
    r = cli("recall", "where did I plant the tomatoes", "-k", "1", "--explain")
    assert r.code == 0, r.err
    assert "shared tags garden" in r.out and ids["related"][:8] in r.out
    r = cli("recall", "where did I plant the tomatoes", "-k", "1", "--links", "2", "--json")
    linked = r.json()["data"]["hits"][0]["linked"]
    assert [x["memory"]["id"] for x in linked] == [ids["related"]] and linked[0]["kind"] == "related"


def test_a_healthy_store_recalls_with_both_legs_and_says_nothing_is_missing(dated: Memcli) -> None:
    """Degraded recall names a missing leg (tests/test_degraded.py); a healthy store, embedded or on a
    server, must name none: with a filter, a time window, and in an empty space."""
    for r in (
        dated.recall("dentist", now=NOW),
        dated.recall("dentist in March 2023", now=NOW),
        dated.recall("tyres", kinds=[Kind.NOTE], now=NOW),
        dated.recall("dentist", space="empty", now=NOW),
    ):
        assert r.degraded == (), r.degraded
    top = dated.recall("dentist", now=NOW).hits[0]
    assert top.dense_rank is not None and top.keyword_rank is not None


def test_the_turn_that_answers_outranks_the_reactions_around_it(mem: Memcli, tmp_path: Path) -> None:
    """Short reactions name the topic as often as the answer does, and each turn's vector holds its
    neighbours' text: what a turn says (its length, a time, a question it answers) decides."""
    turns = [
        ("Mel", "Pottery class tonight!"),
        ("Caroline", "Pottery! Fun!"),
        ("Mel", "Did you ever finish a pottery piece?"),
        ("Caroline", "Yes, last Saturday I made two bowls and a little mug for my mom in the workshop."),
        ("Mel", "Pottery is great."),
    ] + [("Mel", f"so, about the weather and groceries, item {i}") for i in range(20)]
    path = tmp_path / "talk.jsonl"
    messages = [{"speaker": s, "text": t} for s, t in turns]
    path.write_text(json.dumps({"session": "s1", "time": "2023-06-04T09:00:00", "messages": messages}) + "\n")
    mem.ingest([path])
    hits = mem.recall("When did Caroline make pottery?", k=5, now=NOW, touch=False).hits
    assert hits[0].memory.text.startswith("Caroline: Yes, last Saturday")
