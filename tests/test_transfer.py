"""`memcli export` / `memcli import`: a lossless round trip through the versioned JSONL, and refusals
that leave the target store untouched."""

from __future__ import annotations

import base64
import errno
import json
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memcli.api import Memcli
from memcli.errors import ExitCode, MemcliFailure
from memcli.records import Kind
from memcli.services import transfer
from memcli.store import NewMemory

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
QUERIES = ("where does the user live?", "what did the vet say about Pickle?", "passport", "garden")


def build(mem: Memcli, tmp_path: Path) -> dict[str, str]:
    """A store with a bit of everything an export must carry; returns name -> id."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "garden.md").write_text("# Garden\n\nThe tomatoes need water every morning.\n\nPlant garlic in October.\n")
    mem.ingest([notes])  # chunks with source/position/keys, and a `sources` row
    ids = {
        "vet": mem.add("Pickle's vet said: ten days of rest.", tags=["dog", "vet"], when=datetime(2026, 3, 1, tzinfo=UTC))
        .added[0]
        .id,
        "passport": mem.add("The passport is in the blue folder.", pinned=True).added[0].id,
        "bergen": mem.add("The user lives in Bergen.", kind=Kind.FACT).added[0].id,
        "oslo": mem.add("The user lives in Oslo.", kind=Kind.FACT).added[0].id,
        "turn": mem.add("user: we moved to Oslo in May", kind=Kind.EPISODE).added[0].id,
        "junk": mem.add("A note that was thrown away.").added[0].id,
        "work": mem.add("The quarterly report is due Friday.", space="work").added[0].id,
    }
    store = mem._ctx.store
    emb = mem._ctx.embedder
    old = NewMemory("An old remark, importance high.", kind=Kind.EPISODE, importance=0.9, recorded_at=1.6e9, event_at=1.5e9)
    ids["old"] = store.add("default", [(old, emb.embed_documents([old.text])[0])], emb.model_id)[0]
    bergen = store.catalog.by_ids([ids["bergen"]])[ids["bergen"]]
    store.retire(bergen, ids["oslo"], valid_until=datetime(2026, 5, 1, tzinfo=UTC).timestamp(), reason="supersede")
    store.link(ids["oslo"], ids["turn"], "derived_from")
    mem.forget([ids["junk"]])
    for q in QUERIES[:2]:
        mem.recall(q)  # real recall counts and last-recall times
    return ids


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def by_type(lines: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [x for x in lines if x.get("type") == kind]


def hits(mem: Memcli, q: str, space: str = "default") -> list[tuple[str, float]]:
    return [(h.memory.id, round(h.score, 12)) for h in mem.recall(q, now=NOW, touch=False, space=space).hits]


@pytest.fixture
def source(home: Path, tmp_path: Path) -> Iterator[tuple[Memcli, dict[str, str]]]:
    mem = Memcli()
    ids = build(mem, tmp_path)
    yield mem, ids
    mem.close()


def test_round_trip_is_lossless(
    source: tuple[Memcli, dict[str, str]], tmp_path: Path, other_store: Callable[[Path], Memcli]
) -> None:
    mem, ids = source
    first = tmp_path / "first.jsonl"
    r = mem.export(first)
    n = mem._ctx.store.catalog.count()
    assert n >= 9 and r.memories == n and r.trashed == 1 and r.links == 2 and r.sources == 1 and r.spaces == ("default", "work")
    assert stat.S_IMODE(first.stat().st_mode) == 0o600  # it holds every memory
    lines = read(first)
    header = lines[0]
    assert header["format"] == "memcli-export" and header["version"] == 1 and header["embed_dim"] == 384
    assert lines[-1] == {"type": "end", "memories": n, "links": 2, "audit": r.audit, "sources": 1}
    exported = {m["id"]: m for m in by_type(lines, "memory")}
    vet = exported[ids["vet"]]
    assert vet["tags"] == ["dog", "vet"] and vet["access_count"] >= 1 and vet["last_access"] is not None
    assert exported[ids["bergen"]]["superseded_by"] == ids["oslo"] and exported[ids["bergen"]]["valid_until"] is not None
    assert exported[ids["junk"]]["state"] == "trashed" and exported[ids["junk"]]["trashed_at"] is not None
    vec = np.frombuffer(base64.b64decode(vet["embedding"]), dtype="<f4")
    stored = mem._ctx.store.catalog.embeddings([ids["vet"]])[ids["vet"]]
    assert vec.shape == (384,) and vec.tobytes() == stored
    before = {(q, sp): hits(mem, q, sp) for q in QUERIES for sp in ("default", "work")}

    other = other_store(tmp_path / "other")
    try:
        imported = other.import_(first)
        assert sorted(imported.added) == sorted(exported) and not imported.skipped and imported.reembedded == 0
        assert imported.links == 2 and imported.dangling_links == 0 and imported.sources == 1
        second = tmp_path / "second.jsonl"
        other.export(second)
        again = read(second)
        assert again[0] | {"exported_at": None} == header | {"exported_at": None}
        for kind in ("memory", "link", "source"):
            assert by_type(again, kind) == by_type(lines, kind), kind
        # The import itself is recorded (one entry per memory); everything else is as it was.
        audit_again = by_type(again, "audit")
        assert [a for a in audit_again if a["action"] != "import"] == by_type(lines, "audit")
        assert sorted(a["memory_id"] for a in audit_again if a["action"] == "import") == sorted(exported)
        after = {(q, sp): hits(other, q, sp) for q in QUERIES for sp in ("default", "work")}
        assert after == before and any(after.values())
        # Every active row is in the keyword index and the vector index; the trash in neither.
        cat = other._ctx.store.catalog
        assert cat.keyword_index_counts()[0] == n - 1
        assert not cat.pending()
        assert all(f.ok for f in other.doctor().findings if f.check != "keyword index")
        assert other.restore([ids["junk"]])[0].state == "active"  # the trash came along, restorable
        # Importing again adds nothing.
        twice = other.import_(first)
        assert twice.added == () and sorted(twice.skipped) == sorted(exported)
    finally:
        other.close()


def test_export_options_space_trash_stdout_and_markdown(cli, source: tuple[Memcli, dict[str, str]], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mem, ids = source
    total = mem._ctx.store.catalog.count_where(state="active")
    mem.close()
    out = cli("export", "--space", "work", "--no-trash")
    assert out.code == 0, out.err
    lines = [json.loads(x) for x in out.out.splitlines()]
    assert [m["id"] for m in by_type(lines, "memory")] == [ids["work"]]
    assert lines[0]["space"] == "work" and lines[0]["trash"] is False and by_type(lines, "source") == []
    no_trash = cli("export", str(tmp_path / "a.jsonl"), "--no-trash", "--json").json()["data"]
    assert no_trash["memories"] == total and no_trash["trashed"] == 0
    md = tmp_path / "md"
    r = cli("export", "--markdown", str(md), "--json")
    assert r.code == 0 and r.json()["data"]["markdown_files"] >= 4
    note = (md / "default" / "note.md").read_text(encoding="utf-8")
    assert "Pickle's vet said: ten days of rest." in note and "tags dog, vet" in note and "pinned" in note
    assert "A note that was thrown away." in (md / "default" / "trash.md").read_text(encoding="utf-8")
    assert "retired" in (md / "default" / "fact.md").read_text(encoding="utf-8")
    assert stat.S_IMODE((md / "default" / "note.md").stat().st_mode) == 0o600
    assert cli("export", "--json").code == ExitCode.USAGE  # the envelope and the export cannot share stdout


def test_import_from_stdin(
    cli, source: tuple[Memcli, dict[str, str]], tmp_path: Path, separate_store: Callable[[Path], None]
) -> None:  # type: ignore[no-untyped-def]
    mem, _ = source
    f = tmp_path / "x.jsonl"
    mem.export(f, space="work")
    mem.close()
    separate_store(tmp_path / "fresh")
    r = cli("import", "-", "--json", stdin=f.read_text(encoding="utf-8"))
    assert r.code == 0, r.err
    assert r.json()["data"]["source"] == "stdin" and len(r.json()["data"]["added"]) == 1
    plain = cli("import", "-", stdin=f.read_text(encoding="utf-8"))
    assert "imported 0 memories" in plain.out and "skipped 1 memories already in the store" in plain.out


def corrupt(lines: list[str], n: int, value: str) -> str:
    out = list(lines)
    out[n - 1] = value
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda ls: corrupt(ls, 3, '{"type": "memory", "id": '), "line 3: not JSON"),
        (lambda ls: corrupt(ls, 2, ls[1].replace('"kind":"note"', '"kind":"poem"')), "line 2: 'kind' must be one of"),
        (lambda ls: corrupt(ls, 2, ls[1].replace('"pinned":false', '"pinned":"no"')), "line 2: 'pinned' must be true or false"),
        (lambda ls: "\n".join(ls[:-1]) + "\n", "no end line: the file was cut short"),
        (lambda ls: "\n".join([ls[0], *ls[2:]]) + "\n", "the end line counts"),
        (lambda ls: corrupt(ls, 1, ls[0].replace('"version":1', '"version":7')), "export format version 7"),
        (lambda ls: "\n".join(ls[1:]) + "\n", "line 1: not a memcli export"),
    ],
)
def test_import_refuses_a_malformed_file_and_writes_nothing(cli, source, tmp_path, separate_store, edit, needle) -> None:  # type: ignore[no-untyped-def]
    mem, _ = source
    good = tmp_path / "good.jsonl"
    mem.export(good)
    mem.close()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(edit(good.read_text(encoding="utf-8").splitlines()), encoding="utf-8")
    separate_store(tmp_path / "fresh")
    r = cli("import", str(bad))
    assert r.code == ExitCode.USAGE, r.err
    assert needle in r.err and "hint" in r.err
    j = cli("import", str(bad), "--json").json()
    assert j["ok"] is False and j["error"]["name"] == "USAGE"
    fresh = Memcli()
    try:
        n = fresh._ctx.store.catalog.row_counts()
        assert n["memories"] == n["audit"] == n["links"] == 0
    finally:
        fresh.close()
    assert cli("import", str(tmp_path / "missing.jsonl")).code == ExitCode.NOT_FOUND


def test_an_interrupted_import_keeps_whole_batches_and_resumes(
    source: tuple[Memcli, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, other_store: Callable[[Path], Memcli]
) -> None:
    mem, _ = source
    f = tmp_path / "all.jsonl"
    mem.export(f)
    total = len(by_type(read(f), "memory"))
    monkeypatch.setattr(transfer, "BATCH", 4)
    other = other_store(tmp_path / "other")
    try:
        real_audit = other._ctx.store.catalog.audit
        calls = []

        def failing_audit(db: Any, at: float, rows: Any) -> None:
            calls.append(1)
            if len(calls) == 2:  # inside the second batch's transaction, after its rows were inserted
                raise OSError("disk full")
            real_audit(db, at, rows)

        monkeypatch.setattr(other._ctx.store.catalog, "audit", failing_audit)
        with pytest.raises(OSError):
            other.import_(f)
        cat = other._ctx.store.catalog
        assert cat.count() == 4  # the first batch, whole
        assert cat.count_where(action="import") == 4
        assert cat.count_where(vec_state="pending_add") == 0
        monkeypatch.setattr(other._ctx.store.catalog, "audit", real_audit)
        resumed = other.import_(f)
        assert len(resumed.skipped) == 4 and len(resumed.added) == total - 4
        assert cat.count() == total
    finally:
        other.close()


def test_import_reembeds_rows_of_another_model(
    source: tuple[Memcli, dict[str, str]], tmp_path: Path, other_store: Callable[[Path], Memcli]
) -> None:
    mem, ids = source
    f = tmp_path / "x.jsonl"
    mem.export(f, space="default")
    lines = read(f)
    fake = base64.b64encode(np.zeros(8, dtype="<f4").tobytes()).decode()
    for x in lines:
        if x.get("type") == "memory":
            x["embed_model"], x["embedding"] = "some-other-model@0000", fake
    lines[0]["embed_model"], lines[0]["embed_dim"] = "some-other-model@0000", 8
    f.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    other = other_store(tmp_path / "other")
    try:
        r = other.import_(f)
        n = len(by_type(lines, "memory"))
        assert r.reembedded == n and len(r.added) == n
        cat = other._ctx.store.catalog
        vet, blob = cat.by_ids([ids["vet"]])[ids["vet"]], cat.embeddings([ids["vet"]])[ids["vet"]]
        assert vet.embed_model == other._ctx.embedder.model_id
        expected = np.asarray(other._ctx.embedder.embed_documents([vet.text])[0], dtype=np.float32)
        assert np.allclose(np.frombuffer(blob, dtype=np.float32), expected, atol=1e-5)
        top = other.recall("what did the vet say about Pickle?", touch=False).hits[0]
        assert top.memory.id == ids["vet"]
    finally:
        other.close()


def test_import_into_a_store_of_another_model_is_refused(
    source: tuple[Memcli, dict[str, str]], tmp_path: Path, other_store: Callable[[Path], Memcli]
) -> None:
    mem, _ = source
    f = tmp_path / "x.jsonl"
    mem.export(f)
    other = other_store(tmp_path / "other")
    try:
        with other._ctx.store.catalog.transaction() as db:
            other._ctx.store.catalog.set_meta(db, "embed_model", "another@1234")
            other._ctx.store.catalog.set_meta(db, "embed_dim", "384")
        with pytest.raises(MemcliFailure) as e:
            other.import_(f)
        assert e.value.code == ExitCode.STORE and "reindex" in e.value.hint
        assert other._ctx.store.catalog.count() == 0
    finally:
        other.close()


def test_export_is_atomic(source: tuple[Memcli, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mem, _ = source
    f = tmp_path / "keep.jsonl"
    f.write_text("the previous export\n", encoding="utf-8")

    def boom(obj: dict[str, Any]) -> str:
        if obj.get("type") == "link":
            raise OSError(errno.ENOSPC, "No space left on device")
        return json.dumps(obj) + "\n"

    monkeypatch.setattr(transfer, "_dumps", boom)
    with pytest.raises(MemcliFailure) as e:  # a clear "disk full" (exit 6), not a traceback
        mem.export(f)
    assert e.value.code == ExitCode.STORE and "No space left" in e.value.message
    assert f.read_text(encoding="utf-8") == "the previous export\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".keep")] == []


def test_export_to_a_directory_or_an_empty_name_is_refused(cli, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Found by the command-line fuzz at x10: `memcli export ''` was an internal error."""
    assert cli("add", "Pickle likes carrots").code == 0
    for dest in ("", str(tmp_path), "."):
        r = cli("export", dest)
        assert r.code == 2 and "not a file name" in r.err, (dest, r.code, r.err)
    assert not list(tmp_path.glob(".*.tmp"))  # no half file left behind
