"""The core memory operations through the Python API, on the real store and real MiniLM."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from storekit import add_dangling_link

from memcli.api import Memcli
from memcli.errors import ExitCode, MemcliFailure
from memcli.records import Kind

FACTS = [
    "Pickle the dog saw the vet: a mild wrist sprain, ten days of rest on the lead.",
    "I ran the Harbour 10K in 47:12, a new personal best.",
    "We moved to 14 Alder Row, flat 3B, on a rainy Saturday.",
    "The ETA bug came from a cache key that ignored the vehicle class.",
    "Gnocchi recipe: potatoes, flour, an egg yolk, nutmeg; brown butter and sage.",
]


def test_add_recall_finds_by_meaning_and_keyword(mem: Memcli) -> None:
    for f in FACTS:
        assert len(mem.add(f).added) == 1
    hits = mem.recall("what did the veterinarian say about my puppy?", k=3).hits
    assert hits[0].memory.text == FACTS[0]
    assert hits[0].dense_rank == 1
    kw = mem.recall("Alder Row", k=2).hits
    assert kw[0].memory.text == FACTS[2] and kw[0].keyword_rank == 1


def test_record_has_every_field(mem: Memcli) -> None:
    when = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
    m = mem.add("Dentist on Tuesday", tags=["health", "#teeth"], pinned=True, when=when, kind=Kind.EPISODE).added[0]
    assert m.kind is Kind.EPISODE and m.tags == ("health", "teeth") and m.pinned
    assert m.event_at == when and m.recorded_at > when
    assert m.access_count == 0 and m.last_access is None
    assert len(m.content_hash) == 64 and m.embed_model.startswith("all-MiniLM-L6-v2@")
    assert m.source == "api" and m.space == "default" and m.state == "active"
    assert mem.show(m.id[:6]) == m


def test_duplicates_are_not_stored_twice(mem: Memcli) -> None:
    first = mem.add("Buy oat milk").added[0]
    again = mem.add("  Buy   oat milk ")
    assert again.added == () and again.duplicates[0].id == first.id
    assert mem.list().total == 1


def test_recall_updates_counters(mem: Memcli) -> None:
    m = mem.add(FACTS[1]).added[0]
    mem.recall("my personal best at the Harbour 10K", k=1)
    mem.recall("10K personal best", k=1)
    shown = mem.show(m.id)
    assert shown.access_count == 2 and shown.last_access is not None
    mem.recall("10K", k=1, touch=False)
    assert mem.show(m.id).access_count == 2


def test_filters_kind_tag_time(mem: Memcli) -> None:
    old = datetime(2020, 1, 1, tzinfo=UTC)
    mem.add("Trip to Lisbon with Liv", when=old, tags=["travel"])
    mem.add("Trip to Oslo for work", tags=["work"], kind=Kind.EPISODE)
    assert [h.memory.text for h in mem.recall("trip", tags=["travel"]).hits] == ["Trip to Lisbon with Liv"]
    assert [h.memory.text for h in mem.recall("trip", kinds=[Kind.EPISODE]).hits] == ["Trip to Oslo for work"]
    recent = mem.recall("trip", since=datetime.now(UTC) - timedelta(days=1)).hits
    assert [h.memory.text for h in recent] == ["Trip to Oslo for work"]
    before = mem.recall("trip", until=old + timedelta(days=1)).hits
    assert [h.memory.text for h in before] == ["Trip to Lisbon with Liv"]
    page = mem.list(since=old - timedelta(days=1), until=old + timedelta(days=1))
    assert page.total == 1


def test_spaces_are_separate(mem: Memcli) -> None:
    mem.add("Quarterly planning is on Monday", space="work")
    mem.add("Liv's birthday is in March", space="personal")
    assert [h.memory.space for h in mem.recall("birthday", space="personal").hits] == ["personal"]
    assert all(h.memory.space == "work" for h in mem.recall("birthday", space="work").hits)
    assert mem.stats(space="work").spaces == {"personal": 1, "work": 1}
    with pytest.raises(MemcliFailure) as e:
        mem.add("x", space="Bad Space!")
    assert e.value.code == ExitCode.USAGE


def test_long_text_is_chunked_not_truncated(mem: Memcli) -> None:
    text = "\n\n".join(f"Paragraph {i}: " + "the quick brown fox jumps over the lazy dog " * 6 for i in range(12))
    result = mem.add(text)
    assert result.chunked and len(result.added) > 1
    assert [m.position for m in result.added] == list(range(len(result.added)))
    emb = mem._ctx.embedder
    assert all(emb.count_tokens(m.text) <= emb.max_tokens for m in result.added)
    joined = " ".join(m.text for m in result.added)
    assert " ".join(joined.split()) == " ".join(text.split())


def test_empty_text_is_refused(mem: Memcli) -> None:
    with pytest.raises(MemcliFailure) as e:
        mem.add("   \n")
    assert e.value.code == ExitCode.USAGE
    assert mem.list().total == 0


def test_forget_to_trash_and_restore(mem: Memcli) -> None:
    ids = [mem.add(f).added[0].id for f in FACTS]
    result = mem.forget([ids[0][:8]])
    assert not result.purged and [m.id for m in result.memories] == [ids[0]]
    assert ids[0] not in {h.memory.id for h in mem.recall("vet dog wrist sprain", k=5).hits}
    assert mem.list(trash=True).memories[0].id == ids[0]
    assert mem._ctx.store.index.count("default") == len(FACTS) - 1
    mem.restore([ids[0]])
    assert mem.recall("vet dog wrist sprain", k=1).hits[0].memory.id == ids[0]
    assert mem._ctx.store.index.count("default") == len(FACTS)


def test_forget_by_query_dry_run_changes_nothing(mem: Memcli) -> None:
    for f in FACTS:
        mem.add(f)
    preview = mem.forget(query="gnocchi recipe", k=1, dry_run=True)
    assert preview.dry_run and "Gnocchi" in preview.memories[0].text
    assert mem.list().total == len(FACTS)
    mem.forget(query="gnocchi recipe", k=1)
    assert mem.list().total == len(FACTS) - 1


def test_unknown_id(mem: Memcli) -> None:
    with pytest.raises(MemcliFailure) as e:
        mem.show("deadbeef")
    assert e.value.code == ExitCode.NOT_FOUND and "memcli list" in e.value.hint


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_purge_leaves_no_trace_of_the_text(mem: Memcli, home: Path) -> None:
    marker = "zanzibarquokka7731"
    for f in FACTS:
        mem.add(f)
    m = mem.add(f"My secret word is {marker}, never tell anyone").added[0]
    mem.recall(marker)  # let the text reach every index and log
    mem.forget([m.id])  # trash first: purge must also work from the trash
    result = mem.forget([m.id], purge=True)
    assert result.purged and result.removed
    mem.close()
    data = _all_bytes(home / "data")
    assert marker.encode() not in data
    assert b"zanzibarquokka" not in data
    again = Memcli()
    assert again.list().total == len(FACTS) and again.list(trash=True).total == 0
    assert all(h.memory.id != m.id for h in again.recall("secret word", k=10).hits)
    history = again._ctx.store.catalog.history(m.id)
    assert [a for _, a, _ in history] == ["purge"]
    again.close()


def test_failed_index_write_leaves_no_half_memory(mem: Memcli, monkeypatch: pytest.MonkeyPatch) -> None:
    mem.add(FACTS[0])
    index = mem._ctx.store.index

    def broken(*a: object, **k: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C between the catalog write and the index write

    monkeypatch.setattr(index, "upsert", broken)
    with pytest.raises(KeyboardInterrupt):
        mem.add(FACTS[1])
    monkeypatch.undo()
    assert mem.list().total == 1
    assert [h.memory.text for h in mem.recall("10K race", k=5).hits] == [FACTS[0]]


def test_interrupted_write_is_replayed_on_next_open(mem: Memcli, home: Path) -> None:
    """A process killed after the catalog commit but before the index write: the next open completes it."""
    ids = [mem.add(f).added[0].id for f in FACTS[:3]]
    store = mem._ctx.store
    store.index.delete("default", [ids[1]])
    with store.catalog.transaction() as db:
        store.catalog.set_vec_state(db, [ids[1]], "pending_add")
    mem.close()
    again = Memcli()
    assert again._ctx.store.index.count("default") == 3
    assert any("unfinished" in n for n in again.notices)
    assert again.recall("Harbour 10K personal best", k=1).hits[0].memory.id == ids[1]
    again.close()


def test_other_embedding_model_is_refused_until_reindex(mem: Memcli, home: Path, minilm_path: Path, tmp_path: Path) -> None:
    from memcli.models.bundled import bundled_minilm_dir
    from memcli.models.convert import convert_bert

    mem.add(FACTS[0])
    mem.add(FACTS[1])
    mem.close()
    src = bundled_minilm_dir()
    assert src is not None
    other = convert_bert(src, tmp_path / "other-minilm.gguf", name="other-minilm")
    switched = Memcli(settings={("embedding", "model"): str(other.path)})
    with pytest.raises(MemcliFailure) as e:
        switched.add("Another memory would mix two models' vectors.")
    assert e.value.code == ExitCode.STORE and "memcli reindex" in e.value.hint
    # Recall still answers, by keywords, and says why and what to do.
    degraded = switched.recall("dog")
    assert [h.memory.text for h in degraded.hits] == [FACTS[0]]
    assert [d.leg for d in degraded.degraded] == ["dense"] and "memcli reindex" in degraded.degraded[0].hint
    result = switched.reindex()
    assert result.memories == 2 and result.new_model.startswith("other-minilm@")
    assert switched.recall("veterinarian and my dog", k=1).hits[0].memory.text == FACTS[0]
    assert {m.embed_model for m in switched.list().memories} == {result.new_model}
    switched.close()


@pytest.mark.embedded_only  # the embedded Chroma directory
def test_data_dirs_are_owner_only(mem: Memcli, home: Path) -> None:
    mem.add(FACTS[0])
    for p in [home, home / "data", home / "data" / "chroma", home / "data" / "memcli.sqlite3"]:
        assert p.stat().st_mode & 0o077 == 0, p


def test_unusable_data_dir_is_a_clear_error(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "data").write_text("not a directory")
    with pytest.raises(MemcliFailure) as e:
        Memcli().add("hello")
    assert e.value.code in (ExitCode.STORE, ExitCode.USAGE, ExitCode.INTERNAL) and str(home / "data") in e.value.message


@pytest.mark.embedded_only  # in server mode the server is (tests/test_server.py)
def test_catalog_is_the_source_of_truth(mem: Memcli, home: Path) -> None:
    """The catalog alone can rebuild the vector index: it stores every embedding."""
    mem.add(FACTS[0])
    mem.close()
    db = sqlite3.connect(home / "data" / "memcli.sqlite3")
    (blob,) = db.execute("SELECT embedding FROM memories").fetchone()
    assert len(blob) == 384 * 4
    db.close()


def test_doctor_finds_and_repairs_a_damaged_vector_index(mem: Memcli) -> None:
    ids = [mem.add(f).added[0].id for f in FACTS]
    assert mem.doctor().ok
    index = mem._ctx.store.index
    index.delete("default", ids[:2])  # vectors lost
    index.upsert(
        "default",
        ["0123456789abcdef"],
        [[0.1] * 384],
        [__import__("memcli.backends.base", fromlist=["x"]).VectorMeta("note", 0.0)],
    )
    report = mem.doctor()
    assert not report.ok
    bad = next(f for f in report.findings if f.check == "vector index")
    assert "2 missing, 1 orphaned" in bad.detail
    repaired = mem.doctor(repair=True)
    assert repaired.ok and mem.doctor().ok
    assert index.count("default") == len(FACTS)
    assert mem.recall("vet dog wrist sprain", k=1).hits[0].memory.id == ids[0]


def test_doctor_finds_dangling_links_and_reports_held_locks(mem: Memcli, home: Path) -> None:
    import subprocess
    import sys

    a, b = (mem.add(f).added[0].id for f in FACTS[:2])
    mem._ctx.store.link(a, b, "related")
    report = mem.doctor()
    assert report.ok
    assert next(f for f in report.findings if f.check == "links").detail.startswith("1 links, 0 ")
    assert "free" in next(f for f in report.findings if f.check == "locks").detail
    add_dangling_link(mem, a)  # damage: a link to a memory that is not there
    bad = next(f for f in mem.doctor().findings if f.check == "links")
    assert not bad.ok and "1 to memories that no longer exist" in bad.detail
    assert mem.doctor(repair=True).ok and mem.doctor().ok
    assert mem._ctx.store.catalog.links(a) == [(a, "related", b)]  # the good link kept

    # Another process holding the write lock (a write in progress) is named; when it dies, the lock
    # file stays behind and is reported free.
    lock = home / "data" / "write.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('held', flush=True); time.sleep(60)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        held = next(f for f in mem.doctor().findings if f.check == "locks")
        assert held.ok and "write.lock" in held.detail and "held" in held.detail
    finally:
        holder.kill()
        holder.wait()
    assert lock.exists() and "free" in next(f for f in mem.doctor().findings if f.check == "locks").detail


def test_reindex_model_moves_the_store_and_records_it_in_the_config(
    cli: Any, home: Path, minilm_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`memcli reindex --model NEW`: every memory re-embedded with NEW, the choice written to the user's
    config (their comments kept), later commands use it; a model that does not load changes nothing."""
    from memcli.models.bundled import bundled_minilm_dir
    from memcli.models.convert import convert_bert

    monkeypatch.delenv("MEMCLI_EMBEDDING_MODEL")
    config = home / "config.toml"
    home.mkdir(parents=True)
    config.write_text(f'# my settings\n[embedding]\nmodel = "{minilm_path}"  # the default\n\n[recall]\nk = 7\n')
    for fact in FACTS[:2]:
        assert cli("add", fact).code == 0
    src = bundled_minilm_dir()
    assert src is not None
    other = convert_bert(src, tmp_path / "other-minilm.gguf", name="other-minilm").path

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    r = cli("reindex", "--model", str(bad))
    assert r.code == 5, r.err
    assert str(minilm_path) in config.read_text()  # nothing recorded
    assert cli("recall", "veterinarian and my dog", "--json").code == 0  # the store still works as before

    r = cli("reindex", "--model", str(other), "--json")
    assert r.code == 0, r.err
    data = r.json()["data"]
    assert data["memories"] == 2 and data["new_model"].startswith("other-minilm@") and data["config_file"] == str(config)
    text = config.read_text()
    assert f'model = "{other}"' in text and "# my settings" in text and "k = 7" in text
    r = cli("recall", "veterinarian and my dog", "-k", "1", "--json")  # no flag, no env: the config names it
    assert r.code == 0, r.err
    assert r.json()["data"]["hits"][0]["memory"]["text"] == FACTS[0]
    assert {m["embed_model"] for m in cli("list", "--json").json()["data"]["memories"]} == {data["new_model"]}
