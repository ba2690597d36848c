"""Ingesting notes: structure, metadata, idempotence, incremental updates, bad files, Ctrl-C."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from conftest import write

from memcli.api import Memcli
from memcli.errors import ExitCode

if TYPE_CHECKING:
    from memcli.api import IngestProgress

REPO = Path(__file__).resolve().parent.parent
NOTES = REPO / "examples" / "notes"


def test_example_notes_answer_the_demo_questions(mem: Memcli) -> None:
    """The README demo's questions: the intended file is the top hit (the date one uses a window)."""
    report = mem.ingest([NOTES], space="demo")
    assert report.count("added") == len(list(NOTES.rglob("*.md"))) and report.count("skipped") == 0
    for line in (REPO / "examples" / "demo_queries.txt").read_text().splitlines():
        query, _ = line.split("\t")
        kwargs = {}
        if "24th of October" in query:
            kwargs = {"since": datetime(2026, 10, 24).astimezone(), "until": datetime(2026, 10, 25).astimezone()}
        hits = mem.recall(query, space="demo", k=3, **kwargs).hits  # type: ignore[arg-type]
        expected = {
            "dog": "2026-10-14.md",
            "kilometres": "2026-10-11.md",
            "Fennel": "2026-10-03.md",
            "24th": "2026-10-24.md",
            "delivery": "2026-10-15.md",
        }
        want = next(v for k, v in expected.items() if k in query)
        assert hits[0].memory.source.endswith(want), (query, [h.memory.source for h in hits])


def test_reingest_is_idempotent_and_incremental(mem: Memcli, tmp_path: Path) -> None:
    root = tmp_path / "notes"
    a = write(
        root / "journal" / "2024-03-01.md", "# Morning\nWent swimming at the lido.\n\n# Evening\nRead a novel about whales.\n"
    )
    write(root / "ideas.txt", "Build a bird feeder.\n\nLearn the cello.")
    first = mem.ingest([root])
    assert (first.count("added"), first.chunks_added) == (2, 3)  # the two short ideas pack into one chunk
    swim = mem.recall("swimming", k=1).hits[0].memory
    assert swim.event_at is not None and swim.event_at.astimezone().date().isoformat() == "2024-03-01"
    assert "Morning" in swim.keys and "March 2024" in swim.keys

    again = mem.ingest([root])
    assert again.count("unchanged") == 2 and again.chunks_added == 0
    assert mem.list().total == 3

    a.write_text("# Morning\nWent swimming at the lido.\n\n# Evening\nWatched a film about owls.\n")
    third = mem.ingest([root])
    changed = next(f for f in third.files if f.path.endswith("2024-03-01.md"))
    assert (changed.status, changed.added, changed.removed, changed.kept) == ("updated", 1, 1, 1)
    assert mem.show(swim.id).id == swim.id  # the unchanged chunk kept its id (and its recall count)
    texts = [m.text for m in mem.list(limit=50).memories]
    assert "Watched a film about owls." in texts and not any("whales" in t for t in texts)
    assert mem._ctx.store.index.count("default") == 3


def test_bad_files_are_skipped_with_reasons(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "notes"
    write(root / "good.md", "A perfectly fine note about tomatoes.")
    write(root / "empty.md", "   \n")
    write(root / "binary.txt", b"\x89PNG\x00\x00\x01binary")
    write(root / "latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1"))
    write(root / ".hidden.md", "should not be read")
    write(root / "photo.jpg", b"\xff\xd8\xff")
    os.symlink(root, root / "loop")
    r = cli("ingest", str(root), "--json")
    assert r.code == ExitCode.PARTIAL
    data = r.json()["data"]
    reasons = {Path(f["path"]).name: f["reason"] for f in data["files"] if f["status"] == "skipped"}
    assert reasons == {"empty.md": "empty", "binary.txt": "binary file", "latin1.txt": "not UTF-8 text"}
    assert data["counts"]["added"] == 1
    assert cli("list", "--json").json()["data"]["total"] == 1


def test_dry_run_writes_nothing(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write(tmp_path / "n" / "a.md", "Something to remember about kites.")
    r = cli("ingest", str(tmp_path / "n"), "--dry-run", "--json")
    assert r.code == 0 and r.json()["data"]["counts"]["added"] == 1
    assert cli("list", "--json").json()["data"]["total"] == 0


def test_ctrl_c_mid_ingest_keeps_whole_files_only(mem: Memcli, tmp_path: Path) -> None:
    root = tmp_path / "many"
    for i in range(6):
        write(
            root / f"note{i}.md", f"# Note {i}\n" + "\n\n".join(f"Paragraph {j} of note {i} about gardening." for j in range(3))
        )
    calls = []

    def progress(at: IngestProgress) -> None:
        if at.reading:
            return
        calls.append(at.files_done)
        if at.files_done == 3 and calls.count(3) == 1:
            raise KeyboardInterrupt

    report = mem.ingest([root], progress=progress)
    assert report.interrupted and len(report.files) == 3
    assert mem.list(limit=100).total == 3  # three whole files, one chunk each
    rest = mem.ingest([root])
    assert rest.count("unchanged") == 3 and rest.count("added") == 3
    assert mem.list(limit=100).total == 6
    assert mem._ctx.store.index.count("default") == 6


def test_jsonl_memory_and_conversation_forms(mem: Memcli, tmp_path: Path) -> None:
    p = write(
        tmp_path / "export.jsonl",
        '{"text": "Liv\'s flight lands at 18:40", "time": "2026-12-20T18:40:00", "kind": "fact", "tags": ["family"]}\n'
        '{"text": "Work laptop password hint: the blue notebook", "space": "work"}\n'
        '{"session": "s1", "speaker": "Ana", "text": "I adopted a cat named Miso", "time": "2023-05-08T13:56:00"}\n'
        '{"session": "s1", "speaker": "Ben", "text": "Congratulations!"}\n',
    )
    report = mem.ingest([p])
    assert report.count("added") == 1 and report.chunks_added == 4
    fact = mem.recall("when does Liv arrive", k=1).hits[0].memory
    assert fact.kind.value == "fact" and fact.tags == ("family",) and fact.event_at is not None
    assert mem.list(space="work").total == 1
    cat = mem.recall("pet cat", k=1).hits[0].memory
    assert cat.text == "Ana: I adopted a cat named Miso" and cat.kind.value == "episode"
    assert cat.source.endswith("export.jsonl#s1") and cat.position == 0
    assert "Congratulations" in cat.keys  # the neighbouring turn is part of its keys
    assert mem.ingest([p]).count("unchanged") == 1


def test_jsonl_bad_line_skips_the_whole_file(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = write(tmp_path / "bad.jsonl", '{"text": "fine"}\n{"text": \n')
    r = cli("ingest", str(p), "--json")
    assert r.code == ExitCode.PARTIAL
    assert r.json()["data"]["files"][0]["reason"].startswith("line 2: not valid JSON")
    assert cli("list", "--json").json()["data"]["total"] == 0


def test_stdin_ingest_is_idempotent(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("ingest", "-", "--json", stdin_bytes=b"# Shopping\nBuy lemons and basil.\n")
    assert r.code == 0 and r.json()["data"]["chunks_added"] == 1
    r = cli("ingest", "-", "--json", stdin_bytes=b"# Shopping\nBuy lemons and basil.\n")
    assert r.json()["data"]["counts"]["unchanged"] == 1
    r = cli("ingest", "-", "--name", "list", "--format", "text", "--json", stdin_bytes=b"eggs")
    assert r.json()["data"]["chunks_added"] == 1


def test_include_exclude_and_memcliignore(mem: Memcli, tmp_path: Path) -> None:
    root = tmp_path / "n"
    write(root / "keep.md", "keep this note")
    write(root / "drafts" / "draft.md", "a draft")
    write(root / "private" / "diary.md", "private diary")
    write(root / "log.txt", "a log file")
    write(root / ".memcliignore", "private/\n")
    names = {Path(f.path).name for f in mem.ingest([root], exclude=["drafts/**"], dry_run=True).files}
    assert names == {"keep.md", "log.txt"}
    names = {Path(f.path).name for f in mem.ingest([root], include=["*.md"], dry_run=True).files}
    assert names == {"keep.md", "draft.md"}


def test_prune_missing_forgets_deleted_files(mem: Memcli, tmp_path: Path) -> None:
    root = tmp_path / "n"
    write(root / "a.md", "apples are red")
    gone = write(root / "b.md", "bananas are yellow")
    mem.ingest([root])
    gone.unlink()
    assert mem.ingest([root]).count("removed") == 0  # only with --prune-missing
    report = mem.ingest([root], prune_missing=True)
    assert report.count("removed") == 1
    assert [m.text for m in mem.list().memories] == ["apples are red"]
    assert mem._ctx.store.index.count("default") == 1
    write(root / "b.md", "bananas are yellow")
    assert mem.ingest([root]).count("added") == 1  # its source record went too: it comes back cleanly


def _notes_tree(root: Path, n: int = 300) -> dict[str, str]:
    """A realistic mixed tree: journals (several date layouts), front matter, nested folders, text,
    JSONL, and the bad cases. Returns {relative path: why it must be skipped} for the bad ones."""
    topics = ["garden", "running", "work", "books", "travel", "cooking", "family", "health", "music", "money"]
    for i in range(n):
        t = topics[i % len(topics)]
        day = f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}"
        kind = i % 5
        if kind == 0:
            write(
                root / "journal" / f"{day}-{i}.md",
                f"# {t.title()} day {i}\nToday {t} note number {i}. #{t}\n\n## Later\nMore about {t} {i}.\n",
            )
        elif kind == 1:
            y, m, d = day.split("-")
            write(root / "journal" / y / m / f"{d}-{i}.md", f"Entry {i} about {t}.\n")
        elif kind == 2:
            write(
                root / "topics" / t / f"note-{i}.md",
                f"---\ntitle: {t} {i}\ntags: [{t}, misc]\ndate: {day}\n---\n- item {i} for {t}\n- second item\n",
            )
        elif kind == 3:
            write(root / "plain" / f"{t}-{i}.txt", f"Plain text about {t}, number {i}.\n\nSecond paragraph {i}.")
        else:
            write(
                root / "exports" / f"chat-{i}.jsonl",
                json.dumps({"session": f"s{i}", "speaker": "me", "text": f"chat {i} about {t}", "time": f"{day}T10:00:00"})
                + "\n",
            )
    bad = {
        "bad/empty.md": "empty",
        "bad/blank.txt": "empty",
        "bad/image.txt": "binary file",
        "bad/latin1.md": "not UTF-8 text",
        "bad/huge.md": "too large",
        "bad/broken.jsonl": "line 1: not valid JSON",
        "bad/fifo.md": "not a regular file",
    }
    write(root / "bad" / "empty.md", "")
    write(root / "bad" / "blank.txt", "\n\n  \n")
    write(root / "bad" / "image.txt", b"GIF89a\x00\x00\x00")
    write(root / "bad" / "latin1.md", "r\xe9sum\xe9".encode("latin-1"))
    write(root / "bad" / "huge.md", "x" * (1024 * 1024 + 10))
    write(root / "bad" / "broken.jsonl", "{not json}\n")
    os.mkfifo(root / "bad" / "fifo.md")
    os.symlink(root / "journal", root / "journal" / "loop")
    write(root / ".git" / "config.md", "hidden: never read")
    return bad


def test_realistic_tree_of_hundreds_of_files(mem: Memcli, tmp_path: Path) -> None:
    root = tmp_path / "life"
    bad = _notes_tree(root)
    m = Memcli(settings={("ingest", "max_file_mb"): 1})
    first = m.ingest([root])
    skipped = {str(Path(f.path).relative_to(root)): f.reason for f in first.files if f.status == "skipped"}
    assert {k: v.split(" (")[0] for k, v in skipped.items()} == bad
    assert first.count("added") == 300 and first.count("skipped") == len(bad)
    total = m.list(limit=1).total
    assert total == first.chunks_added >= 300
    assert m._ctx.store.index.count("default") == total
    # Journal dates from both layouts and from front matter became event times.
    hit = m.recall("Entry 1 about running", k=1).hits[0].memory
    assert hit.event_at is not None and hit.event_at.astimezone().strftime("%Y-%m-%d") == "2025-02-02"
    again = m.ingest([root])
    assert again.count("unchanged") == 300 and again.chunks_added == 0
    assert m.list(limit=1).total == total
    m.close()
