"""Degraded recall says so: with one leg of recall unavailable (the embedding model missing or
corrupt, the vector index unreadable, the keyword index emptied) recall still answers from the leg
that works, and the result, the human output and ``--json`` name the leg that was missing.

Real store in a temp dir, real MiniLM; the damage is done to real files."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from storekit import empty_keyword_index

from memcli.api import Memcli
from memcli.records import RecallResult

NOTES = (
    "The dentist appointment is on Thursday at 14:30 with Dr. Okafor.",
    "Pickle's vet said ten days of rest after the knee surgery.",
    "The sourdough starter needs feeding every morning with rye flour.",
    "Liv's flight from Reykjavik lands at 18:40 on Friday.",
)


@pytest.fixture
def filled(home: Path) -> Path:
    """A home holding NOTES; closed, so the test can damage its files."""
    mem = Memcli()
    for n in NOTES:
        mem.add(n)
    mem.close()
    return home


def texts(r: RecallResult) -> list[str]:
    return [h.memory.text for h in r.hits]


def legs(r: RecallResult) -> list[str]:
    return [d.leg for d in r.degraded]


def test_a_healthy_recall_is_not_degraded(filled: Path) -> None:
    mem = Memcli()
    r = mem.recall("when is the dentist appointment?")
    mem.close()
    assert r.degraded == ()
    assert texts(r)[0] == NOTES[0]


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_without_the_embedding_model_recall_answers_by_keywords_and_says_so(
    filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    model = tmp_path / "broken.gguf"
    if damage == "corrupt":
        model.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 4096)  # the magic, then garbage
    monkeypatch.setenv("MEMCLI_EMBEDDING_MODEL", str(model))
    mem = Memcli()
    r = mem.recall("dentist appointment")
    mem.close()
    assert NOTES[0] in texts(r)  # the keyword leg found it
    assert all(h.dense_rank is None for h in r.hits)
    assert not r.abstained
    assert legs(r) == ["dense"]
    assert "keywords only" in r.degraded[0].reason and "embedding model" in r.degraded[0].reason
    if damage == "missing":
        assert r.degraded[0].hint  # the user's to fix: it says what to do


def test_the_cli_names_the_missing_leg_in_human_output_and_json(
    filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Any]
) -> None:
    monkeypatch.setenv("MEMCLI_EMBEDDING_MODEL", str(tmp_path / "gone.gguf"))
    r = cli("recall", "sourdough starter")
    assert r.code == 0, r.err
    assert NOTES[2] in r.out
    assert "searched by keywords only" in r.err and "hint:" in r.err
    j = cli("recall", "sourdough starter", "--json")
    assert j.code == 0, j.err
    data = j.json()["data"]
    assert [d["leg"] for d in data["degraded"]] == ["dense"]
    assert data["degraded"][0]["hint"]
    assert NOTES[2] in [h["memory"]["text"] for h in data["hits"]]


@pytest.mark.parametrize("damage", ["garbage", "missing", "not a directory"])
def test_with_the_vector_index_unreadable_recall_answers_by_keywords(
    filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    # Another home holding the same catalog: embedded Chroma caches an open store per path and process,
    # so the damage must be to files this process never opened.
    other = tmp_path / "other"
    data = other / "data"
    data.mkdir(parents=True, mode=0o700)
    for f in (filled / "data").glob("memcli.sqlite3*"):
        shutil.copy2(f, data / f.name)
    if damage == "garbage":
        (data / "chroma").mkdir(mode=0o700)
        (data / "chroma" / "chroma.sqlite3").write_bytes(b"this is not a database" * 100)
    elif damage == "not a directory":
        (data / "chroma").write_bytes(b"")
    monkeypatch.setenv("MEMCLI_HOME", str(other))
    mem = Memcli()
    r = mem.recall("Pickle vet rest")
    mem.close()
    assert texts(r)[0] == NOTES[1]
    assert legs(r) == ["dense"]
    assert "keywords only" in r.degraded[0].reason and "vector index" in r.degraded[0].reason
    assert "doctor" in r.degraded[0].hint
    assert r.hits[0].dense_similarity is None and r.hits[0].keyword_rank == 1


def test_with_the_keyword_index_emptied_recall_answers_by_meaning_and_says_it_is_out_of_date(filled: Path) -> None:
    mem = Memcli()
    empty_keyword_index(mem)
    r = mem.recall("when does Liv's plane arrive?")
    assert texts(r)[0] == NOTES[3]  # the dense leg still finds it
    assert all(h.keyword_rank is None for h in r.hits)
    assert legs(r) == ["keyword"]
    assert "out of date" in r.degraded[0].reason and "doctor --repair" in r.degraded[0].hint
    mem.doctor(repair=True)
    fixed = mem.recall("when does Liv's plane arrive?")
    mem.close()
    assert fixed.degraded == ()
    assert fixed.hits[0].keyword_rank is not None


def test_with_both_the_model_and_the_keyword_index_gone_it_still_answers_and_names_both(
    filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem = Memcli()
    empty_keyword_index(mem)
    mem.close()
    monkeypatch.setenv("MEMCLI_EMBEDDING_MODEL", str(tmp_path / "gone.gguf"))
    mem = Memcli()
    r = mem.recall("dentist")
    mem.close()
    # Nothing can be found, but the answer says why rather than pretending the store holds nothing.
    assert r.hits == ()
    assert sorted(legs(r)) == ["dense", "keyword"]


def test_chat_says_so_once_per_conversation_and_in_memories(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scripted import ScriptedChat

    from memcli.cli.chat_repl import _memories, show_turn
    from memcli.services.chat import ChatSession

    mem = Memcli()
    empty_keyword_index(mem)
    session = ChatSession(mem._ctx, ScriptedChat(replies=["Thursday.", "On Friday."]), background=False)  # type: ignore[arg-type]
    said: set[str] = set()
    first = show_turn(session, "When is the dentist appointment?", said)
    second = show_turn(session, "When does Liv's flight land?", said)
    err = capsys.readouterr().err
    assert [d.leg for d in first.plan.degraded] == ["keyword"] and first.plan.hits
    assert first.plan.to_json()["degraded"][0]["leg"] == "keyword"  # chat --json carries it
    assert second.plan.degraded and err.count("keyword search incomplete") == 1  # said once
    _memories(session, "")
    shown = capsys.readouterr()
    assert "keyword search incomplete" in shown.err and "doctor --repair" in shown.err
    session.close()
    mem.close()
