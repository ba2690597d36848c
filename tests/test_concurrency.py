"""Several memcli processes at once on one store, for a bounded time.

An ingest of a tree, a loop of `add`s (standing in for a chat session: chat writes through the same
store API), two `recall` loops and a `forget` loop run together, after another process has held the
store's write lock for a few seconds (so writers certainly meet a busy store). Afterwards every
expected memory is there exactly once, doctor is ok, no reader ever failed or saw a half-written
result, and every writer either waited (saying so on stderr) or exited with the documented store code.
"""

from __future__ import annotations

import json
import queue
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from crashkit import WAIT_NOTICE, IngestJob, Proc, doctor, memcli, memcli_env, not_ok_findings, rows, sentence

SECONDS = 20.0  # how long the loops keep starting new processes
HOLD_LOCK = 5.0  # another process holds the write lock this long at the start
QUERIES = ["lighthouse keeper cat", "concurrent note garden", "plain note", "record of file", "second part", "marble harbour"]


def test_processes_at_once_lose_nothing_and_readers_never_fail(tmp_path: Path, minilm_path: Path) -> None:
    home = tmp_path / "home"
    env = memcli_env(home, minilm_path)
    seed = "Seed memory: the lighthouse keeper's cat is called Biscuit."
    assert memcli(env, "add", seed, "--json").code == 0
    tree = IngestJob(tmp_path, minilm_path, files=60)
    tree.prepare(0, random.Random(3))  # writes the tree; tree.cur is what ingesting it must give
    rng = random.Random(11)
    add_texts = [f"Concurrent note {i}: {sentence(rng, 9)}." for i in range(2000)]
    known = {seed, *add_texts, *(t for items in tree.cur.values() for _, t in items)}

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('held', flush=True); time.sleep(float(sys.argv[2]))",
            str(home / "data" / "write.lock"),
            str(HOLD_LOCK),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

    deadline = time.monotonic() + SECONDS
    writers: list[tuple[str, Proc]] = []
    readers: list[tuple[str, Proc]] = []
    added: dict[int, list[str]] = {}  # add number -> ids it created or found
    forgotten: list[str] = []
    to_forget: queue.Queue[str | None] = queue.Queue()
    lock = threading.Lock()

    def ingest() -> None:
        p = memcli(env, "ingest", str(tree.tree), "--json")
        with lock:
            writers.append(("ingest", p))

    def adder() -> None:
        i = 0
        while time.monotonic() < deadline or i < 4:  # a few adds even on a very slow machine
            p = memcli(env, "add", add_texts[i], "--tag", "conc", "--json")
            with lock:
                writers.append((f"add {i}", p))
            if p.code == 0:
                data = p.json()["data"]
                ids = [m["id"] for m in data["added"] + data["duplicates"]]
                added[i] = ids
                if i % 3 == 0:
                    for mid in ids:
                        to_forget.put(mid)
            i += 1
        to_forget.put(None)

    def forgetter() -> None:
        while True:
            mid = to_forget.get()
            if mid is None:
                return
            p = memcli(env, "forget", mid, "--yes", "--json")
            with lock:
                writers.append((f"forget {mid}", p))
            if p.code == 0:
                forgotten.append(mid)

    def reader(n: int) -> None:
        i = n
        while time.monotonic() < deadline or i < n + 4:
            p = memcli(env, "recall", QUERIES[i % len(QUERIES)], "-k", "5", "--json")
            with lock:
                readers.append((f"recall {i}", p))
            i += 1

    threads = [
        threading.Thread(target=ingest),
        threading.Thread(target=adder),
        threading.Thread(target=forgetter),
        threading.Thread(target=reader, args=(0,)),
        threading.Thread(target=reader, args=(1,)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
        assert not t.is_alive(), "a memcli process hung"
    holder.wait(timeout=60)

    # Readers: always exit 0 with one parseable JSON envelope whose hits are whole memories we wrote.
    assert len(readers) >= 8
    for name, p in readers:
        assert p.code == 0, (name, p.code, p.err)
        envelope: dict[str, Any] = json.loads(p.out)
        assert envelope["ok"] is True and isinstance(envelope["data"]["hits"], list), name
        for h in envelope["data"]["hits"]:
            assert h["memory"]["text"] in known, (name, h["memory"]["text"][:80])
        assert "Traceback" not in p.err

    # Writers: succeeded (having waited, and said so, when the store was busy) or refused with the
    # documented store exit code and a message; never a traceback.
    waited = 0
    for name, p in writers:
        assert "Traceback" not in p.err, (name, p.err)
        assert p.code == 0 or (p.code == 6 and "another memcli process" in p.err), (name, p.code, p.err)
        waited += WAIT_NOTICE in p.err
    assert waited >= 1, "no writer ever met the busy store (the lock holder should have made one wait)"
    assert any(n == "ingest" and p.code == 0 for n, p in writers)
    assert len(added) >= 4 and forgotten

    # Every memory exactly once, in the state it should be in.
    report_proc, report = doctor(env)
    assert report_proc.code == 0 and not_ok_findings(report) == [], not_ok_findings(report)
    all_rows = rows(home)
    by_text: dict[str, list[str]] = {}
    for r in all_rows:
        by_text.setdefault(r.text, []).append(r.state)
    assert by_text.pop(seed) == ["active"]
    forgotten_set = set(forgotten)
    id_state = {r.id: r.state for r in all_rows}
    for i, ids in added.items():
        assert by_text.pop(add_texts[i]) == ["trashed" if set(ids) <= forgotten_set else "active"], i
        assert all(id_state[mid] == "trashed" for mid in ids if mid in forgotten_set)
    ingested: dict[str, list[tuple[int | None, str]]] = {}
    for r in all_rows:
        if r.source.startswith("file:"):
            ingested.setdefault(r.source, []).append((r.position, r.text))
            by_text.pop(r.text, None)
    assert {k: sorted(v) for k, v in ingested.items()} == {k: sorted(v) for k, v in tree.cur.items()}
    assert by_text == {}, f"unexpected memories: {list(by_text)[:5]}"
    print(
        f"\nconcurrency: {len(readers)} recalls, {len(writers)} writer processes ({waited} waited), "
        f"{len(added)} adds, {len(forgotten)} forgets, {sum(len(v) for v in tree.cur.values())} ingested chunks"
    )


def test_chat_consolidate_ingest_and_recall_at_once(tmp_path: Path, minilm_path: Path) -> None:
    """A chat session writing memories (episodes, facts, supersessions), cron's `consolidate`, an
    ingest and recalls, all at once for a bounded time: every exchange stored whole, the chain of homes
    intact (one current), the tree ingested exactly, consolidate done or refused as busy (exit 9),
    readers never fail, doctor ok."""
    from crashkit import ChatJob
    from scripted_server import scripted_server

    with scripted_server() as url:
        job = ChatJob(tmp_path, minilm_path, url)
        home = job.home
        plain = memcli_env(home, minilm_path)  # consolidate and recall: no chat model configured
        assert memcli(plain, "add", "Seed memory: the lighthouse keeper's cat is called Biscuit.").code == 0
        tree = IngestJob(tmp_path, minilm_path, files=40)
        tree.prepare(0, random.Random(5))  # writes the tree; tree.cur is what ingesting it must give
        deadline = time.monotonic() + SECONDS
        chats: list[Proc] = []
        others: list[tuple[str, Proc]] = []
        lock = threading.Lock()

        def chat() -> None:
            i = 0
            while time.monotonic() < deadline or i < 3:
                job.prepare(i, random.Random(i))
                p = memcli(job.env(home), *job.args())
                chats.append(p)
                if p.code != 0:
                    return
                i += 1

        def consolidate() -> None:
            while time.monotonic() < deadline:
                p = memcli(plain, "consolidate", "--json")
                with lock:
                    others.append(("consolidate", p))

        def ingest() -> None:
            p = memcli(plain, "ingest", str(tree.tree), "--json")
            with lock:
                others.append(("ingest", p))

        def reader() -> None:
            i = 0
            while time.monotonic() < deadline or i < 3:
                p = memcli(plain, "recall", "where does the user live", "-k", "5", "--json")
                with lock:
                    others.append(("recall", p))
                i += 1

        threads = [threading.Thread(target=f) for f in (chat, consolidate, consolidate, ingest, reader)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
            assert not t.is_alive(), "a memcli process hung"

    assert chats and all(p.code == 0 and "Traceback" not in p.err for p in chats), [(p.code, p.err[-300:]) for p in chats]
    consolidations = [p for n, p in others if n == "consolidate"]
    assert any(p.code == 0 for p in consolidations)
    for name, p in others:
        assert "Traceback" not in p.err, (name, p.err)
        if name in ("recall", "ingest"):
            assert p.code == 0 and json.loads(p.out)["ok"] is True, (name, p.code, p.err)
        else:  # the second cron run while one is going: busy, exit 9, nothing done
            assert p.code in (0, 9), (p.code, p.err[-300:])
    verdict = job.complete(home)
    assert verdict.problems == [] and (verdict.lost, verdict.duplicates) == (0, 0)
    ingested: dict[str, list[tuple[int | None, str]]] = {}
    for r in rows(home):
        if r.source.startswith("file:") and r.state == "active":
            ingested.setdefault(r.source, []).append((r.position, r.text))
    assert {k: sorted(v) for k, v in ingested.items()} == {k: sorted(v) for k, v in tree.cur.items()}
    report_proc, report = doctor(plain)
    assert report_proc.code == 0 and not_ok_findings(report) == [], not_ok_findings(report)
    print(
        f"\nchat+consolidate+ingest: {len(chats)} chat turns, {len(consolidations)} consolidate runs "
        f"({sum(p.code == 9 for p in consolidations)} busy), {sum(n == 'recall' for n, _ in others)} recalls"
    )
