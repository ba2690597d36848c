"""Nothing leaked: owner-only files, a warning for a loose data directory, purge leaves no byte behind,
and Chroma's telemetry is off.

tests/test_memories.py::test_purge_leaves_no_trace_of_the_text covers a purge through the API; here the
real CLI does it, the marker reaches the store by every route (add, a Markdown file, a conversation
turn that its neighbours carry in their keys, a recall query), and every byte under MEMCLI_HOME is
scanned: SQLite's file, its -wal/-shm, Chroma's files, models, logs.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from crashkit import all_bytes, doctor, memcli, memcli_env, not_ok_findings, rows, traces

from memcli.api import Memcli


def loose_modes(root: Path) -> list[str]:
    """Every directory under ``root`` that is not 0700 and every file that is not 0600."""
    bad = []
    for p in [root, *sorted(root.rglob("*"))]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if p.is_symlink():
            continue
        want = 0o700 if p.is_dir() else 0o600
        if mode != want:
            bad.append(f"{oct(mode)} {p.relative_to(root.parent)}")
    return bad


def _notes(root: Path) -> Path:
    (root / "journal").mkdir(parents=True)
    (root / "journal" / "2026-10-03.md").write_text("# Market\nFennel, blood oranges and a loaf of rye.\n")
    (root / "chat.jsonl").write_text(
        "".join(json.dumps({"session": "s1", "speaker": s, "text": t}) + "\n" for s, t in [("me", "hello"), ("you", "hi there")])
    )
    return root


def test_everything_memcli_writes_is_owner_only(tmp_path: Path, minilm_path: Path) -> None:
    home = tmp_path / "home"
    # No MEMCLI_EMBEDDING_MODEL: the bundled model is converted into MEMCLI_HOME/models on first use.
    env = {k: v for k, v in memcli_env(home, minilm_path).items() if k != "MEMCLI_EMBEDDING_MODEL"}
    assert memcli(env, "add", "The spare key is under the blue pot.").code == 0
    assert memcli(env, "ingest", str(_notes(tmp_path / "notes"))).code == 0
    assert memcli(env, "add", "A work memory", "--space", "work").code == 0
    assert memcli(env, "recall", "spare key", "--json").code == 0
    assert memcli(env, "doctor").code == 0
    seen = {p.name for p in home.rglob("*")}
    assert {"memcli.sqlite3", "chroma.sqlite3", "data_level0.bin", "all-MiniLM-L6-v2.gguf"} <= seen
    assert loose_modes(home) == []

    # SQLite's -wal and -shm exist while the store is open, and a program using the Python API has its
    # own umask (0022 here): what it writes (Chroma's files included) must be owner-only all the same.
    umask = os.umask(0o022)
    mem = Memcli(home=home, env=env)
    try:
        mem.add("An API memory in a new space", space="api")
        mem.recall("spare key")
        assert {"memcli.sqlite3-wal", "memcli.sqlite3-shm"} <= {p.name for p in (home / "data").iterdir()}
        assert loose_modes(home) == []
    finally:
        mem.close()
        os.umask(umask)


def test_a_data_directory_readable_by_others_is_reported(tmp_path: Path, minilm_path: Path) -> None:
    home = tmp_path / "home"
    env = memcli_env(home, minilm_path)
    assert memcli(env, "add", "Something private").code == 0
    data = home / "data"
    data.chmod(0o755)
    p = memcli(env, "list")  # every command that opens the store warns, without changing anything
    assert p.code == 0 and "other users can read your memories" in p.err and str(data) in p.err
    p, report = doctor(env)
    assert p.code == 6
    assert any(f.startswith("permissions: readable by others") and str(data) in f for f in not_ok_findings(report))
    assert stat.S_IMODE(data.stat().st_mode) == 0o755  # reported, not silently changed
    (data / "memcli.sqlite3").chmod(0o644)
    data.chmod(0o700)
    p, report = doctor(env)
    assert p.code == 6 and any(str(data / "memcli.sqlite3") in f for f in not_ok_findings(report))
    (data / "memcli.sqlite3").chmod(0o600)
    p, report = doctor(env)
    assert p.code == 0 and not_ok_findings(report) == []
    assert "other users" not in memcli(env, "list").err


MARKER = "quokkazanzibar4417"


def test_purge_leaves_no_trace_anywhere_under_home(tmp_path: Path, minilm_path: Path) -> None:
    home = tmp_path / "home"
    env = memcli_env(home, minilm_path)
    notes = tmp_path / "notes"  # outside MEMCLI_HOME: the user's own files are not ours to erase
    notes.mkdir()
    (notes / "plans.md").write_text(f"# Plans\nVisit the aquarium.\n\n# Secret\nThe safe code is {MARKER} 19.\n")
    (notes / "talk.jsonl").write_text(
        "".join(
            json.dumps({"session": "t1", "speaker": s, "text": t}) + "\n"
            for s, t in [("Ana", "Guess my password"), ("Ben", f"Is it {MARKER}-b?"), ("Ana", "No, it is longer")]
        )
    )
    for text in ("Buy oat milk", f"My locker combination is {MARKER} 7", "Call the dentist"):
        assert memcli(env, "add", text).code == 0
    assert memcli(env, "ingest", str(notes)).code == 0
    hits = memcli(env, "recall", MARKER, "-k", "10", "--json").json()["data"]["hits"]
    assert len([h for h in hits if MARKER in h["memory"]["text"]]) == 3
    assert traces(home, [MARKER])  # it is in the store now (this is what must go)

    ids = [r.id for r in rows(home) if MARKER in r.text]
    assert len(ids) == 3
    assert memcli(env, "forget", ids[0], "--yes").code == 0  # one from the trash, the others directly
    p = memcli(env, "forget", *ids, "--purge", "--yes", "--json")
    assert p.code == 0, p.err

    assert traces(home, [MARKER, MARKER[:10]]) == []
    # The store still works and holds everything else.
    p, report = doctor(env)
    assert p.code == 0 and not_ok_findings(report) == []
    left = {r.text for r in rows(home)}
    assert {"Buy oat milk", "Call the dentist", "Visit the aquarium.", "Ana: Guess my password", "Ana: No, it is longer"} <= left
    hits = memcli(env, "recall", MARKER, "-k", "10", "--json").json()["data"]["hits"]
    assert all(MARKER not in json.dumps(h) for h in hits)
    assert sum(len(b) for _, b in all_bytes(home)) > 0


def test_chroma_telemetry_is_off(tmp_path: Path) -> None:
    """The client memcli builds has product telemetry switched off and never loads a telemetry client."""
    script = f"""
import json, sys
from pathlib import Path
from memcli.backends.base import VectorMeta
from memcli.backends.chroma_index import ChromaIndex
index = ChromaIndex(Path({str(tmp_path / "chroma")!r}))
index.upsert("default", ["a"], [[0.1] * 8], [VectorMeta("note", 0.0)])
index.query("default", [0.1] * 8, 1)
settings = index.client.get_settings()
print(json.dumps({{
    "anonymized_telemetry": settings.anonymized_telemetry,
    "env": __import__("os").environ.get("ANONYMIZED_TELEMETRY"),
    "posthog_loaded": any(m == "posthog" or m.startswith("posthog.") for m in sys.modules),
}}))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got == {"anonymized_telemetry": False, "env": "False", "posthog_loaded": False}
