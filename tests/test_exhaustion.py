"""Running out of things: disk space (a file-size limit), a broken model file, one enormous line.

The disk-full cases run the real CLI with RLIMIT_FSIZE lowered in the child (SIGXFSZ ignored, so a
write past the limit fails with EFBIG, as a full disk fails with ENOSPC): memcli must say so (exit 6,
"free some disk space"), never show a traceback or call it a bug, and leave the store intact.
"""

from __future__ import annotations

import json
import random
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from crashkit import IngestJob, Proc, doctor, memcli, memcli_env, not_ok_findings, rows

EARLIER = ["Earlier memory one: the plumber comes on Thursday.", "Earlier memory two: Liv's train is at 9:40."]


def file_size_limit(limit: int) -> Callable[[], None]:
    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return pre


def assert_clear_failure(p: Proc) -> None:
    """A full disk is a documented store failure with a hint, not a bug and not a traceback."""
    said = p.out + p.err  # (with --json the error is the envelope on stdout)
    assert "Traceback" not in said and "internal error" not in said, said
    assert p.code == 6, (p.code, said)
    assert "free some disk space" in said or "disk is not full" in said, said


def assert_intact(env: dict[str, str], home: Path) -> None:
    p, report = doctor(env)
    assert p.code == 0 and not_ok_findings(report) == [], (not_ok_findings(report), p.err)
    texts = [r.text for r in rows(home) if r.state == "active"]
    for t in EARLIER:
        assert texts.count(t) == 1


# Limits from "the WAL cannot take one page" to "Chroma's files cannot grow": each hits a different write.
LIMITS = [4_096, 16_384, 65_536, 150_000, 190_000, 400_000]


def test_disk_full_during_add(tmp_path: Path, minilm_path: Path) -> None:
    home = tmp_path / "home"
    env = memcli_env(home, minilm_path)
    for t in EARLIER:
        assert memcli(env, "add", t).code == 0
    failed = 0
    for limit in LIMITS:
        text = f"New memory written under a {limit}-byte file limit."
        p = memcli(env, "add", text, preexec=file_size_limit(limit))
        if p.code != 0:
            assert_clear_failure(p)
            failed += 1
        assert_intact(env, home)  # (this open also completes a write the failed run committed)
        assert [r.text for r in rows(home)].count(text) <= 1
        again = memcli(env, "add", text)  # with space again, the same command just works
        assert again.code == 0, again.err
        assert [r.text for r in rows(home) if r.state == "active"].count(text) == 1
    assert failed >= 3, "the limits should have made several adds fail"


def test_disk_full_during_ingest(tmp_path: Path, minilm_path: Path) -> None:
    home = tmp_path / "home"
    env = memcli_env(home, minilm_path)
    for t in EARLIER:
        assert memcli(env, "add", t).code == 0
    tree = IngestJob(tmp_path, minilm_path, files=30)
    tree.prepare(0, random.Random(5))
    tree.prev = {}
    p = memcli(env, "ingest", str(tree.tree), "--json", preexec=file_size_limit(190_000))
    assert_clear_failure(p)
    assert_intact(env, home)
    assert tree.after_kill(home).problems == []  # every file all-or-nothing
    assert memcli(env, "ingest", str(tree.tree), "--json").code == 0
    assert tree.complete(home).problems == []
    assert_intact(env, home)


def test_a_long_running_process_writes_again_once_space_is_back(tmp_path: Path, minilm_path: Path) -> None:
    """Chat keeps one store open for a whole conversation: a write that failed for lack of space must not
    leave the connection stuck in a half-finished transaction."""
    home = tmp_path / "home"
    script = """
import json, resource, signal
from memcli.api import Memcli
m = Memcli()
m.add("before the disk filled up")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
try:
    m.add("while the disk was full " + "x" * 5000)
    failed = None
except Exception as e:
    failed = type(e).__name__
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
m.add("after space was freed")
print(json.dumps({"failed": failed, "total": m.list(limit=10).total}))
m.close()
"""
    r = subprocess.run(
        [sys.executable, "-c", script], env=memcli_env(home, minilm_path), capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["failed"] is not None  # the limit really hit a write
    assert out["total"] in (2, 3)  # the failed add is whole or absent, never half
    env = memcli_env(home, minilm_path)
    p, report = doctor(env)
    assert p.code == 0 and not_ok_findings(report) == []
    texts = [r.text for r in rows(home)]
    assert texts.count("before the disk filled up") == texts.count("after space was freed") == 1


@pytest.mark.parametrize(
    "damage",
    ["empty", "text", "magic only", "header only", "cut in the metadata", "cut in the weights", "last byte missing", "directory"],
)
def test_broken_embedding_model_is_exit_5_with_a_message(damage: str, tmp_path: Path, minilm_path: Path) -> None:
    """A write needs the model: exit 5 naming the file. Recall answers from the keyword index and says
    the meaning half is missing, naming the file too (issue 16: degraded search says so)."""
    good = minilm_path.read_bytes()
    bad = tmp_path / "model.gguf"
    cut = {
        "empty": b"",
        "text": b"this is not a model\n",
        "magic only": good[:4],
        "header only": good[:24],
        "cut in the metadata": good[:100_000],
        "cut in the weights": good[: len(good) // 2],
        "last byte missing": good[:-1],
    }
    if damage == "directory":
        bad.mkdir()
    else:
        bad.write_bytes(cut[damage])
    env = memcli_env(tmp_path / "home", bad)
    p = memcli(env, "add", "a memory", "--json", timeout=120)
    assert p.code == 5, (damage, p.code, p.err, p.out)
    assert "Traceback" not in p.err and str(bad) in p.json()["error"]["message"]
    p = memcli(env, "recall", "a memory", "--json", timeout=120)
    assert p.code == 0 and "Traceback" not in p.err, (damage, p.code, p.err, p.out)
    [missing] = p.json()["data"]["degraded"]
    assert missing["leg"] == "dense" and str(bad) in missing["reason"] + missing["hint"], missing


def test_huge_single_line_input_is_handled_without_a_hang(tmp_path: Path, minilm_path: Path) -> None:
    env = memcli_env(tmp_path / "home", minilm_path)
    line = "x" * 5_000_000  # 5 MB, one line, no spaces: minified data, not a note

    start = time.monotonic()
    p = memcli(env, "add", stdin=line, timeout=120)
    assert p.code == 2 and "memcli ingest" in p.err, p.err  # refused, with what to do instead

    big = tmp_path / "notes"
    big.mkdir()
    (big / "blob.txt").write_text(line)
    (big / "blob.jsonl").write_text(json.dumps({"text": line}) + "\n")
    (big / "prose.md").write_text(" ".join(f"word{i}" for i in range(6000)))  # ~45 kB on one line: chunked
    p = memcli(env, "ingest", str(big), "--json", timeout=300)
    assert p.code == 7, p.err  # done, with the two blobs skipped and named
    files = {Path(f["path"]).name: f for f in p.json()["data"]["files"]}
    assert files["blob.txt"]["status"] == "skipped" and "a line of 5,000,000 characters" in files["blob.txt"]["reason"]
    assert files["blob.jsonl"]["status"] == "skipped" and files["blob.jsonl"]["reason"].startswith("line 1: ")
    assert files["prose.md"]["status"] == "added" and files["prose.md"]["added"] > 5
    texts = [r.text for r in rows(tmp_path / "home")]
    assert " ".join(texts).split() == [f"word{i}" for i in range(6000)]  # chunked, nothing lost
    assert time.monotonic() - start < 280  # (the old behaviour ran for many minutes)
